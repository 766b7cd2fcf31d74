"""PubMed/MEDLINE XML (baseline and update files, ``.xml`` or ``.xml.gz``) into the lake.

Each file is streamed with lxml ``iterparse``, clearing elements as it goes, so memory stays
flat whatever the file size. Files run in parallel processes. Records go to
``article_records`` and ``article_mesh_records`` in part files named after the input file's
sha256; the ``articles`` view resolves versions and DeleteCitation tombstones.

When the fast streaming parse hits a fault (malformed XML, invalid UTF-8, a truncated gzip), the
file is re-read record by record from the fault on: good records are kept, a record whose bytes
are not UTF-8 is repaired (invalid bytes become U+FFFD) and kept, and a record that does not
parse goes to ``quarantine`` with the file, the record number and an excerpt.

A PMID is ASCII digits with a value from 1 to ``PMID_MAX`` (``common.pmid_problem``): a record
with any other PMID (Arabic-Indic or superscript digits, a sign, 2**63) is quarantined, and a
``<DeleteCitation>`` PMID that is not one deletes nothing and is quarantined too.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import multiprocessing as mp
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from lxml import etree

from mkailin.errors import InputError, is_env_fault
from mkailin.ingest.common import (
    ByteSource,
    IngestSummary,
    Ledger,
    Timer,
    check_input,
    file_key,
    logged_ingest,
    open_bytes,
    pmid_problem,
    read_head,
)
from mkailin.lake import Lake, now
from mkailin.schema import TABLES

SOURCE = "pubmed"
RECORD_TAGS = ("PubmedArticle", "DeleteCitation", "PubmedBookArticle")
SEQ_BASE = 100_000_000  # ingest_seq = file_seq * SEQ_BASE + record index
CHUNK_ROWS = 25_000  # article rows per part file
BATCH_ROWS = 2_000  # article rows held as Python dicts before they become Arrow
_YEAR = re.compile(r"(1[89]|20)\d\d")
_ROOT = re.compile(rb"<([A-Za-z_][\w.-]*)[\s>/]")
_RECORD = re.compile(rb"<(PubmedArticle|DeleteCitation|PubmedBookArticle)[\s>]")
_FAULTS = (etree.XMLSyntaxError, EOFError, zlib.error, OSError, UnicodeDecodeError)


class RecordError(ValueError):
    """A record that cannot go into the lake (quarantined, not raised to the user)."""


# ---------------------------------------------------------------------------- record parsing
# The hot path: one call per record and per MeSH heading, so it walks children with lxml's
# C-level ``iterchildren(tag)`` (what ``find("a/b")`` does, minus the ElementPath machinery) and
# skips work that cannot change the result.
def _norm(t: str) -> str:
    """``" ".join(t.split())``, skipping the split when ``t`` is already normal: ASCII, printable
    (so its only whitespace is the space), no double space, no space at either end."""
    if t.isascii() and t.isprintable() and "  " not in t and t[0] != " " and t[-1] != " ":
        return t
    return " ".join(t.split())


def _text(el) -> str | None:
    """The element's text content (its descendants' too), whitespace collapsed; None if empty."""
    if el is None:
        return None
    if len(el):
        t = "".join(el.itertext())
        return " ".join(t.split()) or None
    t = el.text  # no children: itertext() would yield just this
    return (_norm(t) or None) if t else None


def _child(el, tag: str):
    """``el.find(tag)`` for a plain tag: the first child with that tag, or None."""
    for c in el.iterchildren(tag):
        return c
    return None


def _findtext(el, *path: str) -> str | None:
    """``el.findtext("a/b")``: the first match's text ('' when it has none), or None."""
    for tag in path:
        el = _child(el, tag)
        if el is None:
            return None
    return el.text or ""


def _year(article) -> int | None:
    pd = article
    for tag in ("Journal", "JournalIssue", "PubDate"):
        pd = _child(pd, tag)
        if pd is None:
            return None
    y = _findtext(pd, "Year")
    if not y:
        y = _findtext(pd, "MedlineDate") or ""
    m = _YEAR.search(y)
    return int(m.group(0)) if m else None


