"""The evaluation agent: rule preferences, Cohen's kappa, the trained and zero-shot judges, DPO,
the judge comparison, the report and the notebook."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from mkailin.agents.preference import cohen_kappa, compare_judges, pair_probability, prefer
from mkailin.config import Config

from conftest import ROOT, copy_tables


def test_cohen_kappa_by_hand():
    # 10 items: po = 0.8; pe = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa = (0.8-0.5)/(1-0.5) = 0.6
    a = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    b = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    b[4], b[9] = 1, 0  # now b = a except nothing: make two disagreements instead
    b = [1, 1, 1, 1, 1, 1, 0, 0, 0, 1]  # agrees on 8 of 10; b has six 1s and four 0s
    assert cohen_kappa(a, b) == pytest.approx((0.8 - 0.5) / 0.5)
    assert cohen_kappa([1, 0], [1, 0]) == 1.0
    assert cohen_kappa([True] * 4, [True] * 4) == 1.0


def _scenario(lake, n_docs: int = 8):
    """Two questions per document; the domain question's contexts are the document's nearest
    MeSH neighbours (by shared terms), the general question's are unrelated documents."""
    rows = lake.query(
        """
        with docs as (
            select pmid from pubmedqa where split = 'train' order by pmid limit ?
        ),
        shared as (
            select a.pmid as doc, b.pmid as other, count(*) as n
            from article_mesh a join article_mesh b
              on a.descriptor_ui = b.descriptor_ui and a.pmid <> b.pmid
            where a.pmid in (select pmid from docs)
            group by 1, 2
        )
        select d.pmid,
               (select list(other order by n desc, other) from shared where doc = d.pmid)[1:4],
               (select question from pubmedqa where pmid = d.pmid)
        from docs d
    """,
        [n_docs],
    )
    far = [p for (p,) in lake.query("select pmid from pubmedqa order by pmid desc limit 40")]
    qs, ctx = [], []
    for i, (pmid, near, question) in enumerate(rows):
        for agent, text, cands in (
            ("domain", question, near),
            ("general", f"What does study {i} report?", far[i * 4 : i * 4 + 4]),
        ):
            qid = f"{agent}-{pmid}"
            qs.append({"question_id": qid, "pmid": pmid, "agent": agent, "question": text})
            for r, c in enumerate(cands, start=1):
                ctx.append(
                    {
                        "question_id": qid,
                        "rank": r,
                        "pmid": c,
                        "score": 1.0 / r,
                        "retriever": "dense:minilm",
                    }
                )
    lake.write_part("questions", pa.Table.from_pylist(qs))
    lake.write_part("contexts", pa.Table.from_pylist(ctx))
    return rows


class _ScriptedJudge:
    """Log-likelihoods of "1" and "2" from a rule: a position bias plus a preference for the
    question that holds the word "good", in either position."""

    def __init__(self, position_bias: float, content: float):
        self.bias, self.content = position_bias, content

    def score_choices(self, prompts, choices):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            good_first = "good" in text[text.index("Question 1:") : text.index("Question 2:")]
            s1 = self.bias + (self.content if good_first else 0.0)
            s2 = 0.0 + (self.content if not good_first else 0.0)
            out.append([s1, s2])
        return out


def test_pair_probability_cancels_a_position_bias_exactly():
    rows = [
        {"document": "d", "q1": q1, "contexts1": ["c"], "q2": q2, "contexts2": ["c"]}
        for q1, q2 in (("a good question", "a question"), ("a question", "a good question"))
    ]
    # a judge that only prefers the first position: exactly 0.5, no float noise
    assert pair_probability(_ScriptedJudge(3.7, 0.0), rows) == [0.5, 0.5]
    # a content preference shows through the bias, on the right side in both rows
    p_good_first, p_good_second = pair_probability(_ScriptedJudge(3.7, 2.0), rows)
    assert p_good_first > 0.8 and p_good_second < 0.2
    assert p_good_first == pytest.approx(1 - p_good_second)
    # extreme log-odds do not overflow
    assert pair_probability(_ScriptedJudge(0.0, 2000.0), rows) == [1.0, 0.0]


@pytest.fixture
def pref_lake(mesh_lake, tmp_path):
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake)
    _scenario(lake)
    return lake


