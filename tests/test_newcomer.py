"""What a new user met first: numbers, table widths, --no-views, Ctrl-C, empty inputs, plan.

Fast: no model loads (the commands that would load one are checked to stop before)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from mkailin.cli import cli
from mkailin.config import load
from mkailin.lake import Lake
from mkailin.stage import log_event

ROOT_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def csv_rows(output: str) -> dict[str, dict]:
    import csv
    import io

    return {r["stage"]: r for r in csv.DictReader(io.StringIO(output))}


# ------------------------------------------------------------------------------ 1. numbers
def test_render_prints_numbers_for_people():
    from mkailin.output import render

    table = pa.table(
        {
            "pmid": pa.array([21645374], pa.int64()),
            "pub_year": pa.array([2017], pa.int32()),
            "tokens_in": pa.array([16095000000], pa.int64()),
            "gpu_hours": pa.array([1400880.4], pa.float64()),
            "share": pa.array([2.37256e-05], pa.float64()),
            "cost_usd": pa.array([1234.56], pa.float64()),
        }
    )
    out = render(table)
    row = out.splitlines()[2]
    assert row.split() == [
        "21645374",
        "2017",
        "16,095,000,000",
        "1,400,880",
        "0.0000237",
        "$1,234.56",
    ]
    assert "e+" not in out and "e-" not in out
    # programs still get the exact values
    assert render(table, "csv").splitlines()[1] == (
        "21645374,2017,16095000000,1400880.4,2.37256e-05,1234.56"
    )


def test_float_columns_share_their_decimals_and_small_money_keeps_its_cents():
    from mkailin.output import format_float, format_money, render

    out = render(pa.table({"accuracy": [0.5, 0.625, 1.0], "cost_usd": [0.0042, 0.0, 12.5]}))
    assert [ln.split() for ln in out.splitlines()[2:5]] == [
        ["0.500", "$0.0042"],
        ["0.625", "$0.0000"],
        ["1.000", "$12.5000"],
    ]
    assert format_float(2.372) == "2.37" and format_float(3e-9) == "3.00e-09"
    assert format_money(-3) == "-$3.00" and format_float(float("nan")) == "NaN"


def test_cli_sql_prints_human_numbers(cli_lake):
    cli_lake("init")
    r = cli_lake(
        "sql",
        "select 16095000000 as tokens, 1400880.4::double as big, 2.37256e-05::double as small, "
        "1234.56::double as cost_usd, 2017 as pub_year",
    )
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[2].split() == [
        "16,095,000,000",
        "1,400,880",
        "0.0000237",
        "$1,234.56",
        "2017",
    ]


# ------------------------------------------------------------------------------ 2. side by side
def _report(labels: list[str]) -> pa.Table:
    slices = [("overall", "all")] + [("year", f"{y}-{y + 1}") for y in range(2000, 2016, 2)]
    slices += [("mesh", m) for m in ("Humans", "Treatment Outcome", "Retrospective Studies")]
    return pa.Table.from_pylist(
        [
            {
                "model": lab,
                "slice_kind": kind,
                "slice": s,
                "n": 40,
                "accuracy": 0.125 * (i % 8) + 0.0125 * j,
                "macro_f1": 0.1 * (i % 9) + 0.01 * j,
            }
            for j, lab in enumerate(labels)
            for i, (kind, s) in enumerate(slices)
        ]
    )


def test_side_by_side_fits_100_columns_and_says_which_model_is_which():
    from mkailin.evaluate import side_by_side
    from mkailin.output import render

    labels = ["smollm2", "smollm2+train-sft-general-20250611-142233-9f3a1c"]
    report = _report(labels)
    table = side_by_side(report, labels)
    assert table.column_names == ["slice_kind", "slice", "n", "acc:base", "f1:base"] + [
        "acc:tuned",
        "f1:tuned",
    ]
    out = render(table)
    assert max(len(ln) for ln in out.splitlines()) <= 100, out
    assert out.splitlines()[-2:] == [
        "base     = smollm2 (no adapter)",
        "tuned    = smollm2 + adapter train-sft-general-20250611-142233-9f3a1c",
    ]
    # the same numbers, under the short labels
    by_label = {
        (r["model"], r["slice"]): (r["accuracy"], r["macro_f1"]) for r in report.to_pylist()
    }
    for row in table.to_pylist():
        assert (row["acc:base"], row["f1:base"]) == by_label[("smollm2", row["slice"])]
        assert (row["acc:tuned"], row["f1:tuned"]) == by_label[(labels[1], row["slice"])]


def test_short_labels_keep_distinct_models_apart():
    from mkailin.evaluate import short_labels

    assert short_labels(["A", "B"]) == ["A", "B"]
    assert short_labels(["llama3", "smollm2+run-1"]) == ["llama3", "smollm2+tuned"]
    assert short_labels(["m", "m+run-1", "m+run-2"]) == ["base", "tuned1", "tuned2"]


# ------------------------------------------------------------------------------ 3. --no-views
def test_tables_no_views_lists_only_the_tables(cli_lake):
    cli_lake("init")
    r = cli_lake("tables", "--no-views", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert "questions,table,0" in r.output
    assert ",view," not in r.output
    assert "articles,view,0" in cli_lake("tables", "--format", "csv").output


# ------------------------------------------------------------------------------ 4. Ctrl-C
def test_ctrl_c_says_interrupted_and_exits_130(tmp_path, runner, monkeypatch):
    import mkailin.status

    Lake.init(tmp_path / "lake")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mkailin.status, "status_table", interrupted)
    r = runner.invoke(cli, ["--lake", str(tmp_path / "lake"), "status"])
    assert r.exit_code == 130
    assert r.stderr == "Interrupted.\n"
    assert "Aborted" not in r.output


def test_main_exits_130_on_ctrl_c(tmp_path, monkeypatch, capsys):
    import mkailin.status
    from mkailin.cli import main

    Lake.init(tmp_path / "lake")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mkailin.status, "status_table", interrupted)
    monkeypatch.setattr(sys, "argv", ["mkailin", "--lake", str(tmp_path / "lake"), "status"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 130
    assert capsys.readouterr().err == "Interrupted.\n"


def _run(lake, run_id, stage, end, models=None, **kw):
    log_event(lake, run_id, stage, "started", models=models or {})
    time.sleep(0.002)  # distinct start times order the runs
    log_event(lake, run_id, stage, end, models=models or {}, **kw)


def test_status_shows_interrupted_runs_apart_from_failures(lake, runner):
    _run(lake, "q-1", "generate-questions:domain", "interrupted", rows_in=10, rows_out=4)
    # a run logged before `interrupted` existed: Ctrl-C recorded as a failure
    _run(lake, "r-1", "retrieve:dense:minilm", "failed", error="KeyboardInterrupt: ")
    _run(lake, "a-1", "answer", "failed", error="BackendError: the server went away")
    _run(lake, "e-1", "train-judge", "skipped", error="too few preference pairs")
    _run(lake, "x-1", "export:sft", "archived")  # a state this version does not know
    r = runner.invoke(cli, ["--lake", str(lake.root), "status", "--format", "csv"])
    assert r.exit_code == 0, r.output
    states = {ln.split(",")[0]: ln.split(",")[1] for ln in r.output.splitlines()[1:6]}
    assert states == {
        "generate-questions:domain": "interrupted",
        "retrieve:dense:minilm": "interrupted",
        "answer": "failed",
        "train-judge": "skipped",
        "export:sft": "archived",
    }
    notes = r.output.splitlines()[6:]
    assert notes == [
        "interrupted: generate-questions:domain (q-1) after 4 rows; "
        "run the command again to resume",
        "interrupted: retrieve:dense:minilm (r-1); run the command again to resume",
        "failed: answer (a-1): BackendError: the server went away",
        "skipped: train-judge (e-1): too few preference pairs",
    ]
    assert "KeyboardInterrupt" not in r.output.split("\n", 6)[-1]


def test_status_shows_a_run_whose_process_is_gone_as_killed(lake, runner):
    import subprocess
    import sys

    code = (
        "import sys; from mkailin.lake import Lake; from mkailin.runs import log_event; "
        "log_event(Lake.open(sys.argv[1]), 'k-1', 'export:cpt', 'started')"
    )
    subprocess.run([sys.executable, "-c", code, str(lake.root)], check=True)  # then it is gone
    r = runner.invoke(cli, ["--lake", str(lake.root), "status", "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].startswith("export:cpt,killed,")
    assert (
        "killed: export:cpt (k-1): its process is gone; run the command again to resume" in r.output
    )


# ------------------------------------------------------------------------------ 5. preflight
@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a command reaches the stage that would load a model."""
    import mkailin.agents.preference
    import mkailin.agents.question
    import mkailin.agents.retrieval

    def loaded(*a, **k):
        raise AssertionError("a model stage started")

    monkeypatch.setattr(mkailin.agents.question, "generate_questions", loaded)
    monkeypatch.setattr(mkailin.agents.retrieval, "retrieve", loaded)
    monkeypatch.setattr(mkailin.agents.preference, "prefer", loaded)


