"""Which upstream output a command reads: it is chosen by what the lake holds and the settings
recorded with it, not recomputed from the config.

- Contexts are identified by (retriever label, k): ``retrieve`` writes ``top_k`` and its
  ``run_id`` on every row and records method, encoder and k in its run.
- Preferences are identified by (judge, scorer label) and their ``run_id``.

A command picks, in order: the run named by ``--from-run``; else, among the sets the lake holds
that fit the settings given on the command line (``--retriever``, ``-k``, ``--judge``), the
newest finished run's; else the config's, when the lake holds it. When nothing fits it raises a
:class:`StageError` that lists what the lake holds and the command that would make what is
missing. The chosen settings are applied to a copy of the config (one path for overrides), and
:func:`describe` says which run was read, for the command to print.

The pipeline (``mkailin run``, the demo) passes its config's settings explicitly, so ablations
that share a lake each read their own outputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from mkailin.config import Config
from mkailin.errors import StageError
from mkailin.labels import retriever_label
from mkailin.lake import Lake


@dataclass
class Source:
    what: str  # "contexts" | "preferences"
    settings: dict
    run_id: str | None
    rows: int

    def describe(self) -> str:
        s = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        run = f"run {self.run_id}" if self.run_id else "rows written before runs were recorded"
        return f"reading {self.what} from {run} ({s}; {self.rows:,} rows)"


# ------------------------------------------------------------------------------ contexts
def _held_contexts(lake: Lake, cfg: Config) -> list[dict]:
    """Every (retriever, k) set in ``contexts``, newest run first. Rows written before ``top_k``
    was recorded count as the config's k."""
    rows = lake.query(
        """
        select c.retriever, coalesce(c.top_k, ?) as k, count(*) as n,
               max(r.finished) as finished, arg_max(c.run_id, r.finished) as run_id
        from contexts as c
        left join runs as r on r.run_id = c.run_id and r.status = 'finished'
        group by 1, 2
        order by finished desc nulls last, 1, 2""",
        [cfg.retrieval.k],
    )
    return [{"retriever": r, "k": int(k), "rows": n, "run_id": run} for r, k, n, _, run in rows]


def _apply_contexts(cfg: Config, label: str, k: int) -> Config:
    out = copy.deepcopy(cfg)
    method, _, encoder = label.partition(":")
    out.retrieval.retriever = method
    out.retrieval.k = k
    if encoder:
        r = out.retrieval
        if encoder == (r.domain_encoder if r.encoder == "domain" else r.general_encoder):
            pass
        elif encoder == r.general_encoder:
            r.encoder = "general"
        elif encoder == r.domain_encoder:
            r.encoder = "domain"
        else:
            r.encoder = "general"
            r.general_encoder = encoder
    return out


def pick_contexts(
    lake: Lake,
    cfg: Config,
    retriever: str | None = None,
    k: int | None = None,
    from_run: str | None = None,
) -> tuple[Config, Source]:
    """The contexts a downstream command reads, and ``cfg`` set to them."""
    held = _held_contexts(lake, cfg)
    if from_run:
        hit = [h for h in held if h["run_id"] == from_run]
        if not hit:
            raise StageError(
                f"no contexts from run {from_run!r}; the lake holds: {_list_contexts(held)}"
            )
        h = hit[0]
    else:
        want_label = retriever_label(cfg, retriever) if retriever else None
        fits = [
            h
            for h in held
            if (want_label is None or h["retriever"] == want_label) and (k is None or h["k"] == k)
        ]
        own = (retriever_label(cfg), cfg.retrieval.k)
        if not fits:
            label = want_label or own[0]
            kk = k or own[1]
            method = label.partition(":")[0]
            raise StageError(
                f"the lake has no contexts from the retriever {label} with k {kk} (it holds: "
                f"{_list_contexts(held)}): run `mkailin retrieve --retriever {method} -k {kk}`"
            )
        h = fits[0]
    src = Source(
        "contexts", {"retriever": h["retriever"], "k": h["k"]}, h["run_id"], int(h["rows"])
    )
    return _apply_contexts(cfg, h["retriever"], h["k"]), src


