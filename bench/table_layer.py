"""Candidate table layers for the lake, measured on the same workloads: DuckLake, Delta Lake,
Iceberg (pyiceberg) and mkailin's own ``Lake``.

    /tmp/layerbench/bin/python bench/table_layer.py --layers ducklake,delta,iceberg
    /work/main/.venv/bin/python bench/table_layer.py --layers mkailin

The three external layers need a venv with ``duckdb>=1.4,<1.5``, ``duckdb-ext-ducklake``,
``deltalake``, ``pyiceberg[sql-sqlite]`` and ``pyarrow``; mkailin runs in the project's venv.
Each run merges its layers into ``--out`` (default ``bench/out/table_layer.json``), so the two
runs combine, and prints a markdown table of every layer in the file.

Every layer gets the same seeded synthetic data and is read through DuckDB:

- **ingest**: ``--commits`` commits, each one commit across three tables (``bench_articles``,
  ``bench_article_mesh``, ``bench_ledger``); seconds in all, ms per commit, then a count and a
  join count, each timed cold (a fresh reader: new connection, catalog or log read, then the
  query; in parentheses the part before the query, ~0 where a layer opens lazily) and warm
  (the same reader again, best of 3).
- **mesh**: ``--releases`` times, one commit that replaces ``bench_desc`` and ``bench_tree``;
  seconds per replace, then the count query.
- **small**: ``--small`` one-row appends to ``bench_small``, each its own commit (a layer still
  appending after ``--small-budget`` seconds stops there, and says so); ms per append overall
  and over the first and last 100; the count, the layer's compaction (timed), the count again
  and one more append; files before and after.
- **properties**, tested on the ingest layer: whether a commit across tables is atomic (a write
  to the second table fails; does the first table's write show?); whether a ``shutil.copytree``
  of the folder reads its own older data after one more commit to the original, and still reads
  with the original moved away; whether a reader in another process can read while a writer
  holds the layer mid-commit; files written per commit. And on the mesh layer, after its
  replaces: what DuckDB without extensions reads (the layer's own scan with autoloading off,
  the same in the stock CLI, and a plain ``read_parquet`` glob of the folder, which counts
  files a replace left behind).

Layers without a multi-table transaction (Delta, pyiceberg) commit the tables of one step one
after another. Delta and Iceberg are read in DuckDB by ``read_parquet`` over the data files their
log or manifests list (``delta_scan`` and ``iceberg_scan`` need extensions). pyiceberg has no
compaction: the bench rewrites the table with ``overwrite(scan)`` in its place.
``--ducklake-inline-rows N`` runs DuckLake with data inlining (rows of small commits kept in the
catalog, not in Parquet files), recorded as ``ducklake+inlineN``. The stock ``duckdb`` CLI
(``--duckdb-cli``; default the one on PATH or beside this python) is tried on each layer as
installed. Before each layer the run waits up to ``--wait-quiet`` seconds for other processes
to go idle; the results note the machine, the versions, the cores other processes used (at the
start and during each timed loop) and the load average before and after each layer.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import random
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from loadmeter import Timer, cpu_and_memory, wait_quiet  # bench/ is on sys.path as a script

LAYERS = ("ducklake", "delta", "iceberg", "mkailin")
WORKLOADS = ("ingest", "mesh", "small", "properties")
INGEST = ("bench_articles", "bench_article_mesh", "bench_ledger")
MESH = ("bench_desc", "bench_tree")
SMALL = "bench_small"
COUNT_SQL = "select count(*) from bench_articles"
JOIN_SQL = "select count(*) from bench_articles a join bench_article_mesh m using (pmid)"
SUM_SQL = "select count(*), sum(year) from bench_articles"  # reads column data, not stats
SIZES = (  # the flags recorded with each layer's results
    "commits", "articles", "mesh_per_article", "desc", "tree", "releases", "small", "small_budget",
    "seed",
)  # fmt: skip
MESH_SQL = "select (select count(*) from bench_desc), (select count(*) from bench_tree)"

CELL = 150  # the widest markdown cell; the JSON keeps whole messages

Writes = list[tuple[str, str, pa.Table]]  # (table, "append" | "replace", rows)
Query = Callable[[str], list[tuple]]


class Skip(Exception):
    """The layer cannot run here; the message says why."""


class Unsupported(Exception):
    """The layer has no such operation."""


class InjectedFailure(Exception):
    """Raised inside a commit to test that nothing of it shows."""


# ---------------------------------------------------------------------------------- data
class Data:
    """The seeded synthetic tables, built before any timing starts."""

    def __init__(self, seed: int, articles: int, mesh_per_article: int):
        self.rng = random.Random(seed)
        words = [
            "".join(self.rng.choices(string.ascii_lowercase, k=self.rng.randint(2, 11)))
            for _ in range(5000)
        ]
        self.pool = " ".join(self.rng.choices(words, k=200_000))
        self.articles, self.mesh_per_article = articles, mesh_per_article

    def _text(self, n: int) -> str:
        o = self.rng.randrange(len(self.pool) - n)
        return self.pool[o : o + n]

    def ingest(self, i: int) -> Writes:
        n, rng = self.articles, self.rng
        pmids = list(range(30_000_000 + i * n, 30_000_000 + (i + 1) * n))
        articles = pa.table(
            {
                "pmid": pa.array(pmids, pa.int64()),
                "title": [self._text(rng.randint(60, 100)) for _ in pmids],
                "abstract": [self._text(rng.randint(900, 1500)) for _ in pmids],
                "year": pa.array([rng.randint(1970, 2025) for _ in pmids], pa.int32()),
            }
        )
        m = [p for p in pmids for _ in range(self.mesh_per_article)]
        mesh = pa.table(
            {
                "pmid": pa.array(m, pa.int64()),
                "descriptor_ui": [f"D{rng.randrange(1, 35_000):06d}" for _ in m],
                "major": [rng.random() < 0.3 for _ in m],
            }
        )
        ledger = pa.table(
            {
                "file": [f"pubmed25n{i + 1:04d}.xml.gz"],
                "sha256": [hashlib.sha256(str(i).encode()).hexdigest()],
                "records": pa.array([n], pa.int64()),
            }
        )
        return [
            ("bench_articles", "append", articles),
            ("bench_article_mesh", "append", mesh),
            ("bench_ledger", "append", ledger),
        ]

    def mesh_release(self, n_desc: int, n_tree: int) -> Writes:
        rng = self.rng
        uis = [f"D{k:06d}" for k in range(1, n_desc + 1)]
        desc = pa.table({"ui": uis, "name": [self._text(rng.randint(30, 50)) for _ in uis]})
        tree = pa.table(
            {
                "ui": [rng.choice(uis) for _ in range(n_tree)],
                "tree_number": [
                    f"{rng.choice('ABCDEFGHIJKLMNVZ')}{rng.randrange(1, 27):02d}"
                    f".{rng.randrange(1000):03d}.{rng.randrange(1000):03d}"
                    for _ in range(n_tree)
                ],
            }
        )
        return [("bench_desc", "replace", desc), ("bench_tree", "replace", tree)]

    def small_row(self, i: int) -> Writes:
        t = pa.table({"id": pa.array([i], pa.int64()), "note": [self._text(40)]})
        return [(SMALL, "append", t)]


# ---------------------------------------------------------------------------------- layers
def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _files_view(con: duckdb.DuckDBPyConnection, name: str, files: list[str]) -> None:
    if not files:
        raise RuntimeError(f"table {name} lists no data files")
    listed = ", ".join(_quote(f.removeprefix("file://")) for f in files)
    con.execute(f"create or replace view {name} as select * from read_parquet([{listed}])")


@functools.cache
def _empty_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="noext-")  # removed when the process exits


def _bare_duckdb() -> duckdb.DuckDBPyConnection:
    """DuckDB with only its built-in extensions: none loaded or installed on demand."""
    con = duckdb.connect()
    con.execute("set autoinstall_known_extensions = false")
    con.execute("set autoload_known_extensions = false")
    con.execute(f"set extension_directory = {_quote(_empty_dir().name)}")
    return con


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


class Layer:
    """One table layer in one folder. ``create`` makes it, ``open`` opens an existing one."""

    name = ""
    native_scan = ""  # what DuckDB needs to read it the layer's own way
    multi_table_api = False

    def __init__(self, root: Path):
        self.root = root

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.open()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def commit(self, writes: Writes, fail_at: int | None = None) -> None:
        """One commit of ``writes``; raise ``InjectedFailure`` before write ``fail_at``."""
        raise NotImplementedError

    def reader(self, names: tuple[str, ...]) -> Query:
        """A fresh reader that sees the latest commit of ``names``."""
        raise NotImplementedError

    def compact(self, name: str) -> dict:
        raise Unsupported("no compaction")

    def live_files(self, name: str) -> int | None:
        """Data files the table's current version reads."""
        return None

    @contextlib.contextmanager
    def writer_held(self, writes: Writes) -> Iterator[str]:
        """Hold what a writer holds mid-commit; yields what that is."""
        yield "nothing: no writer lock (optimistic commits)"

    def native_read(self, name: str) -> list[tuple]:
        """Read ``name`` the layer's own way in DuckDB without extensions."""
        raise NotImplementedError

    def cli_args(self, name: str) -> tuple[Path | None, list[str]]:
        """The folder to run the duckdb CLI in and its arguments that count ``name``."""
        raise NotImplementedError

    def glob(self, name: str) -> str:
        """A glob of the table's data files on disk, current or not."""
        raise NotImplementedError


