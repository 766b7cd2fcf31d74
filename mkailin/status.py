"""``mkailin status``: the runs log, readable.

A run's state is the last event the run log holds for it: ``running``, ``finished``, ``skipped``
(too little data; the reason is its error), ``failed``, ``interrupted`` (stopped by Ctrl-C;
rerunning the command resumes it) or ``killed`` (a later run found its process gone). Runs logged before ``interrupted`` existed recorded Ctrl-C as a failure
with a ``KeyboardInterrupt`` error; they are shown as interrupted too. Any other state a newer
writer records is shown as it is.
"""

from __future__ import annotations

import pyarrow as pa

from mkailin.lake import Lake

# the state of a run: Ctrl-C is an interruption, not a failure, however the writer logged it
_STATE = """
    case
        when status = 'failed' and error like 'KeyboardInterrupt%' then 'interrupted'
        else coalesce(status, 'unknown')
    end
"""


def status_table(lake: Lake, show_all: bool = False) -> tuple[pa.Table, list[str]]:
    """(the last run of each stage, or every run; one line for each stage whose latest run
    failed, was killed, was skipped or was interrupted)."""
    last = (
        ""
        if show_all
        else ("qualify row_number() over (partition by stage order by started desc) = 1")
    )
    table = lake.query_arrow(f"""
        select stage, {_STATE} as status, rows_in, rows_out, round(seconds, 1) as seconds,
               tokens_in, tokens_out, round(cost_usd, 4) as cost_usd,
               strftime(started, '%Y-%m-%d %H:%M:%S') as started, run_id
        from runs
        where stage not like 'pipeline:%' or {str(show_all).lower()}
        {last}
        order by started
    """)
    notes = []
    for stage, run_id, state, error, rows_out in lake.query(f"""
        select stage, run_id, {_STATE} as state, error, rows_out from runs
        qualify row_number() over (partition by stage order by started desc) = 1
        order by started
    """):
        if state in ("failed", "killed"):
            notes.append(f"{state}: {stage} ({run_id}): {error or 'no error recorded'}")
        elif state == "skipped":
            notes.append(f"skipped: {stage} ({run_id}): {error or 'no reason recorded'}")
        elif state == "interrupted":
            done = f" after {rows_out:,} rows" if rows_out else ""
            notes.append(f"interrupted: {stage} ({run_id}){done}; run the command again to resume")
    return table, notes