def _invoke(runner, lake, *args):
    t0 = time.perf_counter()
    r = runner.invoke(cli, ["--lake", str(lake.root), *args])
    assert time.perf_counter() - t0 < 10
    return r


def _articles(lake, abstract="An abstract."):
    lake.write_part(
        "article_records",
        pa.Table.from_pylist(
            [
                {
                    "pmid": 1,
                    "title": "A title",
                    "abstract": abstract,
                    "ingest_seq": 1,
                    "deleted": False,
                }
            ]
        ),
    )


def test_generate_on_an_empty_lake_says_what_to_ingest(lake, runner, no_models):
    r = _invoke(runner, lake, "generate", "questions")
    assert r.exit_code == 1
    assert r.output == (
        "Error: the lake has no articles with abstracts: run `mkailin ingest pubmed FILE` or "
        "`mkailin ingest pubmedqa FILE` first\n"
    )
    _articles(lake, abstract=None)  # titles alone are not enough
    assert _invoke(runner, lake, "generate", "questions").exit_code == 1


def test_retrieve_without_questions_names_generate(lake, runner, no_models):
    r = _invoke(runner, lake, "retrieve")
    assert r.exit_code == 1
    assert r.output == (
        "Error: the lake has no questions: run `mkailin generate questions` first\n"
    )
    _articles(lake)
    lake.write_part(
        "questions",
        pa.Table.from_pylist(
            [{"question_id": "q1", "pmid": 1, "agent": "domain", "question": "Why?"}]
        ),
    )
    r = _invoke(runner, lake, "retrieve", "--agent", "final")
    assert r.exit_code == 1
    assert r.output == (
        "Error: the lake has no questions of the agent final: run "
        "`mkailin generate questions --agent final` first\n"
    )
    with pytest.raises(AssertionError, match="a model stage started"):  # the check passes
        runner.invoke(
            cli, ["--lake", str(lake.root), "retrieve", "--agent", "domain"], catch_exceptions=False
        )


