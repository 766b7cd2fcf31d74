"""``mkailin run CONFIG``: the whole m-KAILIN pipeline, step by step, resumable.

Every step records a completion marker (a ``pipeline:<step>`` run) keyed by the settings that
step depends on and the keys of the steps it reads from, so changing a judge setting re-runs
the judge and what consumes it, never the question generators. A second run does nothing, and
an interrupted one resumes at the step it was in (whose stage resumes at the row it was at).

A step with too little data to do its job (a judge with too few rule-labelled pairs, a DPO set
too small) raises :class:`StepSkipped`: the marker records ``skipped`` with the reason, and the
steps after it take their documented fallback (rule labels in place of the judge's; the general
generator's questions in place of the DPO-tuned one's). ``--from STEP`` re-runs from a step on,
ignoring markers; ``--until STEP`` stops after one; ``--dry-run`` prints the steps, whether each
is done, and the rows it would process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mkailin.config import Config
from mkailin.errors import InputError, StepSkipped
from mkailin.lake import Lake
from mkailin.runs import log_event, new_run_id, run_end

Echo = Callable[[str], None]


@dataclass
class Step:
    name: str
    run: Callable[[Lake, Config, dict], list[str]]
    todo: Callable[[Lake, Config, dict], str]  # what it would process, for --dry-run
    enabled: Callable[[Config], bool] = lambda cfg: True
    settings: Callable[[Config], dict] = lambda cfg: {}  # the settings its output depends on
    deps: tuple[str, ...] = ()  # the steps whose output it reads


# ------------------------------------------------------------------------------ step keys
TRAIN_SFT = (
    "max_steps", "learning_rate", "batch_size", "gradient_accumulation", "lora_r",
    "lora_alpha", "lora_dropout", "max_length", "seed", "precision",
)  # fmt: skip


def _train(cfg: Config, *extra: str) -> dict:
    d = dataclasses.asdict(cfg.train)
    return {k: d[k] for k in (*TRAIN_SFT, *extra)}


def _agent(cfg: Config, name: str) -> dict:
    a = cfg.agent(name)
    return {"agent": dataclasses.asdict(a), "model": dataclasses.asdict(cfg.model(a.model))}


def _section(cfg: Config, *names: str) -> dict:
    d = cfg.to_dict()
    return {n: d[n] for n in names}


def step_keys(cfg: Config, chosen: list[Step], inputs: dict) -> dict[str, str]:
    """Each enabled step's key: a hash of its own settings and its upstream steps' keys."""
    keys: dict[str, str] = {}
    for step in chosen:
        own = {"inputs": inputs} if step.name == "ingest" else step.settings(cfg)
        up = {d: keys[d] for d in step.deps if d in keys}
        blob = json.dumps({"settings": own, "upstream": up}, sort_keys=True, default=str)
        keys[step.name] = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return keys


# ------------------------------------------------------------------------------ inputs
def resolve_inputs(cfg: Config, data: str | None = None) -> dict:
    from mkailin.ingest.layout import find_inputs

    i = cfg.inputs
    out = {
        "mesh": list(i.mesh),
        "pubmed": list(i.pubmed),
        "pubmedqa": i.pubmedqa or None,
        "ground_truth": i.pubmedqa_ground_truth or None,
        "bioasq": i.bioasq or None,
    }
    folder = data or i.data
    if folder:
        found = find_inputs(Path(folder))
        out["mesh"] = out["mesh"] or [str(p) for p in found["mesh"]]
        out["pubmed"] = out["pubmed"] or [str(p) for p in found["pubmed"]]
        out["pubmedqa"] = out["pubmedqa"] or str(found["pubmedqa"][0])
        out["ground_truth"] = out["ground_truth"] or (
            str(found["ground_truth"][0]) if found["ground_truth"] else None
        )
    return out


def _lines(result) -> list[str]:
    if result is None:
        return []
    if isinstance(result, list):
        return [ln for r in result for ln in _lines(r)]
    if hasattr(result, "lines"):
        return result.lines()
    return [str(result)]


# ------------------------------------------------------------------------------ steps
def _ingest(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.ingest.bioasq import ingest_bioasq
    from mkailin.ingest.mesh import ingest_mesh
    from mkailin.ingest.pubmed import ingest_pubmed
    from mkailin.ingest.pubmedqa import ingest_pubmedqa

    inp = ctx["inputs"]
    if not (inp["mesh"] or inp["pubmed"] or inp["pubmedqa"]):
        raise InputError("nothing to ingest: set [inputs] in the config or pass --data DIR")
    out = []
    if inp["mesh"] and lake.count("mesh_descriptors") == 0:
        out += ingest_mesh(lake, inp["mesh"]).lines()[:2]
    if inp["pubmed"]:
        s = ingest_pubmed(lake, inp["pubmed"], progress=False)
        out += s.lines()[:2] + [f"  fault: {e}" for e in s.errors]
    if inp["pubmedqa"]:
        out += ingest_pubmedqa(lake, inp["pubmedqa"], inp["ground_truth"]).lines()[:2]
    if inp["bioasq"]:
        out += ingest_bioasq(lake, inp["bioasq"]).lines()[:2]
    return out


def _count(lake: Lake, sql: str, params: list | None = None) -> str:
    try:
        return f"{lake.query(sql, params)[0][0]:,}"
    except Exception:  # an upstream table or view is not there yet
        return "?"


def _questions_todo(agents):
    def todo(lake: Lake, cfg: Config, ctx: dict) -> str:
        from mkailin.agents.question import sample_sql
        from mkailin.labels import questions_where

        sql, params = sample_sql(cfg)

        def left(a: str) -> str:
            mine, mine_params = questions_where(lake, cfg, (a,), alias="")
            return _count(
                lake,
                f"select count(*) from ({sql}) as s where pmid not in "
                f"(select pmid from questions where {mine})",
                [*params, *mine_params],
            )

        return ", ".join(f"{a}: " + left(a) for a in agents) + " articles"

    return todo


def _train_qg(agent):
    def run(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
        from mkailin.train.sft import train_qg

        return _lines(train_qg(lake, cfg, agent))

    return run


def _questions(agents):
    def run(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
        from mkailin.agents.question import generate_questions

        return _lines(generate_questions(lake, cfg, agents, progress=None))

    return run


def _retrieve(agents):
    def run(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
        from mkailin.agents.retrieval import retrieve

        return _lines(retrieve(lake, cfg, agents=agents, progress=None))

    def todo(lake: Lake, cfg: Config, ctx: dict) -> str:
        from mkailin.labels import questions_where, retriever_label

        mine, mine_params = questions_where(lake, cfg, agents, alias="")
        return (
            _count(
                lake,
                f"select count(*) from questions where {mine} and "
                "question is not null and question_id not in (select question_id "
                "from contexts where retriever = ? and top_k = ?)",
                [*mine_params, retriever_label(cfg, cfg.retrieval.retriever), cfg.retrieval.k],
            )
            + " questions"
        )

    return run, todo


def _answer_todo(lake: Lake, cfg: Config, ctx: dict) -> str:
    from mkailin.labels import questions_where

    mine, params = questions_where(lake, cfg, tuple(cfg.answer.agents), alias="")
    return (
        _count(
            lake,
            f"select count(*) from questions where {mine} and question_id not "
            "in (select question_id from answers)",
            params,
        )
        + " questions"
    )


def _prefer_rule(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.preference import prefer_rule

    return _lines(prefer_rule(lake, cfg))


def _train_judge(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.train.judge import train_judge

    return _lines(train_judge(lake, cfg))


def _prefer_judge(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.preference import prefer

    if cfg.preference.judge == "llm" and "train-judge" in ctx["skipped"]:
        raise StepSkipped("no judge was trained", "DPO trains on the rule labels")
    return _lines(prefer(lake, cfg, cfg.preference.judge, progress=None))


def dpo_judge(cfg: Config, skipped: dict) -> str:
    """The judge whose preferences DPO trains on: the configured one, or the rule when the
    configured judge's step was skipped."""
    judge = cfg.preference.judge
    if judge != "rule" and ({"train-judge", "prefer-judge"} & set(skipped)):
        return "rule"
    return judge


