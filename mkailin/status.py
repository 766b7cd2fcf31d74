"""``mkailin status``: the runs log, readable."""

from __future__ import annotations

import pyarrow as pa

from mkailin.lake import Lake


def status_table(lake: Lake, show_all: bool = False) -> tuple[pa.Table, list[str]]:
    """(the last run of each stage, or every run; the failures that are still the latest)."""
    last = (
        ""
        if show_all
        else ("qualify row_number() over (partition by stage order by started desc) = 1")
    )
    table = lake.query_arrow(f"""
        select stage, status, rows_in, rows_out, round(seconds, 1) as seconds,
               tokens_in, tokens_out, round(cost_usd, 4) as cost_usd,
               strftime(started, '%Y-%m-%d %H:%M:%S') as started, run_id
        from runs
        where stage not like 'pipeline:%' or {str(show_all).lower()}
        {last}
        order by started
    """)
    # a stage whose latest run failed or was killed, with that run's error
    failures = [
        f"{stage} ({run_id}): {error}"
        for stage, run_id, status, error in lake.query("""
        select stage, run_id, status, error from runs
        qualify row_number() over (partition by stage order by started desc) = 1
        order by started
    """)
        if status in ("failed", "killed")
    ]
    return table, failures