class DuckLake(Layer):
    name = "ducklake"
    native_scan = "ducklake extension (ATTACH 'ducklake:...')"
    multi_table_api = True

    def __init__(self, root: Path, override_data_path: bool = False, inline_rows: int = 0):
        super().__init__(root)
        self.ext = self.extension_path()  # a Skip here says why DuckLake cannot run
        self.con: duckdb.DuckDBPyConnection | None = None
        self.override, self.inline_rows = override_data_path, inline_rows

    @staticmethod
    def extension_path() -> str:
        from importlib import metadata

        try:
            dist = metadata.distribution("duckdb-ext-ducklake")
        except metadata.PackageNotFoundError:
            raise Skip("the duckdb-ext-ducklake wheel is not installed here") from None
        if dist.requires and f"duckdb=={duckdb.__version__}" not in dist.requires:
            raise Skip(
                f"duckdb-ext-ducklake needs {dist.requires}, not duckdb {duckdb.__version__}"
            )
        for f in dist.files or []:
            if f.name == "ducklake.duckdb_extension":
                return str(dist.locate_file(f))
        raise Skip("the duckdb-ext-ducklake wheel holds no ducklake.duckdb_extension")

    def _connect(self, options: str = "") -> None:
        con = duckdb.connect()
        con.execute("set autoinstall_known_extensions = false")
        con.execute(f"load {_quote(self.ext)}")
        meta = f"ducklake:{self.root}/meta.ducklake"
        con.execute(f"attach {_quote(meta)} as lk {options}")
        con.execute("use lk")
        self.con = con

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        opts = f"DATA_PATH {_quote(str(self.root / 'data') + '/')}"
        if self.inline_rows:
            opts += f", DATA_INLINING_ROW_LIMIT {self.inline_rows}"
        self._connect(f"({opts})")

    def open(self) -> None:
        if self.override:
            data = _quote(str(self.root / "data") + "/")
            self._connect(f"(DATA_PATH {data}, OVERRIDE_DATA_PATH true)")
        else:
            self._connect()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def commit(self, writes: Writes, fail_at: int | None = None) -> None:
        con = self.con
        con.begin()
        try:
            for i, (name, mode, table) in enumerate(writes):
                if i == fail_at:
                    raise InjectedFailure
                con.register("_src", table)
                if mode == "replace":
                    con.execute(f"create or replace table {name} as select * from _src")
                else:
                    con.execute(f"create table if not exists {name} as from _src limit 0")
                    con.execute(f"insert into {name} select * from _src")
                con.unregister("_src")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def reader(self, names: tuple[str, ...]) -> Query:
        self.close()  # one process keeps one handle on the catalog file: reopen it
        self.open()
        return lambda sql: self.con.execute(sql).fetchall()

    def compact(self, name: str) -> dict:
        out = {}
        if self.inline_rows:  # inlined rows live in the catalog until flushed to Parquet
            with Timer() as t:
                self.con.execute("call ducklake_flush_inlined_data('lk')")
            out["flush_inlined_s"] = t.seconds
        with Timer() as t:
            self.con.execute("call ducklake_merge_adjacent_files('lk')")
        out["merge_s"] = t.seconds
        with Timer() as t:
            self.con.execute(
                "select count(*) from ducklake_expire_snapshots('lk', older_than => now())"
            ).fetchall()
            self.con.execute(
                "select count(*) from ducklake_cleanup_old_files('lk', cleanup_all => true)"
            ).fetchall()
        out["expire_and_cleanup_s"] = t.seconds
        out["how"] = "ducklake_merge_adjacent_files, expire_snapshots, cleanup_old_files"
        return out

    def live_files(self, name: str) -> int:
        sql = f"select count(*) from ducklake_list_files('lk', {_quote(name)})"
        return self.con.execute(sql).fetchone()[0]

    @contextlib.contextmanager
    def writer_held(self, writes: Writes) -> Iterator[str]:
        self.con.begin()
        try:
            for name, _, table in writes:
                self.con.register("_src", table)
                self.con.execute(f"insert into {name} select * from _src")
            yield "an open transaction on the attached DuckDB-file catalog (uncommitted insert)"
        finally:
            self.con.rollback()

    def native_read(self, name: str) -> list[tuple]:
        con = _bare_duckdb()
        meta = f"ducklake:{self.root}/meta.ducklake"
        con.execute(f"attach {_quote(meta)} as lk (READ_ONLY)")
        return con.execute(f"select count(*) from lk.{name}").fetchall()

    def cli_args(self, name: str) -> tuple[Path | None, list[str]]:
        meta = _quote(f"ducklake:{self.root}/meta.ducklake")
        return None, ["-c", f"attach {meta} as lk (read_only); select count(*) from lk.{name}"]

    def glob(self, name: str) -> str:
        return f"{self.root}/data/main/{name}/*.parquet"

    def relative_data_path(self) -> dict:
        """Where a relative ``DATA_PATH`` puts files (beside the catalog, or in the process's
        working folder), and whether a layer made and opened from its own folder with relative
        paths still reads once copied elsewhere and the original moved away."""
        base = Path(tempfile.mkdtemp(prefix="ducklake-rel-"))
        lake, elsewhere, copy = base / "lake", base / "elsewhere", base / "copy"
        lake.mkdir()
        elsewhere.mkdir()
        here = os.getcwd()

        def count(cwd: Path, sql: str) -> int | str:
            os.chdir(cwd)
            con = duckdb.connect()
            try:
                con.execute(f"load {_quote(self.ext)}")
                con.execute(
                    "attach 'ducklake:meta.ducklake' as r (DATA_PATH 'data/')"
                    if cwd != copy
                    else "attach 'ducklake:meta.ducklake' as r"
                )
                con.execute(sql)
                return con.execute("select count(*) from r.t").fetchone()[0]
            except duckdb.Error as e:
                return _first_line(e)
            finally:
                con.close()
                os.chdir(here)

        try:
            os.chdir(elsewhere)  # the catalog in lake/, the process elsewhere
            con = duckdb.connect()
            con.execute(f"load {_quote(self.ext)}")
            con.execute(
                f"attach {_quote(f'ducklake:{lake}/meta.ducklake')} as r (DATA_PATH 'data/')"
            )
            con.execute("create table r.t as select 1 as a")
            con.close()
            os.chdir(here)
            out = {
                "files_beside_catalog": any((lake / "data").rglob("*.parquet")),
                "files_in_working_folder": any((elsewhere / "data").rglob("*.parquet")),
            }
            shutil.rmtree(lake)
            lake.mkdir()
            count(lake, "create table r.t as select 1 as a")  # made from its own folder
            shutil.copytree(lake, copy)
            os.rename(lake, base / "moved")
            out["copy_opened_from_its_folder"] = count(copy, "select 1")
            return out
        finally:
            os.chdir(here)
            shutil.rmtree(base, ignore_errors=True)