def test_prefer_without_contexts_names_retrieve(lake, runner, no_models):
    r = _invoke(runner, lake, "prefer", "--judge", "rule")
    assert r.exit_code == 1
    assert r.output == (
        "Error: the lake has no contexts from the retriever dense:minilm with k 4 (it holds: "
        "nothing): run `mkailin retrieve --retriever dense -k 4`\n"
    )
    lake.write_part(
        "contexts",
        pa.Table.from_pylist(
            [{"question_id": "q1", "rank": 1, "pmid": 1, "retriever": "bm25", "top_k": 8}]
        ),
    )
    r = _invoke(runner, lake, "prefer", "--from-run", "retrieve-x")
    assert r.exit_code == 1
    assert (
        r.output == "Error: no contexts from run 'retrieve-x'; the lake holds: bm25 k 8 (1 rows)\n"
    )


# ------------------------------------------------------------------------------ 6. plan
@pytest.fixture
def on_cpu(monkeypatch):
    import mkailin.plan

    monkeypatch.setattr(mkailin.plan, "machine_class", lambda: "cpu")


def _demo_runs(lake, detail=None):
    """A demo-like lake: SmolLM2 questions and a scoring judge that counted no tokens."""
    for i in range(3):
        _run(
            lake,
            f"qd-{i}",
            "generate-questions:domain",
            "finished",
            models={"domain": "smollm2", "adapter": ""},
            rows_in=10,
            rows_out=10,
            tokens_in=1000,
            tokens_out=300,
            detail=json.dumps(detail or {}),
        )
    _run(
        lake,
        "pj-1",
        "prefer:llm",
        "finished",
        models={"judge": "smollm2", "adapter": ""},
        rows_in=12,
        rows_out=12,
        tokens_in=0,
        tokens_out=0,
    )


