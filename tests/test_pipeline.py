"""The whole pipeline: the demo end to end on real data, a second run that does nothing,
--dry-run/--from/--until, status, the shipped configs and their ablations, and the CLI docs."""

from __future__ import annotations

import json
import re

import pytest

from mkailin.config import Config, configs_dir, load
from mkailin.lake import Lake

from conftest import ROOT, shared

STEPS = (
    "ingest",
    "train-qg-domain",
    "train-qg-general",
    "questions",
    "retrieve",
    "prefer-rule",
    "train-judge",
    "prefer-judge",
    "train-dpo",
    "final-questions",
    "retrieve-final",
    "answer",
    "export",
    "downstream",
    "evaluate",
)


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory, smollm2_available):
    """The README's first command, once: `mkailin demo --data ../shared/data`, on the bfloat16
    path (the other numeric path and other article samples: test_demo_on_every_path)."""
    from click.testing import CliRunner

    from mkailin.cli import cli

    data = shared()
    path = tmp_path_factory.mktemp("demo") / "lake"
    r = CliRunner().invoke(
        cli,
        ["--lake", str(path), "demo", "--data", str(data)],
        catch_exceptions=False,
        env={"MKAILIN_CPU_BF16": "1"},
    )
    assert r.exit_code == 0, r.output
    return path, r.output


def check_demo(path, out: str) -> None:
    """What every demo run must leave, whatever the tiny models wrote: every step ran or was
    skipped with its reason, non-empty corpora, the PubMedQA table, usable-question rates."""
    for i, step in enumerate(STEPS, start=1):
        assert f"step {i}/15 [{step}]" in out
    assert "corpus_cpt: " in out and "corpus_sft: " in out
    assert "PubMedQA (base vs tuned target):" in out and "overall     all" in out
    assert re.search(r"usable questions .*\n  domain +\d+ of 16 ", out)
    lake = Lake.open(path)
    n = dict(lake.query("select agent, count(*) from questions group by 1"))
    assert n.get("domain") and n.get("general") and n.get("final")
    assert lake.count("answers") > 0
    assert lake.query("select count(distinct model) from eval_predictions") == [(2,)]
    import datasets

    for kind in ("cpt", "sft"):
        ds = datasets.load_dataset(
            "parquet",
            data_files=str(path / "exports" / f"corpus_{kind}" / "data.parquet"),
            split="train",
        )
        assert len(ds) > 0
        # no PubMedQA test article in a corpus: not as a source, not as a context
        test_split = {r[0] for r in lake.query("select pmid from pubmedqa where split = 'test'")}
        assert len(test_split) == 500
        for rec in ds:
            assert rec["pmid"] not in test_split
            assert not set(rec["context_pmids"]) & test_split
        manifest = json.loads((path / "exports" / f"corpus_{kind}" / "manifest.json").read_text())
        assert manifest["contamination"]["blocklist"] == "pubmedqa-test"
        assert manifest["contamination"]["allow_contamination"] is False
    assert lake.query(
        "select count(*) from contexts where pmid in "
        "(select pmid from pubmedqa where split = 'test')"
    ) == [(0,)]
    fails = lake.query("select stage from runs where status in ('failed', 'killed')")
    assert fails == []
    # a skipped step says why, in runs and in the closing summary
    for stage, why in lake.query(
        "select stage, error from runs where status = 'skipped' and stage like 'pipeline:%'"
    ):
        assert why and f"  {stage.removeprefix('pipeline:')}: {why}" in out
    # the final questions name the generator they came from, and why
    (chosen,) = lake.query(
        "select json_extract_string(detail, '$.chosen') from runs "
        "where stage = 'select-final-generator' and status = 'finished'"
    )
    assert chosen[0] in ("final", "general")
    # each exported final question names the DPO run and judge behind it, when DPO wrote it
    dpo_runs = {r for (r,) in lake.query("select run_id from runs where stage like 'train-dpo%'")}
    for line in (path / "exports" / "corpus_sft" / "data.jsonl").read_text().splitlines():
        lin = json.loads(line)["lineage"]
        if chosen[0] == "final":
            assert lin["runs"]["dpo"] in dpo_runs and lin["judge"] in ("rule", "llm")
        else:
            assert lin["runs"]["dpo"] is None and lin["judge"] is None


def test_demo_runs_end_to_end_and_summarises(demo_lake):
    path, out = demo_lake
    check_demo(path, out)
    lake = Lake.open(path)
    assert lake.query("select count(distinct retriever) from contexts") == [(1,)]
    judges = {j for (j,) in lake.query("select distinct judge from preferences")}
    trained = lake.query("select status from runs where stage = 'pipeline:train-judge'")
    assert judges == ({"rule", "llm"} if trained == [("finished",)] else {"rule"})


