"""Each shipped ablation (configs/ablations/*.toml) run on a small real lake: the real MeSH tree
and the 1,000 PubMedQA articles, with the tiny packaged models standing in for the paper's.

A test config is configs/demo.toml with the paper's model roles (two question models, two
encoders), plus the ablation file's differences from configs/paper.toml, so these tests follow
the shipped files: a changed or new ablation changes what runs here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
from written_questions import write_questions

from mkailin.agents.preference import prefer
from mkailin.agents.question import question_stage
from mkailin.agents.retrieval import embed, retrieve
from mkailin.config import Config, configs_dir, load
from mkailin.lake import Lake

from conftest import copy_tables

ABLATIONS = sorted(p.stem for p in (configs_dir() / "ablations").glob("*.toml"))
TOPK = [a for a in ABLATIONS if re.fullmatch(r"topk-\d+", a)]
N_DOCS = 6  # documents with a domain and a general question

# the paper's models and encoders -> their tiny stand-ins (same roles, packaged weights)
MODEL_FOR = {
    "biomistral": "smollm2-domain",  # the domain question model
    "llama3": "smollm2",  # the general question model
    "llama3-train": "smollm2",  # the judge and the downstream target
    "gpt4o": "smollm2",  # answers
}
ENCODER_FOR = {"medcpt": "minilm", "minilm": "minilm-general"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(name: str) -> dict:
    """What the ablation file changes in the paper's config (flat keys)."""
    paper = _flat(load(configs_dir() / "paper.toml").to_dict())
    abl = _flat(load(configs_dir() / "ablations" / f"{name}.toml").to_dict())
    return {k: v for k, v in abl.items() if v != paper.get(k)}


def tiny_base() -> Config:
    """configs/demo.toml with the paper's roles: the domain agent on its own model entry and a
    general encoder that is not the domain one (MiniLM with a shorter window)."""
    cfg = load(configs_dir() / "demo.toml")
    cfg.models["smollm2-domain"] = dataclasses.replace(cfg.models["smollm2"])
    cfg.agents["domain"].model = "smollm2-domain"
    cfg.encoders["minilm-general"] = dataclasses.replace(cfg.encoders["minilm"], max_length=32)
    cfg.retrieval.domain_encoder = "minilm"
    cfg.retrieval.general_encoder = "minilm-general"
    cfg.generate.articles = N_DOCS
    return cfg


def _tiny_value(key: str, value):
    if re.fullmatch(r"agents\.[^.]+\.model|downstream\.model", key):
        assert value in MODEL_FOR, f"{key} = {value!r}: give the model a stand-in in MODEL_FOR"
        return MODEL_FOR[value]
    if key in ("retrieval.domain_encoder", "retrieval.general_encoder"):
        assert value in ENCODER_FOR, f"{key} = {value!r}: give it a stand-in in ENCODER_FOR"
        return ENCODER_FOR[value]
    assert not key.startswith(("models.", "encoders.")), f"{key}: no tiny stand-in for this"
    return value


def tiny(name: str) -> Config:
    """The tiny config with ablation ``name``'s differences from the paper applied."""
    cfg = tiny_base()
    for key, value in changes(name).items():
        *path, last = key.split(".")
        obj = cfg
        for part in path:
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        assert hasattr(obj, last), f"{name}: {key} is not a setting of the tiny config"
        setattr(obj, last, _tiny_value(key, value))
    return cfg


@pytest.fixture(scope="module")
def base_lake(embedded_lake, tmp_path_factory):
    """The real lake with both encoders' vectors, BM25, and the two agents' questions."""
    lake = Lake.init(tmp_path_factory.mktemp("ablations") / "lake")
    copy_tables(embedded_lake, lake)
    shutil.copytree(embedded_lake.vectors_dir, lake.vectors_dir, dirs_exist_ok=True)
    cfg = tiny_base()
    embed(lake, cfg, role="general", progress=False)  # the general encoder, once for all tests
    write_questions(lake, cfg)
    return lake