class Delta(Layer):
    name = "delta"
    native_scan = "delta extension (delta_scan)"

    def __init__(self, root: Path):
        super().__init__(root)
        try:
            import deltalake
        except ImportError as e:
            raise Skip(f"deltalake is not installed here ({e})") from None
        self.dl = deltalake

    def _path(self, name: str) -> str:
        return str(self.root / name)

    def commit(self, writes: Writes, fail_at: int | None = None) -> None:
        for i, (name, mode, table) in enumerate(writes):
            if i == fail_at:
                raise InjectedFailure
            mode = "overwrite" if mode == "replace" else "append"
            self.dl.write_deltalake(self._path(name), table, mode=mode)

    def reader(self, names: tuple[str, ...]) -> Query:
        con = duckdb.connect()
        for n in names:
            _files_view(con, n, self.dl.DeltaTable(self._path(n)).file_uris())
        return lambda sql: con.execute(sql).fetchall()

    def compact(self, name: str) -> dict:
        dt = self.dl.DeltaTable(self._path(name))
        with Timer() as t:
            dt.optimize.compact()
        out = {"optimize_s": t.seconds}
        with Timer() as t:
            self.dl.DeltaTable(self._path(name)).vacuum(
                retention_hours=0, enforce_retention_duration=False, dry_run=False
            )
        out["vacuum_s"] = t.seconds
        out["how"] = "optimize.compact(), vacuum(retention_hours=0)"
        return out

    def live_files(self, name: str) -> int:
        return len(self.dl.DeltaTable(self._path(name)).file_uris())

    def native_read(self, name: str) -> list[tuple]:
        return _bare_duckdb().execute(self.cli_args(name)[1][1]).fetchall()

    def cli_args(self, name: str) -> tuple[Path | None, list[str]]:
        return None, ["-c", f"select count(*) from delta_scan({_quote(self._path(name))})"]

    def glob(self, name: str) -> str:
        return f"{self._path(name)}/*.parquet"