def _headings(mc, uis: list, names: list, majors: list, quals: list) -> None:
    """Append each ``<MeshHeading>`` of a citation to the column lists: its first
    DescriptorName's UI and name, whether it or any qualifier is major, and the qualifier
    names. Columns, not a dict per heading: a record has a dozen headings, and the lists go
    to Arrow as they are."""
    for mhl in mc.iterchildren("MeshHeadingList"):
        for mh in mhl.iterchildren("MeshHeading"):
            d = None
            qs = None
            for c in mh:
                tag = c.tag
                if tag == "DescriptorName":
                    if d is None:
                        d = c
                elif tag == "QualifierName":
                    if qs is None:
                        qs = [c]
                    else:
                        qs.append(c)
            if d is None:
                continue
            get = d.get
            major = get("MajorTopicYN") == "Y"
            if qs is None:
                qnames = []
            else:
                if not major:
                    for q in qs:  # a plain loop: any() over a generator costs more for 1-3 items
                        if q.get("MajorTopicYN") == "Y":
                            major = True
                            break
                qnames = [_text(q) for q in qs]
            if len(d):
                name = _text(d)
            else:  # a MeSH name is short: collapsing it costs less than testing whether it needs it
                name = d.text
                name = (" ".join(name.split()) or None) if name else None
            uis.append(get("UI"))
            names.append(name)
            majors.append(major)
            quals.append(qnames)


# the article fields parse_record returns, in order
ARTICLE_FIELDS = ("pmid", "title", "abstract", "journal", "pub_year", "language", "version")


def parse_record(elem) -> tuple[tuple, tuple[list, list, list, list]]:
    """One ``<PubmedArticle>`` element into its article fields (``ARTICLE_FIELDS``) and its
    MeSH headings as columns (descriptor UIs, names, major flags, qualifier lists)."""
    mc = _child(elem, "MedlineCitation")
    pmid_el = _child(mc, "PMID") if mc is not None else None
    pmid_text = (pmid_el.text or "").strip() if pmid_el is not None else ""
    # the common case inline: 1 to 18 ASCII digits are always an int64 (isdigit alone would
    # accept '\u0663' and '\u00b2'); anything else, and 0, takes the full check
    short = len(pmid_text) < 19 and pmid_text.isascii() and pmid_text.isdigit()
    pmid = int(pmid_text) if short else 0
    if not pmid:
        pmid = _checked_pmid(pmid_text)
    art = _child(mc, "Article")
    if art is None:
        raise RecordError(f"PMID {pmid}: record has no <Article>")
    sections = []
    for ab in art.iterchildren("Abstract"):
        for s in ab.iterchildren("AbstractText"):
            t = _text(s)
            if t:
                label = s.get("Label")
                sections.append(f"{label}: {t}" if label else t)
    version = pmid_el.get("Version")
    row = (
        pmid,
        _text(_child(art, "ArticleTitle")),
        "\n".join(sections) or None,
        _findtext(art, "Journal", "Title"),
        _year(art),
        _findtext(art, "Language"),
        int(version)
        if version and len(version) < 10 and version.isascii() and version.isdigit()
        else 1,
    )
    mesh: tuple[list, list, list, list] = ([], [], [], [])
    _headings(mc, *mesh)
    return row, mesh


def parse_article(elem) -> tuple[dict, list[dict]]:
    """One ``<PubmedArticle>`` element as an article dict and a dict per MeSH heading."""
    row, (uis, names, majors, quals) = parse_record(elem)
    pmid = row[0]
    return dict(zip(ARTICLE_FIELDS, row)), [
        {"pmid": pmid, "descriptor_ui": u, "descriptor_name": n, "major_topic": m, "qualifiers": q}
        for u, n, m, q in zip(uis, names, majors, quals)
    ]


def _checked_pmid(text: str) -> int:
    """``text`` (stripped) as a PMID, or a ``RecordError`` that says why it is not one."""
    if not text:
        raise RecordError("record has no PMID")
    why = pmid_problem(text)
    if why is not None:
        raise RecordError(why)
    return int(text.lstrip("0"))