@pytest.fixture
def ab_lake(base_lake, tmp_path):
    """A fresh copy of the base lake (no runs, no contexts, no preferences)."""
    lake = Lake.init(tmp_path / "lake")
    tables = ("article_records", "article_mesh_records", "pubmedqa", "mesh_descriptors")
    copy_tables(base_lake, lake, (*tables, "mesh_tree", "questions"))
    shutil.copytree(base_lake.vectors_dir, lake.vectors_dir, dirs_exist_ok=True)
    return lake


def _contexts_per_question(lake: Lake) -> dict[str, int]:
    return dict(lake.query("select question_id, count(*) from contexts group by 1"))


# ------------------------------------------------------------------------------ the configs
def test_every_shipped_ablation_has_a_behaviour_test():
    assert set(ABLATIONS) == set(TOPK) | {"wo-mesh", "wo-embedding", "wo-both", "same-backend"}
    assert TOPK  # the sweep ships


def test_the_tiny_config_stands_in_for_the_papers_roles():
    paper, cfg = load(configs_dir() / "paper.toml"), tiny_base()
    for agent in ("domain", "general", "judge", "answer"):
        assert cfg.agent(agent).model == MODEL_FOR[paper.agent(agent).model], agent
    assert cfg.downstream.model == MODEL_FOR[paper.downstream.model]
    for role in ("domain_encoder", "general_encoder"):
        assert getattr(cfg.retrieval, role) == ENCODER_FOR[getattr(paper.retrieval, role)]
    # so that the ablations that swap a model or an encoder change something here
    assert cfg.agent("domain").model != cfg.agent("general").model
    assert cfg.retrieval.domain_encoder != cfg.retrieval.general_encoder
    for name in ABLATIONS:
        assert changes(name), f"{name} changes nothing in the paper's config"
        tiny(name)  # every change has a tiny stand-in


# ------------------------------------------------------------------------------ the behaviours
@pytest.mark.parametrize("name", TOPK)
def test_topk_gives_k_contexts_per_question_and_a_topk_scorer(name, ab_lake):
    cfg = tiny(name)
    k = int(name.split("-")[1])
    assert cfg.retrieval.k == k
    retrieve(ab_lake, cfg, agents=("domain", "general"), progress=False)
    per_q = _contexts_per_question(ab_lake)
    assert len(per_q) == 2 * N_DOCS and set(per_q.values()) == {k}
    ranks = ab_lake.query("select distinct rank from contexts order by 1")
    assert ranks == [(r,) for r in range(1, k + 1)]
    r = prefer(ab_lake, cfg, "rule")
    assert r["scorer"].endswith(f"/top{k}") and r["retriever"] == "dense:minilm"
    assert r["pairs"] > 0
    assert ab_lake.query("select distinct judge, scorer from preferences") == [
        ("rule", r["scorer"])
    ]


def _dense_top(lake: Lake, cfg: Config, role: str) -> dict[str, set[int]]:
    """Each question's top-k articles by the ``role`` encoder, searched directly."""
    from mkailin.agents.retrieval import Retriever, encoder_for

    qs = lake.query("select question_id, pmid, question from questions order by question_id")
    name, spec = encoder_for(cfg, role)
    hits = Retriever(lake, "dense", name, spec, cfg.retrieval).search(
        [q for *_, q in qs], cfg.retrieval.k, [p for _, p, _ in qs]
    )
    return {qid: set(h) for (qid, *_), h in zip(qs, hits.pmids)}