class Iceberg(Layer):
    name = "iceberg"
    native_scan = "iceberg extension (iceberg_scan of a metadata.json; not the SQLite catalog)"

    def __init__(self, root: Path):
        super().__init__(root)
        try:
            import pyiceberg.catalog.sql  # noqa: F401
        except ImportError as e:
            raise Skip(f"pyiceberg[sql-sqlite] is not installed here ({e})") from None
        self.catalog = None
        self.tables: dict = {}

    def _load_catalog(self):
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog(
            "bench",
            uri=f"sqlite:///{self.root}/catalog.db",
            warehouse=f"file://{self.root}/warehouse",
        )

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.open()
        self.catalog.create_namespace("bench")

    def open(self) -> None:
        self.catalog, self.tables = self._load_catalog(), {}

    def close(self) -> None:
        if self.catalog is not None:
            self.catalog.engine.dispose()
        self.catalog, self.tables = None, {}

    def _table(self, name: str, schema: pa.Schema | None = None):
        from pyiceberg.exceptions import NoSuchTableError

        if name not in self.tables:
            try:
                self.tables[name] = self.catalog.load_table(("bench", name))
            except NoSuchTableError:
                if schema is None:
                    raise
                self.tables[name] = self.catalog.create_table(("bench", name), schema=schema)
        return self.tables[name]

    def commit(self, writes: Writes, fail_at: int | None = None) -> None:
        for i, (name, mode, table) in enumerate(writes):
            if i == fail_at:
                raise InjectedFailure
            t = self._table(name, table.schema)
            (t.overwrite if mode == "replace" else t.append)(table)

    def _files(self, table) -> list[str]:
        tasks = list(table.scan().plan_files())
        if any(task.delete_files for task in tasks):
            raise RuntimeError("delete files present: read_parquet over data files is wrong")
        return [task.file.file_path for task in tasks]

    def reader(self, names: tuple[str, ...]) -> Query:
        cat, con = self._load_catalog(), duckdb.connect()
        try:
            for n in names:
                _files_view(con, n, self._files(cat.load_table(("bench", n))))
        finally:
            cat.engine.dispose()
        return lambda sql: con.execute(sql).fetchall()

    def compact(self, name: str) -> dict:
        t = self._table(name)
        with Timer() as tm:
            t.overwrite(t.scan().to_arrow())
        return {
            "rewrite_s": tm.seconds,
            "how": "no compaction in pyiceberg; overwrite(scan().to_arrow()) in its place, "
            "old files stay (no orphan-file removal in pyiceberg)",
        }

    def live_files(self, name: str) -> int:
        return len(self._files(self._table(name)))

    def native_read(self, name: str) -> list[tuple]:
        return _bare_duckdb().execute(self.cli_args(name)[1][1]).fetchall()

    def cli_args(self, name: str) -> tuple[Path | None, list[str]]:
        loc = self._table(name).metadata_location.removeprefix("file://")
        return None, ["-c", f"select count(*) from iceberg_scan({_quote(loc)})"]

    def glob(self, name: str) -> str:
        return f"{self.root}/warehouse/bench/{name}/data/*.parquet"


class Mkailin(Layer):
    name = "mkailin"
    native_scan = "nothing: views over read_parquet in mkailin.duckdb (parquet is built in)"
    multi_table_api = True

    def __init__(self, root: Path):
        super().__init__(root)
        try:
            from mkailin.lake import Lake
        except ImportError as e:
            raise Skip(f"cannot import mkailin.lake ({e}); run with /work/main/.venv") from None
        if not hasattr(Lake, "transaction"):
            raise Skip("mkailin.lake.Lake has no transaction() yet")
        self.Lake = Lake
        self.lake = None
        self.stack = contextlib.ExitStack()

    def create(self) -> None:
        self.lake = self.Lake.init(self.root)
        self.stack.enter_context(self.lake.lock("bench"))

    def open(self) -> None:
        self.lake = self.Lake.open(self.root)
        self.stack.enter_context(self.lake.lock("bench"))

    def close(self) -> None:
        self.stack.close()
        self.lake = None

    def commit(self, writes: Writes, fail_at: int | None = None) -> None:
        with self.lake.transaction():
            for i, (name, mode, table) in enumerate(writes):
                if i == fail_at:
                    raise InjectedFailure
                if mode == "replace":
                    self.lake.replace_table(name, table)
                else:
                    self.lake.write_part(name, table)

    def reader(self, names: tuple[str, ...]) -> Query:
        return self.Lake.open(self.root).query

    def compact(self, name: str) -> dict:
        if not hasattr(self.lake, "compact"):
            raise Unsupported("Lake has no compact() yet")
        with Timer() as t:
            self.lake.compact(name)
        return {"compact_s": t.seconds, "how": "Lake.compact"}

    def live_files(self, name: str) -> int | None:
        try:
            return len(self.lake.parts(name))
        except Exception:
            return None

    @contextlib.contextmanager
    def writer_held(self, writes: Writes) -> Iterator[str]:
        with contextlib.suppress(InjectedFailure), self.lake.transaction():
            for name, _, table in writes:
                self.lake.write_part(name, table)
            yield "the write lock and an open transaction (a part written, not committed)"
            raise InjectedFailure  # roll back

    def native_read(self, name: str) -> list[tuple]:
        if hasattr(self.lake, "sync_catalog"):
            self.lake.sync_catalog()
        con = _bare_duckdb()
        # the catalog names parts relative to the lake: what `cd LAKE && duckdb` does
        con.execute(f"set file_search_path = {_quote(str(self.root))}")
        con.execute(f"attach {_quote(str(self.root / 'mkailin.duckdb'))} as mk (READ_ONLY)")
        return con.execute(f"select count(*) from mk.{name}").fetchall()

    def cli_args(self, name: str) -> tuple[Path | None, list[str]]:
        return self.root, ["-readonly", "-c", f"select count(*) from {name}", "mkailin.duckdb"]

    def glob(self, name: str) -> str:
        return f"{self.root}/tables/{name}/**/*.parquet"


