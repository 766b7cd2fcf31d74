"""The lake: one folder of Parquet tables, LanceDB vectors, artifacts and a DuckDB catalog.

Layout::

    lake/
      _log/0000000042.json          commit snapshots: every table's part files, rows and bytes
      tables/<name>/part-*.parquet  immutable part files, each written to a temp name and renamed
      vectors/                      LanceDB datasets
      artifacts/                    LoRA adapters, judge checkpoints, cached models
      mkailin.duckdb                views over the tables (paths relative to the lake) and sql/
      .lock                         the write lock (one writer at a time)

A table is the list of part files that the newest snapshot names. A commit writes part files
first, then one new snapshot (temp file, fsync, rename): what one commit writes to several
tables (``with lake.transaction(): ...``) becomes visible at once, or, if the writer dies or
fails before the rename, not at all. Part files no snapshot names are a killed writer's
leftovers, removed when the next writer takes the lock. The last ``KEEP_SNAPSHOTS`` snapshots
stay, and a part is deleted only when no kept snapshot names it, so a reader that listed an
older snapshot still finds its files (one that loses that race reads again).

Every path in a snapshot and in the catalog is relative to the lake folder: a copied, moved,
zipped or rsynced lake reads its own data. The stock DuckDB CLI opens it from the lake folder:
``cd LAKE && duckdb -readonly mkailin.duckdb``. Paths reach DuckDB as globs, so glob characters
in the lake path (``[``, ``?``, ``*``) are escaped as one-character classes (``[[]``).

Tables accumulate one part per small write; past ``compact_parts`` parts a commit merges a
table's small parts into one (``mkailin lake compact`` does it on demand), so a lake after
10,000 small ingests reads like a fresh one.

Lakes written before the snapshot log (``tables/<name>/current -> gNNNNNN/``) are converted on
the first write: their live generations become snapshot 1, in place, and nothing moves.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import fnmatch
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
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from mkailin import failpoints, schema
from mkailin.errors import LakeError, LakeLockedError, QueryError, UnknownTableError

CATALOG = "mkailin.duckdb"
# The catalog is written in a storage format that older DuckDB CLIs (1.0 and later) can open.
CATALOG_STORAGE_VERSION = "v1.0.0"
LOG = "_log"
LOG_FORMAT = "mkailin-log 1"
KEEP_SNAPSHOTS = 8
# a table with more parts than this is compacted by the commit that passes it
COMPACT_PARTS = 32
# parts below this size are merged by compaction; bigger ones stay as they are
SMALL_PART_BYTES = 32 << 20
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_MARKER = ".mkailin-lake"
_GEN = re.compile(r"^g[0-9]{6,}$")
_SNAP = re.compile(r"^([0-9]{10})\.json$")
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


@dataclass(frozen=True)
class Part:
    """One Parquet file of a table: its path relative to the lake, rows and bytes."""

    path: str
    rows: int
    size: int

    def to_json(self) -> list:
        return [self.path, self.rows, self.size]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Snapshot:
    """The lake's state after commit ``seq``: each table's parts, in write order."""

    seq: int = 0
    tables: dict[str, list[Part]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # parts this commit dropped
    command: str = ""
    committed_at: str = ""

    def to_json(self) -> dict:
        return {
            "format": LOG_FORMAT,
            "seq": self.seq,
            "command": self.command,
            "committed_at": self.committed_at,
            "tables": {n: [p.to_json() for p in ps] for n, ps in sorted(self.tables.items())},
            "removed": self.removed,
        }

    @classmethod
    def from_json(cls, d: dict) -> Snapshot:
        if d.get("format") != LOG_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {LOG_FORMAT!r}")
        return cls(
            seq=int(d["seq"]),
            tables={
                n: [Part(str(p), int(r), int(s)) for p, r, s in ps] for n, ps in d["tables"].items()
            },
            removed=list(d.get("removed", [])),
            command=d.get("command", ""),
            committed_at=d.get("committed_at", ""),
        )

    def files(self) -> set[str]:
        return {p.path for ps in self.tables.values() for p in ps}


class _Tx:
    """A commit being built: each table's new part list, the files it wrote, and what it drops."""

    def __init__(self, base: Snapshot, command: str):
        self.base = base
        self.command = command
        self.tables = {n: list(ps) for n, ps in base.tables.items()}
        self.written: list[str] = []
        self.depth = 1

    def changed(self) -> bool:
        return self.tables != self.base.tables