def parse_delete(elem) -> tuple[list[int], list[str]]:
    """A ``<DeleteCitation>``'s PMIDs, and why each of its other ``<PMID>`` texts is not one."""
    pmids, problems = [], []
    for p in elem.iterfind("PMID"):
        try:
            pmids.append(_checked_pmid((p.text or "").strip()))
        except RecordError as e:
            problems.append(str(e))
    return pmids, problems


def _element_events(elem) -> Iterator[tuple]:
    tag = elem.tag
    if tag == "PubmedArticle":
        try:
            row, mesh = parse_record(elem)
            yield ("article", row, mesh)
        except RecordError as e:
            yield ("bad", str(e), etree.tostring(elem, encoding="unicode")[:2000], "dropped")
    elif tag == "DeleteCitation":
        pmids, problems = parse_delete(elem)
        excerpt = etree.tostring(elem, encoding="unicode")[:2000] if problems else None
        yield ("delete", pmids, problems, excerpt)
    else:  # PubmedBookArticle: NCBI Bookshelf records carry no MEDLINE citation
        yield ("book",)


# ---------------------------------------------------------------------------- pruning
# Elements no field is read from, cut from the bytes before libxml2 sees them: author lists
# (a third of a typical record), chemicals and the whole PubmedData (history, article ids,
# references). Each record is searched for them in document order, between the end of the
# record before and its own end tag. A cut is one whole element (its end tag found within the
# record, no record start inside it), and leaves its newlines behind so that libxml2's line
# numbers stay those of the file.
_PRUNE = tuple(
    (b"<" + t, b"</" + t + b">") for t in (b"AuthorList", b"ChemicalList", b"PubmedData")
)
_RECORD_END = b"</PubmedArticle>"
_RECORD_START = b"<PubmedArticle"
_NAME_END = (b">", b" ", b"\n", b"\t", b"\r")


def _prune(buf: bytes, end: int | None = None) -> bytes:
    """``buf[:end]`` with the ``_PRUNE`` elements of its PubmedArticle records cut out."""
    if end is None:
        end = len(buf)
    find, count = buf.find, buf.count
    out = []
    kept = pos = 0
    while True:
        e = find(_RECORD_END, pos, end)
        if e < 0:
            break
        for start, stop in _PRUNE:
            i = find(start, pos, e)
            if i < 0 or buf[i + len(start) : i + len(start) + 1] not in _NAME_END:
                continue
            j = find(stop, i, e)
            if j < 0 or find(_RECORD_START, i, j) >= 0:  # unclosed here: libxml2 will say so
                continue
            j += len(stop)
            out.append(buf[kept:i])
            nl = count(b"\n", i, j)
            if nl:
                out.append(b"\n" * nl)
            kept = pos = j
        pos = e + len(_RECORD_END)
    out.append(buf[kept:end])
    return b"".join(out)


class FileTooLarge(Exception):
    """A file past the per-file cap of decompressed bytes (a decompression bomb, say)."""


def max_record_bytes() -> int:
    """The per-record cap: a record larger than this is left out with a quarantine row (real
    PubMed records are at most a few hundred kB; the cap keeps a decompression bomb's record
    from being held and parsed whole). ``MKAILIN_MAX_RECORD_MB``, default 64."""
    return int(float(os.environ.get("MKAILIN_MAX_RECORD_MB") or 64) * (1 << 20))


def max_file_bytes() -> int:
    """The per-file cap on decompressed bytes (a baseline file is about 150 MB):
    ``MKAILIN_MAX_FILE_MB``, default 4096."""
    return int(float(os.environ.get("MKAILIN_MAX_FILE_MB") or 4096) * (1 << 20))


