"""The question agents: a domain and a general LLM write one question per sampled article.

``generate_questions`` runs one stage per agent through the runner. Each stage reads the
sampled articles, renders the agent's versioned prompt, generates, cleans the output, and
writes ``questions`` rows; empty, over-long, non-question and prompt-echo outputs go to
``quarantine`` with the reason. The ``heuristic`` agent needs no model: it turns a statement
title into a yes/no question, the rule PubMedQA used to build PQA-A. The ``final`` agent is
the general agent's model with the DPO-optimised adapter.
"""

from __future__ import annotations

import hashlib
import json
import re

import pyarrow as pa

from mkailin.agents.prompts import template
from mkailin.config import AgentSpec, Config, ModelSpec
from mkailin.labels import HEURISTIC_VERSION, agent_adapter, model_label, questions_where
from mkailin.lake import Lake
from mkailin.stage import RunResult, Stage, run_stage

AGENTS = ("domain", "general", "heuristic", "final")


def question_id(agent: str, pmid: int, model: str, prompt_version: str) -> str:
    return hashlib.sha1(f"{agent}|{pmid}|{model}|{prompt_version}".encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ cleaning
_PREFIX = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*[:.)-]|\d+\s*[.)]|[-*•])\s*", re.I)
# lead-ins small models put before the question itself
_LEAD_IN = re.compile(
    r"^\s*(?:the question is|here is (?:a|the|one) question|what is the answer to "
    r"the question|my question is)\s*:?\s*",
    re.I,
)
_WS = re.compile(r"\s+")
_STOP = set(
    """about above after again against also among and any are because been before being
between both but can could did does doing down during each few from further had has have having
here how into its itself just more most other over same should some such than that the their them
then there these they this those through under until very was were what when where which while
who whom why will with would your study text article abstract question answer know like paper
results result""".split()
)


