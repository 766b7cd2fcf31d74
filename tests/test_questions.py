"""Question agents: output cleaning, the title rule, the stages on real models, and SFT."""

from __future__ import annotations

import dataclasses

import pytest

from mkailin.agents.prompts import template
from mkailin.agents.question import clean_question, generate_questions, title_to_question
from mkailin.config import Config
from mkailin.ingest.pubmed import ingest_pubmed

from conftest import FIXTURES, copy_tables

ABSTRACT = "Inhaled corticosteroids reduced asthma exacerbations in children with mild asthma."
INSTRUCTION = "Read this text and write one question about it. Reply with the question only."


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "Do inhaled corticosteroids reduce asthma exacerbations?",
            "Do inhaled corticosteroids reduce asthma exacerbations?",
        ),
        (
            "Question: Do corticosteroids help children with asthma? Yes.",
            "Do corticosteroids help children with asthma?",
        ),
        (
            'The question is: "What reduces asthma exacerbations in children?"',
            "What reduces asthma exacerbations in children?",
        ),
        (
            "Sure!\n1. How do corticosteroids affect asthma?",
            "How do corticosteroids affect asthma?",
        ),
    ],
)
def test_clean_question_keeps_questions(raw, expected):
    assert clean_question(raw, INSTRUCTION, ABSTRACT) == (expected, None)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("", "empty output"),
        ("   \n ", "empty output"),
        ("Corticosteroids reduce exacerbations.", "not a question (no question mark)"),
        ("Why?", "too short to be a question"),
        ("What " + "asthma " * 80 + "?", "over-long (566 chars > 300)"),
        (
            "Can you read this text and write one question about it?",
            "prompt echo (repeats the instruction)",
        ),
        (
            "What would you like to know about this text?",
            "off-topic (shares no content word with the abstract)",
        ),
    ],
)
def test_clean_question_rejects_with_a_reason(raw, reason):
    assert clean_question(raw, INSTRUCTION, ABSTRACT) == (None, reason)


def test_clean_question_spots_a_copied_abstract():
    text = ABSTRACT[:-1] + "?"
    assert clean_question(text, INSTRUCTION, ABSTRACT)[1] == "prompt echo (copies the abstract)"


@pytest.mark.parametrize(
    "title, question",
    [
        (
            "Is aspirin effective in stroke prevention?",
            "Is aspirin effective in stroke prevention?",
        ),
        (
            "Aspirin is effective in stroke prevention.",
            "Is aspirin effective in stroke prevention?",
        ),
        (
            "Smoking cessation improves lung function in COPD.",
            "Does smoking cessation improve lung function in COPD?",
        ),
        (
            "Vitamin D reduced fractures in older women.",
            "Did vitamin D reduce fractures in older women?",
        ),
        (
            "BRCA1 mutations are associated with ovarian cancer.",
            "Are BRCA1 mutations associated with ovarian cancer?",
        ),
        (
            "Long-term outcomes: statins lower cardiovascular risk",
            "Do statins lower cardiovascular risk?",
        ),
        ("A review of asthma therapy.", None),
        (None, None),
    ],
)
def test_title_to_question(title, question):
    assert title_to_question(title) == question


def test_heuristic_agent_stage(lake):
    ingest_pubmed(lake, [FIXTURES / "pubmed_small.xml"], progress=False)
    cfg = Config()
    cfg.generate.exclude_eval_articles = False
    (r,) = generate_questions(lake, cfg, ("heuristic",), progress=False)
    assert (r.rows_in, r.rows_out, r.quarantined) == (2, 0, 2)  # 100002 has no abstract
    reasons = sorted(e for (e,) in lake.query("select error from quarantine"))
    assert reasons == ["title has no verb the rule knows", "title has no verb the rule knows"]


def _tiny(cfg: Config) -> Config:
    cfg.generate.articles = 3
    cfg.generate.max_input_chars = 400
    for a in ("domain", "general"):
        cfg.agents[a].max_new_tokens = 24
    return cfg


def test_both_agents_write_questions_with_a_real_model(mesh_lake, tmp_path, smollm2_available):
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake, ("article_records", "article_mesh_records", "pubmedqa"))
    cfg = _tiny(Config())
    results = generate_questions(lake, cfg, ("domain", "general"), progress=False)
    for r in results:
        assert r.rows_in == 3 and r.rows_out + r.quarantined == 3 and r.tokens_out > 0
    rows = lake.query(
        "select agent, count(*), count(distinct pmid) from questions group by 1 order by 1"
    )
    assert sum(n for _, n, _ in rows) >= 2
    # test-split abstracts are never used
    assert lake.query(
        "select count(*) from questions q join pubmedqa p using (pmid) where p.split = 'test'"
    ) == [(0,)]
    runs = lake.query("select stage, status, tokens_in > 0 from runs order by stage")
    assert runs == [
        ("generate-questions:domain", "finished", True),
        ("generate-questions:general", "finished", True),
    ]
    # resume: a second call has nothing to do
    again = generate_questions(lake, cfg, ("domain", "general"), progress=False)
    assert [r.status for r in again] == ["skipped", "skipped"]