class _Pruned(ByteSource):
    """A decompressed PubMed stream with the ``_PRUNE`` elements cut out, a block of whole
    records at a time. Like ``GzipReader`` it hands out every byte it has before raising the
    error that ended the stream (a truncated gzip)."""

    def __init__(self, raw, block: int = 1 << 20):
        self._raw = raw
        self._block = block
        self._carry = b""
        self._out = b""
        self._pos = 0
        self._eof = False
        self._error: BaseException | None = None
        self._total = 0
        self._skipping = False
        # records left out for their size: (bytes, their first bytes), taken by iter_records
        self.oversized: list[tuple[int, bytes]] = []

    def _refill(self) -> None:
        try:
            data = self._raw.read(self._block)
        except _FAULTS as e:
            data, self._error = b"", e
        self._total += len(data)
        if self._total > max_file_bytes():
            data = b""
            self._error = FileTooLarge(
                f"more than {max_file_bytes() >> 20:,} MB decompressed (the per-file cap, "
                "MKAILIN_MAX_FILE_MB); the rest of the file is not read"
            )
        if self._skipping:
            rest = self._skip(data)
            if rest is None:
                self._out, self._pos = b"", 0
                return
            data = rest
        if not data:  # the rest as it is: an unfinished record is not pruned
            self._eof = True
            self._out, self._pos, self._carry = self._carry, 0, b""
            return
        buf = self._carry + data if self._carry else data
        cut = buf.rfind(_RECORD_END)
        if cut < 0 and len(buf) > max_record_bytes():  # one record past the cap: leave it out
            start = buf.rfind(b"<PubmedArticle")
            start = 0 if start < 0 else start
            self.oversized.append((len(buf) - start, buf[start : start + 2000]))
            self._skipping = True
            self._carry = b""
            self._out, self._pos = _prune(buf, start), 0
            return
        if cut < 0:  # no record ends in it yet: read on
            self._carry = buf
            self._out, self._pos = b"", 0
            return
        cut += len(_RECORD_END)
        self._out, self._pos = _prune(buf, cut), 0
        self._carry = buf[cut:]

    def _skip(self, data: bytes) -> bytes | None:
        """Drop an oversized record's bytes up to its end tag; what follows it, or ``b""`` at
        the end of the stream (``None`` while the record goes on)."""
        if not data:
            self._skipping = False
            return b""
        buf = self._carry + data
        end = buf.find(_RECORD_END)
        if end < 0:
            size, head = self.oversized[-1]
            self.oversized[-1] = (size + len(data), head)
            self._carry = buf[-len(_RECORD_END) :]  # an end tag split across reads
            return None
        self._skipping = False
        self._carry = b""
        return buf[end + len(_RECORD_END) :] or b" "

    def read(self, n: int = -1) -> bytes:
        while self._pos >= len(self._out):
            if self._eof:
                if self._error is not None:
                    err, self._error = self._error, None
                    raise err
                return b""
            self._refill()
        if n is None or n < 0:
            n = len(self._out) - self._pos
        out = self._out[self._pos : self._pos + n]
        self._pos += len(out)
        return out