def _plan(runner, lake_path, config, *extra):
    r = runner.invoke(
        cli,
        [
            "--lake",
            str(lake_path),
            "plan",
            str(ROOT_CONFIGS / config),
            "--articles",
            "37000000",
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    return r.output


def test_plan_prices_the_paper_run_the_same_beside_a_demo_lake(lake, runner, tmp_path, on_cpu):
    _demo_runs(lake)
    beside = csv_rows(_plan(runner, lake.root, "paper.toml", "--format", "csv"))
    alone = csv_rows(_plan(runner, tmp_path / "no-lake", "paper.toml", "--format", "csv"))
    assert beside == alone
    q = beside["generate-questions:domain"]
    assert q["basis"].startswith("assumed: prompts of ")
    assert q["gpu_basis"].startswith("assumed: one GPU serving 2,500 generated")
    judge = beside["prefer:llm (both orders)"]
    assert float(judge["gpu_hours"]) > 100  # 37M documents, 4 Llama-3-8B prompts each
    assert judge["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert float(beside["answer"]["cost_usd"]) > 10_000 and beside["answer"]["gpu_hours"] == ""


def test_plan_uses_runs_of_the_same_model_on_the_same_hardware(lake, runner, on_cpu):
    _demo_runs(lake)
    rows = csv_rows(_plan(runner, lake.root, "demo.toml", "--format", "csv"))
    q = rows["generate-questions:domain"]
    assert q["basis"] == "measured: 3 runs of smollm2 on cpu"
    n = load(ROOT_CONFIGS / "demo.toml").generate.articles  # the demo's sample of articles
    assert (int(q["rows"]), int(q["tokens_in"]), int(q["tokens_out"])) == (n, 100 * n, 30 * n)
    assert q["hours_here"] != ""
    judge = rows["prefer:llm (both orders)"]  # timed, but it counted no tokens
    assert judge["basis"].startswith("time measured: 1 run of smollm2 on cpu; tokens assumed:")
    assert float(judge["gpu_hours"]) > 0 and int(judge["tokens_in"]) > 0
    # the general agent has no runs: assumed, with no time on this machine
    g = rows["generate-questions:general"]
    assert g["basis"].startswith("assumed:") and g["hours_here"] == ""


def test_plan_ignores_runs_measured_on_other_hardware(lake, runner, on_cpu):
    _demo_runs(lake, detail={"device": "cuda:0"})
    q = csv_rows(_plan(runner, lake.root, "demo.toml", "--format", "csv"))[
        "generate-questions:domain"
    ]
    assert q["basis"].startswith("assumed:")
    assert q["basis"].endswith("(not the lake's runs on cuda: this runs on cpu)")


def test_plan_table_names_the_basis_of_each_figure_in_footnotes(lake, runner, on_cpu):
    _demo_runs(lake)
    out = _plan(runner, lake.root, "demo.toml")
    assert "[1] measured: 3 runs of smollm2 on cpu" in out
    assert "e+0" not in out and "e-0" not in out
    header = out.splitlines()[0].split()
    assert header[-3:] == ["basis", "gpu_basis", "model"]
