"""The whole pipeline: the demo end to end on real data, a second run that does nothing,
--dry-run/--from/--until, status, the shipped configs and their ablations, and the CLI docs."""

from __future__ import annotations

import re

import pytest

from mkailin.config import Config, configs_dir, load
from mkailin.lake import Lake

from conftest import ROOT, shared


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory, smollm2_available):
    """The README's first command, once: `mkailin demo --data ../shared/data`."""
    from click.testing import CliRunner

    from mkailin.cli import cli

    data = shared()
    path = tmp_path_factory.mktemp("demo") / "lake"
    r = CliRunner().invoke(
        cli, ["--lake", str(path), "demo", "--data", str(data)], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    return path, r.output


def test_demo_runs_end_to_end_and_summarises(demo_lake):
    path, out = demo_lake
    for step in (
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
    ):
        assert f"[{step}]" in out
    assert "corpus_cpt: " in out and "corpus_sft: " in out
    assert "PubMedQA (base vs tuned target):" in out and "overall     all" in out
    lake = Lake.open(path)
    n = dict(lake.query("select agent, count(*) from questions group by 1"))
    assert n.get("domain") and n.get("general") and n.get("final")
    assert lake.query("select count(distinct retriever) from contexts") == [(1,)]
    judges = {j for (j,) in lake.query("select distinct judge from preferences")}
    assert judges == {"rule", "llm"}
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
    fails = lake.query("select stage from runs where status in ('failed', 'killed')")
    assert fails == []


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
        == "stage,status,rows_in,rows_out,seconds,tokens_in,tokens_out,cost_usd,started,run_id"
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