# ---------------------------------------------------------------------------- file streaming
def _root_tag(path: Path) -> str | None:
    head = read_head(path, 8192)
    body = re.sub(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", b"", head, flags=re.S)
    m = _ROOT.search(body)
    return m.group(1).decode("ascii", "replace") if m else None


def iter_records(path: Path) -> Iterator[tuple]:
    """Events for each record of a file, in order: ('article', fields, mesh columns) as
    ``parse_record`` gives them, ('delete', pmids, problems, excerpt) (why each PMID that was
    left out is not one, and the record's start when there are any),
    ('book',), ('bad', error, excerpt, action), ('repaired', note, excerpt),
    and at most one ('fault', message) for a file-level fault."""
    done = 0
    fault = None
    try:
        with open_bytes(path) as f:
            src = _Pruned(f)
            for _, elem in etree.iterparse(src, events=("end",), tag=RECORD_TAGS, huge_tree=True):
                while src.oversized:  # a record left out before this one
                    yield _oversized(*src.oversized.pop(0), done)
                    done += 1
                yield from _element_events(elem)
                done += 1
                elem.clear(keep_tail=True)
                parent = elem.getparent()
                if parent is not None:
                    while elem.getprevious() is not None:
                        del parent[0]
            for size, head in src.oversized:
                yield _oversized(size, head, done)
                done += 1
    except FileTooLarge as e:
        yield ("fault", str(e))
        return
    except _FAULTS as e:
        fault = _fault_message(e)
    if fault is None:
        return
    yield from _resync(path, skip=done, first_fault=fault)


def _oversized(size: int, head: bytes, index: int) -> tuple:
    return (
        "bad",
        f"record {index + 1}: {size / (1 << 20):,.1f} MB or more, past the per-record cap of "
        f"{max_record_bytes() / (1 << 20):,.0f} MB (MKAILIN_MAX_RECORD_MB); left out, not parsed",
        head.decode("utf-8", "replace"),
        "dropped",
    )


def _fault_message(e: Exception) -> str:
    if (
        isinstance(e, EOFError | zlib.error)
        or "gzip" in str(e).lower()
        or "end-of-stream" in str(e)
    ):
        return f"truncated or corrupt gzip ({e})"
    if isinstance(e, etree.XMLSyntaxError):
        return f"malformed XML at line {e.lineno}: {e.msg}"
    return str(e)


def _stream_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes in chunks; stops quietly where a truncated gzip ends."""
    try:
        with open_bytes(path) as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    return
                yield b
    except (EOFError, zlib.error, OSError):
        return


def _resync(path: Path, skip: int, first_fault: str) -> Iterator[tuple]:
    """Re-read the file record by record, keeping what parses, from record ``skip`` on."""
    buf = b""
    index = 0
    dropping: bytes | None = None  # the end tag of an oversized record being left out
    for chunk in _stream_chunks(path):
        buf += chunk
        pos = 0
        if dropping is not None:
            end = buf.find(dropping)
            if end < 0:
                buf = buf[-len(dropping) :]
                continue
            buf, dropping = buf[end + len(dropping) :], None
        while True:
            m = _RECORD.search(buf, pos)
            if not m:
                # keep a tail in case a start tag is split across chunks
                pos = max(pos, len(buf) - 32)
                break
            tag = m.group(1)
            end_tag = b"</" + tag + b">"
            end = buf.find(end_tag, m.end())
            if end < 0 and len(buf) - m.start() > max_record_bytes():
                if index >= skip:
                    yield _oversized(len(buf) - m.start(), buf[m.start() : m.start() + 2000], index)
                index += 1
                dropping, pos = end_tag, len(buf)
                break
            if end < 0:
                pos = m.start()
                break
            rec = buf[m.start() : end + len(end_tag)]
            pos = end + len(end_tag)
            if index >= skip:
                yield from _parse_one(rec, index)
            index += 1
        buf = buf[pos:]
    tail = _RECORD.search(buf)
    if tail:
        excerpt = buf[tail.start() : tail.start() + 2000].decode("utf-8", "replace")
        yield (
            "bad",
            f"record {index + 1}: truncated at end of file ({first_fault})",
            excerpt,
            "dropped",
        )
        index += 1
    if index <= skip:
        yield ("fault", first_fault)
    else:
        yield ("fault_recovered", first_fault)


def _parse_one(rec: bytes, index: int) -> Iterator[tuple]:
    pruned = _prune(rec)
    for data in (pruned, rec) if pruned != rec else (rec,):  # unpruned, should pruning misfire
        try:
            elem = etree.fromstring(data, parser=_PARSER)
        except etree.XMLSyntaxError as e:
            first = e
            continue
        yield from _element_events(elem)
        return
    try:
        fixed = rec.decode("utf-8", "replace").encode("utf-8")
        if fixed != rec:
            elem = etree.fromstring(fixed, parser=_PARSER)
            excerpt = rec[:2000].decode("utf-8", "replace")
            yield (
                "repaired",
                f"record {index + 1}: invalid UTF-8 bytes replaced with U+FFFD",
                excerpt,
            )
            yield from _element_events(elem)
            return
    except etree.XMLSyntaxError:
        pass
    yield (
        "bad",
        f"record {index + 1}: malformed XML: {first.msg}",
        rec[:2000].decode("utf-8", "replace"),
        "dropped",
    )


_PARSER = etree.XMLParser(huge_tree=True, resolve_entities=False)


# ---------------------------------------------------------------------------- one file -> lake
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. A file's rows are acyclic and freed by reference
    counting, but the collector would walk every buffered row dict again at each generation
    sweep (~15% of the CPU of a 30k-record file). ``ingest_file`` collects the young generation
    once per batch instead, so memory stays flat."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_ART_SCHEMA = TABLES["article_records"]
_MESH_SCHEMA = TABLES["article_mesh_records"]
# article_records columns in schema order, as ingest_file builds each row
assert _ART_SCHEMA.names == [
    "pmid",
    "title",
    "abstract",
    "journal",
    "pub_year",
    "language",
    "source",
    "source_file",
    "version",
    "ingest_seq",
    "deleted",
]
assert _MESH_SCHEMA.names == [
    "pmid",
    "ingest_seq",
    "descriptor_ui",
    "descriptor_name",
    "major_topic",
    "qualifiers",
]


class _Columns:
    """A part's rows as they arrive: article rows as tuples in schema order and MeSH rows as
    six column lists, turned into Arrow every ``BATCH_ROWS`` articles (far more compact than
    Python objects, so a worker holds ~BATCH_ROWS rows of them, not a whole part's worth)."""

    def __init__(self) -> None:
        self.arts: list[tuple] = []
        self.mesh: tuple[list, ...] = ([], [], [], [], [], [])
        self.art_batches: list[pa.Table] = []
        self.mesh_batches: list[pa.Table] = []
        self.rows = 0  # article rows of the current part (Arrow and Python)

    def add_article(self, f: tuple, seq: int, source_file: str, heads: tuple) -> None:
        pmid = f[0]
        self.arts.append(
            (pmid, f[1], f[2], f[3], f[4], f[5], SOURCE, source_file, f[6], seq, False)
        )
        n = len(heads[0])
        if n:
            m = self.mesh
            m[0].extend([pmid] * n)
            m[1].extend([seq] * n)
            m[2].extend(heads[0])
            m[3].extend(heads[1])
            m[4].extend(heads[2])
            m[5].extend(heads[3])

    def add_deletion(self, pmid: int, seq: int, source_file: str) -> None:
        self.arts.append((pmid, None, None, None, None, None, SOURCE, source_file, None, seq, True))

    def to_arrow(self) -> None:
        if self.arts:
            cols = zip(*self.arts)
            self.art_batches.append(
                pa.Table.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(cols, _ART_SCHEMA)],
                    schema=_ART_SCHEMA,
                )
            )
            self.rows += len(self.arts)
            self.arts = []
        if self.mesh[0]:
            self.mesh_batches.append(
                pa.Table.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(self.mesh, _MESH_SCHEMA)],
                    schema=_MESH_SCHEMA,
                )
            )
            self.mesh = ([], [], [], [], [], [])
        gc.collect(0)  # the young objects since the last batch: any cyclic garbage goes here

    def take(self) -> list[tuple[str, pa.Table]]:
        """The part's tables, and a fresh start for the next part."""
        self.to_arrow()
        out = [
            (t, pa.concat_tables(b).combine_chunks())
            for t, b in (
                ("article_records", self.art_batches),
                ("article_mesh_records", self.mesh_batches),
            )
            if b
        ]
        self.art_batches, self.mesh_batches, self.rows = [], [], 0
        return out


