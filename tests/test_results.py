"""One result type for the steps that are not model stages: each prints one line, the same in
``mkailin <command>`` and ``mkailin run``."""

from __future__ import annotations

import json

from mkailin.results import Result
from mkailin.stage import RunResult


def test_each_kind_prints_its_summary_with_the_run():
    cases = {
        "prefer:rule": (
            {"pairs": 1234, "documents": 2000, "scorer": "lin/corpus/mean/top4", "retriever": "x"},
            "prefer:rule: 1,234 pairs from 2,000 documents (scorer lin/corpus/mean/top4, "
            "contexts x) [run r1]",
        ),
        "train-qg:domain": (
            {
                "steps": 5,
                "examples": 40,
                "examples_used": 38,
                "source": "bioasq",
                "prompts_cut": 2,
                "loss_first": 3.0,
                "loss_last": 2.5,
                "adapter": "/l/a",
            },
            "train-qg:domain: 5 steps on 38 of 40 bioasq pairs (2 prompts cut to "
            "train.max_length), loss 3.000 -> 2.500; adapter /l/a [run r1]",
        ),
        "train-judge": (
            {"steps": 4, "train_pairs": 9, "holdout": {"n": 0}},
            "train-judge: 4 steps on 9 pairs; no held-out pairs (too few documents) [run r1]",
        ),
        "train-dpo:general": (
            {"steps": 2, "pairs": 3, "judge": "rule", "margin_first": 0.0, "margin_last": 0.25},
            "train-dpo: 2 steps on 3 pairs from the 'rule' judge, reward margin 0.000 -> 0.250 "
            "[run r1]",
        ),
        "train-cpt": (
            {"steps": 1, "examples": 7, "loss_first": None, "loss_last": None},
            "train-cpt: 1 steps on 7 texts, no loss recorded [run r1]",
        ),
        "export:sft": (
            {
                "records": 10,
                "path": "lake/exports/corpus_sft",
                "exact_duplicates": 1,
                "near_duplicates": 2,
                "blocked_removed": 3,
            },
            "corpus_sft: 10 records to lake/exports/corpus_sft (1 exact and 2 near-duplicate "
            "questions removed, 3 overlapping the evaluation set removed) [run r1]",
        ),
        "select-final-generator": ({}, "select-final-generator: finished [run r1]"),
    }
    for stage, (fields, line) in cases.items():
        r = Result(stage, fields, run_id="r1")
        assert r.lines() == [line], stage
        assert r["stage"] == r.stage == stage
        assert json.loads(json.dumps(r))["run_id"] == "r1"  # still the run log's detail


def test_the_cli_and_the_pipeline_print_the_same_line(monkeypatch, runner, tmp_path):
    """``mkailin train cpt`` and the pipeline's downstream step print the Result's own line."""
    import mkailin.train.downstream as downstream
    from mkailin import pipeline
    from mkailin.cli import cli
    from mkailin.lake import Lake

    fixed = Result(
        "train-cpt",
        {"steps": 3, "examples": 12, "loss_first": 2.0, "loss_last": 1.5, "adapter": "a"},
        run_id="r9",
    )
    sft = Result("train-sft", {"steps": 1, "examples": 2, "loss_first": 1.0, "loss_last": 0.9})
    monkeypatch.setattr(downstream, "train_cpt", lambda *a, **k: fixed)
    monkeypatch.setattr(downstream, "train_sft", lambda *a, **k: sft)
    lake = Lake.init(tmp_path / "lake")
    r = runner.invoke(cli, ["--lake", str(lake.root), "train", "cpt"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == fixed.lines()[0]
    from mkailin.config import Config

    lines = pipeline._downstream(lake, Config(), {"skipped": {}})
    assert lines == [fixed.lines()[0], sft.lines()[0]]
    # model stages print through the same call
    assert pipeline._lines([RunResult("r", "s")]) == RunResult("r", "s").lines()