def make_layer(name: str, root: Path, args: argparse.Namespace | None = None) -> Layer:
    if name == "ducklake":
        return DuckLake(root, inline_rows=args.ducklake_inline_rows if args else 0)
    return {"delta": Delta, "iceberg": Iceberg, "mkailin": Mkailin}[name](root)


# ---------------------------------------------------------------------------------- measuring
def disk(root: Path) -> dict:
    files = [Path(d) / f for d, _, fs in os.walk(root) for f in fs]
    return {"files": len(files), "mb": round(sum(f.stat().st_size for f in files) / 1e6, 2)}


def _file_set(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


def timed_query(layer: Layer, names: tuple[str, ...], sql: str) -> dict:
    """Cold: a fresh reader (``open_ms``) plus the query once. Warm: the same reader again,
    best of 3."""
    t0 = time.perf_counter()
    q = layer.reader(names)
    t1 = time.perf_counter()
    rows = q(sql)
    t2 = time.perf_counter()
    warm = []
    for _ in range(3):
        t0w = time.perf_counter()
        q(sql)
        warm.append(time.perf_counter() - t0w)
    return {
        "rows": [list(r) for r in rows],
        "open_ms": (t1 - t0) * 1000,
        "cold_ms": (t2 - t0) * 1000,
        "warm_ms": min(warm) * 1000,
    }


def ingest(layer: Layer, data: list[Writes], a: argparse.Namespace) -> dict:
    layer.create()
    base = disk(layer.root)
    with Timer() as t:
        for writes in data[: a.commits - 1]:
            layer.commit(writes)
    before_last = _file_set(layer.root)  # what the last commit adds and removes, untimed
    with Timer() as t_last:
        layer.commit(data[a.commits - 1])
    after_last = _file_set(layer.root)
    after = disk(layer.root)
    count = timed_query(layer, ("bench_articles",), COUNT_SQL)
    join = timed_query(layer, ("bench_articles", "bench_article_mesh"), JOIN_SQL)
    seconds = t.seconds + t_last.seconds
    return {
        "seconds": seconds,
        "ms_per_commit": seconds / a.commits * 1000,
        "other_cores": t.other,
        "last_commit_files_added": len(after_last - before_last),
        "last_commit_files_removed": len(before_last - after_last),
        "count": count,
        "join": join,
        "count_ok": count["rows"] == [[a.commits * a.articles]],
        "join_ok": join["rows"] == [[a.commits * a.articles * a.mesh_per_article]],
        "disk": after,
        "files_per_commit": (after["files"] - base["files"]) / a.commits,
        "live_files_articles": layer.live_files("bench_articles"),
    }


def mesh(layer: Layer, releases: list[Writes], a: argparse.Namespace) -> dict:
    layer.create()
    secs = []
    for writes in releases:
        with Timer() as t:
            layer.commit(writes)
        secs.append(t.seconds)
    q = timed_query(layer, MESH, MESH_SQL)
    return {
        "seconds_per_replace": secs,
        "mean_s": sum(secs) / len(secs),
        "count": q,
        "count_ok": q["rows"] == [[a.desc, a.tree]],
        "disk": disk(layer.root),
        "live_files_desc": layer.live_files("bench_desc"),
        "plain_duckdb": plain_duckdb(layer, "bench_desc", a.desc, a.duckdb_cli),
    }


def small(layer: Layer, data: Data, a: argparse.Namespace) -> dict:
    layer.create()
    rows = [data.small_row(i) for i in range(a.small + 1)]
    each, deadline = [], time.perf_counter() + a.small_budget
    with Timer() as t:
        for writes in rows[: a.small]:
            t0 = time.perf_counter()
            layer.commit(writes)
            each.append(time.perf_counter() - t0)
            if t0 > deadline:
                break
    done, k = len(each), min(100, len(each))
    sql = f"select count(*) from {SMALL}"
    out = {
        "appends": done,
        "stopped_by_budget": done < a.small,
        "seconds": t.seconds,
        "ms_per_append": t.seconds / done * 1000,
        "ms_per_append_first_100": sum(each[:k]) / k * 1000,
        "ms_per_append_last_100": sum(each[-k:]) / k * 1000,
        "other_cores": t.other,
        "count_before": timed_query(layer, (SMALL,), sql),
        "live_files_before": layer.live_files(SMALL),
        "disk_before": disk(layer.root),
    }
    try:
        with Timer() as t:
            out["compaction"] = layer.compact(SMALL)
        out["compaction"]["seconds"] = t.seconds
    except Unsupported as e:
        out["compaction"] = {"skipped": str(e)}
    out["live_files_after"] = layer.live_files(SMALL)
    out["disk_after"] = disk(layer.root)
    out["count_after"] = timed_query(layer, (SMALL,), sql)
    with Timer() as t:
        layer.commit(rows[a.small])
    out["one_more_append_ms"] = t.seconds * 1000
    final = layer.reader((SMALL,))(sql)
    out["count_ok"] = (
        out["count_before"]["rows"] == [[done]]
        and out["count_after"]["rows"] == [[done]]
        and final == [(done + 1,)]
    )
    return out


def plain_duckdb(layer: Layer, name: str, true_count: int, cli: str) -> dict:
    """What DuckDB with no extensions reads: the layer's own scan, in this process and in the
    stock ``duckdb`` CLI as installed (its own extension settings; offline it can install none),
    and a plain glob of the folder. Closes the layer (the CLI is another process)."""
    out: dict = {"needs": layer.native_scan}
    try:
        out["native"] = layer.native_read(name)[0][0]
    except Exception as e:
        out["native"] = _first_line(e)
    cwd, args = layer.cli_args(name)
    layer.close()
    if cli:
        try:
            v = subprocess.run([cli, "-version"], capture_output=True, text=True, timeout=30)
            out["cli_version"] = v.stdout.strip()
            p = subprocess.run(
                [cli, "-csv", "-noheader", *args],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = p.stdout.strip().splitlines()
            ok = p.returncode == 0 and lines and lines[-1].isdigit()
            out["cli"] = int(lines[-1]) if ok else (p.stderr or p.stdout).strip()[:300]
        except (OSError, subprocess.TimeoutExpired) as e:
            out["cli"] = _first_line(e)
    sql = f"select count(*) from read_parquet({_quote(layer.glob(name))}, union_by_name=true)"
    try:
        out["glob_count"] = _bare_duckdb().execute(sql).fetchone()[0]
    except Exception as e:
        out["glob_count"] = _first_line(e)
    out["true_count"] = true_count
    return out


def properties(layer: Layer, extra: list[Writes], a: argparse.Namespace) -> dict:
    """Run on the ingest layer (open, holding ``a.commits`` commits)."""
    out: dict = {"multi_table_api": layer.multi_table_api}
    n0 = a.commits * a.articles

    # atomic across tables: the second write fails; the first must not show
    try:
        layer.commit([extra[0][1], extra[0][0]], fail_at=1)  # mesh first, then articles
    except InjectedFailure:
        pass
    mesh_rows = layer.reader(("bench_article_mesh",))("select count(*) from bench_article_mesh")
    out["atomic_failed_commit_invisible"] = mesh_rows == [(n0 * a.mesh_per_article,)]

    # a copy of the folder, after one more commit to the original
    copy, moved = Path(f"{layer.root}-copy"), Path(f"{layer.root}-moved")
    layer.close()
    shutil.copytree(layer.root, copy)
    layer.open()
    layer.commit(extra[0])
    orig = layer.reader(("bench_articles",))(SUM_SQL)[0][0]
    out["copy"] = {"original_rows": orig}
    clone = make_layer(layer.name, copy)
    try:
        clone.open()
        out["copy"]["copy_rows"] = clone.reader(("bench_articles",))(SUM_SQL)[0][0]
        out["copy"]["reads_own_older_data"] = out["copy"]["copy_rows"] == n0
        layer.close()
        os.rename(layer.root, moved)
        try:
            try:
                rows = clone.reader(("bench_articles",))(SUM_SQL)[0][0]
                out["copy"]["with_original_moved"] = rows
            except Exception as e:
                out["copy"]["with_original_moved"] = _first_line(e)
            if isinstance(clone, DuckLake):  # the catalog keeps an absolute DATA_PATH
                clone.close()
                clone.override = True
                try:
                    rows = clone.reader(("bench_articles",))(SUM_SQL)[0][0]
                    out["copy"]["with_original_moved_override_data_path"] = rows
                except Exception as e:
                    out["copy"]["with_original_moved_override_data_path"] = _first_line(e)
        finally:
            clone.close()
            os.rename(moved, layer.root)
            layer.open()
        out["copy"]["self_contained"] = out["copy"]["with_original_moved"] == n0
        if isinstance(layer, DuckLake):
            out["copy"]["relative_data_path"] = layer.relative_data_path()
    except Exception as e:
        out["copy"]["error"] = _first_line(e)
    finally:
        clone.close()
        shutil.rmtree(copy, ignore_errors=True)

    # a reader in another process while the writer holds the layer mid-commit
    n1 = n0 + a.articles
    with layer.writer_held(extra[1][:1]) as held:
        probe = [sys.executable, __file__, "--probe", layer.name, str(layer.root), COUNT_SQL]
        try:
            p = subprocess.run(probe, capture_output=True, text=True, timeout=120)
            got = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else None
            got = got or {"error": p.stderr.strip()[-300:]}
        except subprocess.TimeoutExpired:
            got = {"error": "timed out after 120 s"}
    out["reader_while_writing"] = {
        "writer_holds": held,
        "reader": got,
        "reads_last_commit": got.get("rows") == [[n1]],
    }
    return out


def probe(layer_name: str, root: str, sql: str) -> None:
    """The other-process reader of ``properties``: one JSON line, rows or the error."""
    try:
        layer = make_layer(layer_name, Path(root))
        if layer_name != "mkailin":  # a mkailin reader opens nothing and takes no lock
            layer.open()
        q = layer.reader(("bench_articles",))
        print(json.dumps({"rows": [list(r) for r in q(sql)]}))
    except Exception as e:
        print(json.dumps({"error": _first_line(e)}))


def run_layer(name: str, a: argparse.Namespace, data: Data, work: Path, batches, releases) -> dict:
    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            **cpu_and_memory(),
        },
        "versions": versions(name),
        "sizes": {k: getattr(a, k) for k in SIZES},
        "workloads": a.workloads,
        "ducklake_inline_rows": a.ducklake_inline_rows if name == "ducklake" else None,
        "other_cores_at_start": wait_quiet(a.wait_quiet),
        "load_before": os.getloadavg(),
    }
    t0 = time.perf_counter()
    try:
        make_layer(name, work / name / "probe", a)  # Skip surfaces before any work
    except Skip as e:
        res["skipped"] = str(e)
        return res
    todo = [w for w in WORKLOADS if w in a.workloads]
    for w in todo:
        if w == "properties":
            continue
        layer = make_layer(name, work / name / w, a)
        try:
            if w == "ingest":
                res[w] = ingest(layer, batches, a)
                if "properties" in todo:
                    res["properties"] = properties(layer, batches[a.commits :], a)
            elif w == "mesh":
                res[w] = mesh(layer, releases, a)
            else:
                res[w] = small(layer, data, a)
        except Exception as e:
            res.setdefault("errors", {})[w] = _first_line(e)
        finally:
            with contextlib.suppress(Exception):
                layer.close()
        print(f"  {name}: {w} done ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    res["wall_s"] = time.perf_counter() - t0
    res["load_after"] = os.getloadavg()
    return res


def versions(name: str) -> dict:
    from importlib import metadata

    pkgs = {
        "ducklake": ["duckdb", "duckdb-ext-ducklake"],
        "delta": ["duckdb", "deltalake"],
        "iceberg": ["duckdb", "pyiceberg", "sqlalchemy"],
        "mkailin": ["duckdb", "mkailin"],
    }[name] + ["pyarrow"]
    out = {}
    for p in pkgs:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[p] = metadata.version(p)
    return out


# ---------------------------------------------------------------------------------- report
def _ms(d: dict | None, key: str) -> str:
    return f"{d[key]:.1f}" if d and key in d else "-"


def _get(res: dict, *path, fmt: str = "{}") -> str:
    v = res
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return "-"
        v = v[k]
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt.format(v) if v is not None else "-"


def table(layers: dict) -> str:
    names = [n for n in LAYERS if n in layers] + [n for n in layers if n not in LAYERS]
    small_more = ("small", "one_more_append_ms")
    own_older = ("properties", "copy", "reads_own_older_data")
    rows: list[tuple[str, Callable[[dict], str]]] = [
        ("ingest: s total", lambda r: _get(r, "ingest", "seconds", fmt="{:.2f}")),
        ("ingest: ms/commit", lambda r: _get(r, "ingest", "ms_per_commit", fmt="{:.1f}")),
        ("ingest: count ms cold (open) / warm", lambda r: _pair(r, "ingest", "count")),
        ("ingest: join ms cold (open) / warm", lambda r: _pair(r, "ingest", "join")),
        ("ingest: files on disk/commit (last: +new -gone)", _files_per_commit),
        ("ingest: MB on disk", lambda r: _get(r, "ingest", "disk", "mb")),
        ("mesh: s/replace (mean)", lambda r: _get(r, "mesh", "mean_s", fmt="{:.2f}")),
        ("mesh: count ms cold (open) / warm", lambda r: _pair(r, "mesh", "count")),
        ("mesh: files on disk", lambda r: _get(r, "mesh", "disk", "files")),
        ("small: appends done", lambda r: _get(r, "small", "appends")),
        ("small: ms/append (first / last 100)", _append_ms),
        ("small: count ms cold (open) / warm", lambda r: _pair(r, "small", "count_before")),
        ("small: live/disk files", lambda r: _files(r, "before")),
        ("small: compaction s", _compaction),
        ("small: live/disk files after", lambda r: _files(r, "after")),
        ("small: count ms after: cold (open) / warm", lambda r: _pair(r, "small", "count_after")),
        ("small: one more append ms", lambda r: _get(r, *small_more, fmt="{:.1f}")),
        ("counts correct", _all_ok),
        ("multi-table atomic (tested)", _atomic),
        ("copy reads its own older data", lambda r: _get(r, *own_older)),
        ("copy reads with original moved", _moved),
        ("reader in other process mid-write", _reader),
        ("DuckDB w/o extensions: own scan", _plain),
        ("stock duckdb CLI: own scan", _cli),
        ("DuckDB w/o extensions: glob / true", _glob),
        ("load avg before / after", _load),
    ]
    out = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, fn in rows:
        cells = []
        for n in names:
            r = layers[n]
            cell = "skipped" if "skipped" in r else fn(r)
            cells.append(cell if len(cell) <= CELL else cell[: CELL - 3] + "...")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    skipped = [f"{n}: skipped: {layers[n]['skipped']}" for n in names if "skipped" in layers[n]]
    return "\n".join(out + ([""] + skipped if skipped else []))


def _pair(r: dict, w: str, k: str) -> str:
    d = r.get(w, {}).get(k)
    return f"{_ms(d, 'cold_ms')} ({_ms(d, 'open_ms')}) / {_ms(d, 'warm_ms')}" if d else "-"


def _files_per_commit(r: dict) -> str:
    i = r.get("ingest", {})
    if "files_per_commit" not in i:
        return "-"
    added, removed = i["last_commit_files_added"], i["last_commit_files_removed"]
    return f"{i['files_per_commit']:.1f} (+{added} -{removed})"


def _append_ms(r: dict) -> str:
    s = r.get("small", {})
    if "ms_per_append" not in s:
        return "-"
    first, last = s["ms_per_append_first_100"], s["ms_per_append_last_100"]
    return f"{s['ms_per_append']:.1f} ({first:.1f} / {last:.1f})"


def _files(r: dict, when: str) -> str:
    s = r.get("small", {})
    return f"{_get(s, f'live_files_{when}')} / {_get(s, f'disk_{when}', 'files')}"


def _compaction(r: dict) -> str:
    c = r.get("small", {}).get("compaction", {})
    return c.get("skipped") or _get(c, "seconds", fmt="{:.2f}")


def _all_ok(r: dict) -> str:
    oks = [r["ingest"].get(k) for k in ("count_ok", "join_ok")] if "ingest" in r else []
    oks += [r[w].get("count_ok") for w in ("mesh", "small") if w in r]
    errors = ", ".join(f"{w}: {e}" for w, e in r.get("errors", {}).items())
    return ("yes" if all(oks) else "NO") + (f" (errors: {errors})" if errors else "")


def _atomic(r: dict) -> str:
    p = r.get("properties", {})
    if "atomic_failed_commit_invisible" not in p:
        return "-"
    ok = p["atomic_failed_commit_invisible"]
    return "yes" if ok else "no (" + ("API, but " if p["multi_table_api"] else "") + "per table)"


def _short(v, n: int = 70) -> str:
    v = str(v)
    return v if len(v) <= n else v[: n - 3] + "..."


def _moved(r: dict) -> str:
    c = r.get("properties", {}).get("copy", {})
    if "self_contained" not in c:
        return c.get("error", "-")
    if c["self_contained"]:
        s = "yes"
    else:
        err = str(c.get("with_original_moved"))
        s = "no: " + ("it reads the original's files" if "-copy" not in err else _short(err, 50))
    if "with_original_moved_override_data_path" in c:
        s += f"; OVERRIDE_DATA_PATH: {c['with_original_moved_override_data_path']} rows"
    rel = c.get("relative_data_path")
    if rel:
        where = "working folder" if rel["files_in_working_folder"] else "catalog's folder"
        reads = rel["copy_opened_from_its_folder"] == 1
        s += f"; relative DATA_PATH: in the {where}, a copy made and opened there "
        s += "reads" if reads else "fails"
    return s


def _reader(r: dict) -> str:
    p = r.get("properties", {}).get("reader_while_writing")
    if not p:
        return "-"
    if p["reads_last_commit"]:
        return "yes"
    err = str(p["reader"].get("error", p["reader"]))
    if "conflicting lock" in err.lower():
        return "no: the writer's process holds a lock on the catalog file"
    return f"no ({_short(err)})"


def _plain(r: dict) -> str:
    p = r.get("mesh", {}).get("plain_duckdb", {})
    if "native" not in p:
        return "-"
    v = p["native"]
    return f"yes: {v} rows" if isinstance(v, int) else f"no: needs the {p.get('needs')}"


def _cli(r: dict) -> str:
    p = r.get("mesh", {}).get("plain_duckdb", {})
    if "cli" not in p:
        return "-"
    v = p["cli"]
    if isinstance(v, int):
        return f"yes: {v} rows"
    ext = re.search(r"""extension ["']?(\w+)""", v)
    return f"no: needs the {ext[1]} extension (not installable offline)" if ext else f"no: {v}"


def _glob(r: dict) -> str:
    p = r.get("mesh", {}).get("plain_duckdb")
    return f"{p.get('glob_count', '-')} / {p.get('true_count', '-')}" if p else "-"


def _load(r: dict) -> str:
    b, a = r.get("load_before"), r.get("load_after")
    return f"{b[0]:.2f} / {a[0]:.2f}" if b and a else "-"


# ---------------------------------------------------------------------------------- main
def default_cli() -> str:
    beside = Path(sys.executable).parent / "duckdb"
    return shutil.which("duckdb") or (str(beside) if beside.exists() else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="ducklake,delta,iceberg", help=",".join(LAYERS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=",".join(WORKLOADS))
    ap.add_argument("--commits", type=int, default=50)
    ap.add_argument("--articles", type=int, default=500, help="articles per ingest commit")
    ap.add_argument("--mesh-per-article", type=int, default=10)
    ap.add_argument("--desc", type=int, default=30_000)
    ap.add_argument("--tree", type=int, default=60_000)
    ap.add_argument("--releases", type=int, default=3)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument(
        "--small-budget",
        type=float,
        default=120,
        help="seconds of small appends after which a layer stops early (recorded)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ducklake-inline-rows",
        type=int,
        default=0,
        help="DuckLake DATA_INLINING_ROW_LIMIT (0: off, the catalog default)",
    )
    ap.add_argument(
        "--duckdb-cli",
        default=default_cli(),
        help="the stock duckdb CLI to try on each layer ('' to skip; default: duckdb on PATH "
        "or next to this python)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=30,
        help="seconds to wait, before each layer, for other processes to go idle",
    )
    ap.add_argument("--workdir", help="where the layers are written (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the layers' folders")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "table_layer.json"))
    ap.add_argument("--probe", nargs=3, metavar=("LAYER", "ROOT", "SQL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe:
        probe(*a.probe)
        return
    a.workloads = a.workloads.split(",")
    # pyiceberg's overwrite of a new, empty table says so; it is not a failure
    warnings.filterwarnings("ignore", "Delete operation did not match any records")
    names = [n.strip() for n in a.layers.split(",") if n.strip()]
    for n in names:
        if n not in LAYERS:
            ap.error(f"unknown layer {n!r}; choose from {', '.join(LAYERS)}")

    data = Data(a.seed, a.articles, a.mesh_per_article)
    batches = [data.ingest(i) for i in range(a.commits + 2)]  # two more for the properties
    releases = [data.mesh_release(a.desc, a.tree) for _ in range(a.releases)]
    work = Path(a.workdir or tempfile.mkdtemp(prefix="table-layer-"))
    results = {}
    try:
        for n in names:
            print(f"{n} ...", file=sys.stderr)
            if (work / n).exists():
                shutil.rmtree(work / n)
            key = (
                f"{n}+inline{a.ducklake_inline_rows}"
                if n == "ducklake" and a.ducklake_inline_rows
                else n
            )
            results[key] = run_layer(n, a, data, work, batches, releases)
            if "skipped" in results[key]:
                print(f"  {n}: skipped: {results[key]['skipped']}", file=sys.stderr)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    out = Path(a.out)
    merged = json.loads(out.read_text()) if out.exists() else {}
    layers = merged.setdefault("layers", {})
    for key, res in results.items():
        if "skipped" in res and "skipped" not in layers.get(key, {"skipped": ""}):
            print(f"{key}: skipped here; kept the results already in {out}", file=sys.stderr)
            continue
        layers[key] = res
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    print(table(merged["layers"]))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
