"""The run log: one run-id recipe and one writer of run events for every stage, training run,
ingest and export. Events are appended to ``run_events``; the ``runs`` view (``sql/004``) gives
each run's status: running, finished, skipped, failed, interrupted or killed (a later run found
its process gone)."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator

import pyarrow as pa

from mkailin.lake import Lake, now


def new_run_id(stage: str) -> str:
    """``<stage>-<YYYYmmdd-HHMMSS>-<6 hex>``, with ``:`` in the stage name turned to ``-``."""
    return f"{stage.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def write_event(
    lake: Lake,
    run_id: str,
    stage_name: str,
    event: str,
    *,
    models: dict | None = None,
    config_hash: str = "",
    scorer: str = "",
    executor: str = "local",
    **kw,
) -> None:
    row = {
        "run_id": run_id,
        "stage": stage_name,
        "event": event,
        "event_time": now(),
        "config_hash": config_hash,
        "models": json.dumps(models or {}, sort_keys=True),
        "scorer": scorer,
        "executor": executor,
        "pid": os.getpid(),
        **kw,
    }
    lake.write_part("run_events", pa.Table.from_pylist([row]))


def log_event(lake: Lake, run_id: str, stage_name: str, event: str, **kw) -> None:
    """Log a run event. A start first marks earlier runs of the stage whose process is gone as
    killed, and names the latest (``resumed_from``)."""
    if event == "started" and "resumed_from" not in kw:
        kw["resumed_from"] = reap_dead_runs(lake, stage_name)
    write_event(lake, run_id, stage_name, event, **kw)


@contextlib.contextmanager
def logged_run(lake: Lake, stage_name: str, **start) -> Iterator[dict]:
    """Log a run of work that is not a batch stage (ingest, export): ``started`` before the
    body, then ``finished`` with what the body put in the dict it receives (``rows_in``,
    ``rows_out``, ``detail``), or ``skipped`` / ``interrupted`` / ``failed`` with the error."""
    run_id = new_run_id(stage_name)
    out: dict = {"run_id": run_id}
    log_event(lake, run_id, stage_name, "started", **start)
    try:
        yield out
    except BaseException as e:
        event, error = run_end(e)
        with contextlib.suppress(Exception):  # a full disk must not hide the first error
            log_event(lake, run_id, stage_name, event, error=error)
        raise
    end = {k: out[k] for k in ("rows_in", "rows_out", "detail") if k in out}
    log_event(lake, run_id, stage_name, "finished", **end)


def run_end(e: BaseException) -> tuple[str, str]:
    """The run event and error text for an exception that ended a run: ``interrupted`` for
    Ctrl-C, ``skipped`` (with the reason) when a step had too little data, else ``failed``."""
    from mkailin.errors import StepSkipped

    if isinstance(e, KeyboardInterrupt):
        return "interrupted", "interrupted (Ctrl-C)"
    if isinstance(e, StepSkipped):
        return "skipped", str(e)[:2000]
    msg = str(e).splitlines()[0] if str(e) else ""
    return "failed", f"{type(e).__name__}: {msg}"[:2000]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_runs(lake: Lake, stage_name: str) -> str | None:
    """Mark runs of ``stage_name`` whose process is gone as killed; return the latest such id."""
    rows = lake.query(
        "select run_id, pid from runs where stage = ? and status = 'running' order by started",
        [stage_name],
    )
    last = None
    for run_id, pid in rows:
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            continue
        row = {
            "run_id": run_id,
            "stage": stage_name,
            "event": "killed",
            "event_time": now(),
            "pid": pid,
            "error": "the process ended without finishing (killed or crashed)",
        }
        lake.write_part("run_events", pa.Table.from_pylist([row]))
        last = run_id
    if last is None:
        prev = lake.query(
            "select run_id from runs where stage = ? and status in ('killed', 'failed', 'interrupted') "
            "order by started desc limit 1",
            [stage_name],
        )
        last = prev[0][0] if prev else None
    return last
