"""The evaluation agent (the preference judge): which of a document's two question-context pairs
is better. The PubMedQA evaluation of a trained model is ``mkailin/evaluate.py``, a different
thing.

Three judges write ``preferences`` rows (pmid, chosen/rejected ids and texts, both scores,
margin, judge, scorer):

- ``rule``: the cold start. The MeSH-hierarchy similarity between the document's terms and its
  contexts' terms (the ``rule_preferences_with`` SQL macro), with a minimum margin and KAILIN's
  score ceiling as options.
- ``llm``: a judge LLM fine-tuned on the rule labels (``mkailin train judge``), run through the
  stage runner. It reads the document, and each question with its contexts, and answers 1 or 2;
  both orders are scored and averaged, which cancels position bias.
- ``zero-shot``: the same prompt to an untrained general LLM, with no hierarchy: the paper's
  "w/o MeSH" ablation.
"""

from __future__ import annotations

import math

import pyarrow as pa

from mkailin.agents.prompts import template
from mkailin.config import Config, ModelSpec
from mkailin.errors import InputError, StageError
from mkailin.labels import (
    contexts_where,
    question_keys,
    questions_where,
    retriever_label,
    scorer_label,
)
from mkailin.lake import Lake, quote_ident
from mkailin.results import Result
from mkailin.runs import log_event
from mkailin.stage import RunResult, Stage, run_stage

JUDGES = ("rule", "llm", "zero-shot")
PAIR_AGENTS = ("domain", "general")  # the two question agents whose questions are compared


# ------------------------------------------------------------------------------ rule
def rule_sql(lake: Lake, cfg: Config, retriever: str) -> tuple[str, list]:
    """The rule labels for the configured scorer, top-k, retriever, margin and ceiling, over the
    domain and general questions written under ``cfg``."""
    p = cfg.preference
    threshold = p.max_score if p.max_score < 1.0 else None
    sql = (
        "select * from rule_preferences_with(scorer := ?, ic := ?, aggregate := ?, k := ?, "
        "threshold := ?, retriever := ?, versions := ?) where margin >= ?"
    )
    versions = question_keys(lake, cfg, PAIR_AGENTS)
    return sql, [
        p.scorer,
        p.ic,
        p.aggregate,
        cfg.retrieval.k,
        threshold,
        retriever,
        versions,
        p.min_margin,
    ]


def _replace_rows(lake: Lake, table: str, keep_where: str, params: list, new: pa.Table) -> None:
    """Swap in ``new`` for the rows of ``table`` that ``keep_where`` does not keep."""
    con = lake.connect()
    try:
        from mkailin.lake import fetch_arrow

        kept = fetch_arrow(con, f"select * from {quote_ident(table)} where {keep_where}", params)
    finally:
        con.close()
    from mkailin import schema

    lake.replace_table(table, [kept, schema.conform(table, new)])


def prefer_rule(lake: Lake, cfg: Config) -> dict:
    """Write the rule preferences (replacing earlier rule rows of the same scorer)."""
    label = retriever_label(cfg)
    sql, params = rule_sql(lake, cfg, label)
    mine, mine_params = questions_where(lake, cfg, PAIR_AGENTS, alias="")
    from mkailin.runs import new_run_id

    run_id = new_run_id("prefer:rule")
    scorer = scorer_label(cfg)
    with lake.lock("prefer rule"):
        log_event(
            lake,
            run_id,
            "prefer:rule",
            "started",
            scorer=scorer,
            config_hash=cfg.hash("preference", "retrieval"),
        )
        rows = lake.query_arrow(sql, params)
        n_pmids = lake.query(
            f"select count(distinct pmid) from questions where {mine}", mine_params
        )[0][0]
        new = pa.table(
            {
                "pmid": rows.column("pmid"),
                "chosen_id": rows.column("chosen_id"),
                "rejected_id": rows.column("rejected_id"),
                "chosen": rows.column("chosen"),
                "rejected": rows.column("rejected"),
                "chosen_score": rows.column("chosen_score"),
                "rejected_score": rows.column("rejected_score"),
                "margin": rows.column("margin"),
                "judge": pa.array(["rule"] * rows.num_rows, pa.string()),
                "scorer": pa.array([scorer] * rows.num_rows, pa.string()),
                "run_id": pa.array([run_id] * rows.num_rows, pa.string()),
            }
        )
        # this config's rule pairs of this scorer are replaced; other configs' pairs stay
        _replace_rows(
            lake,
            "preferences",
            "not (judge = 'rule' and scorer = ? "
            f"and chosen_id in (select question_id from questions where {mine}))",
            [scorer, *mine_params],
            new,
        )
        log_event(
            lake,
            run_id,
            "prefer:rule",
            "finished",
            scorer=scorer,
            rows_in=n_pmids,
            rows_out=rows.num_rows,
        )
        lake.sync_catalog()
    return Result(
        "prefer:rule",
        run_id=run_id,
        pairs=rows.num_rows,
        documents=n_pmids,
        scorer=scorer,
        retriever=label,
    )


