"""The lake: one folder of Parquet tables, LanceDB vectors, artifacts and a DuckDB catalog.

Layout::

    lake/
      tables/<name>/current -> g000001/      a symlink, swapped atomically on replace
      tables/<name>/g000001/part-*.parquet   each part written to a temp name, then renamed
      vectors/                                LanceDB datasets
      artifacts/                              LoRA adapters, judge checkpoints, cached models
      mkailin.duckdb                          views over the tables plus the sql/ views
      .lock                                   the write lock (one writer at a time)

Readers never lock. A reader sees each part file whole or not at all, and a replaced table
whole in its old or its new generation, never a mix (a query that races the swap may fail with
"file not found"; run it again). A generation is written under a hidden temp name and renamed
to ``gNNNNNN`` when whole, so every ``g*`` folder is a complete generation.

A copy of the lake made by a tool that drops or flattens symlinks still reads its data: when
``current`` is missing or dangling, the newest generation holding parts is live; when it is a
plain file (zip's form of a symlink), the generation it names; when it is a folder (``cp -rL``,
unzip), the folder itself. Writers (``init``, ``ensure_table``, ``replace_table``,
``delete_parts``) turn it back into a symlink first and say so in one line on stderr; nothing
is deleted. Paths reach DuckDB as globs, so glob characters in the lake path (``[``, ``?``,
``*``) are escaped as one-character classes (``[[]``) and the path matches only itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from mkailin import failpoints, schema
from mkailin.errors import LakeError, LakeLockedError, QueryError, UnknownTableError

CATALOG = "mkailin.duckdb"
# The catalog is written in a storage format that older DuckDB CLIs (1.0 and later) can open.
CATALOG_STORAGE_VERSION = "v1.0.0"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_MARKER = ".mkailin-lake"
_GEN = re.compile(r"^g[0-9]{6,}$")
_GLOB_ESCAPES = {"[": "[[]", "?": "[?]", "*": "[*]"}


_SWAP_RACE = re.compile(r"Cannot open file|No files found|No such file or directory")


def sql_dir() -> Path:
    """The folder of ``NNN_name.sql`` files: inside the installed package, else the repo's."""
    packaged = Path(__file__).parent / "_sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


def sql_files() -> list[Path]:
    return sorted(p for p in sql_dir().glob("[0-9][0-9][0-9]_*.sql"))