def test_rule_preferences_from_questions_and_contexts(pref_lake):
    cfg = Config()
    r = prefer(pref_lake, cfg, "rule")
    assert r["pairs"] == 8 and r["scorer"] == "lin/corpus/mean/top4"
    rows = pref_lake.query(
        "select chosen_id, rejected_id, margin, judge, chosen_score > rejected_score "
        "from preferences order by pmid"
    )
    assert all(c.startswith("domain-") and rj.startswith("general-") for c, rj, *_ in rows)
    assert all(m > 0 and judge == "rule" and ok for _, _, m, judge, ok in rows)
    # re-running replaces the rows of that scorer, never doubles them
    prefer(pref_lake, cfg, "rule")
    assert pref_lake.count("preferences") == 8
    # a higher minimum margin and KAILIN's ceiling drop pairs
    cfg.preference.min_margin = sorted(m for _, _, m, _, _ in rows)[4]
    assert prefer(pref_lake, cfg, "rule")["pairs"] == 4
    cfg.preference.min_margin = 0.0
    cfg.preference.max_score = 0.0
    assert prefer(pref_lake, cfg, "rule")["pairs"] == 0
    runs = pref_lake.query("select status from runs where stage = 'prefer:rule'")
    assert runs == [("finished",)] * 4


def test_other_scorers_and_retriever_filter(pref_lake):
    cfg = Config()
    cfg.preference.scorer = "kailin"
    assert prefer(pref_lake, cfg, "rule")["scorer"] == "kailin/mean/top4"
    cfg.retrieval.retriever = "bm25"  # no bm25 contexts in this lake: no pairs
    assert prefer(pref_lake, cfg, "rule")["pairs"] == 0


def test_cli_prefer_and_report(pref_lake, runner, tmp_path):
    from mkailin.cli import cli

    r = runner.invoke(
        cli,
        [
            "--lake",
            str(pref_lake.root),
            "prefer",
            "--judge",
            "rule",
            "--scorer",
            "resnik",
            "--max-score",
            "100",
        ],
    )
    assert r.exit_code == 0, r.output
    said, questions, result = r.output.splitlines()[:3]
    assert said.startswith("reading contexts from ") and "(retriever dense:minilm, k 4;" in said
    assert questions.startswith("reading questions of domain (") and "; 8 rows)" in questions
    assert result.startswith(
        "prefer:rule: 8 pairs from 8 documents (scorer resnik/corpus/mean/top4"
    )
    r = runner.invoke(
        cli,
        ["--lake", str(pref_lake.root), "report", "preferences", "--out", str(tmp_path / "rep")],
    )
    assert r.exit_code == 0, r.output
    for name in ("margins", "win_rates", "scores_by_category", "judge_agreement"):
        assert (tmp_path / "rep" / f"{name}.png").stat().st_size > 1000
    assert "win_rates.png" in (tmp_path / "rep" / "index.html").read_text()