class Lake:
    """A lake folder. ``Lake.init(path)`` makes one; ``Lake.open(path)`` opens an existing one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        # how long a writer waits for another writer's lock (CLI --wait, env MKAILIN_LOCK_WAIT)
        self.lock_wait = float(os.environ.get("MKAILIN_LOCK_WAIT") or 0)
        self.compact_parts = int(os.environ.get("MKAILIN_COMPACT_PARTS") or COMPACT_PARTS)
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._lock_command = ""
        self._tx: _Tx | None = None
        self._snap: Snapshot | None = None
        self._snap_key: tuple | None = None
        self._catalog_seq = -1
        # one in-memory DuckDB per Lake and process; connect() hands out cursors on it
        self._db: duckdb.DuckDBPyConnection | None = None
        self._db_pid = 0
        self._db_applied: dict[str, str] = {}
        self._db_lock = threading.Lock()

    def __getstate__(self) -> dict:
        # a Lake sent to another process (Ray, multiprocessing) opens its own database there
        state = self.__dict__.copy()
        state.update(_db=None, _db_pid=0, _db_applied={}, _db_lock=None, _lock_fd=None)
        state.update(_lock_depth=0, _tx=None, _snap=None, _snap_key=None)
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

    @property
    def log_dir(self) -> Path:
        return self.root / LOG

    def rel(self, path: str | os.PathLike) -> str:
        """``path`` relative to the lake when it lies inside it (as stored in runs and
        manifests, so a moved lake still finds it), else unchanged."""
        p = Path(path).absolute()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path stored by :meth:`rel`: relative ones are under this lake. An absolute path
        into another copy of the lake that no longer exists (a lake moved after it was
        written) is found at the same place under this one."""
        p = Path(path)
        if not p.is_absolute():
            return self.root / p
        if not p.exists():
            parts = p.parts
            for top in ("artifacts", "vectors", "tables", "exports"):
                if top in parts:
                    moved = self.root.joinpath(*parts[len(parts) - parts[::-1].index(top) - 1 :])
                    if moved.exists():
                        return moved
        return p

    @classmethod
    def init(cls, root: str | os.PathLike) -> Lake:
        """Create the lake folder, every contract table (empty) and the catalog. Idempotent,
        and it deletes nothing: a lake that lost its log adopts the part files it holds."""
        lake = cls(root)
        if lake.root.exists() and not lake.root.is_dir():
            raise LakeError(f"{lake.root} exists and is not a folder")
        if "," in str(lake.root):
            raise LakeError(
                f"{lake.root}: a lake path cannot hold a comma (DuckDB's file_search_path, "
                "through which the catalog finds the tables, splits on it); choose another name"
            )
        for d in (lake.root, lake.tables_dir, lake.vectors_dir, lake.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True)
        marker = lake.root / _MARKER
        if not marker.exists():
            marker.write_text("mkailin lake 1\n")
        with lake.lock("init"), lake.transaction():
            for name in schema.TABLES:
                lake.ensure_table(name)
        lake.refresh_catalog()
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

    # ------------------------------------------------------------------ the log
    def _log_seqs(self) -> list[int]:
        try:
            names = os.listdir(self.log_dir)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _SNAP.match(n)))

    def _snap_path(self, seq: int) -> Path:
        return self.log_dir / f"{seq:010d}.json"

    def read_snapshot(self, seq: int) -> Snapshot:
        """Snapshot ``seq``; a ``LakeError`` naming the file when it is unreadable."""
        path = self._snap_path(seq)
        try:
            return Snapshot.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LakeError(f"{path}: unreadable snapshot ({e})") from None

    def snapshot(self) -> Snapshot:
        """The newest committed snapshot (read once per commit and cached). An unreadable newest
        snapshot falls back to the one before (``mkailin lake verify`` reports it); a lake
        written before the log reads its live generations."""
        if self._tx is not None:
            return self._tx.base
        seqs = self._log_seqs()
        if not seqs:
            return Snapshot(tables=_legacy_tables(self)) if self.tables_dir.is_dir() else Snapshot()
        seq = seqs[-1]
        try:
            st = self._snap_path(seq).stat()
            key = (seq, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:  # a writer pruned it a moment ago: read the list again
            return self.snapshot()
        if key != self._snap_key:
            for s in reversed(seqs):
                try:
                    self._snap = self.read_snapshot(s)
                    break
                except LakeError:
                    continue
            else:
                raise LakeError(f"{self.log_dir}: no readable snapshot; run: mkailin lake verify")
            self._snap_key = key
        return self._snap

    def _write_snapshot(self, snap: Snapshot) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self._snap_path(snap.seq)
        tmp = self.log_dir / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(snap.to_json(), f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            failpoints.hit("snapshot-commit")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.log_dir)

    def _prune(self, snap: Snapshot) -> None:
        """Drop snapshots older than the kept window, and the parts only they named."""
        seqs = [s for s in self._log_seqs() if s <= snap.seq]
        for old in seqs[: max(0, len(seqs) - KEEP_SNAPSHOTS)]:
            nxt = old + 1
            try:
                removed = snap.removed if nxt == snap.seq else self.read_snapshot(nxt).removed
            except LakeError:
                removed = []
            live = snap.files()
            for rel in removed:
                if rel not in live:
                    (self.root / rel).unlink(missing_ok=True)
            self._snap_path(old).unlink(missing_ok=True)

    def _referenced(self) -> set[str] | None:
        """Every part a kept snapshot names; ``None`` when some snapshot cannot be read (then
        nothing may be swept)."""
        out: set[str] = set()
        for s in self._log_seqs():
            try:
                out |= self.read_snapshot(s).files()
            except LakeError:
                return None
        return out

    def _adopt_unlogged(self) -> None:
        """Give a lake with no snapshot its first one: the live generations of a lake written
        before the log, or the part files of a lake whose log was lost. Deletes nothing."""
        if self._log_seqs() or not self.tables_dir.is_dir():
            return
        tables = _legacy_tables(self, say=True)
        snap = Snapshot(seq=1, tables=tables, command="adopt", committed_at=now().isoformat())
        self._write_snapshot(snap)
        if tables:
            rows = sum(p.rows for ps in tables.values() for p in ps)
            print(
                f"the lake had no commit log: adopted {len(tables)} table(s), {rows:,} rows, "
                f"as snapshot 1 (nothing moved or deleted)",
                file=sys.stderr,
            )

    def sweep(self) -> int:
        """Remove what killed writers left: temp files, and part files no kept snapshot names.
        Runs with the write lock held; returns how many files went."""
        n = 0
        for pattern in (
            "tables/*/.*.tmp",
            "tables/*/*/.*.tmp",
            f"{LOG}/.*.tmp",
            f".{CATALOG}.*.tmp",
        ):
            for p in self.root.glob(pattern):
                p.unlink(missing_ok=True)
                n += 1
        for p in self.tables_dir.glob("*/.g[0-9]*.tmp"):  # a pre-log generation left half done
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        referenced = self._referenced()
        if referenced is None or not self._log_seqs():
            return n
        for p in self.tables_dir.glob("*/*.parquet"):
            if p.relative_to(self.root).as_posix() not in referenced:
                p.unlink(missing_ok=True)
                n += 1
        for tdir in self.tables_dir.glob("*"):  # pre-log generations and links no snapshot names
            for g in tdir.glob("g[0-9]*"):
                if g.is_dir() and not g.is_symlink():
                    rel = g.relative_to(self.root).as_posix() + "/"
                    if not any(r.startswith(rel) for r in referenced):
                        shutil.rmtree(g, ignore_errors=True)
            cur = tdir / "current"
            if cur.is_symlink() or cur.is_file():
                cur.unlink()
        return n

    clean_temp = sweep

    # ------------------------------------------------------------------ commits
    @contextlib.contextmanager
    def transaction(self, command: str = "") -> Iterator[None]:
        """Everything written inside becomes visible at once when the block ends, in one
        snapshot; nothing does if it raises. Takes the write lock; nested blocks join the
        outer one. Reads inside the block see the state before it."""
        if self._tx is not None:
            self._tx.depth += 1
            try:
                yield
            finally:
                self._tx.depth -= 1
            return
        with self.lock(command or self._lock_command or "write"):
            self._tx = tx = _Tx(self.snapshot(), command or self._lock_command)
            try:
                yield
                new = self._commit(tx)
            except BaseException:
                for rel in tx.written:  # nothing of this commit is named by a snapshot
                    (self.root / rel).unlink(missing_ok=True)
                raise
            finally:
                self._tx = None
            if new is not None:
                self._snap, self._snap_key = new, None
                self._prune(new)

    def _commit(self, tx: _Tx) -> Snapshot | None:
        """Write the transaction's snapshot (compacting tables past ``compact_parts`` first);
        the rename of that one file is the commit."""
        for name in list(tx.tables):
            if len(tx.tables[name]) > self.compact_parts:
                self._compact_in(tx, name)
        if not tx.changed():
            return None
        new = Snapshot(
            seq=tx.base.seq + 1,
            tables=tx.tables,
            command=tx.command,
            committed_at=now().isoformat(),
        )
        new.removed = sorted(tx.base.files() - new.files())
        self._write_snapshot(new)
        return new

    def _state(self) -> dict[str, list[Part]]:
        """The part lists a write changes: the open transaction's."""
        if self._tx is None:
            raise LakeError("internal: a lake write outside a transaction")
        return self._tx.tables

    def stage_part(self, name: str, table: pa.Table, part: str | None = None) -> Part:
        """Write a part file of ``name`` that no snapshot names yet (a worker process writes
        these; the lock holder commits them with :meth:`add_parts`)."""
        check_name(name)
        if name in schema.TABLES:
            table = schema.conform(name, table)
        if name in _REDACTED:
            table = _redacted(table, _REDACTED[name])
        if name == "quarantine" and table.num_rows:
            table = _with_reasons(table)
        folder = self.tables_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        part = f"{part or 'part'}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        path = folder / f"{part}.parquet"
        _atomic_write(table, path)
        if self._tx is not None:
            self._tx.written.append(self.rel(path))
        return Part(self.rel(path), table.num_rows, path.stat().st_size)

    def add_parts(self, name: str, parts: Iterable[Part]) -> None:
        """Make staged parts part of ``name`` in this commit."""
        with self.transaction():
            parts = [p for p in parts if p.rows]
            if not parts:
                return
            self._tx.written += [p.path for p in parts]
            state = self._state()
            state[name] = [p for p in state.get(name, []) if p.rows] + parts

    def copy_parts(self, name: str, files: Iterable[Path], replace: bool = True) -> None:
        """Give ``name`` copies of Parquet ``files`` (another lake's parts, say) as its parts,
        in this commit: replacing what it held, or added to it."""
        check_name(name)
        folder = self.tables_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        with self.transaction():
            parts = []
            for f in files:
                path = folder / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
                tmp = folder / f".{path.name}.tmp"
                shutil.copyfile(f, tmp)
                os.replace(tmp, path)
                self._tx.written.append(self.rel(path))
                parts.append(
                    Part(self.rel(path), pq.read_metadata(path).num_rows, path.stat().st_size)
                )
            state = self._state()
            state[name] = parts if replace else [*state.get(name, []), *parts]

    def ensure_table(self, name: str, table_schema: pa.Schema | None = None) -> None:
        """Create an empty table (one zero-row part) when it does not exist yet."""
        check_name(name)
        if name in self.snapshot().tables or (self._tx and name in self._tx.tables):
            return
        table_schema = table_schema or schema.TABLES.get(name)
        if table_schema is None:
            raise UnknownTableError(f"the lake has no table '{name}' and no schema to create it")
        with self.transaction():
            self._state()[name] = [self.stage_part(name, table_schema.empty_table())]

    def replace_table(self, name: str, tables: Iterable[pa.Table] | pa.Table) -> None:
        """Give ``name`` new contents in this commit. Readers see old or new, never a mix."""
        if isinstance(tables, pa.Table):
            tables = [tables]
        with self.transaction():
            parts: list[Part] = []
            first: pa.Table | None = None
            for t in tables:
                first = t if first is None else first
                if t.num_rows:
                    parts.append(self.stage_part(name, t))
            if not parts:
                if first is None:
                    raise LakeError(f"no data and no schema given for table '{name}'")
                parts = [self.stage_part(name, first.schema.empty_table())]
            self._state()[name] = parts

    def write_part(self, name: str, table: pa.Table, part: str | None = None) -> Part | None:
        """Append ``table`` to ``name`` (created on first write) as one part file; outside a
        transaction this is a commit of its own."""
        with self.transaction():
            self.ensure_table(name, table.schema)
            if table.num_rows == 0:
                return None
            p = self.stage_part(name, table, part)
            self.add_parts(name, [p])
            return p

    def delete_parts(self, name: str, pattern: str) -> int:
        """Drop the parts of ``name`` whose file name matches the glob ``pattern``; returns how
        many. A table left with no part keeps a zero-row one, so its view still binds."""
        with self.transaction():
            state = self._state()
            parts = state.get(check_name(name), [])
            doomed = [p for p in parts if fnmatch.fnmatchcase(p.name, pattern)]
            if not doomed:
                return 0
            kept = [p for p in parts if p not in doomed]
            if not kept:
                kept = [
                    self.stage_part(name, pq.read_schema(self.root / doomed[0].path).empty_table())
                ]
            state[name] = kept
            return len(doomed)

    def delete_where(self, name: str, predicate: str, params: list | None = None) -> int:
        """Delete the rows of ``name`` that match the SQL ``predicate``: the parts holding such
        rows are rewritten without them, in this commit. Returns the rows deleted."""
        with self.transaction():
            state = self._state()
            parts = [p for p in state.get(check_name(name), []) if p.rows]
            if not parts:
                return 0
            con = duckdb.connect()
            try:
                files = self._file_list(parts)
                hits = con.execute(
                    f"select filename, count(*) from read_parquet({files}, filename = true, "
                    f"union_by_name = true) where {predicate} group by 1",
                    params or [],
                ).fetchall()
                by_file = {str(Path(f).resolve()): n for f, n in hits}
                kept, deleted = [], 0
                for p in parts:
                    n = by_file.get(str((self.root / p.path).resolve()))
                    if not n:
                        kept.append(p)
                        continue
                    deleted += n
                    t = fetch_arrow(
                        con,
                        f"select * from read_parquet({self._file_list([p])}) "
                        f"where not coalesce(({predicate}), false)",
                        params,
                    )
                    if t.num_rows:
                        kept.append(self.stage_part(name, t))
                if not kept:
                    kept = [
                        self.stage_part(
                            name, pq.read_schema(self.root / parts[0].path).empty_table()
                        )
                    ]
            finally:
                con.close()
            state[name] = kept
            return deleted

    def compact(self, name: str | None = None) -> dict[str, tuple[int, int]]:
        """Merge each table's small parts into one, in one commit. Returns, per table that
        changed, (parts before, parts after)."""
        out = {}
        with self.transaction("compact"):
            for t in [name] if name else sorted(self._state()):
                before = len(self._state().get(t, []))
                if self._compact_in(self._tx, t):
                    out[t] = (before, len(self._state()[t]))
        return out

    def _compact_in(self, tx: _Tx, name: str) -> bool:
        parts = tx.tables.get(name, [])
        small = [p for p in parts if p.size < SMALL_PART_BYTES]
        if len(small) < 2:
            return False
        failpoints.hit("compact")
        con = duckdb.connect()
        try:
            t = fetch_arrow(
                con, f"select * from read_parquet({self._file_list(small)}, union_by_name = true)"
            )
        finally:
            con.close()
        merged = self.stage_part(name, t if t.num_rows else t.schema.empty_table(), "compact")
        at = parts.index(small[0])
        rest = [p for p in parts if p not in small]
        tx.tables[name] = rest[:at] + [merged] + rest[at:]
        return True

    def _file_list(self, parts: list[Part]) -> str:
        paths = [sql_literal(glob_escape(str(self.root / p.path))) for p in parts]
        return "[" + ", ".join(paths) + "]"

    # ------------------------------------------------------------------ tables
    def has_table(self, name: str) -> bool:
        return check_name(name) in self.snapshot().tables

    def table_names(self) -> list[str]:
        return sorted(self.snapshot().tables)

    def table_path(self, name: str) -> Path:
        """The folder of the table's part files."""
        if not self.has_table(name):
            raise UnknownTableError(f"the lake has no table '{name}'")
        return self.tables_dir / name

    def parts(self, name: str) -> list[Path]:
        """The table's live part files, in write order."""
        return [self.root / p.path for p in self.snapshot().tables.get(check_name(name), [])]

    def part_info(self, name: str) -> list[Part]:
        return list(self.snapshot().tables.get(check_name(name), []))

    def read_table(self, name: str) -> pa.Table:
        return self.query_arrow(f"select * from {quote_ident(check_name(name))}")

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self, command: str = "", wait: float | None = None) -> Iterator[None]:
        """Hold the lake's write lock. Re-entrant within one process.

        A second writer waits up to ``wait`` seconds, then gets a ``LakeLockedError`` that names
        the holder. Taking the lock sweeps what a killed writer left; releasing it brings the
        catalog up to date with the commits made under it.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LakeError(f"cannot write to the lake {self.root}: {e.strerror}") from None
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
        self._lock_fd, self._lock_depth, self._lock_command = fd, 1, command
        try:
            self._adopt_unlogged()
            self.sweep()
            try:
                yield
            finally:
                self.refresh_catalog()
        finally:
            self._lock_depth = 0
            self._lock_fd = None
            self._lock_command = ""
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ------------------------------------------------------------------ SQL
    def _table_view_sql(self, name: str, relative: bool = False) -> str:
        parts = self.snapshot().tables[name]
        if relative:  # the catalog's form: opened from the lake folder, wherever it lies
            files = "[" + ", ".join(sql_literal(p.path) for p in parts) + "]"
        else:
            files = self._file_list(parts)
        return (
            f"create or replace view {quote_ident(name)} as select * from "
            f"read_parquet({files}, union_by_name = true)"
        )

    def _damaged_view(self, name: str, e: Exception, relative: bool = False) -> str:
        """A view for a table with a part that cannot be read (deleted, truncated): it has the
        columns of the readable parts, and any query of it fails with a message naming the
        damage, so views over it still bind and queries of other tables go on."""
        first = str(e).splitlines()[0].replace("'", "")
        msg = sql_literal(f"table {name} cannot be read ({first}); run: mkailin lake verify")
        ok = [p for p in self.snapshot().tables.get(name, []) if _readable(self.root / p.path)]
        if not ok:
            cols = "error(" + msg + ") as error"
            if name in schema.TABLES:  # the contract's columns, so views over it bind
                cols = ", ".join(
                    f"cast(null as {_sql_type(f.type)}) as {quote_ident(f.name)}"
                    for f in schema.TABLES[name]
                )
                cols += f" where error({msg}) is null"
            return f"create or replace view {quote_ident(name)} as select {cols}"
        files = (
            "[" + ", ".join(sql_literal(p.path) for p in ok) + "]"
            if relative
            else self._file_list(ok)
        )
        return (
            f"create or replace view {quote_ident(name)} as select * from "
            f"read_parquet({files}, union_by_name = true) where error({msg}) is null"
        )

    def _statements(self, relative: bool = False) -> list[tuple[str, str]]:
        """(key, sql) in the order they are applied: table views, then the sql/ files."""
        out = [(f"table:{n}", self._table_view_sql(n, relative)) for n in self.table_names()]
        out += [(f"sql:{p.name}", p.read_text()) for p in sql_files()]
        return out

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with every table and sql/ view defined; close it when done.

        The views live in one in-memory database per Lake and process, and each call returns a
        new cursor on it (its own temp tables and registrations), so a query costs no catalog
        set-up: only statements that changed since the last call (a commit, a copied lake's
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
                    if not key.startswith("table:"):
                        raise QueryError(f"{key}: {e}") from None
                    # a damaged part fails its own table only: queries of others go on
                    self._db.execute(self._damaged_view(key[6:], e))
                self._db_applied[key] = stmt
            return self._db.cursor()

    def refresh_catalog(self) -> None:
        """Bring ``mkailin.duckdb`` up to the newest commit when it is behind. The catalog is
        derived: a failed refresh is retried by the next writer."""
        seq = self.snapshot().seq
        mark = self.log_dir / "catalog-seq"
        with contextlib.suppress(OSError):
            if mark.read_text().strip() == str(seq):
                return
        with contextlib.suppress(LakeError, QueryError, duckdb.Error, OSError):
            if not self.sync_catalog().get("busy"):
                mark.write_text(f"{seq}\n")

    def sync_catalog(self) -> dict[str, int]:
        """Write the table views and sql/ files into ``mkailin.duckdb``, recorded by checksum.

        Unchanged statements are skipped, so re-applying is safe and cheap. Returns counts of
        applied and skipped statements. The catalog is written as a copy renamed over it, so
        read-only sessions are never in the way; while a session holds it open read-write, the
        sync is skipped (``busy``) and the next writer tries again.
        """
        if _held_for_writing(self.catalog_path):
            return {"applied": 0, "skipped": 0, "busy": 1}
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
            # the views name their files relative to the lake, found through the search path
            con.execute(f"set file_search_path = {sql_literal(str(self.root))}")
            con.execute(
                "create table if not exists _mkailin_sql ("
                "key varchar primary key, checksum varchar, applied_at timestamptz)"
            )
            done = dict(con.execute("select key, checksum from _mkailin_sql").fetchall())
            applied = skipped = 0
            con.execute("begin")
            for key, stmt in self._statements(relative=True):
                digest = hashlib.sha256(stmt.encode()).hexdigest()
                if done.get(key) == digest:
                    skipped += 1
                    continue
                try:
                    con.execute(stmt)
                except duckdb.Error as e:
                    if not key.startswith("table:"):
                        con.execute("rollback")
                        raise QueryError(f"{key}: {e}") from None
                    con.execute(self._damaged_view(key[6:], e, relative=True))
                    continue  # recorded as not applied: the next sync tries again
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
                    raise QueryError(self._explain(str(e).splitlines()[0])) from None
                time.sleep(0.01 * (attempt + 1))
            except duckdb.Error as e:
                raise QueryError(str(e).splitlines()[0]) from None
            finally:
                con.close()

    def _explain(self, error: str) -> str:
        """An I/O error on a part file the newest snapshot names, as the damage it is."""
        for name, parts in self.snapshot().tables.items():
            for p in parts:
                if p.path in error and not (self.root / p.path).exists():
                    return (
                        f"table {name} cannot be read (its part {p.path} is missing); "
                        "run: mkailin lake verify"
                    )
        return error

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
    """A copy of the catalog to write, renamed over it when done. Readers (``duckdb -readonly``
    sessions) keep the file they opened and are never refused a lock, and a path DuckDB cannot
    write in place (its write-ahead log name is cut at the first ``?``) is no problem."""
    tmp = Path(tempfile.mkdtemp(prefix="mkailin-catalog-"))
    try:
        work = tmp / "catalog.duckdb"
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


def _held_for_writing(path: Path) -> bool:
    """Whether a session holds the catalog open read-write (a user's own views would be lost
    under a rename: the sync waits for the next writer)."""
    if not path.exists():
        return False
    try:
        duckdb.connect(str(path), read_only=True).close()
        return False
    except duckdb.Error as e:
        return "lock" in str(e).lower()


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return _sql_type(t.value_type) + "[]"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    names = {"string": "varchar", "large_string": "varchar", "int64": "bigint", "int32": "integer"}
    names |= {"double": "double", "float": "float", "bool": "boolean", "date32[day]": "date"}
    return names.get(str(t), "varchar")


# the free-text columns of the tables that record errors: no secret is ever written there
_REDACTED = {
    "quarantine": ("error", "raw_excerpt", "file"),
    "run_events": ("error", "detail", "models"),
}


def _redacted(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    from mkailin.secrets import redact

    for c in columns:
        if c in table.column_names and pa.types.is_string(table.schema.field(c).type):
            i = table.schema.get_field_index(c)
            table = table.set_column(
                i, c, pa.array([redact(v) for v in table.column(c).to_pylist()], pa.string())
            )
    return table


def _with_reasons(table: pa.Table) -> pa.Table:
    """Quarantine rows with their reason class filled in where the writer gave none."""
    from mkailin.errors import reason_class

    given = table.column("reason").to_pylist()
    errors = table.column("error").to_pylist()
    reasons = [g or reason_class(e) for g, e in zip(given, errors)]
    return table.set_column(
        table.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string())
    )


def _readable(path: Path) -> bool:
    try:
        pq.read_metadata(path)
        return True
    except (OSError, pa.ArrowException):
        return False


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _parts_of(lake: Lake, files: Iterable[Path], say: bool) -> list[Part]:
    out = []
    for f in sorted(files):
        try:
            rows = pq.read_metadata(f).num_rows
        except (OSError, pa.ArrowException) as e:
            if say:
                print(f"not adopted: {f}: unreadable Parquet ({e})", file=sys.stderr)
            continue
        out.append(Part(lake.rel(f), rows, f.stat().st_size))
    return out


def _legacy_tables(lake: Lake, say: bool = False) -> dict[str, list[Part]]:
    """The tables of a lake with no log. A lake written before the log keeps each table in
    generation folders with a ``current`` link (or what a copy tool made of it: a plain file
    naming the generation, a folder copy, or nothing); its live generation is the one
    ``current`` names, else the newest holding parts. A lake that lost its log keeps its parts
    flat in the table folder: all of them are taken."""
    out: dict[str, list[Part]] = {}
    if not lake.tables_dir.is_dir():
        return out
    for tdir in sorted(lake.tables_dir.iterdir()):
        if not (_NAME.match(tdir.name) and tdir.is_dir()):
            continue
        folder = _legacy_live(tdir)
        files = [p for p in (folder or tdir).glob("*.parquet") if not p.name.startswith(".")]
        parts = _parts_of(lake, files, say)
        if parts:
            out[tdir.name] = parts
    return out


def _legacy_live(tdir: Path) -> Path | None:
    cur = tdir / "current"
    if cur.is_dir() and any(cur.glob("*.parquet")):  # a link, or a folder a copy made of it
        return tdir / os.readlink(cur) if cur.is_symlink() else cur
    if cur.is_file() and not cur.is_symlink():
        try:
            named = cur.read_text(errors="replace").strip().rstrip("/")
        except OSError:
            named = ""
        if _GEN.match(named) and (tdir / named).is_dir():
            return tdir / named
    gens = sorted(
        (g for g in tdir.iterdir() if _GEN.match(g.name) and g.is_dir() and not g.is_symlink()),
        key=lambda g: int(g.name[1:]),
    )
    gens = [g for g in gens if any(g.glob("*.parquet"))]
    return gens[-1] if gens else None


def json_dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
