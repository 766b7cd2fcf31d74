"""``mkailin status``: the runs log, readable.

A run's state is the last event the run log holds for it: ``running``, ``finished``, ``skipped``
(too little data; the reason is its error), ``failed``, ``interrupted`` (stopped by Ctrl-C;
rerunning the command resumes it) or ``killed`` (its process is gone: a later run recorded it,
or status finds the pid of a ``running`` run dead on this machine). Runs logged before
``interrupted`` existed recorded Ctrl-C as a failure with a ``KeyboardInterrupt`` error; they
are shown as interrupted too. Any other state a newer writer records is shown as it is.
"""

from __future__ import annotations

import json

import pyarrow as pa

from mkailin.lake import Lake
from mkailin.runs import pid_alive

# the state of a run: Ctrl-C is an interruption, not a failure, however the writer logged it
_STATE = """
    case
        when status = 'failed' and error like 'KeyboardInterrupt%' then 'interrupted'
        else coalesce(status, 'unknown')
    end
"""


# a stage run's identity: the models (with adapters and prompts) and the scorer it ran with, so
# that two configs sharing a lake show up side by side
_IDENTITY = "stage, coalesce(models, ''), coalesce(scorer, '')"


def settings_text(models: str | None, scorer: str | None) -> str:
    """A run's recorded settings in one short line: ``domain smollm2, prompt qg-domain-v1``."""
    parts = []
    try:
        m = json.loads(models) if models else {}
    except ValueError:
        m = {}
    # the role's model first, then what qualifies it
    last = ("adapter", "prompt")
    items = sorted((m or {}).items(), key=lambda kv: kv[0] in last)
    for k, v in items:
        if v not in (None, ""):
            v = str(v)
            parts.append(f"{k} {v.rsplit('/', 1)[-1] if k == 'adapter' else v}")
    if scorer:
        parts.append(f"scorer {scorer}")
    return ", ".join(parts)


def status_table(lake: Lake, show_all: bool = False) -> tuple[pa.Table, list[str]]:
    """(the last run of each stage and settings, or every run; one line for each whose latest
    run failed, was killed, was skipped or was interrupted). Runs of one stage with other
    models, prompts or scorer (two configs sharing a lake) are shown side by side, each with
    its ``settings``."""
    last = (
        ""
        if show_all
        else f"qualify row_number() over (partition by {_IDENTITY} order by started desc) = 1"
    )
    table = lake.query_arrow(f"""
        select stage, {_STATE} as status, rows_in, rows_out, round(seconds, 1) as seconds,
               tokens_in, tokens_out, round(cost_usd, 4) as cost_usd,
               strftime(started, '%Y-%m-%d %H:%M:%S') as started, run_id, pid, models, scorer
        from runs
        where stage not like 'pipeline:%' or {str(show_all).lower()}
        {last}
        order by started
    """)
    gone = {
        r["run_id"]
        for r in table.select(["run_id", "status", "pid"]).to_pylist()
        if r["status"] == "running" and r["pid"] is not None and not pid_alive(r["pid"])
    }
    if gone:
        status = [
            "killed" if rid in gone else s
            for rid, s in zip(
                table.column("run_id").to_pylist(), table.column("status").to_pylist()
            )
        ]
        table = table.set_column(
            table.schema.get_field_index("status"), "status", pa.array(status, pa.string())
        )
    settings = [
        settings_text(m, sc)
        for m, sc in zip(table.column("models").to_pylist(), table.column("scorer").to_pylist())
    ]
    table = table.drop_columns(["pid", "models", "scorer"])
    table = table.append_column("settings", pa.array(settings, pa.string()))
    notes = []
    for stage, run_id, state, error, rows_out in lake.query(f"""
        select stage, run_id, {_STATE} as state, error, rows_out from runs
        qualify row_number() over (partition by {_IDENTITY} order by started desc) = 1
        order by started
    """):
        if run_id in gone:
            state, error = "killed", "its process is gone; run the command again to resume"
        if state in ("failed", "killed"):
            notes.append(f"{state}: {stage} ({run_id}): {error or 'no error recorded'}")
        elif state == "skipped":
            notes.append(f"skipped: {stage} ({run_id}): {error or 'no reason recorded'}")
        elif state == "interrupted":
            done = f" after {rows_out:,} rows" if rows_out else ""
            notes.append(f"interrupted: {stage} ({run_id}){done}; run the command again to resume")
    return table, notes


def quarantine_lines(lake: Lake) -> list[str]:
    """One line per source with quarantined rows, counted by reason class."""
    rows = lake.query(
        "select source, coalesce(reason, 'other'), count(*) from quarantine "
        "where action is null or action not in ('kept', 'superseded', 'repaired', 'resynced') "
        "group by 1, 2 order by 1, 3 desc, 2"
    )
    by: dict[str, list[str]] = {}
    for source, reason, n in rows:
        by.setdefault(source or "?", []).append(f"{n:,} {reason}")
    return [f"quarantine: {s}: {', '.join(parts)}" for s, parts in by.items()]


def release_quarantined(lake: Lake, stage: str, reason: str | None = None) -> int:
    """Drop the quarantine rows of ``stage`` (of one reason class, or all) in one commit: the
    stage's next run does those rows again (a row that fails again is quarantined again)."""
    where, params = "source = ?", [stage]
    if reason:
        where += " and coalesce(reason, 'other') = ?"
        params.append(reason)
    with lake.lock(f"retry {stage}"):
        return lake.delete_where("quarantine", where, params)