def test_wo_embedding_retrieves_with_the_general_encoder(ab_lake):
    cfg = tiny("wo-embedding")
    assert tiny_base().retrieval.encoder == "domain"  # the paper's retrieval: the domain encoder
    retrieve(ab_lake, cfg, agents=("domain", "general"), progress=False)
    assert ab_lake.query("select distinct retriever from contexts") == [("dense:minilm-general",)]
    assert ab_lake.query("select distinct stage from runs") == [
        ("retrieve:dense:minilm-general:top4",)
    ]
    got: dict[str, set[int]] = {}
    for qid, pmid in ab_lake.query("select question_id, pmid from contexts"):
        got.setdefault(qid, set()).add(pmid)
    assert {len(v) for v in got.values()} == {cfg.retrieval.k} and len(got) == 2 * N_DOCS
    # the contexts are the general encoder's neighbours, which are not the domain encoder's
    assert got == _dense_top(ab_lake, cfg, "general")
    assert got != _dense_top(ab_lake, cfg, "domain")
    # the rule labels the pairs from those contexts
    r = prefer(ab_lake, cfg, "rule")
    assert r["retriever"] == "dense:minilm-general" and r["pairs"] > 0


def _zero_shot(lake: Lake, cfg: Config) -> list[tuple]:
    """Run the pipeline's preference steps for ``cfg`` (the rule first, as `mkailin run`
    does, then the configured judge); the zero-shot rows DPO would train on."""
    from mkailin.train.dpo import preference_records

    prefer(lake, cfg, "rule")
    r = prefer(lake, cfg, progress=False)  # the configured judge
    assert r.stage == "prefer:zero-shot" and r.rows_in == N_DOCS and r.rows_out == N_DOCS
    judge_model = cfg.agent("judge").model
    assert lake.query("select distinct scorer from preferences where judge = 'zero-shot'") == [
        (f"zero-shot:{judge_model}",)
    ]  # an untrained LLM, no MeSH scorer
    zero = lake.query(
        "select chosen, rejected from preferences where judge = 'zero-shot' "
        "and chosen <> rejected order by pmid"
    )
    records = preference_records(lake, cfg)
    assert [(x["chosen"][0]["content"], x["rejected"][0]["content"]) for x in records] == zero
    return zero


def test_wo_mesh_prefers_with_the_zero_shot_judge_and_dpo_takes_its_pairs(
    ab_lake, smollm2_available
):
    cfg = tiny("wo-mesh")
    assert cfg.preference.judge == "zero-shot"
    retrieve(ab_lake, cfg, agents=("domain", "general"), progress=False)
    zero = _zero_shot(ab_lake, cfg)
    assert len(zero) == N_DOCS
    assert ab_lake.query("select distinct retriever from contexts") == [("dense:minilm",)]


def test_wo_both_uses_the_general_encoder_and_the_zero_shot_judge(ab_lake, smollm2_available):
    from mkailin.agents.preference import judge_stage

    cfg = tiny("wo-both")
    assert (cfg.preference.judge, cfg.retrieval.encoder) == ("zero-shot", "general")
    retrieve(ab_lake, cfg, agents=("domain", "general"), progress=False)
    assert ab_lake.query("select distinct retriever from contexts") == [("dense:minilm-general",)]
    # the judge reads the general encoder's contexts (the only ones in this lake)
    params = judge_stage(ab_lake, cfg, "zero-shot").input_params
    assert "dense:minilm-general" in params and "dense:minilm" not in params
    assert len(_zero_shot(ab_lake, cfg)) == N_DOCS


def test_same_backend_puts_the_domain_agent_on_the_general_model(pqa_lake, smollm2_available):
    import json

    from mkailin.agents.question import generate_questions

    base, cfg = tiny_base(), tiny("same-backend")
    assert question_stage(pqa_lake, base, "domain").models["domain"] == "smollm2-domain"
    general = cfg.agent("general").model
    domain, gen = (question_stage(pqa_lake, cfg, a) for a in ("domain", "general"))
    assert domain.models["domain"] == general
    assert domain.fn_args[1:3] == gen.fn_args[1:3]  # the same model name and spec
    assert domain.fn_args[3].prompt != gen.fn_args[3].prompt  # the agents differ by prompt
    # run it: two articles, short outputs
    cfg.generate.articles = 2
    cfg.agents["domain"].max_new_tokens = 8
    (r,) = generate_questions(pqa_lake, cfg, ("domain",), progress=False)
    assert r.rows_in == 2 and r.rows_out + r.quarantined == 2
    (models,) = pqa_lake.query("select models from runs where stage = 'generate-questions:domain'")
    assert json.loads(models[0])["domain"] == general
    assert {m for (m,) in pqa_lake.query("select distinct model from questions")} <= {general}


