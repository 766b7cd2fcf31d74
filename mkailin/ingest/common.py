"""What every ingest shares: input checks, gzip-aware opening, file keys, the ledger, summaries."""

from __future__ import annotations

import hashlib
import io
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mkailin.errors import InputError
from mkailin.lake import Lake, now

GZIP_MAGIC = b"\x1f\x8b"
# The largest PMID: the pmid columns are int64. PubMed's own PMIDs have 8 digits today; the bound
# is the column's, so that any number that can be stored is accepted and none overflows.
PMID_MAX = 2**63 - 1
_ASCII_DIGITS = re.compile(r"[0-9]+")


@dataclass
class IngestSummary:
    """What an ingest did; the CLI prints it."""

    source: str
    files: int = 0
    skipped_files: int = 0
    read: int = 0
    written: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    outcome: str | None = None  # what the ingest did to its table, in one line

    def lines(self) -> list[str]:
        files = f"{self.files} file(s) ingested, {self.skipped_files} already in the lake"
        rows = (
            f"rows read {self.read:,}, written {self.written:,}, quarantined {self.quarantined:,}"
            f" in {self.seconds:.1f} s"
        )
        if self.outcome:
            out = [self.outcome, f"  {files}; {rows}"]
        else:
            out = [f"{self.source}: {files}", f"  {rows}"]
        if self.quarantined:
            out.append(
                "  quarantined records: mkailin sql "
                f'"select file, record_key, error from quarantine where source = '
                f"'{self.source}'\""
            )
        out += [
            f"  {k.replace('_', ' ')}: {v:,}"
            if isinstance(v, int)
            else f"  {k.replace('_', ' ')}: {v}"
            for k, v in self.extra.items()
        ]
        return out


