"""mkailin's PubMedQA figures against the official scorer, and the paper's slices and settings.

The official scorer is tests/data/official/pubmedqa_evaluation.py: PubMedQA's ``evaluation.py``
as published at https://github.com/pubmedqa/pubmedqa (MIT, Copyright (c) 2019 pubmedqa; licence
text in tests/data/official/PUBMEDQA_LICENSE), kept byte for byte. It is run as its README says
(``python evaluation.py predictions.json`` in a folder holding ``data/test_ground_truth.json``)
and its printed ``Accuracy %f`` / ``Macro-F1 %f`` lines are compared with mkailin's figures.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pyarrow as pa
import pytest

from mkailin import evaluate as ev
from mkailin.config import Config, EvalConfig
from mkailin.errors import ConfigError

from conftest import FIXTURES, has_module, need, shared

OFFICIAL = FIXTURES / "official" / "pubmedqa_evaluation.py"
SETTING = "reasoning-required"
# every way a prediction can fail to be a label; the official script is given "invalid" for each
NOT_LABELS = [None, "", "invalid", "Yes.", "unsure", "YES", "maybe so"]


# ------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def ground_truth() -> dict[str, str]:
    return json.loads(shared("pubmedqa", "test_ground_truth.json").read_text())


@pytest.fixture(scope="module")
def pqal() -> dict[str, dict]:
    return json.loads(shared("pubmedqa", "ori_pqal.json").read_text())


@pytest.fixture(scope="module")
def official(tmp_path_factory, ground_truth):
    """``official(predictions)`` -> (accuracy, macro-F1) as the official script prints them."""
    need(has_module("sklearn"), "scikit-learn is not installed (the official scorer needs it)")
    folder = tmp_path_factory.mktemp("official")
    (folder / "data").mkdir()
    (folder / "data" / "test_ground_truth.json").symlink_to(
        shared("pubmedqa", "test_ground_truth.json")
    )

    def run(predictions: dict[str, str]) -> tuple[str, str]:
        assert set(predictions) == set(ground_truth)
        (folder / "predictions.json").write_text(json.dumps(predictions))
        out = subprocess.run(
            [sys.executable, str(OFFICIAL), "predictions.json"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        acc = re.search(r"^Accuracy (\S+)$", out, re.M)
        f1 = re.search(r"^Macro-F1 (\S+)$", out, re.M)
        assert acc and f1, out
        return acc.group(1), f1.group(1)

    return run


def random_predictions(pmids: list[str], invalid: int, seed: int) -> tuple[list, list[str]]:
    """Random yes/no/maybe for every pmid, ``invalid`` of them (seeded) replaced by something
    that is not a label: (what mkailin sees, what the official script is given)."""
    rng = random.Random(seed)
    preds: list = [rng.choice(ev.LABELS) for _ in pmids]
    for i in rng.sample(range(len(pmids)), invalid):
        preds[i] = rng.choice(NOT_LABELS)
    return preds, [ev.as_label(p) for p in preds]


def printed(x: float) -> str:
    """A figure as the official script prints it (``'%f' % x``)."""
    return f"{x:f}"


def sklearn_figures(gold: list[str], given: list[str]) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return accuracy_score(gold, given), f1_score(gold, given, average="macro")


# ------------------------------------------------------------------------------ 1. the scorer
@pytest.mark.parametrize("invalid", [0, 1, 50, 500])
@pytest.mark.parametrize("seed", [7, 2024])
def test_score_equals_the_official_script(official, ground_truth, invalid, seed):
    pmids = list(ground_truth)
    gold = [ground_truth[p] for p in pmids]
    preds, given = random_predictions(pmids, invalid, seed)
    assert given.count("invalid") == invalid

    mine = ev.score(gold, preds)
    acc, f1 = official(dict(zip(pmids, given)))
    assert mine["n"] == 500 and mine["invalid"] == invalid
    assert (printed(mine["accuracy"]), printed(mine["macro_f1"])) == (acc, f1)
    # and beyond the printed decimals: scikit-learn on the same lists, to the last bit
    assert (mine["accuracy"], mine["macro_f1"]) == sklearn_figures(gold, given)


def test_an_invalid_prediction_is_wrong_and_a_fourth_class():
    gold = ["yes", "no", "maybe", "yes"]
    assert ev.accuracy(gold, ["yes", None, "maybe", "Yes."]) == 0.5
    # yes: tp 1 of gold 2 + predicted 1 -> 2/3; no: 0; maybe: 1; invalid: 0 (never gold)
    assert ev.macro_f1(gold, ["yes", None, "maybe", "Yes."]) == pytest.approx((2 / 3 + 1) / 4)
    # all the forms of "not a label" are one class, not one class each
    assert ev.macro_f1(gold, ["yes", "", "maybe", "unsure"]) == ev.macro_f1(
        gold, ["yes", "invalid", "maybe", "invalid"]
    )
    assert ev.score(gold, ["yes", "no", "maybe", "yes"]) == {
        "n": 4,
        "invalid": 0,
        "accuracy": 1.0,
        "macro_f1": 1.0,
    }
    assert ev.score([], []) == {"n": 0, "invalid": 0, "accuracy": None, "macro_f1": None}


def test_leaving_invalid_out_of_the_denominator_disagrees_with_the_official_script(
    official, ground_truth
):
    """What mkailin did before: 50 invalid of 500 scored on the other 450."""
    pmids = list(ground_truth)
    gold = [ground_truth[p] for p in pmids]
    preds, given = random_predictions(pmids, 50, 7)
    kept = [(g, p) for g, p in zip(gold, preds) if p in ev.LABELS]
    old = ev.score([g for g, _ in kept], [p for _, p in kept])
    new = ev.score(gold, preds)
    acc, f1 = official(dict(zip(pmids, given)))
    assert old["n"] == 450 and new["n"] == 500
    assert printed(old["accuracy"]) != acc and printed(new["accuracy"]) == acc
    assert old["macro_f1"] > new["macro_f1"] and printed(new["macro_f1"]) == f1


# ------------------------------------------------------------------------------ 2. the report
@pytest.fixture(scope="module")
def pqa(tmp_path_factory):
    """A lake holding the 1,000 PubMedQA articles (the 500 test items labelled)."""
    from mkailin.ingest.pubmedqa import ingest_pubmedqa
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path_factory.mktemp("pqa") / "lake")
    ingest_pubmedqa(
        lake, shared("pubmedqa", "ori_pqal.json"), shared("pubmedqa", "test_ground_truth.json")
    )
    return lake


def _fresh(pqa, tmp_path):
    from mkailin.lake import Lake

    from conftest import copy_tables

    lake = Lake.init(tmp_path / "lake")
    copy_tables(pqa, lake, ("article_records", "article_mesh_records", "pubmedqa"))
    return lake


def _write(lake, model: str, pmids: list[str], preds: list, gold: dict, quarantined: set[int]):
    """Predictions as the stage writes them: a label (or a stray NULL) in eval_predictions, an
    answer that was not a label as a quarantine row of the stage."""
    from mkailin import schema
    from mkailin.lake import now

    rows = [
        {
            "model": model,
            "pmid": int(p),
            "setting": SETTING,
            "prediction": pred,
            "gold": gold[p],
            "run_id": "r1",
        }
        for i, (p, pred) in enumerate(zip(pmids, preds))
        if i not in quarantined
    ]
    lake.write_part("eval_predictions", pa.Table.from_pylist(rows))
    bad = [
        {
            "source": f"eval-pubmedqa:{model}:{SETTING}",
            "file": None,
            "record_key": p,
            "error": f"not a label: {preds[i]!r}",
            "raw_excerpt": None,
            "action": "dropped",
            "run_id": "r1",
            "created_at": now(),
        }
        for i, p in enumerate(pmids)
        if i in quarantined
    ]
    if bad:
        lake.write_part("quarantine", schema.conform("quarantine", pa.Table.from_pylist(bad)))


def test_slice_report_counts_invalid_as_the_official_script_does(
    pqa, tmp_path, official, ground_truth
):
    lake = _fresh(pqa, tmp_path)
    pmids = list(ground_truth)
    preds, given = random_predictions(pmids, 50, 11)
    invalid_at = [i for i, p in enumerate(preds) if p not in ev.LABELS]
    # 30 of the 50 quarantined by the stage, 20 stored as a NULL or a stray string
    quarantined = set(invalid_at[:30])
    for i in invalid_at[30:]:
        preds[i] = None if i % 2 else "unsure"
    _write(lake, "M", pmids, preds, ground_truth, quarantined)
    _write(lake, "ALL-VALID", pmids, [ground_truth[p] for p in pmids], ground_truth, set())

    rep = ev.slice_report(lake, ["M", "ALL-VALID"], SETTING, context_chars=1500).to_pylist()
    overall = {r["model"]: r for r in rep if r["slice_kind"] == "overall"}
    acc, f1 = official(dict(zip(pmids, given)))
    assert overall["M"]["n"] == 500 and overall["M"]["invalid"] == 50
    assert (printed(overall["M"]["accuracy"]), printed(overall["M"]["macro_f1"])) == (acc, f1)
    gold = [ground_truth[p] for p in pmids]
    assert (overall["M"]["accuracy"], overall["M"]["macro_f1"]) == sklearn_figures(gold, given)
    assert overall["ALL-VALID"] | {"model": "M"} == {
        **overall["M"],
        "invalid": 0,
        "accuracy": 1.0,
        "macro_f1": 1.0,
    }
    # every slice counts its invalid items, and the year slices partition the 500
    years = [r for r in rep if r["model"] == "M" and r["slice_kind"] == "year"]
    assert sum(r["n"] for r in years) == 500 and sum(r["invalid"] for r in years) == 50

    # the side-by-side table shows them, and says so under it
    from mkailin.output import render

    table = ev.side_by_side(ev.slice_report(lake, ["M", "ALL-VALID"], SETTING, 6, 1500), ["M"])
    assert table.column_names == ["slice_kind", "slice", "n", "acc:M", "f1:M", "inv:M"]
    out = render(table)
    assert "invalid predictions (not yes/no/maybe, scored as wrong): M 50 of 500" in out
    assert "contexts cut: 135 of 500 items" in out


def test_paper_mesh_buckets_are_overlapping_substrings(pqa, tmp_path, ground_truth, pqal):
    lake = _fresh(pqa, tmp_path)
    pmids = list(ground_truth)
    _write(lake, "A", pmids, [ground_truth[p] for p in pmids], ground_truth, set())

    rep = ev.slice_report(lake, ["A"], SETTING).to_pylist()  # the default: the paper's buckets
    mesh = {r["slice"]: r["n"] for r in rep if r["slice_kind"] == "mesh"}
    assert list(mesh) == ["Female", "Male", "Middle Aged", "Aged", "Adult", "Adolescent"]
    # the framework's rule, counted straight from ori_pqal.json
    expected = {
        b: sum(any(b.lower() in m.lower() for m in pqal[p]["MESHES"]) for p in pmids)
        for b in ev.PAPER_MESH_BUCKETS
    }
    assert mesh == expected
    assert mesh == {
        "Female": 385,
        "Male": 418,  # "Male" is in "Female": 67 items tagged Female only are in it too
        "Middle Aged": 260,
        "Aged": 287,  # takes "Middle Aged", "Aged, 80 and over", "Managed Care Programs"
        "Adult": 245,  # takes "Young Adult"
        "Adolescent": 101,
    }
    exact_aged = sum("Aged" in pqal[p]["MESHES"] for p in pmids)
    assert exact_aged == 201 < mesh["Aged"]

    # the top-N option: the N most common terms of the test set, exact names
    top = [
        r for r in ev.slice_report(lake, ["A"], SETTING, 6).to_pylist() if r["slice_kind"] == "mesh"
    ]
    assert len(top) == 6 and top[0]["slice"] == "Humans" and top[0]["n"] > 400
    assert [
        r for r in ev.slice_report(lake, ["A"], SETTING, 0).to_pylist() if r["slice_kind"] == "mesh"
    ] == []


def test_mesh_slices_config():
    assert EvalConfig().mesh_slices == "paper" and Config().eval.context_chars == 1500
    assert EvalConfig(mesh_slices=6).mesh_slices == 6
    for bad in ("top", "6", -1, True):
        with pytest.raises(ConfigError, match="eval.mesh_slices"):
            EvalConfig(mesh_slices=bad)
    with pytest.raises(ConfigError, match="eval.context_chars"):
        EvalConfig(context_chars=-1)


def test_mesh_slices_and_context_chars_from_toml(tmp_path):
    from mkailin import config

    p = tmp_path / "c.toml"
    p.write_text('[eval]\nmesh_slices = 8\ncontext_chars = 0\nsetting = "question-only"\n')
    cfg = config.load(p)
    assert (cfg.eval.mesh_slices, cfg.eval.context_chars) == (8, 0)
    p.write_text('[eval]\nmesh_slices = "top"\n')
    with pytest.raises(ConfigError, match="mesh_slices"):
        config.load(p)


# ------------------------------------------------------------------------------ 3. settings
def test_settings_and_the_context_cap(pqal, ground_truth):
    item = pqal[next(iter(ground_truth))]
    q, ctx, la = item["QUESTION"], item["CONTEXTS"], item["LONG_ANSWER"]
    whole = " ".join(ctx)

    def user(setting, chars):
        return ev.eval_prompt(setting, q, ctx, chars, la)[-1]["content"]

    assert whole in user("reasoning-required", 0) and la not in user("reasoning-required", 0)
    assert la in user("reasoning-free", 0) and whole not in user("reasoning-free", 0)
    assert q in user("question-only", 0) and "Context" not in user("question-only", 0)
    assert f"Context: {whole[:100]}\n" in user("reasoning-required", 100)
    assert f"Context: {la[:50]}\n" in user("reasoning-free", 50)
    assert ev.context_cut("reasoning-required", ctx, la, len(whole) - 1)
    assert not ev.context_cut("reasoning-required", ctx, la, len(whole))
    assert not ev.context_cut("reasoning-required", ctx, la, 0)  # 0 = no cap
    assert not ev.context_cut("question-only", ctx, la, 1)
    # the templates are distinct ids, the older ones unchanged
    from mkailin.agents.prompts import TEMPLATES

    assert {"pubmedqa-reasoning-required-v1", "pubmedqa-reasoning-free-v1"} <= set(TEMPLATES)


@pytest.mark.parametrize(
    ("setting", "chars"),
    [("reasoning-required", 1500), ("reasoning-required", 0), ("reasoning-free", 200)],
)
def test_report_counts_the_contexts_cut(pqa, tmp_path, ground_truth, pqal, setting, chars):
    lake = _fresh(pqa, tmp_path)
    pmids = list(ground_truth)
    rows = [
        {"model": "A", "pmid": int(p), "setting": setting, "prediction": "yes", "gold": g}
        for p, g in ground_truth.items()
    ]
    lake.write_part("eval_predictions", pa.Table.from_pylist([{**r, "run_id": "r"} for r in rows]))
    rep = ev.slice_report(lake, ["A"], setting, context_chars=chars).to_pylist()
    field = "CONTEXTS" if setting == "reasoning-required" else "LONG_ANSWER"

    def length(p):
        v = pqal[p][field]
        return len(" ".join(v) if isinstance(v, list) else v)

    expected = sum(chars > 0 and length(p) > chars for p in pmids)
    assert rep[0]["slice_kind"] == "overall" and rep[0]["context_cut"] == expected
    if (setting, chars) == ("reasoning-required", 1500):
        assert expected == 135  # 27% of the test items under the default cap
    assert ev.slice_report(lake, ["A"], setting).to_pylist()[0]["context_cut"] is None


# ------------------------------------------------------------------------------ end to end
class _Answers:
    """A backend that cannot score choices: a fixed answer per question, some not labels."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def score_choices(self, prompts, choices):
        raise NotImplementedError

    def generate(self, prompts, params):
        from mkailin.backends.generation import Generation

        out = []
        for p in prompts:
            text = p[-1]["content"]
            q = re.search(r"Question: (.*?)\n\nAnswer with", text, re.S).group(1)
            out.append(Generation(text=self.answers[q]))
        return out