# ------------------------------------------------------------------------------ judge prompts
def pair_input_sql(lake: Lake, cfg: Config) -> tuple[str, list]:
    """One row per document with a domain and a general question written under ``cfg``, each
    with its top-k context texts (rank order): the judge's input."""
    where, params = contexts_where(cfg)
    mine, mine_params = questions_where(lake, cfg, PAIR_AGENTS, alias="")
    ctx_chars = int(cfg.preference.judge_context_chars)
    doc_chars = int(cfg.preference.judge_document_chars)
    sql = f"""
        with q as (
            select * from questions
            where {mine} and question is not null
            qualify row_number() over (partition by pmid, agent order by question_id) = 1
        ),
        ctx as (
            select c.question_id,
                   list(substr(coalesce(a.title || '. ', '') || coalesce(a.abstract, ''), 1,
                               {ctx_chars}) order by c.rank) as texts
            from contexts as c
            join articles as a on a.pmid = c.pmid
            where {where}
            group by c.question_id
        )
        select d.pmid,
               substr(coalesce(art.title || '. ', '') || coalesce(art.abstract, ''), 1,
                      {doc_chars}) as document,
               d.question_id as q1_id, d.question as q1, cd.texts as contexts1,
               g.question_id as q2_id, g.question as q2, cg.texts as contexts2
        from q as d
        join q as g on g.pmid = d.pmid and g.agent = 'general'
        join ctx as cd on cd.question_id = d.question_id
        join ctx as cg on cg.question_id = g.question_id
        join articles as art on art.pmid = d.pmid
        where d.agent = 'domain'
    """
    return sql, [*mine_params, *params]


def judge_messages(
    document: str, q1: str, c1: list[str], q2: str, c2: list[str], template_id: str = "judge-v1"
) -> list[dict]:
    def fmt(cs):
        return "\n".join(f"- {c}" for c in (cs or [])) or "- (none)"

    return template(template_id).messages(
        abstract=document, q1=q1, contexts1=fmt(c1), q2=q2, contexts2=fmt(c2)
    )


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def pair_probability(gen, rows: list[dict], template_id: str = "judge-v1") -> list[float]:
    """P(the first pair of each row is better), from the judge's log-likelihoods of "1" and "2"
    in both orders (A,B) and (B,A): the two log-odds are averaged, so a preference for a
    position cancels exactly (a judge that only prefers a position gives exactly 0.5)."""
    fwd = [
        judge_messages(r["document"], r["q1"], r["contexts1"], r["q2"], r["contexts2"], template_id)
        for r in rows
    ]
    rev = [
        judge_messages(r["document"], r["q2"], r["contexts2"], r["q1"], r["contexts1"], template_id)
        for r in rows
    ]
    s = gen.score_choices(fwd + rev, ["1", "2"])
    out = []
    for i in range(len(rows)):
        a1, a2 = s[i]  # forward: "1" means pair 1 (q1)
        b1, b2 = s[len(rows) + i]  # reversed: "2" means q1
        out.append(_sigmoid(((a1 - a2) + (b2 - b1)) / 2))
    return out


class PairJudge:
    """Batch function: document pairs -> preferences rows from an LLM judge."""

    def __init__(
        self,
        judge: str,
        model_name: str,
        spec: ModelSpec,
        adapter: str,
        template_id: str,
        scorer: str,
    ):
        from mkailin.backends.generation import get_generator

        self.judge, self.scorer, self.template_id = judge, scorer, template_id
        self.gen = get_generator(spec, model_name, adapter)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        probs = pair_probability(self.gen, rows, self.template_id)
        out = []
        for r, p in zip(rows, probs):
            first = p >= 0.5
            out.append(
                {
                    "pmid": r["pmid"],
                    "chosen_id": r["q1_id"] if first else r["q2_id"],
                    "rejected_id": r["q2_id"] if first else r["q1_id"],
                    "chosen": r["q1"] if first else r["q2"],
                    "rejected": r["q2"] if first else r["q1"],
                    "chosen_score": p if first else 1 - p,
                    "rejected_score": 1 - p if first else p,
                    "margin": abs(2 * p - 1),
                    "judge": self.judge,
                    "scorer": self.scorer,
                }
            )
        return pa.Table.from_pylist(out)