def plural(n: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``1,000 rows``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def pmid_problem(text: str) -> str | None:
    """Why ``text`` is not a PMID, or None when it is one. A PMID is ASCII digits only
    (``str.isdigit`` also accepts Arabic-Indic digits, which ``int`` reads as a number, and
    superscripts, which ``int`` rejects) with a value from 1 to ``PMID_MAX``."""
    if not isinstance(text, str):
        return f"bad PMID {text!r}: not a string of digits"
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if not text:
        return "no PMID"
    if not _ASCII_DIGITS.fullmatch(text):
        if text.isdigit():
            return f"bad PMID {shown}: not ASCII digits 0-9"
        return f"bad PMID {shown}"
    digits = text.lstrip("0")
    if not digits or len(digits) > 19 or int(digits) > PMID_MAX:
        return f"bad PMID {shown}: out of range 1..{PMID_MAX}"
    return None


def parse_pmid(text: str) -> int:
    """``text`` as a PMID, or a ``ValueError`` that says why it is not one (``pmid_problem``)."""
    why = pmid_problem(text)
    if why is not None:
        raise ValueError(why)
    return int(text.lstrip("0"))  # leading zeros would count against int's 4,300-digit limit


def check_input(path: str | Path) -> Path:
    """A readable, non-empty regular file, or an ``InputError`` that names it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    return p


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


try:  # ISA-L inflates the same gzip streams about 2.5x faster than zlib
    from isal import isal_zlib as _inflate

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate.error)
except ImportError:  # pragma: no cover - isal is a dependency, but zlib always works
    _inflate = zlib  # type: ignore[assignment]
    _INFLATE_ERRORS = (zlib.error,)


class ByteSource(io.RawIOBase):
    """A readable raw stream defined by its ``read``; ``readinto`` comes from it."""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class GzipReader(ByteSource):
    """Streaming gzip decompression that hands out every byte it can before reporting a
    truncated or corrupt stream (``gzip.open`` drops the last buffer when it raises). A corrupt
    stream is reported as ``zlib.error`` whichever inflater read it."""

    def __init__(self, path: Path, chunk: int = 1 << 16):
        self._f = open(path, "rb")
        self._chunk = chunk
        self._d = _inflate.decompressobj(wbits=31)
        self._buf = b""
        self._pos = 0  # bytes of _buf already handed out: slicing them off would copy the rest
        self._error: Exception | None = None
        self._done = False

    def _fill(self, n: int) -> None:
        if len(self._buf) - self._pos >= n or self._done:
            return
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        try:
            while have < n:
                raw = self._f.read(self._chunk)
                if not raw:
                    self._done = True
                    if not self._d.eof:
                        self._error = EOFError(
                            "Compressed file ended before the end-of-stream marker was reached"
                        )
                    break
                try:
                    out = self._d.decompress(raw)
                    while self._d.eof and self._d.unused_data:  # concatenated gzip members
                        rest = self._d.unused_data
                        self._d = _inflate.decompressobj(wbits=31)
                        out += self._d.decompress(rest)
                except _INFLATE_ERRORS as e:
                    self._done = True
                    self._error = e if isinstance(e, zlib.error) else zlib.error(str(e))
                    break
                parts.append(out)
                have += len(out)
        finally:
            self._buf, self._pos = b"".join(parts), 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        self._fill(n)
        if self._pos >= len(self._buf) and self._error is not None:
            err, self._error = self._error, None
            raise err
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        self._f.close()
        super().close()


def open_bytes(path: Path) -> io.RawIOBase:
    """Open a file for reading bytes, decompressing gzip by its magic number, not its name."""
    if is_gzip(path):
        return GzipReader(path)
    return open(path, "rb")


def read_head(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` decompressed bytes (fewer if the file is short or truncated)."""
    try:
        with open_bytes(path) as f:
            return f.read(n)
    except (EOFError, OSError, zlib.error):
        return b""


def file_key(path: Path) -> str:
    """sha256 of the file's bytes: the identity of an input file in the ledger."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Ledger:
    """The ``ingested_files`` table: which input files are in the lake, and in what order."""

    def __init__(self, lake: Lake, source: str):
        self.lake, self.source = lake, source
        rows = lake.query(
            "select file_key, status, file_seq from ingested_files where source = ?", [source]
        )
        self.complete = {k for k, s, _ in rows if s == "complete"}
        # files whose rows are in the lake only in part (a fault), by key: their file_seq
        self.partial = {k: q for k, s, q in sorted(rows, key=lambda r: r[2]) if s == "partial"}
        self.partial = {k: q for k, q in self.partial.items() if k not in self.complete}
        seqs = lake.query("select coalesce(max(file_seq), 0) from ingested_files")
        self._next_seq = int(seqs[0][0]) + 1

    def next_seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def record(
        self,
        path: Path,
        key: str,
        seq: int,
        records: int,
        quarantined: int,
        status: str,
        rows: int | None = None,
    ) -> None:
        self.lake.write_part(
            "ingested_files",
            pa.Table.from_pylist(
                [
                    {
                        "source": self.source,
                        "path": str(path.absolute()),
                        "file_key": key,
                        "size": path.stat().st_size,
                        "file_seq": seq,
                        "records": records,
                        "quarantined": quarantined,
                        "status": status,
                        "ingested_at": now(),
                        "rows": rows,
                    }
                ]
            ),
        )


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __exit__(self, *exc):
        self.seconds = self.elapsed()


def logged_ingest(source: str):
    """Decorate an ``ingest_<source>(lake, ...)`` function so that each call is a run in the
    run log (``ingest:<source>``): started, then finished with rows read and written, or failed."""
    import functools
    import json

    from mkailin.runs import logged_run

    def wrap(fn):
        @functools.wraps(fn)
        def run(lake, *args, **kwargs):
            # the lock first, so a second writer is told which command holds it
            with lake.lock(f"ingest {source}"), logged_run(lake, f"ingest:{source}") as r:
                summary = fn(lake, *args, **kwargs)
                r.update(
                    rows_in=summary.read,
                    rows_out=summary.written,
                    detail=json.dumps(
                        {
                            "files": summary.files,
                            "skipped_files": summary.skipped_files,
                            "quarantined": summary.quarantined,
                            **summary.extra,
                        },
                        default=str,
                    ),
                )
            return summary

        return run

    return wrap
