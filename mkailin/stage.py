"""Model stages: an input query, a batch function, an output table; the runner does the rest.

A :class:`Stage` names

- ``input_sql``: SQL over the lake that yields every row the stage should ever process;
- ``key``: the columns that identify a unit of work, present in the input and the output;
- ``fn``: a batch function class, built once per worker (``fn(*fn_args)``) and then called with
  an Arrow table of input rows, returning an Arrow table of output rows;
- ``output``: the output table, and ``output_filter`` (with ``output_params``) selecting the
  output rows that belong to this stage (e.g. ``agent = ?``).

The runner anti-joins the input with what the output (and the stage's quarantine) already holds,
so a killed run re-runs only what is missing. Each batch is written as one atomic part file,
so a SIGKILL loses at most the batches in flight and never leaves a half-written or duplicated
row. Every run is logged in ``run_events`` (the ``runs`` view).

Columns of the batch function's output that start with ``_`` are for the runner:
``_error`` (a non-NULL value sends the row to ``quarantine`` instead of the output, keyed by
the stage key), ``_raw`` (the excerpt kept with it), and ``_tokens_in``, ``_tokens_out``,
``_cost_usd`` (summed into the run's usage).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from mkailin import failpoints, schema
from mkailin.errors import MissingDependencyError, StageError
from mkailin.lake import Lake, arrow_reader, check_name, fetch_arrow, now, quote_ident
from mkailin.runs import (  # noqa: F401  (log_event, run_end: the run log, for callers)
    log_event,
    new_run_id,
    reap_dead_runs,
    run_end,
    write_event,
)

USAGE_COLUMNS = ("_tokens_in", "_tokens_out", "_cost_usd")


@dataclass
class Stage:
    name: str
    input_sql: str
    output: str
    key: tuple[str, ...]
    fn: type
    fn_args: tuple = ()
    input_params: list = field(default_factory=list)
    output_filter: str = "true"
    output_params: list = field(default_factory=list)
    batch_size: int = 32
    models: dict = field(default_factory=dict)
    config_hash: str = ""
    scorer: str = ""
    order_by: str = ""  # keep batches in a stable order (defaults to the key)
    resources: dict = field(default_factory=dict)  # Ray: {"num_gpus": 1, "num_cpus": 1}
    output_schema: pa.Schema | None = None  # needed when the output is not a contract table
    sink: object | None = None  # where output rows go; default: the Parquet table `output`


@dataclass
class RunResult:
    run_id: str
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    quarantined: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    status: str = "finished"
    skipped: int = 0  # rows the output already held
    worker_batches: dict[str, int] = field(default_factory=dict)  # Ray: batches per actor

    def lines(self) -> list[str]:
        usage = ""
        if self.tokens_in or self.tokens_out:
            usage = f", tokens {self.tokens_in:,} in / {self.tokens_out:,} out"
            if self.cost_usd:
                usage += f", ${self.cost_usd:.4f}"
        return [
            f"{self.stage}: {self.rows_in:,} to do ({self.skipped:,} already done), "
            f"{self.rows_out:,} written, {self.quarantined:,} quarantined in "
            f"{self.seconds:.1f} s{usage} [run {self.run_id}]"
        ]


# ------------------------------------------------------------------------------ sinks
class ParquetSink:
    """Output rows as atomic Parquet part files of a lake table (the default)."""

    def __init__(self, table: str, table_schema: pa.Schema | None = None):
        self.table = check_name(table)
        self.schema = table_schema

    def prepare(self, lake: Lake, stage: Stage) -> None:
        if self.table in schema.TABLES or self.schema is not None:
            lake.ensure_table(self.table, self.schema)
        elif not lake.has_table(self.table):
            raise StageError(
                f"{stage.name}: output table '{self.table}' does not exist and the "
                "stage gives no output_schema"
            )

    def done_relation(self, lake: Lake, con, stage: Stage) -> str:
        return quote_ident(self.table)

    def write(self, lake: Lake, rows: pa.Table) -> None:
        lake.write_part(self.table, rows)


class LanceSink:
    """Output rows appended to a LanceDB table under ``lake/vectors``. Each append is one Lance
    commit, so a reader (or a resumed run) sees a batch whole or not at all."""

    def __init__(self, table: str, table_schema: pa.Schema):
        self.table = check_name(table)
        self.schema = table_schema

    def _db(self, lake: Lake):
        import lancedb

        return lancedb.connect(str(lake.vectors_dir))

    def open(self, lake: Lake):
        db = self._db(lake)
        if self.table in _lance_tables(db):
            return db.open_table(self.table)
        return None

    def prepare(self, lake: Lake, stage: Stage) -> None:
        lake.vectors_dir.mkdir(parents=True, exist_ok=True)

    def done_relation(self, lake: Lake, con, stage: Stage) -> str:
        tbl = self.open(lake)
        keys = list(stage.key)
        done = (
            scan(tbl, keys)
            if tbl is not None
            else pa.schema([self.schema.field(k) for k in keys]).empty_table()
        )
        name = f"__done_{self.table}"
        con.register(name, done)
        return name

    def write(self, lake: Lake, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        rows = rows.select(self.schema.names).cast(self.schema)
        failpoints.hit("lance-write")
        tbl = self.open(lake)
        if tbl is None:
            self._db(lake).create_table(self.table, rows)
        else:
            tbl.add(rows)


def _lance_tables(db) -> list[str]:
    names = db.list_tables() if hasattr(db, "list_tables") else db.table_names()
    return list(getattr(names, "tables", names))


def scan(tbl, columns: list[str]) -> pa.Table:
    """Every row of a LanceDB table, only the given columns."""
    n = tbl.count_rows()
    if n == 0:
        return pa.schema([tbl.schema.field(c) for c in columns]).empty_table()
    return tbl.search().select(columns).limit(n).to_arrow().select(columns)


# ------------------------------------------------------------------------------ SQL
def _key_expr(alias: str, key: tuple[str, ...]) -> str:
    cols = [f"cast({alias}.{quote_ident(k)} as varchar)" for k in key]
    return cols[0] if len(cols) == 1 else "concat_ws('|', " + ", ".join(cols) + ")"


def todo_sql(
    stage: Stage, include_quarantined: bool = False, done_relation: str | None = None
) -> tuple[str, list]:
    """The input rows the output does not hold yet (nor the quarantine, unless asked)."""
    out = done_relation or quote_ident(check_name(stage.output))
    keys = ", ".join(quote_ident(k) for k in stage.key)
    on = " and ".join(f"i.{quote_ident(k)} = o.{quote_ident(k)}" for k in stage.key)
    sql = (
        f"select i.* from ({stage.input_sql}) as i "
        f"where not exists (select 1 from (select {keys} from {out} where {stage.output_filter}) "
        f"as o where {on})"
    )
    params = [*stage.input_params, *stage.output_params]
    if not include_quarantined:
        sql += (
            f" and {_key_expr('i', stage.key)} not in "
            "(select record_key from quarantine where source = ? and record_key is not null)"
        )
        params.append(stage.name)
    order = stage.order_by or ", ".join(f"i.{quote_ident(k)}" for k in stage.key)
    return sql + f" order by {order}", params


def count_done(con, done_relation: str, stage: Stage) -> int:
    return con.execute(
        f"select count(*) from {done_relation} where {stage.output_filter}", stage.output_params
    ).fetchall()[0][0]


# ------------------------------------------------------------------------------ runs log
def _event(lake: Lake, run_id: str, stage: Stage, event: str, executor: str, **kw) -> None:
    write_event(
        lake,
        run_id,
        stage.name,
        event,
        models=stage.models,
        config_hash=stage.config_hash,
        scorer=stage.scorer,
        executor=executor,
        **kw,
    )


# ------------------------------------------------------------------------------ batches
def split_output(out: pa.Table, stage: Stage, run_id: str) -> tuple[pa.Table, list[dict], dict]:
    """Separate rows, quarantine rows and usage figures in a batch function's output."""
    usage = {c: 0 for c in USAGE_COLUMNS}
    for c in USAGE_COLUMNS:
        if c in out.column_names:
            usage[c] = pc.sum(out.column(c)).as_py() or 0
    bad: list[dict] = []
    if "_error" in out.column_names:
        err = out.column("_error")
        is_bad = pc.is_valid(err)
        if pc.any(is_bad).as_py():
            rejected = out.filter(is_bad)
            raw = rejected.column("_raw").to_pylist() if "_raw" in out.column_names else None
            keys = [rejected.column(k).to_pylist() for k in stage.key]
            for i, e in enumerate(rejected.column("_error").to_pylist()):
                bad.append(
                    {
                        "source": stage.name,
                        "file": None,
                        "record_key": "|".join(str(k[i]) for k in keys),
                        "error": e,
                        "raw_excerpt": raw[i] if raw else None,
                        "action": "dropped",
                        "run_id": run_id,
                    }
                )
            out = out.filter(pc.invert(is_bad))
    keep = [c for c in out.column_names if not c.startswith("_")]
    return out.select(keep), bad, usage