@pytest.mark.parametrize("setting", ["reasoning-free", "reasoning-required"])
def test_eval_pubmedqa_through_the_cli_matches_the_official_script(
    pqa, tmp_path, monkeypatch, runner, official, ground_truth, pqal, setting
):
    from mkailin.cli import cli

    lake = _fresh(pqa, tmp_path)
    rng = random.Random(5)
    answers, given = {}, {}
    for p in ground_truth:
        text = rng.choice(["yes", "no", "maybe", "Yes.", "unsure", "", "no"])
        answers[pqal[p]["QUESTION"]] = text
        label = re.search(r"\b(yes|no|maybe)\b", text, re.I)
        given[p] = label.group(1).lower() if label else "invalid"
    assert len(answers) == 500  # the questions tell the items apart
    fake = _Answers(answers)
    monkeypatch.setattr("mkailin.backends.generation.get_generator", lambda *a, **k: fake)

    args = ["--lake", str(lake.root), "eval", "pubmedqa", "--model", "smollm2"]
    args += ["--setting", setting, "--context-chars", "0", "--format", "csv"]
    r = runner.invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    header = lines.index("slice_kind,slice,n,acc:smollm2,f1:smollm2,inv:smollm2")
    overall = lines[header + 1].split(",")
    invalid = sum(v == "invalid" for v in given.values())
    acc, f1 = official(given)
    assert overall[:3] == ["overall", "all", "500"] and int(overall[5]) == invalid > 0
    assert (printed(float(overall[3])), printed(float(overall[4]))) == (acc, f1)
    assert lake.query("select count(*) from eval_predictions")[0][0] == 500 - invalid


def test_cli_rejects_a_bad_mesh_slices(cli_lake):
    r = cli_lake("eval", "pubmedqa", "--model", "smollm2", "--mesh-slices", "top")
    assert r.exit_code == 2 and "'top' is not 'paper' or a number" in r.output