def ingest_file(
    lake_root: str, path: str, key: str, file_seq: int, chunk_rows: int = CHUNK_ROWS
) -> dict:
    """Parse one file and write its parts, staged: none is visible until the lock holder
    commits them with the file's ledger row (``stats["parts"]``). Runs in a worker process."""
    lake = Lake(lake_root)
    p = Path(path)
    name = p.name
    prefix = f"part-{key[:16]}"
    base = file_seq * SEQ_BASE
    cols = _Columns()
    quarantine: list[dict] = []
    stats = {
        "records": 0,
        "articles": 0,
        "deleted": 0,
        "books": 0,
        "mesh": 0,
        "no_abstract": 0,
        "quarantined": 0,
        "repaired": 0,
        "fault": None,
        "parts": [],
    }

    def flush():
        for table, t in cols.take():
            stats["parts"].append((table, lake.stage_part(table, t, prefix)))

    index = 0
    seen: dict[int, int] = {}
    with _gc_paused():
        for ev in iter_records(p):
            kind = ev[0]
            if kind == "article":
                f, heads = ev[1], ev[2]
                pmid = f[0]
                first = seen.setdefault(pmid, index)
                if first != index:  # PubMed's rule: the later record of a PMID wins
                    quarantine.append(
                        {
                            "source": SOURCE,
                            "file": str(p),
                            "record_key": f"{name}#{index + 1}",
                            "action": "superseded",
                            "error": f"PMID {pmid} appears earlier in this file "
                            f"(record {first + 1}); this later record wins",
                            "raw_excerpt": None,
                        }
                    )
                cols.add_article(f, base + index, name, heads)
                stats["articles"] += 1
                stats["mesh"] += len(heads[0])
                stats["no_abstract"] += f[2] is None
            elif kind == "delete":
                for pm in ev[1]:
                    cols.add_deletion(pm, base + index, name)
                    stats["deleted"] += 1
                for why in ev[2]:  # a PMID that is not one deletes nothing
                    quarantine.append(
                        {
                            "source": SOURCE,
                            "file": str(p),
                            "record_key": f"{name}#{index + 1}",
                            "error": f"DeleteCitation: {why}; this deletion is skipped",
                            "raw_excerpt": ev[3],
                            "action": "dropped",
                        }
                    )
                    stats["quarantined"] += 1
            elif kind == "book":
                stats["books"] += 1
            elif kind in ("bad", "repaired"):
                quarantine.append(
                    {
                        "source": SOURCE,
                        "file": str(p),
                        "record_key": f"{name}#{index + 1}",
                        "error": ev[1],
                        "raw_excerpt": ev[2],
                        "action": ev[3] if kind == "bad" else "repaired",
                    }
                )
                stats["repaired" if kind == "repaired" else "quarantined"] += 1
                if kind == "repaired":
                    continue  # the record itself follows as its own event
            elif kind in ("fault", "fault_recovered"):
                # one file-level row; records that could not be recovered have rows of their own
                stats["fault"] = f"{p}: {ev[1]}"
                quarantine.append(
                    {
                        "source": SOURCE,
                        "file": str(p),
                        "record_key": name,
                        "error": f"file fault after record {index}: {ev[1]}",
                        "raw_excerpt": None,
                        "action": "dropped" if kind == "fault" else "resynced",
                    }
                )
                continue
            index += 1
            if len(cols.arts) >= BATCH_ROWS:
                cols.to_arrow()
            if cols.rows + len(cols.arts) >= chunk_rows:
                flush()
        flush()
    stats["records"] = index
    if quarantine:
        q = _quarantine_table(quarantine)
        stats["parts"].append(("quarantine", lake.stage_part("quarantine", q, prefix)))
    return stats