def judge_stage(lake: Lake, cfg: Config, judge: str) -> Stage:
    from mkailin.artifacts import resolve_adapter

    spec_agent = cfg.agent("judge")
    spec = cfg.model(spec_agent.model)
    if judge == "llm":
        adapter = resolve_adapter(lake, spec_agent.adapter, "train-judge", spec.model)
        if not adapter:
            raise StageError("no trained judge yet: run `mkailin train judge` first")
        scorer = f"judge:{adapter.rsplit('/', 1)[-1]}"
    else:
        adapter, scorer = "", f"zero-shot:{spec_agent.model}"
    sql, params = pair_input_sql(lake, cfg)
    mine, mine_params = questions_where(lake, cfg, PAIR_AGENTS, alias="")
    return Stage(
        name=f"prefer:{judge}",
        input_sql=sql,
        input_params=params,
        output="preferences",
        key=("pmid",),
        # keyed by the document and this config's questions: another config's pairs of the
        # same judge are not this run's
        output_filter="judge = ? and scorer = ? "
        f"and chosen_id in (select question_id from questions where {mine})",
        output_params=[judge, scorer, *mine_params],
        fn=PairJudge,
        fn_args=(judge, spec_agent.model, spec, adapter, spec_agent.prompt, scorer),
        batch_size=max(1, cfg.runtime.batch_size // 2),
        models={"judge": spec_agent.model, "adapter": adapter, "prompt": spec_agent.prompt},
        scorer=scorer,
        config_hash=cfg.hash("agents", "models", "retrieval"),
    )


def prefer(
    lake: Lake,
    cfg: Config,
    judge: str | None = None,
    executor: str | None = None,
    limit: int = 0,
    progress: bool | None = None,
) -> dict | RunResult:
    judge = judge or cfg.preference.judge
    if judge not in JUDGES:
        raise InputError(f"unknown judge {judge!r} ({', '.join(JUDGES)})")
    if judge == "rule":
        return prefer_rule(lake, cfg)
    return run_stage(
        lake,
        judge_stage(lake, cfg, judge),
        executor or cfg.runtime.executor,
        cfg.runtime,
        progress=progress,
        limit=limit,
    )


# ------------------------------------------------------------------------------ agreement
def cohen_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two label sequences (1.0 = perfect agreement, 0 = chance)."""
    if not a:
        return float("nan")
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    labels = set(a) | set(b)
    pe = sum((a.count(lab) / n) * (b.count(lab) / n) for lab in labels)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def compare_judges(lake: Lake) -> pa.Table:
    """Agreement of every pair of judges on the documents both labelled: how often they choose
    the same question, and Cohen's kappa on the label 'domain question wins'. Each judge is
    represented by its latest run (rule: the latest scorer)."""
    rows = lake.query("""
        with latest as (
            select judge, arg_max(scorer, run_id) as scorer from preferences group by judge
        )
        select p.judge, p.pmid, q.agent = 'domain'
        from preferences as p
        join latest as l on l.judge = p.judge and l.scorer = p.scorer
        join questions as q on q.question_id = p.chosen_id
        qualify row_number() over (partition by p.judge, p.pmid order by p.run_id desc) = 1
    """)
    by_judge: dict[str, dict[int, bool]] = {}
    for judge, pmid, dom in rows:
        by_judge.setdefault(judge, {})[pmid] = dom
    out = []
    names = sorted(by_judge)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(set(by_judge[a]) & set(by_judge[b]))
            la = [by_judge[a][p] for p in common]
            lb = [by_judge[b][p] for p in common]
            out.append(
                {
                    "judge_a": a,
                    "judge_b": b,
                    "documents": len(common),
                    "agreement": sum(x == y for x, y in zip(la, lb)) / len(common)
                    if common
                    else None,
                    "kappa": cohen_kappa(la, lb) if common else None,
                }
            )
    schema = pa.schema(
        [
            ("judge_a", pa.string()),
            ("judge_b", pa.string()),
            ("documents", pa.int64()),
            ("agreement", pa.float64()),
            ("kappa", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(out, schema=schema)