def _norm(text: str) -> str:
    return _WS.sub(" ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


def clean_question(
    text: str, instruction: str, source_text: str, max_chars: int = 300
) -> tuple[str | None, str | None]:
    """(question, None) for a usable question, else (None, reason)."""
    if not text or not text.strip():
        return None, "empty output"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = next((ln for ln in lines if "?" in ln), lines[0])
    line = _PREFIX.sub("", line).strip().strip("\"“”'` ").strip()
    line = _LEAD_IN.sub("", line).strip().strip("\"“”'` ").strip()
    if "?" not in line:
        return None, "not a question (no question mark)"
    q = line[: line.index("?") + 1].strip()
    if len(q) > max_chars:
        return None, f"over-long ({len(q)} chars > {max_chars})"
    words = _norm(q).split()
    if len(words) < 3:
        return None, "too short to be a question"
    nq, ni = _norm(q), _norm(instruction)
    if nq and (nq in ni or any(p in nq for p in _instruction_phrases(ni))):
        return None, "prompt echo (repeats the instruction)"
    ns = _norm(source_text)
    if len(nq) >= 60 and nq in ns:
        return None, "prompt echo (copies the abstract)"
    content = {w for w in words if len(w) >= 4 and w not in _STOP}
    if source_text and not content & set(ns.split()):
        return None, "off-topic (shares no content word with the abstract)"
    return q, None


def _instruction_phrases(norm_instruction: str, n: int = 6) -> list[str]:
    """Every run of ``n`` words in the instruction: an output holding one repeats the prompt."""
    w = norm_instruction.split()
    return [" ".join(w[i : i + n]) for i in range(0, max(0, len(w) - n + 1))]


# ------------------------------------------------------------------------------ heuristic
_AUX = {
    "is",
    "are",
    "was",
    "were",
    "can",
    "could",
    "may",
    "might",
    "will",
    "would",
    "should",
    "does",
    "do",
    "did",
    "has",
    "have",
    "had",
    "must",
}
_VERBS = {  # 3rd person singular -> base; past -> base (common verbs of biomedical titles)
    **{
        v + "s": v
        for v in [
            "improve",
            "reduce",
            "increase",
            "decrease",
            "predict",
            "affect",
            "cause",
            "induce",
            "inhibit",
            "enhance",
            "promote",
            "prevent",
            "regulate",
            "modulate",
            "mediate",
            "influence",
            "alter",
            "protect",
            "suppress",
            "activate",
            "determine",
            "impair",
            "require",
            "contribute",
            "reflect",
            "depend",
            "mimic",
            "attenuate",
            "exacerbate",
            "trigger",
            "drive",
            "restore",
            "limit",
            "lower",
            "raise",
            "correlate",
            "associate",
            "identify",
            "reveal",
            "show",
            "target",
            "control",
            "block",
            "worsen",
            "benefit",
            "prolong",
            "shorten",
            "accelerate",
            "delay",
            "confer",
            "underlie",
            "support",
        ]
    },
    **{v + "es": v for v in ["reach", "fix"]},
    "varies": "vary",
    "differs": "differ",
    "modifies": "modify",
    "amplifies": "amplify",
    "intensifies": "intensify",
}
_PAST = {
    "improved": "improve",
    "reduced": "reduce",
    "increased": "increase",
    "decreased": "decrease",
    "predicted": "predict",
    "affected": "affect",
    "caused": "cause",
    "induced": "induce",
    "inhibited": "inhibit",
    "enhanced": "enhance",
    "prevented": "prevent",
    "altered": "alter",
    "protected": "protect",
    "suppressed": "suppress",
    "activated": "activate",
    "impaired": "impair",
    "lowered": "lower",
    "raised": "raise",
    "showed": "show",
    "revealed": "reveal",
}

_BASE = set(_VERBS.values())


def title_to_question(title: str | None) -> str | None:
    """PubMedQA's rule: a title that is a question is kept; a statement title becomes a yes/no
    question by moving its auxiliary to the front ("X is linked to Y" -> "Is X linked to Y?")
    or by do-support for a main verb ("X improves Y" -> "Does X improve Y?")."""
    if not title:
        return None
    t = title.strip().rstrip(".").strip()
    if t.endswith("?"):
        return t
    if ":" in t:  # "Aspirin and stroke: a trial" -> keep the statement part if it has a verb
        head, tail = (s.strip() for s in t.split(":", 1))
        t = head if _has_verb(head) else tail if _has_verb(tail) else t
    words = t.split()
    for i, w in enumerate(words[1:], start=1):
        lw = w.lower()
        subject = " ".join(words[:i])
        rest = " ".join(words[i + 1 :])
        if lw in _AUX:
            return f"{lw.capitalize()} {_lower_first(subject)} {rest}".strip() + "?"
        if lw in _VERBS:
            return f"Does {_lower_first(subject)} {_VERBS[lw]} {rest}".strip() + "?"
        if lw in _PAST:
            return f"Did {_lower_first(subject)} {_PAST[lw]} {rest}".strip() + "?"
        if lw in _BASE and words[i - 1].lower().endswith("s"):  # a plural subject
            return f"Do {_lower_first(subject)} {lw} {rest}".strip() + "?"
    return None


def _has_verb(text: str) -> bool:
    return any(
        w.lower() in _AUX or w.lower() in _VERBS or w.lower() in _PAST or w.lower() in _BASE
        for w in text.split()[1:]
    )


def _lower_first(s: str) -> str:
    # keep acronyms and gene names (second letter upper or a digit) as they are
    if len(s) > 1 and s[0].isupper() and not (s[1].isupper() or s[1].isdigit()):
        return s[0].lower() + s[1:]
    return s


# ------------------------------------------------------------------------------ batch functions
class QuestionWriter:
    """Batch function: articles (pmid, title, abstract) -> questions rows."""

    def __init__(
        self,
        agent: str,
        model_name: str,
        spec: ModelSpec,
        agent_spec: AgentSpec,
        adapter: str,
        max_input_chars: int,
        max_question_chars: int,
    ):
        from mkailin.backends.generation import GenParams, get_generator

        self.agent = agent
        self.template = template(agent_spec.prompt)
        self.gen = get_generator(spec, model_name, adapter)
        self.model = model_label(model_name, adapter)
        self.params = GenParams(
            max_new_tokens=agent_spec.max_new_tokens,
            temperature=agent_spec.temperature,
            top_p=agent_spec.top_p,
        )
        self.max_input_chars = max_input_chars
        self.max_question_chars = max_question_chars
        self.instruction = self.template.instruction_text()

    def __call__(self, batch: pa.Table) -> pa.Table:
        pmids = batch.column("pmid").to_pylist()
        abstracts = [
            (a or "")[: self.max_input_chars] for a in batch.column("abstract").to_pylist()
        ]
        titles = batch.column("title").to_pylist()
        prompts = [
            self.template.messages(abstract=a, title=t or "") for a, t in zip(abstracts, titles)
        ]
        gens = self.gen.generate(prompts, self.params)
        rows = []
        for pmid, abstract, g in zip(pmids, abstracts, gens):
            q, why = (
                (None, g.error)
                if g.error
                else clean_question(g.text, self.instruction, abstract, self.max_question_chars)
            )
            rows.append(
                {
                    "question_id": question_id(self.agent, pmid, self.model, self.template.id),
                    "pmid": pmid,
                    "agent": self.agent,
                    "model": self.model,
                    "prompt_version": self.template.id,
                    "question": q,
                    "_error": why,
                    "_raw": g.text[:2000] if why else None,
                    "_tokens_in": g.prompt_tokens,
                    "_tokens_out": g.completion_tokens,
                    "_cost_usd": g.cost_usd,
                }
            )
        return pa.Table.from_pylist(rows)


class HeuristicWriter:
    """Batch function: the title -> question rule, no model."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for pmid, title in zip(batch.column("pmid").to_pylist(), batch.column("title").to_pylist()):
            q = title_to_question(title)
            why = None if q else ("no title" if not title else "title has no verb the rule knows")
            rows.append(
                {
                    "question_id": question_id("heuristic", pmid, *HEURISTIC_VERSION),
                    "pmid": pmid,
                    "agent": "heuristic",
                    "model": HEURISTIC_VERSION[0],
                    "prompt_version": HEURISTIC_VERSION[1],
                    "question": q,
                    "_error": why,
                    "_raw": title if why else None,
                }
            )
        return pa.Table.from_pylist(rows)


# ------------------------------------------------------------------------------ stages
def sample_sql(cfg: Config) -> tuple[str, list]:
    """The sampled articles: a stable hash order under the seed, so a resumed run samples the
    same articles. Blocklisted articles are left out, so the corpus never holds the
    evaluation's abstracts (see mkailin/blocklist.py)."""
    from mkailin.blocklist import not_blocked

    where = f"abstract is not null and {not_blocked(cfg)}"
    sql = f"select pmid, title, abstract from articles where {where} order by hash(pmid + ?)"
    params: list = [cfg.generate.seed]
    if cfg.generate.articles:
        sql += " limit ?"
        params.append(cfg.generate.articles)
    return sql, params


def question_stage(lake: Lake, cfg: Config, agent: str) -> Stage:
    """The stage that writes ``agent``'s questions under ``cfg``. Its rows are keyed by the model
    (with its adapter chain) and the prompt as well as the article, so a config that changes
    either writes new questions instead of resuming on another config's."""
    sql, params = sample_sql(cfg)
    if agent == "heuristic":
        model, prompt, adapter, model_name = *HEURISTIC_VERSION, "", ""
    else:
        spec_name = cfg.agent("general" if agent == "final" else agent)
        model_name = spec_name.model
        spec = cfg.model(model_name)
        adapter = agent_adapter(lake, cfg, agent)
        if agent == "final" and not adapter:
            from mkailin.errors import StageError

            raise StageError(
                "no DPO-optimised generator yet: run `mkailin train dpo` first "
                "(or set agents.general.adapter)"
            )
        model, prompt = model_label(model_name, adapter), spec_name.prompt
    common = dict(
        input_sql=sql,
        input_params=params,
        output="questions",
        key=("pmid",),
        output_filter="agent = ? and model = ? and prompt_version = ?",
        output_params=[agent, model, prompt],
        batch_size=cfg.runtime.batch_size,
        name=f"generate-questions:{agent}",
    )
    if agent == "heuristic":
        return Stage(
            fn=HeuristicWriter,
            models={"heuristic": model, "prompt": prompt},
            config_hash=cfg.hash("generate"),
            **common,
        )
    return Stage(
        fn=QuestionWriter,
        fn_args=(
            agent,
            model_name,
            spec,
            spec_name,
            adapter,
            cfg.generate.max_input_chars,
            cfg.generate.max_question_chars,
        ),
        models={agent: model_name, "adapter": adapter, "prompt": prompt},
        config_hash=cfg.hash("generate", "models", "agents"),
        **common,
    )


def generate_questions(
    lake: Lake,
    cfg: Config,
    agents: tuple[str, ...] = ("domain", "general"),
    executor: str | None = None,
    limit: int = 0,
    progress: bool | None = None,
) -> list[RunResult]:
    results = []
    for agent in agents:
        stage = question_stage(lake, cfg, agent)
        results.append(
            run_stage(
                lake,
                stage,
                executor or cfg.runtime.executor,
                cfg.runtime,
                progress=progress,
                limit=limit,
            )
        )
    return results


# ------------------------------------------------------------------------------ usable rates
def usable_counts(lake: Lake, cfg: Config, agents: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """agent -> (usable questions, sampled articles): how many of the sampled articles got a
    question that passed cleaning (the rest are in ``quarantine`` with the reason)."""
    sql, params = sample_sql(cfg)
    out = {}
    n = lake.query(f"select count(*) from ({sql})", params)[0][0]
    for agent in agents:
        mine, mine_params = questions_where(lake, cfg, (agent,))
        (k,) = lake.query(
            f"select count(distinct q.pmid) from questions as q join ({sql}) as s using (pmid) "
            f"where {mine} and q.question is not null",
            [*params, *mine_params],
        )[0]
        out[agent] = (k, n)
    return out


def select_final_generator(lake: Lake, cfg: Config, dpo_trained: bool) -> dict:
    """Keep the final questions of the DPO-tuned generator, unless it wrote fewer usable
    questions than the general generator it was tuned from (or DPO did not run): then the
    final questions are the general generator's own, for the same articles. The choice and the
    counts are recorded as a ``select-final-generator`` run."""
    from mkailin import schema
    from mkailin.runs import log_event, new_run_id

    counts = usable_counts(lake, cfg, ("general", "final"))
    finals, finals_params = questions_where(lake, cfg, ("final",), alias="")
    general, general_params = questions_where(lake, cfg, ("general",), alias="")
    (u_gen, n), (u_dpo, _) = counts["general"], counts["final"]
    if not dpo_trained:
        chosen, why = "general", "DPO did not run"
    elif u_dpo < u_gen:
        chosen = "general"
        why = (
            f"the DPO-tuned generator wrote {u_dpo}/{n} usable questions, fewer than the "
            f"general generator's {u_gen}/{n}"
        )
    else:
        chosen, why = "final", f"the DPO-tuned generator wrote {u_dpo}/{n} usable questions"
    run_id = new_run_id("select-final-generator")
    detail = {
        "chosen": chosen,
        "reason": why,
        "usable": {"general": u_gen, "dpo": u_dpo},
        "sampled": n,
    }
    with lake.lock("select final generator"):
        log_event(lake, run_id, "select-final-generator", "started", rows_in=n)
        if chosen == "general":
            sql, params = sample_sql(cfg)
            sample = f"select pmid from ({sql})"
            con = lake.connect()
            try:
                from mkailin.lake import fetch_arrow

                # this config's final questions of the sample are replaced; other configs' stay
                kept = fetch_arrow(
                    con,
                    f"select * from questions where not ({finals} and pmid in ({sample}))",
                    [*finals_params, *params],
                )
                gen = fetch_arrow(
                    con,
                    f"select * from questions where {general} and pmid in ({sample}) "
                    "and question is not null",
                    [*general_params, *params],
                ).to_pylist()
            finally:
                con.close()
            for r in gen:
                r.update(
                    question_id=question_id("final", r["pmid"], r["model"], r["prompt_version"]),
                    agent="final",
                    run_id=run_id,
                )
            new = schema.conform("questions", pa.Table.from_pylist(gen, schema.TABLES["questions"]))
            lake.replace_table("questions", [kept, new])
        log_event(
            lake,
            run_id,
            "select-final-generator",
            "finished",
            rows_in=n,
            rows_out=u_gen if chosen == "general" else u_dpo,
            detail=json.dumps(detail),
        )
        lake.sync_catalog()
    return {"run_id": run_id, **detail}