def check_name(name: str) -> str:
    """Table names reach SQL and the file system, so they are held to ``[a-z_][a-z0-9_]*``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UnknownTableError(f"not a valid table name: {name!r}")
    return name


def glob_escape(path: str) -> str:
    """``path`` as a DuckDB glob that matches only itself: ``[``, ``?`` and ``*`` become
    one-character classes (``]``, ``{`` and ``}`` are literal to DuckDB already)."""
    return "".join(_GLOB_ESCAPES.get(c, c) for c in path)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Lake:
    """A lake folder. ``Lake.init(path)`` makes one; ``Lake.open(path)`` opens an existing one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        # how long a writer waits for another writer's lock (CLI --wait, env MKAILIN_LOCK_WAIT)
        self.lock_wait = float(os.environ.get("MKAILIN_LOCK_WAIT") or 0)
        self._lock_fd: int | None = None
        self._lock_depth = 0
        # one in-memory DuckDB per Lake and process; connect() hands out cursors on it
        self._db: duckdb.DuckDBPyConnection | None = None
        self._db_pid = 0
        self._db_applied: dict[str, str] = {}
        self._db_lock = threading.Lock()

    def __getstate__(self) -> dict:
        # a Lake sent to another process (Ray, multiprocessing) opens its own database there
        state = self.__dict__.copy()
        state.update(_db=None, _db_pid=0, _db_applied={}, _db_lock=None, _lock_fd=None)
        state["_lock_depth"] = 0
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._db_lock = threading.Lock()

    # ------------------------------------------------------------------ layout
    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def vectors_dir(self) -> Path:
        return self.root / "vectors"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG

    @classmethod
    def init(cls, root: str | os.PathLike) -> Lake:
        """Create the lake folder, every contract table (empty) and the catalog. Idempotent."""
        lake = cls(root)
        if lake.root.exists() and not lake.root.is_dir():
            raise LakeError(f"{lake.root} exists and is not a folder")
        for d in (lake.root, lake.tables_dir, lake.vectors_dir, lake.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True)
        (lake.root / _MARKER).write_text("mkailin lake 1\n")
        with lake.lock("init"):
            for name in lake._table_dirs():
                lake.repair_table(name)
            for name in schema.TABLES:
                lake.ensure_table(name)
            lake.sync_catalog()
        return lake

    @classmethod
    def open(cls, root: str | os.PathLike, create: bool = False) -> Lake:
        lake = cls(root)
        if not (lake.root / _MARKER).exists():
            if create:
                return cls.init(root)
            raise LakeError(
                f"{lake.root} is not a mkailin lake; create it with: mkailin init {root}"
            )
        return lake

    # ------------------------------------------------------------------ tables
    def _current(self, name: str) -> Path:
        return self.tables_dir / check_name(name) / "current"

    def _table_dirs(self) -> list[str]:
        if not self.tables_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.tables_dir.iterdir() if _NAME.match(p.name) and p.is_dir()
        )

    def _live(self, name: str) -> tuple[Path | None, str]:
        """The folder of the live generation, and what ``current`` was: ``link`` (a symlink to
        it, the normal case), ``folder`` (a copy of the generation, itself live), ``file`` (a
        plain file naming it), or ``missing``, ``dangling``, ``a file naming no generation``,
        ``an empty folder`` (then the newest generation holding parts is live). The folder is
        ``None`` when no generation holds parts."""
        cur = self._current(name)
        if cur.is_symlink():
            if cur.is_dir():
                return cur.resolve(), "link"
            how = "dangling"
        elif cur.is_dir():
            if _has_parts(cur):
                return cur, "folder"
            how = "an empty folder"
        elif cur.is_file():
            named = _read_small(cur)
            if _GEN.match(named) and (cur.parent / named).is_dir():
                return cur.parent / named, "file"
            how = "a file naming no generation"
        else:
            how = "missing"
        gens = [g for g in _generations(cur.parent) if _has_parts(g)]
        return (gens[-1] if gens else None), how

    def repair_table(self, name: str) -> Path | None:
        """Make ``current`` a symlink to the live generation again where a copy of the lake
        dropped or flattened it (see the module doc), and say so in one line on stderr. Deletes
        no data. Returns the live generation's folder, ``None`` when the table has none."""
        folder, how = self._live(name)
        if how == "link":
            return folder
        cur = self._current(name)
        tdir = cur.parent
        if how == "an empty folder":
            if any(not p.is_dir() for p in cur.rglob("*")):
                raise LakeError(f"{cur} is a folder holding no Parquet parts; move it aside")
            shutil.rmtree(cur)
        if folder is None:
            return None  # nothing to recover; a plain file or dangling link is replaced on swap
        if how == "folder":  # a copy of the live generation: adopt it under a generation name
            folder = tdir / _next_gen_name(tdir)
            os.rename(cur, folder)
            said = f"'current' was a folder, not a link; adopted it as {folder.name}"
        elif how == "file":
            said = f"'current' was a plain file naming {folder.name}; it is a link again"
        else:
            said = f"'current' was {how}; {folder.name}, the newest generation, is live again"
        _swap_link(tdir, folder.name)
        rows = sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))
        print(f"recovered table '{name}' ({rows:,} rows): {said}", file=sys.stderr)
        return folder

    def has_table(self, name: str) -> bool:
        return self._live(name)[0] is not None

    def table_names(self) -> list[str]:
        return [n for n in self._table_dirs() if self.has_table(n)]

    def table_path(self, name: str) -> Path:
        """The folder of the table's current generation."""
        folder = self._live(name)[0]
        if folder is None:
            raise UnknownTableError(f"the lake has no table '{name}'")
        return folder

    def parts(self, name: str) -> list[Path]:
        if not self.has_table(name):
            return []
        return sorted(self.table_path(name).glob("*.parquet"))

    def ensure_table(self, name: str, table_schema: pa.Schema | None = None) -> None:
        """Create an empty table (one zero-row part) when it does not exist yet. A table whose
        ``current`` link a copy dropped or flattened is repaired instead, never recreated."""
        if self.repair_table(name) is not None:
            return
        table_schema = table_schema or schema.TABLES.get(name)
        if table_schema is None:
            raise UnknownTableError(f"the lake has no table '{name}' and no schema to create it")
        self._new_generation(name, [table_schema.empty_table()])

    def _new_generation(self, name: str, tables: Iterable[pa.Table]) -> Path:
        tdir = self.tables_dir / check_name(name)
        tdir.mkdir(parents=True, exist_ok=True)
        self.repair_table(name)  # `current` must be a link (or absent) before the swap
        gen_name = _next_gen_name(tdir)
        # written under a temp name and renamed when whole: every g* folder is complete
        tmp = tdir / f".{gen_name}-{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        try:
            wrote = False
            for i, t in enumerate(tables):
                if t.num_rows or not wrote:
                    # names unique to the generation: a reader that lists the folder just before
                    # a swap and opens the files just after finds none of them (and retries)
                    # instead of reading the new generation's files under the old listing
                    _atomic_write(t, tmp / f"part-{gen_name}-{i:06d}.parquet")
                    wrote = True
            if not wrote:
                raise LakeError(f"no data and no schema given for table '{name}'")
            gen = tdir / gen_name
            os.rename(tmp, gen)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _swap_link(tdir, gen.name)
        for old in _generations(tdir):
            if old != gen:
                shutil.rmtree(old, ignore_errors=True)
        return gen

    def replace_table(self, name: str, tables: Iterable[pa.Table] | pa.Table) -> None:
        """Swap in a whole new generation of a table. Readers see old or new, never a mix."""
        if isinstance(tables, pa.Table):
            tables = [tables]
        if name in schema.TABLES:
            tables = (schema.conform(name, t) for t in tables)
        self._new_generation(name, tables)

    def write_part(self, name: str, table: pa.Table, part: str | None = None) -> Path | None:
        """Append a part file to a table (created on first write). Returns its path."""
        if name in schema.TABLES:
            table = schema.conform(name, table)
        self.ensure_table(name, table.schema)
        if table.num_rows == 0:
            return None
        part = part or f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        path = self.table_path(name) / f"{part}.parquet"
        _atomic_write(table, path)
        return path

    def delete_parts(self, name: str, pattern: str) -> int:
        """Remove the part files of ``name`` that match a glob ``pattern``; returns how many.

        A table left with no part keeps a zero-row one, so its view still binds.
        """
        self.repair_table(name)
        folder = self.table_path(name)
        doomed = [p for p in folder.glob(pattern) if p.suffix == ".parquet"]
        if not doomed:
            return 0
        keep_schema = pq.read_schema(doomed[0])
        for p in doomed:
            p.unlink()
        if not any(folder.glob("*.parquet")):
            _atomic_write(keep_schema.empty_table(), folder / "part-empty.parquet")
        return len(doomed)

    def clean_temp(self) -> int:
        """Remove temp files left by a killed writer. Call with the write lock held."""
        n = 0
        for p in self.tables_dir.glob("*/*/.*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
        for p in self.tables_dir.glob("*/.current-*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
        for p in self.tables_dir.glob("*/.g[0-9]*.tmp"):  # a generation a writer left half done
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        for p in self.root.glob(f".{CATALOG}.*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    def read_table(self, name: str) -> pa.Table:
        return self.query_arrow(f"select * from {quote_ident(check_name(name))}")

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self, command: str = "", wait: float | None = None) -> Iterator[None]:
        """Hold the lake's write lock. Re-entrant within one process.

        A second writer waits up to ``wait`` seconds, then gets a ``LakeLockedError`` that names
        the holder.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + (self.lock_wait if wait is None else wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                    os.close(fd)
                    raise LakeLockedError(
                        f"the lake {self.root} is being written by another process"
                        f" ({holder or 'unknown'}); wait for it to finish or pass --wait SECONDS"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: mkailin {command}".encode(), 0)
        self._lock_fd, self._lock_depth = fd, 1
        try:
            self.clean_temp()
            yield
        finally:
            self._lock_depth = 0
            self._lock_fd = None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ------------------------------------------------------------------ SQL
    def _table_view_sql(self, name: str) -> str:
        # through `current` (so the catalog follows later swaps) unless a copy broke the link
        folder, how = self._live(name)
        folder = self._current(name) if how in ("link", "folder") else folder
        glob = glob_escape(str(folder)) + "/*.parquet"
        return (
            f"create or replace view {quote_ident(name)} as select * from "
            f"read_parquet({sql_literal(glob)}, union_by_name = true)"
        )

    def _statements(self) -> list[tuple[str, str]]:
        """(key, sql) in the order they are applied: table views, then the sql/ files."""
        out = [(f"table:{n}", self._table_view_sql(n)) for n in self.table_names()]
        out += [(f"sql:{p.name}", p.read_text()) for p in sql_files()]
        return out

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with every table and sql/ view defined; close it when done.

        The views live in one in-memory database per Lake and process, and each call returns a
        new cursor on it (its own temp tables and registrations), so a query costs no catalog
        set-up: only statements that changed since the last call (a new table, a copied lake's
        folder, an edited sql/ file) are applied again. It never locks ``mkailin.duckdb``, so a
        user's duckdb CLI session on the catalog does not block a stage.
        """
        stmts = self._statements()
        with self._db_lock:
            keys = {k for k, _ in stmts}
            if self._db is None or self._db_pid != os.getpid() or set(self._db_applied) - keys:
                if self._db is not None and self._db_pid == os.getpid():
                    self._db.close()
                self._db, self._db_pid, self._db_applied = duckdb.connect(), os.getpid(), {}
            for key, stmt in stmts:
                if self._db_applied.get(key) == stmt:
                    continue
                try:
                    self._db.execute(stmt)
                except duckdb.Error as e:
                    raise QueryError(f"{key}: {e}") from None
                self._db_applied[key] = stmt
            return self._db.cursor()

    def sync_catalog(self) -> dict[str, int]:
        """Write the table views and sql/ files into ``mkailin.duckdb``, recorded by checksum.

        Unchanged statements are skipped, so re-applying is safe and cheap. Returns counts of
        applied and skipped statements. If another process holds the catalog open, the sync is
        skipped (the views bind late, so only a new table or changed sql/ file waits).
        """
        with _attachable(self.catalog_path) as path:
            return self._sync_catalog(path)

    def _sync_catalog(self, path: Path) -> dict[str, int]:
        fresh = not path.exists()
        con = duckdb.connect()
        try:
            opt = f" (storage_version {sql_literal(CATALOG_STORAGE_VERSION)})" if fresh else ""
            con.execute(f"attach {sql_literal(str(path))} as lake{opt}")
        except duckdb.Error as e:
            con.close()
            if "lock" in str(e).lower():
                return {"applied": 0, "skipped": 0, "busy": 1}
            raise LakeError(f"cannot open the catalog {self.catalog_path}: {e}") from None
        try:
            con.execute("use lake")
            con.execute(
                "create table if not exists _mkailin_sql ("
                "key varchar primary key, checksum varchar, applied_at timestamptz)"
            )
            done = dict(con.execute("select key, checksum from _mkailin_sql").fetchall())
            applied = skipped = 0
            con.execute("begin")
            for key, stmt in self._statements():
                digest = hashlib.sha256(stmt.encode()).hexdigest()
                if done.get(key) == digest:
                    skipped += 1
                    continue
                try:
                    con.execute(stmt)
                except duckdb.Error as e:
                    con.execute("rollback")
                    raise QueryError(f"{key}: {e}") from None
                con.execute(
                    "insert or replace into _mkailin_sql values (?, ?, now())", [key, digest]
                )
                applied += 1
            con.execute("commit")
            return {"applied": applied, "skipped": skipped, "busy": 0}
        finally:
            con.close()

    def _read(self, fetch, sql: str, params: list | None):
        """Run a read query; one that raced a generation swap (its files listed before the swap
        and gone after) runs again on the new generation, after a short pause that lets a
        writer that swaps generations back to back finish its swap."""
        attempts = 8
        for attempt in range(attempts):
            con = self.connect()
            try:
                return fetch(con, sql, params or [])
            except duckdb.IOException as e:
                if attempt == attempts - 1 or not _SWAP_RACE.search(str(e)):
                    raise QueryError(str(e).splitlines()[0]) from None
                time.sleep(0.01 * (attempt + 1))
            except duckdb.Error as e:
                raise QueryError(str(e).splitlines()[0]) from None
            finally:
                con.close()

    def query_arrow(self, sql: str, params: list | None = None) -> pa.Table:
        return self._read(fetch_arrow, sql, params)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._read(lambda con, q, p: con.execute(q, p).fetchall(), sql, params)

    def count(self, name: str) -> int:
        return self.query(f"select count(*) from {quote_ident(check_name(name))}")[0][0]

    def relations(self, count_views: bool = True) -> list[tuple[str, str, int | None]]:
        """Every table and view a user can query: (name, kind, rows). Counting a view runs it,
        which for the MeSH similarity views takes seconds: ``count_views=False`` skips them."""
        con = self.connect()
        try:
            rows = con.execute(
                "select table_name, table_type from information_schema.tables "
                "where table_schema = 'main' order by table_name"
            ).fetchall()
            out = []
            tables = set(self.table_names())
            for name, _kind in rows:
                if name.startswith("_"):
                    continue
                is_table = name in tables
                n = None
                if is_table or count_views:
                    try:
                        n = con.execute(f"select count(*) from {quote_ident(name)}").fetchall()[0][
                            0
                        ]
                    except duckdb.Error:  # a macro-backed view over missing inputs
                        n = None
                out.append((name, "table" if is_table else "view", n))
            return out
        finally:
            con.close()

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, rows: list[dict], run_id: str | None = None) -> int:
        if not rows:
            return 0
        stamp = now()
        for r in rows:
            r.setdefault("action", "dropped")
            r.setdefault("run_id", run_id)
            r.setdefault("created_at", stamp)
            excerpt = r.get("raw_excerpt")
            if excerpt is not None and len(excerpt) > 2000:
                r["raw_excerpt"] = excerpt[:2000]
        self.write_part("quarantine", pa.Table.from_pylist(rows))
        return len(rows)


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    """Run a query and return an Arrow table (across DuckDB 1.x and 2.x APIs)."""
    rel = con.sql(sql, params=params or None)
    if rel is None:
        return pa.table({})
    to_table = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return to_table()


def arrow_reader(con: duckdb.DuckDBPyConnection, sql: str, params: list | None, batch_size: int):
    """Stream a query's rows as Arrow record batches of ``batch_size`` rows."""
    rel = con.sql(sql, params=params or None)
    for name in ("to_arrow_reader", "fetch_arrow_reader", "record_batch"):
        if hasattr(rel, name):
            return getattr(rel, name)(batch_size)
    return rel.fetch_record_batch(batch_size)


def _atomic_write(table: pa.Table, path: Path) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        failpoints.hit("parquet-write")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _attachable(path: Path) -> Iterator[Path]:
    """``path`` in a form DuckDB can attach and write. DuckDB names the write-ahead log by
    cutting the (resolved) path at its first ``?``, as if it were a URL query, so a database
    under a path with a ``?`` cannot be written in place: it is written in a temp folder and
    then renamed into place."""
    if "?" not in str(path):
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="mkailin-catalog-"))
    try:
        work = tmp / path.name
        if path.exists():
            shutil.copyfile(path, work)
        yield work
        staged = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            shutil.copyfile(work, staged)
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _generations(tdir: Path) -> list[Path]:
    """The generation folders of a table, oldest first."""
    if not tdir.is_dir():
        return []
    gens = [p for p in tdir.iterdir() if _GEN.match(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(gens, key=lambda p: int(p.name[1:]))


def _next_gen_name(tdir: Path) -> str:
    gens = _generations(tdir)
    return f"g{(int(gens[-1].name[1:]) + 1) if gens else 1:06d}"


def _has_parts(folder: Path) -> bool:
    return any(folder.glob("*.parquet"))


def _read_small(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(256).decode("utf-8", "replace").strip().rstrip("/")
    except OSError:
        return ""


def _swap_link(tdir: Path, target: str) -> None:
    """Point ``tdir/current`` at ``target`` in one atomic rename."""
    link = tdir / f".current-{uuid.uuid4().hex[:8]}.tmp"
    os.symlink(target, link)
    os.replace(link, tdir / "current")


def json_dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