def test_two_ablations_share_a_lake_with_separate_results(ab_lake, smollm2_available):
    """same-backend (another domain model) and topk-8 (another k) on one lake: each generates,
    retrieves and prefers on its own questions, a rerun of one leaves the other's rows alone,
    DPO reads each one's own pairs, and status shows both side by side."""
    from mkailin.agents.question import generate_questions
    from mkailin.status import status_table
    from mkailin.train.dpo import preference_records

    same, top8 = tiny("same-backend"), tiny("topk-8")
    same.agents["domain"].max_new_tokens = 24
    # top-8 keeps the paper's domain model, whose questions the lake already holds
    (r8,) = generate_questions(ab_lake, top8, ("domain",), progress=False)
    assert r8.rows_out == 0 and r8.quarantined == 0
    # same-backend's domain model is another one: its questions are written, not resumed on
    (rs,) = generate_questions(ab_lake, same, ("domain",), progress=False)
    assert rs.rows_in == N_DOCS and rs.rows_out + rs.quarantined == N_DOCS
    by_model = dict(
        ab_lake.query("select model, count(*) from questions where agent = 'domain' group by 1")
    )
    assert by_model == {"smollm2-domain": N_DOCS, "smollm2": rs.rows_out}

    def own(cfg) -> set[str]:
        dom, gen = cfg.agent("domain"), cfg.agent("general")
        return {
            qid
            for (qid,) in ab_lake.query(
                "select question_id from questions where (agent = 'domain' and model = ?) "
                "or (agent = 'general' and model = ?)",
                [dom.model, gen.model],
            )
        }

    for cfg in (same, top8):
        retrieve(ab_lake, cfg, agents=("domain", "general"), progress=False)
    k_by_question = dict(
        ab_lake.query("select question_id, list(distinct top_k) from contexts group by 1")
    )
    for qid in own(same) - own(top8):
        assert k_by_question[qid] == [4]  # same-backend's domain questions: its k only
    pairs = {}
    for cfg in (same, top8):
        r = prefer(ab_lake, cfg, "rule")
        pairs[cfg.retrieval.k] = r["pairs"]
    held = ab_lake.query("select scorer, chosen_id, rejected_id from preferences")
    for scorer, chosen, rejected in held:
        cfg = top8 if scorer.endswith("/top8") else same
        assert {chosen, rejected} <= own(cfg), scorer
    assert pairs[8] > 0
    # a rerun of same-backend's rule replaces its pairs, not top-8's
    before = ab_lake.query("select * from preferences where scorer like '%/top8' order by pmid")
    prefer(ab_lake, same, "rule")
    assert ab_lake.query("select * from preferences where scorer like '%/top8' order by all") == (
        sorted(before)
    )
    # DPO reads each config's own pairs
    assert (
        len(preference_records(ab_lake, top8, "rule"))
        == ab_lake.query(
            "select count(*) from preferences where scorer like '%/top8' and chosen <> rejected"
        )[0][0]
    )
    # status: one line per stage and settings (top-8's domain questions came with the lake,
    # so its generator has no run of its own here)
    table, _ = status_table(ab_lake)
    lines = [(r["stage"], r["settings"]) for r in table.to_pylist()]
    gen_lines = [s for st, s in lines if st == "generate-questions:domain"]
    assert gen_lines == ["domain smollm2, prompt qg-domain-v1"]
    assert {st for st, _ in lines} >= {
        "retrieve:dense:minilm:top4",
        "retrieve:dense:minilm:top8",
        "prefer:rule",
    }
    rule_lines = [s for st, s in lines if st == "prefer:rule"]
    assert any(s.endswith("/top4") for s in rule_lines) and any(
        s.endswith("/top8") for s in rule_lines
    )