@pytest.mark.server
def test_agents_on_an_openai_compatible_server_same_backend_ablation(
    mesh_lake, tmp_path, llama_server_url
):
    """The paper's "Same Agent Backend" ablation: both agents on one model (here a real
    llama.cpp server); the agents still differ by prompt."""
    from mkailin.config import ModelSpec
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake, ("article_records", "article_mesh_records", "pubmedqa"))
    cfg = _tiny(Config())
    cfg.models["served"] = ModelSpec(
        backend="openai", model="smollm2", base_url=f"{llama_server_url}/v1"
    )
    for a in ("domain", "general"):
        cfg.agents[a].model = "served"
    results = generate_questions(lake, cfg, ("domain", "general"), progress=False)
    assert all(r.rows_out + r.quarantined == 3 for r in results)
    models = {m for (m,) in lake.query("select distinct model from questions")}
    assert models <= {"served"}
    prompts = {p for (p,) in lake.query("select distinct prompt_version from questions")}
    assert prompts <= {"qg-domain-v1", "qg-general-v1"}


def _question_loglik(gen, records: list[dict]) -> float:
    """Mean log-likelihood per token of each record's question given its prompt."""
    total = tokens = 0.0
    for r in records:
        q = r["completion"][0]["content"]
        ((lp,),) = gen.score_choices([r["prompt"]], [q])
        total += lp
        tokens += len(gen.tokenizer(q, add_special_tokens=False)["input_ids"])
    return total / tokens


@pytest.mark.slow
def test_sft_loss_falls_and_the_adapter_generates(mesh_lake, tmp_path, smollm2_available):
    from mkailin.agents.question import question_stage, sample_sql
    from mkailin.backends.generation import GenParams, TransformersGenerator
    from mkailin.lake import Lake
    from mkailin.train.fit import fit_examples
    from mkailin.train.sft import qg_records, train_qg

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake, ("article_records", "article_mesh_records", "pubmedqa"))
    cfg = _tiny(Config())
    cfg.models["smollm2"].dtype = "auto-bf16"  # the demo's: bfloat16 where the CPU has it
    cfg.generate.max_input_chars = 300
    cfg.train = dataclasses.replace(
        cfg.train, max_steps=16, batch_size=2, max_length=128, learning_rate=1e-3
    )
    d = train_qg(lake, cfg, "domain", source="pubmedqa", limit=4)
    assert d["source"] == "pubmedqa" and d["examples"] == 4 and d["steps"] == 16
    losses = d["losses"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses
    assert lake.query("select status from runs where stage = 'train-qg:domain'") == [("finished",)]

    # the adapter learned its seed questions: far likelier under it than under the base model
    # (on pairs it never saw it does no better: 4 examples and 16 steps overfit)
    spec = cfg.model("smollm2")
    base = TransformersGenerator(spec, "smollm2", "")
    tuned = TransformersGenerator(spec, "smollm2", d["adapter"])
    seeds, _ = qg_records(lake, cfg, "domain", source="pubmedqa", limit=4)
    seeds, _ = fit_examples(seeds, base.tokenizer, cfg.train.max_length, "train.max_length")
    tuned_ll, base_ll = _question_loglik(tuned, seeds), _question_loglik(base, seeds)
    assert tuned_ll > base_ll + 1.0, (tuned_ll, base_ll)

    # generate questions picks the new adapter up ("auto"), and every sampled article gets an
    # output: a question from the tuned model, or a quarantine row with what it wrote
    stage = question_stage(lake, cfg, "domain")
    assert stage.models["adapter"] == d["adapter"]
    (r,) = generate_questions(lake, cfg, ("domain",), progress=False)
    assert r.rows_in == 3 and r.rows_out + r.quarantined == 3 and r.tokens_out > 0
    sql, params = sample_sql(cfg)
    sampled = {str(p) for p, *_ in lake.query(sql, params)}
    asked = lake.query("select cast(pmid as varchar), model, question from questions")
    kept = lake.query(
        "select record_key, raw_excerpt from quarantine where source = 'generate-questions:domain'"
    )
    assert {p for p, *_ in asked} | {k for k, _ in kept} == sampled and len(sampled) == 3
    run = d["adapter"].split("/")[-1]
    assert all(m == f"smollm2+{run}" and q.endswith("?") for _, m, q in asked)
    assert all(raw and raw.strip() for _, raw in kept)
    # and what it writes is the tuned model's, not the base model's
    prompts = [
        template(cfg.agent("domain").prompt).messages(
            abstract=(a or "")[: cfg.generate.max_input_chars], title=t or ""
        )
        for _, t, a in lake.query(sql, params)
    ]
    params_ = GenParams(max_new_tokens=cfg.agent("domain").max_new_tokens)
    outs = [[g.text for g in gen.generate(prompts, params_)] for gen in (base, tuned)]
    assert outs[0] != outs[1]