def _quarantine_table(rows: list[dict]) -> pa.Table:
    stamp = now()
    for r in rows:
        r["created_at"] = stamp
    return pa.Table.from_pylist(rows)


# ---------------------------------------------------------------------------- many files
def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files and folders (searched for ``*.xml`` and ``*.xml.gz``), sorted by name, which is
    PubMed's release order."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted([*p.glob("*.xml"), *p.glob("*.xml.gz")])
            if not found:
                raise InputError(f"{p}: folder holds no .xml or .xml.gz files")
            files += found
        else:
            files.append(check_input(p))
    return files


@logged_ingest(SOURCE)
def ingest_pubmed(
    lake: Lake,
    inputs: list[str | Path],
    jobs: int | None = None,
    progress: bool | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> IngestSummary:
    from tqdm import tqdm

    files = expand_inputs(inputs)
    summary = IngestSummary(SOURCE)
    with Timer() as timer, lake.lock("ingest pubmed"):
        for f in files:
            tag = _root_tag(f)
            if tag is not None and tag not in ("PubmedArticleSet", "PubmedBookArticleSet"):
                raise InputError(
                    f"{f}: not a PubMed XML file (root element <{tag}>, expected <PubmedArticleSet>)"
                )
        ledger = Ledger(lake, SOURCE)
        todo = []
        for f in files:
            key = file_key(f)
            if key in ledger.complete or key in {k for _, k, _ in todo}:
                summary.skipped_files += 1
                continue
            todo.append((f, key, ledger.next_seq()))
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
        totals = dict.fromkeys(
            (
                "records",
                "articles",
                "deleted",
                "books",
                "mesh",
                "no_abstract",
                "quarantined",
                "repaired",
            ),
            0,
        )
        bar = tqdm(
            total=sum(f.stat().st_size for f, _, _ in todo),
            unit="B",
            unit_scale=True,
            desc="ingest pubmed",
            disable=None if progress is None else not progress,
            leave=False,
        )
        args = [(str(lake.root), str(f), key, seq, chunk_rows) for f, key, seq in todo]
        done = []

        def land(a, stats):
            """One file's rows, quarantine rows and ledger row, in one commit."""
            path, key, seq = Path(a[1]), a[2], a[3]
            with lake.transaction():
                if key in ledger.partial:  # an earlier run's rows of this file go first
                    old = ledger.partial[key]
                    for table in ("article_records", "article_mesh_records"):
                        lake.delete_where(table, f"ingest_seq // {SEQ_BASE} = ?", [old])
                    lake.delete_where(
                        "quarantine",
                        "source = ? and (record_key = ? or starts_with(record_key, ?))",
                        [SOURCE, path.name, path.name + "#"],
                    )
                for table, part in stats["parts"]:
                    lake.add_parts(table, [part])
                status = "partial" if stats["fault"] else "complete"
                rows = sum(p.rows for t, p in stats["parts"] if t == "article_records")
                ledger.record(
                    path, key, seq, stats["records"], stats["quarantined"], status, rows=rows
                )
            for k in totals:
                totals[k] += stats[k]
            if stats["fault"]:
                summary.errors.append(stats["fault"])
            summary.files += 1
            done.append(seq)
            bar.update(path.stat().st_size)

        def failed(a, e: BaseException):
            if is_env_fault(e):  # a full disk fails every file: stop, nothing half-committed
                raise e
            summary.errors.append(f"{a[1]}: {type(e).__name__}: {e}; nothing of it was written")

        if jobs == 1:
            for a in args:
                try:
                    stats = ingest_file(*a)
                except Exception as e:  # noqa: BLE001 - one file's failure is reported, the rest land
                    failed(a, e)
                    continue
                land(a, stats)
        else:
            with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
                futs = {pool.submit(ingest_file, *a): a for a in args}
                for fut in cf.as_completed(futs):
                    a = futs[fut]
                    try:
                        stats = fut.result()
                    except Exception as e:  # noqa: BLE001 - one file's failure is reported, the rest land
                        failed(a, e)
                        continue
                    land(a, stats)
        bar.close()
        results = done
        unknown = _flag_unknown_descriptors(lake, results)
    summary.seconds = timer.seconds
    summary.read = totals["records"]
    summary.written = totals["articles"] + totals["deleted"]
    summary.quarantined = totals["quarantined"]
    summary.extra = {
        "articles": totals["articles"],
        "deletions": totals["deleted"],
        "mesh headings": totals["mesh"],
        "no abstract": totals["no_abstract"],
        "repaired records": totals["repaired"],
        "book records skipped": totals["books"],
        "unknown MeSH UIs": unknown,
        "processes": jobs,
    }
    return summary


def _flag_unknown_descriptors(lake: Lake, file_seqs: list[int]) -> int:
    """Headings whose descriptor UI is not in the loaded MeSH (another MeSH year, a typo) are
    kept, and noted in ``quarantine`` once per UI and file. Nothing to check before MeSH."""
    if not file_seqs or lake.count("mesh_descriptors") == 0:
        return 0
    marks = ", ".join("?" * len(file_seqs))
    rows = lake.query(
        f"""
        select a.source_file, m.descriptor_ui, any_value(m.descriptor_name), count(*)
        from article_mesh_records as m
        join article_records as a using (pmid, ingest_seq)
        where m.ingest_seq // {SEQ_BASE} in ({marks})
          and m.descriptor_ui is not null
          and m.descriptor_ui not in (select descriptor_ui from mesh_descriptors)
        group by 1, 2 order by 1, 2""",
        file_seqs,
    )
    lake.quarantine(
        [
            {
                "source": SOURCE,
                "file": f,
                "record_key": f"{f}:{ui}",
                "action": "kept",
                "error": f"unknown MeSH descriptor UI {ui} ({name}): not in the loaded MeSH; "
                f"{n} heading(s) kept",
                "raw_excerpt": None,
            }
            for f, ui, name, n in rows
        ]
    )
    return len(rows)