def test_notebook_runs_headless(pref_lake, tmp_path):
    prefer(pref_lake, Config(), "rule")
    out = tmp_path / "nb"
    env = {**os.environ, "MKAILIN_LAKE": str(pref_lake.root), "MKAILIN_NOTEBOOK_OUT": str(out)}
    p = subprocess.run(
        [sys.executable, str(ROOT / "notebooks" / "preferences.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs_by_judge"] == {"rule": 8}
    assert {r["agent"] for r in summary["win_rates"]} == {"domain"}
    for name in ("margins", "win_rates", "scores_by_category", "judge_agreement"):
        assert (out / f"{name}.png").exists()


def test_llm_judges_need_a_trained_judge(pref_lake):
    from mkailin.errors import StageError

    with pytest.raises(StageError, match="no trained judge yet: run `mkailin train judge` first"):
        prefer(pref_lake, Config(), "llm")


def _small_training(cfg: Config) -> Config:
    cfg.train.max_steps = 6
    cfg.train.batch_size = 2
    cfg.train.max_length = 160
    cfg.train.judge_max_length = 512
    cfg.preference.judge_document_chars = 240
    cfg.preference.judge_context_chars = 80
    cfg.train.learning_rate = 5e-4
    cfg.generate.max_input_chars = 300
    return cfg


def _judge_training(cfg: Config) -> Config:
    """A judge that learns its 7 training pairs on a 2-core CPU in a few minutes: short
    prompts (the questions and their top-2 contexts, cut short) and enough LoRA steps. The
    135M model first learns the answer format and a position prior, then (after 30-45 steps
    here, by seed) which question the rule prefers; 64 steps leave room for that."""
    cfg = _small_training(cfg)
    cfg.models["smollm2"].dtype = "auto-bf16"  # the demo's: bfloat16 scoring where native
    cfg.retrieval.k = 2
    cfg.preference.judge_document_chars = 40
    cfg.preference.judge_context_chars = 16
    cfg.train.max_steps = 64
    cfg.train.learning_rate = 1e-3
    cfg.train.lora_r, cfg.train.lora_alpha = 16, 32
    return cfg


def _rule_choice_probability(gen, rows: list[dict]) -> float:
    """The mean probability the judge gives the rule's choice (both orders averaged)."""
    probs = pair_probability(gen, rows, "judge-v1")
    return sum(p if r["domain_wins"] else 1 - p for p, r in zip(probs, rows)) / len(rows)


@pytest.mark.slow
def test_judge_trains_reports_agreement_and_labels_through_the_runner(pref_lake, smollm2_available):
    from mkailin.backends.generation import TransformersGenerator
    from mkailin.train.judge import is_holdout, labelled_pairs, train_judge

    cfg = _judge_training(Config())
    prefer(pref_lake, cfg, "rule")
    d = train_judge(pref_lake, cfg)
    assert d["train_pairs"] + d["holdout_pairs"] == 8 and d["train_pairs"] >= 4
    assert d["steps"] == 64
    assert d["examples_used"] == 2 * d["train_pairs"] and d["prompts_cut"] == 0
    for split in ("holdout", "untrained_holdout"):
        assert set(d[split]) == {"n", "accuracy", "kappa"}
    run = pref_lake.query(
        "select status, detail like '%\"holdout\"%' from runs where stage = 'train-judge'"
    )
    assert run == [("finished", True)]

    # training on the rule labels makes the judge side with the rule on the pairs it learned
    rows = labelled_pairs(pref_lake, cfg)
    train = [r for r in rows if not is_holdout(r["pmid"], cfg.train.holdout)]
    assert len(train) == d["train_pairs"]
    spec = cfg.model("smollm2")
    judge = TransformersGenerator(spec, "smollm2", d["adapter"])
    base = TransformersGenerator(spec, "smollm2", "")
    trained_p, base_p = (_rule_choice_probability(g, train) for g in (judge, base))
    assert trained_p > base_p + 0.2, (trained_p, base_p)

    # the runner's llm labels are that judge's: its choice and its probability, per document
    r = prefer(pref_lake, cfg, "llm")
    assert r.rows_in == 8 and r.rows_out == 8
    labels = pref_lake.query(
        "select pmid, chosen_id, chosen_score, judge, scorer from preferences "
        "where judge = 'llm' order by pmid"
    )
    assert len(labels) == len(rows) == 8
    assert {(j, s) for *_, j, s in labels} == {("llm", f"judge:{d['run_id']}")}
    assert d["adapter"].endswith(d["run_id"])
    for row, p, (pmid, chosen, score, *_) in zip(
        rows, pair_probability(judge, rows, "judge-v1"), labels
    ):
        assert pmid == row["pmid"]
        assert score == pytest.approx(max(p, 1 - p), abs=0.02)
        if abs(p - 0.5) > 0.02:
            assert chosen == (row["q1_id"] if p > 0.5 else row["q2_id"])
    r = prefer(pref_lake, cfg, "zero-shot")
    assert r.rows_in == 8 and r.rows_out == 8
    assert prefer(pref_lake, cfg, "llm").status == "skipped"  # resumable, no duplicates
    t = compare_judges(pref_lake).to_pylist()
    assert {(x["judge_a"], x["judge_b"]) for x in t} == {
        ("llm", "rule"),
        ("llm", "zero-shot"),
        ("rule", "zero-shot"),
    }
    assert all(x["documents"] == 8 for x in t)


@pytest.mark.slow
def test_dpo_reward_margin_rises_and_the_final_agent_uses_it(pref_lake, smollm2_available):
    from mkailin.agents.question import question_stage
    from mkailin.backends.generation import get_generator
    from mkailin.train.dpo import train_dpo

    cfg = _small_training(Config())
    cfg.train.max_steps = 12
    prefer(pref_lake, cfg, "rule")
    base = get_generator(cfg.models["smollm2"], "smollm2")
    probe = [[{"role": "user", "content": "Answer 1 or 2."}]]
    before = base.score_choices(probe, ["1", "2"])
    d = train_dpo(pref_lake, cfg, "rule")
    # training never touches the shared base model
    assert base.score_choices(probe, ["1", "2"]) == before
    assert d["pairs"] == 8 and d["steps"] == 12
    m = d["margins"]
    assert sum(m[-4:]) / 4 > sum(m[:4]) / 4, m
    assert d["margin_rose"] is True
    with open(os.path.join(d["adapter"], "preferences.trl.jsonl")) as f:
        first = f.readline()
    assert '"prompt": [' in first and '"chosen": [' in first and '"rejected": [' in first
    stage = question_stage(pref_lake, cfg, "final")
    assert stage.models["adapter"] == d["adapter"]


def test_dpo_is_skipped_when_no_pair_fits_max_length(pref_lake, smollm2_available):
    from mkailin.errors import StepSkipped
    from mkailin.train.dpo import train_dpo

    cfg = _small_training(Config())
    cfg.train.max_length = 16
    prefer(pref_lake, cfg, "rule")
    with pytest.raises(StepSkipped, match=r"0 preference pairs left .* train.max_length=16") as err:
        train_dpo(pref_lake, cfg, "rule")
    assert "final questions come from the generator" in err.value.fallback
    assert pref_lake.query("select status from runs where stage = 'train-dpo:general'") == [
        ("skipped",)
    ]
    adapters = pref_lake.artifacts_dir / "adapters"
    assert not adapters.exists() or not any(adapters.iterdir())