def _list_contexts(held: list[dict]) -> str:
    if not held:
        return "nothing"
    return "; ".join(
        f"{h['retriever']} k {h['k']} ({h['rows']:,} rows"
        + (f", run {h['run_id']})" if h["run_id"] else ")")
        for h in held
    )


# ------------------------------------------------------------------------------ preferences
def _held_preferences(lake: Lake) -> list[dict]:
    rows = lake.query(
        """
        select p.judge, p.scorer, count(*) as n, max(r.finished) as finished,
               arg_max(p.run_id, r.finished) as run_id
        from preferences as p
        left join runs as r on r.run_id = p.run_id and r.status = 'finished'
        group by 1, 2
        order by finished desc nulls last, 1, 2"""
    )
    return [{"judge": j, "scorer": s, "rows": n, "run_id": run} for j, s, n, _, run in rows]


def _apply_scorer(cfg: Config, scorer: str | None) -> Config:
    """``cfg`` with its preference scorer set from a label such as ``lin/corpus/mean/top4`` or
    ``kailin/mean/top4``."""
    out = copy.deepcopy(cfg)
    if not scorer:
        return out
    parts = scorer.split("/")
    p = out.preference
    if parts[0].startswith("kailin") and len(parts) == 3:
        p.scorer, p.aggregate = parts[0], parts[1]
    elif len(parts) == 4:
        p.scorer, p.ic, p.aggregate = parts[0], parts[1], parts[2]
    else:
        return out
    if parts[-1].startswith("top") and parts[-1][3:].isdigit():
        out.retrieval.k = int(parts[-1][3:])
    return out


def pick_preferences(
    lake: Lake, cfg: Config, judge: str | None = None, from_run: str | None = None
) -> tuple[Config, Source]:
    """The preference set DPO learns from, and ``cfg`` set to it (judge and scorer)."""
    held = _held_preferences(lake)
    if from_run:
        fits = [h for h in held if h["run_id"] == from_run]
    else:
        fits = [h for h in held if judge is None or h["judge"] == judge]
    if not fits:
        j = judge or cfg.preference.judge
        raise StageError(
            "the lake has no preferences"
            + (f" from run {from_run!r}" if from_run else f" from the '{j}' judge")
            + f" (it holds: {_list_preferences(held)}): run `mkailin prefer --judge {j}`"
        )
    h = fits[0]
    out = _apply_scorer(cfg, h["scorer"] if h["judge"] == "rule" else None)
    out.preference.judge = h["judge"]
    settings = {"judge": h["judge"]}
    if h["judge"] == "rule":
        settings["scorer"] = h["scorer"]
    return out, Source("preferences", settings, h["run_id"], int(h["rows"]))


def _list_preferences(held: list[dict]) -> str:
    if not held:
        return "nothing"
    return "; ".join(f"{h['judge']} {h['scorer'] or ''} ({h['rows']:,} rows)".strip() for h in held)


# ------------------------------------------------------------------------------ questions
def describe_questions(lake: Lake, cfg: Config, agents: tuple[str, ...]) -> str:
    """Which questions a command reads: each agent's model label and prompt under ``cfg``, with
    the rows the lake holds of them (questions of other configs sharing the lake are not
    read)."""
    from mkailin.labels import question_versions, questions_where

    parts = []
    for agent in agents:
        where, params = questions_where(lake, cfg, (agent,), alias="")
        (n,) = lake.query(
            f"select count(*) from questions where {where} and question is not null", params
        )[0]
        versions = " or ".join(f"{m}, prompt {p}" for m, p in question_versions(lake, cfg, agent))
        parts.append(f"{agent} ({versions}; {n:,} rows)")
    return "reading questions of " + "; ".join(parts)