class _Progress:
    def __init__(self, total: int, desc: str, enabled: bool | None):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="row",
            leave=False,
            disable=None if enabled is None else not enabled,
        )

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _local_batches(fn_cls: type, fn_args: tuple, reader: Iterator[pa.Table]) -> Iterator[tuple]:
    fn = fn_cls(*fn_args)
    for batch in reader:
        yield batch.num_rows, fn(batch)


class _Tagged:
    """A batch function whose output names the worker that made it (``_worker``), so a Ray run
    records how many batches each actor did."""

    def __init__(self, fn_cls, *args):
        import socket

        self.fn = fn_cls(*args)
        self.tag = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = self.fn(batch)
        return out.append_column(WORKER, pa.array([self.tag] * out.num_rows, pa.string()))


WORKER = "_worker"


def _ray_batches(stage: Stage, todo: pa.Table, cfg) -> Iterator[tuple]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("ray", "ray", "the Ray executor") from None
    if not ray.is_initialized():
        init = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if cfg.ray_address:
            init["address"] = cfg.ray_address
        else:
            # a local instance: workers import what the driver can (its sys.path)
            init["runtime_env"] = {
                "env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            }
            if cfg.ray_num_cpus:
                init["num_cpus"] = cfg.ray_num_cpus
        ray.init(**init)
    # one block per batch, so the actor pool shares them out (one block would go to one actor)
    n = todo.num_rows
    blocks = [todo.slice(i, stage.batch_size) for i in range(0, n, stage.batch_size)] or [todo]
    ds = ray.data.from_arrow(blocks)
    res = dict(stage.resources)
    if cfg.ray_num_gpus:
        res["num_gpus"] = cfg.ray_num_gpus
    # a fixed pool; one batch in flight per actor, so the first actor to finish loading its
    # model does not queue up the batches the others would have taken
    pool = ray.data.ActorPoolStrategy(
        size=max(1, cfg.ray_concurrency), max_tasks_in_flight_per_actor=1
    )
    mapped = ds.map_batches(
        _Tagged,
        fn_constructor_args=(stage.fn, *stage.fn_args),
        batch_size=stage.batch_size,
        batch_format="pyarrow",
        compute=pool,
        **res,
    )
    for out in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield None, out


def run_stage(
    lake: Lake,
    stage: Stage,
    executor: str = "local",
    runtime=None,
    progress: bool | None = None,
    limit: int = 0,
    retry_quarantined: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``stage`` until its output holds every input row. Resumes where a killed run stopped.

    ``limit`` caps the rows processed by this call (0 = all).
    """
    from mkailin.config import RuntimeConfig

    runtime = runtime or RuntimeConfig()
    check_name(stage.output)
    run_id = new_run_id(stage.name)
    t0 = time.perf_counter()
    result = RunResult(run_id=run_id, stage=stage.name)
    sink = stage.sink or ParquetSink(stage.output, stage.output_schema)
    with lake.lock(f"stage {stage.name}"):
        sink.prepare(lake, stage)
        resumed_from = reap_dead_runs(lake, stage.name)
        con = lake.connect()
        try:
            done_rel = sink.done_relation(lake, con, stage)
            sql, params = todo_sql(stage, retry_quarantined, done_rel)
            total = con.execute(f"select count(*) from ({sql})", params).fetchall()[0][0]
            result.skipped = count_done(con, done_rel, stage)
        except duckdb.Error as e:
            con.close()
            raise StageError(
                f"{stage.name}: the input query failed: {str(e).splitlines()[0]}"
            ) from None
        if limit:
            total = min(total, limit)
            sql += f" limit {int(limit)}"
        result.rows_in = total
        if total == 0:
            con.close()
            result.seconds = time.perf_counter() - t0
            result.status = "skipped"
            return result
        _event(lake, run_id, stage, "started", executor, rows_in=total, resumed_from=resumed_from)
        out_schema = schema.TABLES.get(stage.output) or stage.output_schema
        wants_run_id = out_schema is not None and "run_id" in out_schema.names
        bar = _Progress(total, stage.name, progress)
        try:
            if executor == "ray":
                todo = fetch_arrow(con, sql, params)
                con.close()
                batches = _ray_batches(stage, todo, runtime)
            elif executor == "local":
                reader = arrow_reader(con, sql, params, stage.batch_size)
                tables = (pa.Table.from_batches([b]) for b in reader)
                batches = _local_batches(stage.fn, stage.fn_args, tables)
            else:
                raise StageError(f"unknown executor {executor!r} (local or ray)")
            for n_in, out in batches:
                if WORKER in out.column_names:
                    for w in set(out.column(WORKER).to_pylist()):
                        result.worker_batches[w] = result.worker_batches.get(w, 0) + 1
                    out = out.drop_columns([WORKER])
                rows, bad, usage = split_output(out, stage, run_id)
                if wants_run_id and "run_id" not in rows.column_names:
                    rows = rows.append_column(
                        "run_id", pa.array([run_id] * rows.num_rows, pa.string())
                    )
                with lake.transaction():  # a batch's rows and quarantine rows: one commit
                    if bad:
                        lake.write_part(
                            "quarantine",
                            schema.conform(
                                "quarantine",
                                pa.Table.from_pylist([{**b, "created_at": now()} for b in bad]),
                            ),
                        )
                    sink.write(lake, rows)
                result.rows_out += rows.num_rows
                result.quarantined += len(bad)
                result.tokens_in += int(usage["_tokens_in"])
                result.tokens_out += int(usage["_tokens_out"])
                result.cost_usd += float(usage["_cost_usd"])
                done = n_in if n_in is not None else rows.num_rows + len(bad)
                bar.update(done)
                if on_batch:
                    on_batch(done)
        except BaseException as e:
            bar.close()
            result.seconds = time.perf_counter() - t0
            result.status, error = run_end(e)
            _event(
                lake,
                run_id,
                stage,
                result.status,
                executor,
                rows_in=total,
                rows_out=result.rows_out,
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=result.cost_usd,
                error=error,
            )
            raise
        finally:
            try:
                con.close()
            except duckdb.Error:
                pass
        bar.close()
        result.seconds = time.perf_counter() - t0
        _event(
            lake,
            run_id,
            stage,
            "finished",
            executor,
            rows_in=total,
            rows_out=result.rows_out,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            detail=json.dumps(
                {
                    "quarantined": result.quarantined,
                    "seconds": round(result.seconds, 3),
                    **({"worker_batches": result.worker_batches} if result.worker_batches else {}),
                }
            ),
        )
        lake.sync_catalog()
    return result


# ------------------------------------------------------------------------------ DuckDB UDFs
def register_udf(
    con: duckdb.DuckDBPyConnection,
    name: str,
    fn_cls: type,
    fn_args: tuple,
    input_columns: list[str],
    output_column: str,
    param_types: list | None = None,
    return_type=None,
) -> None:
    """Expose a batch function as a vectorised DuckDB function for ad-hoc SQL.

    ``select my_fn(abstract) from articles`` calls ``fn_cls(*fn_args)`` (built once) on Arrow
    batches of the arguments, named ``input_columns``, and returns ``output_column``.
    """
    fn = fn_cls(*fn_args)

    def udf(*arrays):
        batch = pa.table(dict(zip(input_columns, arrays, strict=True)))
        out = fn(batch)
        return out.column(output_column)

    try:
        from duckdb import sqltypes
    except ImportError:  # DuckDB 1.x
        from duckdb import typing as sqltypes

    con.create_function(
        name,
        udf,
        param_types or [sqltypes.VARCHAR] * len(input_columns),
        return_type or sqltypes.VARCHAR,
        type="arrow",
    )