def _dpo(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.train.dpo import train_dpo

    judge = dpo_judge(cfg, ctx["skipped"])
    return _lines(train_dpo(lake, cfg, judge))


def _final_questions(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.question import generate_questions, select_final_generator

    dpo = "train-dpo" not in ctx["skipped"]
    lines = _lines(generate_questions(lake, cfg, ("final",), progress=None)) if dpo else []
    r = select_final_generator(lake, cfg, dpo)
    which = "the DPO-tuned generator" if r["chosen"] == "final" else "the general generator"
    return [*lines, f"final questions from {which}: {r['reason']}"]


def _answer(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.answer import answer

    return _lines(answer(lake, cfg, progress=None))


def _export(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.export import export

    out = []
    for kind in ("cpt", "sft"):
        try:
            r = export(lake, cfg, kind)
        except InputError as e:
            if str(e).startswith("nothing to export"):
                raise StepSkipped(str(e), "no corpus: downstream training is skipped") from None
            raise
        ctx.setdefault("exports", {})[kind] = r["path"]
        out += _lines(r)
        from mkailin.coverage import describe, write_coverage

        try:  # the MeSH coverage report beside the export (A-Z against the lake)
            out.append(describe(write_coverage(lake, r["path"])))
        except InputError as e:  # e.g. no MeSH in the lake: the corpus stands, the report not
            out.append(f"coverage of corpus_{kind}: not written ({e})")
    return out


def _downstream(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.train.downstream import train_cpt, train_sft

    if "export" in ctx["skipped"]:
        raise StepSkipped("no corpus was exported", "the target is evaluated untuned")
    return _lines([train_cpt(lake, cfg), train_sft(lake, cfg)])


def _evaluate(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.evaluate import evaluate_pubmedqa
    from mkailin.output import render

    name = cfg.downstream.model
    res = evaluate_pubmedqa(
        lake,
        cfg,
        [(name, "none"), (name, "auto")],
        cfg.pipeline.eval_setting or None,
        cfg.pipeline.eval_sample,
        progress=None,
    )
    ctx["eval_table"] = res["table"]
    return _lines(res["runs"]) + render(res["table"].slice(0, 1)).splitlines()


def steps() -> list[Step]:
    r_dg, t_dg = _retrieve(("domain", "general"))
    r_f, t_f = _retrieve(("final",))
    p = lambda cfg: cfg.pipeline  # noqa: E731
    needs_judge = lambda cfg: cfg.preference.judge in ("llm", "zero-shot")  # noqa: E731

    def qg(agent):
        return lambda cfg: {
            **_agent(cfg, agent),
            "train": _train(cfg),
            "max_input_chars": cfg.generate.max_input_chars,
        }

    def blocklist(cfg):
        return {
            "exclude_eval_articles": cfg.generate.exclude_eval_articles,
            "blocklist": cfg.eval.blocklist,
            "blocklist_files": cfg.eval.blocklist_files,
        }

    def questions(agents):
        return lambda cfg: {"generate": _section(cfg, "generate"), **blocklist(cfg),
                            **{a: _agent(cfg, a) for a in agents}}  # fmt: skip

    def retrieval(cfg):
        return {
            **_section(cfg, "retrieval"),
            "encoders": _section(cfg, "encoders"),
            **blocklist(cfg),
        }

    def rule(cfg):
        pr = dataclasses.asdict(cfg.preference)
        return {k: pr[k] for k in ("scorer", "ic", "aggregate", "min_margin", "max_score")}

    def judge(cfg):
        pr = dataclasses.asdict(cfg.preference)
        return {
            "judge": cfg.preference.judge,
            **_agent(cfg, "judge"),
            **{k: pr[k] for k in ("judge_document_chars", "judge_context_chars")},
        }

    return [
        Step("ingest", _ingest, lambda lake, cfg, ctx: "files not in the ingest ledger"),
        Step(
            "train-qg-domain",
            _train_qg("domain"),
            lambda *a: "seed QA pairs",
            lambda cfg: p(cfg).train_qg,
            qg("domain"),
            ("ingest",),
        ),
        Step(
            "train-qg-general",
            _train_qg("general"),
            lambda *a: "seed QA pairs",
            lambda cfg: p(cfg).train_qg,
            qg("general"),
            ("ingest",),
        ),
        Step(
            "questions",
            _questions(("domain", "general")),
            _questions_todo(("domain", "general")),
            settings=questions(("domain", "general")),
            deps=("ingest", "train-qg-domain", "train-qg-general"),
        ),
        Step("retrieve", r_dg, t_dg, settings=retrieval, deps=("questions",)),
        Step(
            "prefer-rule",
            _prefer_rule,
            lambda lake, cfg, ctx: (
                _count(lake, "select count(distinct pmid) from questions") + " documents"
            ),
            settings=lambda cfg: {**rule(cfg), "k": cfg.retrieval.k},
            deps=("retrieve",),
        ),
        Step(
            "train-judge",
            _train_judge,
            lambda *a: "rule-labelled pairs",
            lambda cfg: p(cfg).train_judge and cfg.preference.judge == "llm",
            lambda cfg: {
                **judge(cfg),
                "train": _train(cfg, "judge_max_length", "judge_min_pairs", "holdout"),
            },
            ("prefer-rule",),
        ),
        Step(
            "prefer-judge",
            _prefer_judge,
            lambda lake, cfg, ctx: (
                _count(lake, "select count(*) from preferences where judge = 'rule'") + " pairs"
            ),
            needs_judge,
            judge,
            ("prefer-rule", "train-judge"),
        ),
        Step(
            "train-dpo",
            _dpo,
            lambda lake, cfg, ctx: (
                _count(
                    lake,
                    "select count(*) from preferences where judge = ?",
                    [cfg.preference.judge],
                )
                + " preference pairs"
            ),
            lambda cfg: p(cfg).dpo,
            lambda cfg: {
                "judge": cfg.preference.judge,
                **_agent(cfg, "general"),
                "train": _train(cfg, "beta", "dpo_min_pairs"),
                "max_input_chars": cfg.generate.max_input_chars,
            },
            ("prefer-rule", "prefer-judge", "train-qg-general"),
        ),
        Step(
            "final-questions",
            _final_questions,
            _questions_todo(("final",)),
            lambda cfg: p(cfg).dpo,
            questions(("general",)),
            ("train-dpo", "questions"),
        ),
        Step("retrieve-final", r_f, t_f, lambda cfg: p(cfg).dpo, retrieval, ("final-questions",)),
        Step(
            "answer",
            _answer,
            _answer_todo,
            lambda cfg: p(cfg).answer,
            lambda cfg: {**_section(cfg, "answer"), **_agent(cfg, "answer")},
            ("retrieve-final", "retrieve"),
        ),
        Step(
            "export",
            _export,
            lambda *a: "corpus_cpt, corpus_sft",
            lambda cfg: p(cfg).export,
            lambda cfg: {
                **_section(cfg, "export"),
                **blocklist(cfg),
            },
            ("answer", "retrieve-final", "prefer-rule"),
        ),
        Step(
            "downstream",
            _downstream,
            lambda *a: "CPT then SFT of the target",
            lambda cfg: p(cfg).downstream,
            lambda cfg: {
                **_section(cfg, "downstream"),
                "model": dataclasses.asdict(cfg.model(cfg.downstream.model)),
                "train": _train(cfg),
            },
            ("export",),
        ),
        Step(
            "evaluate",
            _evaluate,
            lambda lake, cfg, ctx: (
                f"{cfg.pipeline.eval_sample or 500} PubMedQA test items x 2 models"
            ),
            lambda cfg: p(cfg).evaluate,
            lambda cfg: {
                **_section(cfg, "eval"),
                "sample": cfg.pipeline.eval_sample,
                "setting": cfg.pipeline.eval_setting,
            },
            ("downstream", "ingest"),
        ),
    ]


STEP_NAMES = [s.name for s in steps()]


def _release_models() -> None:
    import sys

    gen = sys.modules.get("mkailin.backends.generation")
    if gen is not None:
        gen.release_models()


def _marker(lake: Lake, name: str, key: str) -> tuple[str, str | None] | None:
    """(status, reason) of the step's latest finished or skipped run under ``key``."""
    rows = lake.query(
        "select status, error from runs where stage = ? and status in ('finished', 'skipped') "
        "and config_hash = ? order by finished desc limit 1",
        [f"pipeline:{name}", key],
    )
    return rows[0] if rows else None


def run_pipeline(
    lake: Lake,
    cfg: Config,
    data: str | None = None,
    start: str | None = None,
    until: str | None = None,
    dry_run: bool = False,
    echo: Echo = print,
) -> dict:
    for name in (start, until):
        if name and name not in STEP_NAMES:
            raise InputError(f"unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
    ctx: dict = {"inputs": resolve_inputs(cfg, data), "skipped": {}}
    chosen = [s for s in steps() if s.enabled(cfg)]
    names = [s.name for s in chosen]
    if start and start not in names:
        raise InputError(f"step {start!r} is switched off in this config")
    keys = step_keys(cfg, chosen, ctx["inputs"])
    i0 = names.index(start) if start else 0
    i1 = names.index(until) + 1 if until and until in names else len(chosen)
    summary = {"config_hash": cfg.hash(), "keys": keys, "ran": [], "skipped": [], "seconds": {}}
    for i, step in enumerate(chosen):
        if i >= i1:
            break
        key = keys[step.name]
        head = f"step {i + 1}/{len(chosen)} [{step.name}]"
        mark = None if start is not None and i >= i0 else _marker(lake, step.name, key)
        if mark and mark[0] == "skipped":
            ctx["skipped"][step.name] = mark[1]
        if i < i0:
            continue
        if dry_run:
            state = "done" if mark else f"would process {step.todo(lake, cfg, ctx)}"
            echo(f"{step.name:<18} {state}")
            continue
        if mark:
            summary["skipped"].append(step.name)
            echo(f"{head} done for settings {key}: skipped")
            continue
        echo(head)
        t0 = time.perf_counter()
        run_id = new_run_id(f"pipeline:{step.name}")
        log_event(lake, run_id, f"pipeline:{step.name}", "started", config_hash=key)
        try:
            lines = step.run(lake, cfg, ctx)
        except StepSkipped as e:
            lines = [f"skipped: {e}"]
            ctx["skipped"][step.name] = str(e)
            log_event(lake, run_id, f"pipeline:{step.name}", "skipped", config_hash=key,
                      error=str(e)[:2000])  # fmt: skip
        except BaseException as e:
            event, error = run_end(e)
            log_event(lake, run_id, f"pipeline:{step.name}", event, config_hash=key, error=error)
            raise
        else:
            log_event(lake, run_id, f"pipeline:{step.name}", "finished", config_hash=key,
                      detail=json.dumps({"seconds": round(time.perf_counter() - t0, 2)}))  # fmt: skip
        secs = time.perf_counter() - t0
        _release_models()
        for line in lines:
            echo(f"  {line}")
        summary["ran"].append(step.name)
        summary["seconds"][step.name] = secs
    summary["ctx"] = ctx
    if not dry_run:
        lake.sync_catalog()
    return summary
