"""``mkailin run CONFIG``: the whole m-KAILIN pipeline, step by step, resumable.

Every step records a completion marker (a ``pipeline:<step>`` run with the config's hash) when
it finishes, and is skipped when its marker for this config hash exists, so a second run does
nothing and an interrupted one resumes at the step it was in (whose stage resumes at the row it
was at). ``--from STEP`` re-runs from a step on, ignoring markers; ``--until STEP`` stops after
one; ``--dry-run`` prints the steps, whether each is done, and the rows it would process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mkailin.config import Config
from mkailin.errors import InputError
from mkailin.lake import Lake
from mkailin.stage import log_event

Echo = Callable[[str], None]


@dataclass
class Step:
    name: str
    run: Callable[[Lake, Config, dict], list[str]]
    todo: Callable[[Lake, Config, dict], str]  # what it would process, for --dry-run
    enabled: Callable[[Config], bool] = lambda cfg: True


# ------------------------------------------------------------------------------ inputs
def resolve_inputs(cfg: Config, data: str | None = None) -> dict:
    from mkailin.demo import find_inputs

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

        sql, params = sample_sql(cfg)
        return (
            ", ".join(
                f"{a}: "
                + _count(
                    lake,
                    f"select count(*) from ({sql}) as s where pmid not in "
                    "(select pmid from questions where agent = ?)",
                    [*params, a],
                )
                for a in agents
            )
            + " articles"
        )

    return todo


def _train_qg(agent):
    def run(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
        from mkailin.train.sft import train_qg

        d = train_qg(lake, cfg, agent)
        return [
            f"train-qg:{agent}: {d['steps']} steps on {d['examples']:,} {d['source']} pairs, "
            f"loss {d['loss_first']:.3f} -> {d['loss_last']:.3f}"
        ]

    return run


def _questions(agents):
    def run(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
        from mkailin.agents.question import generate_questions

        return _lines(generate_questions(lake, cfg, agents, progress=False))

    return run


def _retrieve(agents):
    def run(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
        from mkailin.agents.retrieval import retrieve

        return _lines(retrieve(lake, cfg, agents=agents, progress=False))

    def todo(lake: Lake, cfg: Config, ctx: dict) -> str:
        from mkailin.agents.retrieval import retriever_label

        marks = ", ".join("?" * len(agents))
        return (
            _count(
                lake,
                f"select count(*) from questions where agent in ({marks}) and "
                "question is not null and question_id not in (select question_id "
                "from contexts where retriever = ?)",
                [*agents, retriever_label(cfg, cfg.retrieval.retriever)],
            )
            + " questions"
        )

    return run, todo


def _prefer_rule(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.evaluation import prefer_rule

    r = prefer_rule(lake, cfg)
    return [
        f"prefer:rule: {r['pairs']:,} pairs from {r['documents']:,} documents "
        f"(scorer {r['scorer']})"
    ]


def _train_judge(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.train.judge import train_judge

    d = train_judge(lake, cfg)
    h = d["holdout"]
    agree = (
        f"held-out accuracy {h['accuracy']:.2f}, kappa {h['kappa']:.2f} on {h['n']} pairs"
        if h["n"]
        else "no held-out pairs"
    )
    return [f"train-judge: {d['steps']} steps on {d['train_pairs']} pairs; {agree}"]


def _prefer_judge(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.evaluation import prefer

    return _lines(prefer(lake, cfg, cfg.preference.judge, progress=False))


def _dpo(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.train.dpo import train_dpo

    d = train_dpo(lake, cfg)
    return [
        f"train-dpo: {d['steps']} steps on {d['pairs']} pairs, reward margin "
        f"{d['margin_first']:.3f} -> {d['margin_last']:.3f}"
    ]


def _answer(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.agents.answer import answer

    return _lines(answer(lake, cfg, progress=False))


def _export(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.export import export

    out = []
    for kind in ("cpt", "sft"):
        r = export(lake, cfg, kind)
        ctx.setdefault("exports", {})[kind] = r["path"]
        out.append(
            f"corpus_{kind}: {r['records']:,} records to {r['path']} "
            f"({r['exact_duplicates']} exact, {r['near_duplicates']} near duplicates removed)"
        )
    return out


def _downstream(lake: Lake, cfg: Config, ctx: dict) -> list[str]:
    from mkailin.train.downstream import train_cpt, train_sft

    c = train_cpt(lake, cfg)
    s = train_sft(lake, cfg)
    return [
        f"train-cpt: {c['steps']} steps, loss {c['loss_first']:.3f} -> {c['loss_last']:.3f}",
        f"train-sft: {s['steps']} steps, loss {s['loss_first']:.3f} -> {s['loss_last']:.3f}",
    ]


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
        progress=False,
    )
    ctx["eval_table"] = res["table"]
    return _lines(res["runs"]) + render(res["table"].slice(0, 1)).splitlines()


def steps() -> list[Step]:
    r_dg, t_dg = _retrieve(("domain", "general"))
    r_f, t_f = _retrieve(("final",))
    p = lambda cfg: cfg.pipeline  # noqa: E731
    needs_judge = lambda cfg: cfg.preference.judge in ("llm", "zero-shot")  # noqa: E731
    return [
        Step("ingest", _ingest, lambda lake, cfg, ctx: "files not in the ingest ledger"),
        Step(
            "train-qg-domain",
            _train_qg("domain"),
            lambda *a: "seed QA pairs",
            lambda cfg: p(cfg).train_qg,
        ),
        Step(
            "train-qg-general",
            _train_qg("general"),
            lambda *a: "seed QA pairs",
            lambda cfg: p(cfg).train_qg,
        ),
        Step(
            "questions", _questions(("domain", "general")), _questions_todo(("domain", "general"))
        ),
        Step("retrieve", r_dg, t_dg),
        Step(
            "prefer-rule",
            _prefer_rule,
            lambda lake, cfg, ctx: (
                _count(lake, "select count(distinct pmid) from questions") + " documents"
            ),
        ),
        Step(
            "train-judge",
            _train_judge,
            lambda *a: "rule-labelled pairs",
            lambda cfg: p(cfg).train_judge and cfg.preference.judge == "llm",
        ),
        Step(
            "prefer-judge",
            _prefer_judge,
            lambda lake, cfg, ctx: (
                _count(lake, "select count(*) from preferences where judge = 'rule'") + " pairs"
            ),
            needs_judge,
        ),
        Step(
            "train-dpo",
            _dpo,
            lambda lake, cfg, ctx: (
                _count(
                    lake, "select count(*) from preferences where judge = ?", [cfg.preference.judge]
                )
                + " preference pairs"
            ),
            lambda cfg: p(cfg).dpo,
        ),
        Step(
            "final-questions",
            _questions(("final",)),
            _questions_todo(("final",)),
            lambda cfg: p(cfg).dpo,
        ),
        Step("retrieve-final", r_f, t_f, lambda cfg: p(cfg).dpo),
        Step(
            "answer",
            _answer,
            lambda lake, cfg, ctx: (
                _count(
                    lake,
                    "select count(*) from questions where agent in ('final') and question_id not "
                    "in (select question_id from answers)",
                )
                + " questions"
            ),
            lambda cfg: p(cfg).answer,
        ),
        Step("export", _export, lambda *a: "corpus_cpt, corpus_sft", lambda cfg: p(cfg).export),
        Step(
            "downstream",
            _downstream,
            lambda *a: "CPT then SFT of the target",
            lambda cfg: p(cfg).downstream,
        ),
        Step(
            "evaluate",
            _evaluate,
            lambda lake, cfg, ctx: (
                f"{cfg.pipeline.eval_sample or 500} PubMedQA test items x 2 models"
            ),
            lambda cfg: p(cfg).evaluate,
        ),
    ]


STEP_NAMES = [s.name for s in steps()]


def _release_models() -> None:
    import sys

    gen = sys.modules.get("mkailin.backends.generation")
    if gen is not None:
        gen.release_models()


def _done(lake: Lake, name: str, config_hash: str) -> bool:
    return bool(
        lake.query(
            "select 1 from runs where stage = ? and status = 'finished' and config_hash = ? limit 1",
            [f"pipeline:{name}", config_hash],
        )
    )


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
    ctx: dict = {"inputs": resolve_inputs(cfg, data)}
    h = cfg.hash()
    chosen = [s for s in steps() if s.enabled(cfg)]
    names = [s.name for s in chosen]
    if start and start not in names:
        raise InputError(f"step {start!r} is switched off in this config")
    i0 = names.index(start) if start else 0
    i1 = names.index(until) + 1 if until and until in names else len(chosen)
    summary = {"config_hash": h, "ran": [], "skipped": [], "seconds": {}}
    for i, step in enumerate(chosen):
        if i < i0 or i >= i1:
            continue
        forced = start is not None
        done = not forced and _done(lake, step.name, h)
        if dry_run:
            state = "done" if done else f"would process {step.todo(lake, cfg, ctx)}"
            echo(f"{step.name:<18} {state}")
            continue
        if done:
            summary["skipped"].append(step.name)
            echo(f"[{step.name}] done for config {h}: skipped")
            continue
        echo(f"[{step.name}]")
        t0 = time.perf_counter()
        run_id = f"pipeline-{step.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        log_event(lake, run_id, f"pipeline:{step.name}", "started", config_hash=h)
        try:
            lines = step.run(lake, cfg, ctx)
        except BaseException as e:
            log_event(
                lake,
                run_id,
                f"pipeline:{step.name}",
                "failed",
                config_hash=h,
                error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:2000],
            )
            raise
        secs = time.perf_counter() - t0
        _release_models()
        log_event(
            lake,
            run_id,
            f"pipeline:{step.name}",
            "finished",
            config_hash=h,
            detail=json.dumps({"seconds": round(secs, 2)}),
        )
        for line in lines:
            echo(f"  {line}")
        summary["ran"].append(step.name)
        summary["seconds"][step.name] = secs
    summary["ctx"] = ctx
    if not dry_run:
        lake.sync_catalog()
    return summary