@pytest.mark.slow
@pytest.mark.parametrize("bf16,seed", [("0", 29)])
def test_demo_on_every_path(bf16, seed, tmp_path, smollm2_available):
    """The demo on the float32 path and another article sample (the module's demo lake is the
    bfloat16 path, seed 13), run as a user runs it, in a process of its own."""
    import os
    import subprocess
    import sys

    cfg = tmp_path / f"seed{seed}.toml"
    cfg.write_text(f'extends = "{configs_dir() / "demo.toml"}"\n[generate]\nseed = {seed}\n')
    env = {**os.environ, "MKAILIN_CPU_BF16": bf16}
    path = tmp_path / "lake"
    r = subprocess.run(
        [sys.executable, "-m", "mkailin", "--lake", str(path), "--config", str(cfg), "demo",
         "--data", str(shared())],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_demo(path, r.stdout)


def test_second_run_does_nothing(demo_lake, runner):
    from mkailin.cli import cli

    path, _ = demo_lake
    lake = Lake.open(path)
    before = lake.count("run_events")
    r = runner.invoke(
        cli,
        ["--lake", str(path), "run", str(configs_dir() / "demo.toml"), "--data", str(shared())],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    assert r.output.count("skipped") == 15
    assert lake.count("run_events") == before  # not a single stage ran
    r = runner.invoke(
        cli,
        [
            "--lake",
            str(path),
            "run",
            str(configs_dir() / "demo.toml"),
            "--data",
            str(shared()),
            "--dry-run",
        ],
    )
    assert r.exit_code == 0 and r.output.count(" done") == 15


def test_status_summarises_the_runs(demo_lake, runner):
    from mkailin.cli import cli

    path, _ = demo_lake
    r = runner.invoke(cli, ["--lake", str(path), "status", "--format", "csv"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert (
        lines[0]
        == "stage,status,rows_in,rows_out,seconds,tokens_in,tokens_out,cost_usd,started,run_id,settings"
    )
    stages = {ln.split(",")[0] for ln in lines[1:]}
    assert {"generate-questions:domain", "answer", "train-dpo:general", "embed:minilm"} <= stages
    assert "failed:" not in r.output


def test_dry_run_on_an_empty_lake_and_until(tmp_path, runner):
    from mkailin.cli import cli

    data = shared()
    r = runner.invoke(
        cli,
        [
            "--lake",
            str(tmp_path / "l"),
            "run",
            str(configs_dir() / "demo.toml"),
            "--data",
            str(data),
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith("ingest")
    assert "would process" in r.output and "questions" in r.output
    r = runner.invoke(
        cli,
        [
            "--lake",
            str(tmp_path / "l"),
            "run",
            str(configs_dir() / "demo.toml"),
            "--data",
            str(data),
            "--until",
            "ingest",
        ],
    )
    assert r.exit_code == 0 and "[ingest]" in r.output and "[questions]" not in r.output
    r = runner.invoke(
        cli,
        ["--lake", str(tmp_path / "l"), "run", str(configs_dir() / "demo.toml"), "--from", "nope"],
    )
    assert r.exit_code == 1 and r.output.startswith("Error: unknown step 'nope'; steps: ingest,")


# ---------------------------------------------------------------------------- configs
def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


ABLATIONS = {
    "same-backend": {"agents.domain.model": "llama3"},
    "wo-mesh": {"preference.judge": "zero-shot"},
    "wo-embedding": {"retrieval.encoder": "general"},
    "wo-both": {"preference.judge": "zero-shot", "retrieval.encoder": "general"},
    "topk-1": {"retrieval.k": 1},
    "topk-2": {"retrieval.k": 2},
    "topk-8": {"retrieval.k": 8},
    "topk-16": {"retrieval.k": 16},
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_ablation_changes_exactly_what_it_names(name):
    paper = _flat(load(configs_dir() / "paper.toml").to_dict())
    abl = _flat(load(configs_dir() / "ablations" / f"{name}.toml").to_dict())
    changed = {k: abl[k] for k in abl if abl[k] != paper.get(k)}
    assert changed == ABLATIONS[name]


def test_every_ablation_file_is_tested():
    files = {p.stem for p in (configs_dir() / "ablations").glob("*.toml")}
    assert files == set(ABLATIONS)


def test_paper_config_names_the_papers_models():
    cfg = load(configs_dir() / "paper.toml")
    assert cfg.model(cfg.agent("domain").model).model == "BioMistral/BioMistral-7B"
    assert cfg.model(cfg.agent("general").model).model == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert cfg.model(cfg.agent("answer").model).model == "gpt-4o"
    assert cfg.encoder(cfg.retrieval.domain_encoder).query_model == "ncbi/MedCPT-Query-Encoder"
    assert cfg.retrieval.k == 4


def test_demo_config_is_offline():
    cfg = load(configs_dir() / "demo.toml")
    assert all(
        m.backend == "transformers" and m.model.startswith("pkg:") for m in cfg.models.values()
    )
    assert all(e.model.startswith("pkg:") for e in cfg.encoders.values())


def test_plan_prints_an_estimate_for_all_of_pubmed(runner, tmp_path):
    from mkailin.cli import cli

    r = runner.invoke(
        cli,
        [
            "--lake",
            str(tmp_path / "none"),
            "plan",
            str(configs_dir() / "paper.toml"),
            "--articles",
            "37000000",
            "--format",
            "csv",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = {ln.split(",")[0]: ln.split(",") for ln in r.output.splitlines()[1:]}
    assert rows["generate-questions:domain"][1] == "37000000"
    assert float(rows["answer"][6]) > 10_000 and float(rows["total"][5]) > 100


def test_config_errors_name_the_key(tmp_path):
    from mkailin.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text("[retrieval]\nkk = 4\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: retrieval: unknown key 'kk'"):
        load(bad)
    bad.write_text("[retrieval]\nk = 'four'\n")
    with pytest.raises(ConfigError, match=r"retrieval\.k: expected int, got str \('four'\)"):
        load(bad)
    bad.write_text("[preference]\njudge = 'oracle'\n")
    with pytest.raises(ConfigError, match="preference.judge: 'oracle' is not one of"):
        load(bad)
    bad.write_text("extends = 'bad.toml'\n")
    with pytest.raises(ConfigError, match="'extends' makes a cycle"):
        load(bad)
    assert Config().hash() == Config().hash()


# ---------------------------------------------------------------------------- docs
def _commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        path = (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path)
        else:
            yield path, cmd


def test_every_command_has_help_with_an_example_and_is_documented():
    from mkailin.cli import cli

    docs = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md")
    )
    missing = []
    for path, cmd in _commands(cli):
        assert cmd.help and "Example:" in cmd.help, f"mkailin {' '.join(path)} lacks help"
        if not re.search(r"mkailin " + r"\s+".join(map(re.escape, path)) + r"\b", docs):
            missing.append(" ".join(path))
    assert missing == [], f"commands not in README.md or docs/: {missing}"


# ---------------------------------------------------------------------------- step keys
def _keys(**changes):
    import dataclasses

    from mkailin.pipeline import step_keys, steps

    cfg = load(configs_dir() / "demo.toml")
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{field: value}))
    chosen = [s for s in steps() if s.enabled(cfg)]
    return step_keys(cfg, chosen, {"mesh": ["m.tsv"]})


def _changed(**changes) -> set[str]:
    a, b = _keys(), _keys(**changes)
    return {k for k in a if a[k] != b[k]}


def test_a_judge_setting_re_keys_the_judge_and_what_consumes_it_only():
    downstream = {
        "train-dpo", "final-questions", "retrieve-final", "answer", "export", "downstream",
        "evaluate",
    }  # fmt: skip
    assert _changed(train__judge_max_length=999) == {"train-judge", "prefer-judge", *downstream}
    assert _changed(preference__judge_context_chars=9) == {
        "train-judge", "prefer-judge", *downstream
    }  # fmt: skip
    assert _changed(train__beta=0.3) == downstream
    # a retrieval setting re-keys retrieval and everything after it, never the generators
    after_k = _changed(retrieval__k=8)
    assert not after_k & {"ingest", "train-qg-domain", "train-qg-general", "questions"}
    assert {"retrieve", "prefer-rule", "train-dpo", "retrieve-final"} <= after_k
    # a training setting every LoRA step uses re-keys the generators too
    assert {"train-qg-domain", "train-qg-general", "questions"} <= _changed(train__lora_r=4)


def test_changing_a_judge_setting_keeps_the_generators_done(demo_lake, runner, tmp_path):
    from mkailin.cli import cli

    path, _ = demo_lake
    cfg = tmp_path / "judge.toml"
    cfg.write_text(f'extends = "{configs_dir() / "demo.toml"}"\n[train]\njudge_max_length = 400\n')
    r = runner.invoke(
        cli, ["--lake", str(path), "run", str(cfg), "--data", str(shared()), "--dry-run"]
    )
    assert r.exit_code == 0, r.output
    state = {ln.split()[0]: ln.split(None, 1)[1] for ln in r.output.splitlines() if ln.strip()}
    for step in ("ingest", "train-qg-domain", "train-qg-general", "questions", "retrieve",
                 "prefer-rule"):  # fmt: skip
        assert state[step] == "done", r.output
    for step in ("train-judge", "prefer-judge", "train-dpo", "evaluate"):
        assert state[step].startswith("would process"), r.output
