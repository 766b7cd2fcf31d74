"""``mkailin lake verify``, ``repair`` and ``compact``: is every row the log names readable and
accounted for, and what can be done when one is not.

verify reads, writes nothing:

- every snapshot in ``_log`` parses, and the newest names the tables;
- every part file the newest snapshot names exists, has the size it was committed with, has a
  readable Parquet footer and the committed row count;
- every ingested file's rows are in ``article_records`` as the ledger says (``rows``), every
  article row belongs to a ledgered file, and every MeSH heading row to an article row;
- leftovers of killed writers (temp files, parts no snapshot names), which the next writer
  sweeps.

repair commits, in one snapshot, the lake without what is lost: damaged parts leave their
tables; an input file whose rows are no longer all there leaves the ledger with its remaining
rows, so ``mkailin ingest`` restores it whole. Rows of other tables cannot be restored by an
ingest; repair names them and the command that writes them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mkailin import schema
from mkailin.errors import LakeError
from mkailin.lake import Lake, Part

SEQ_BASE = 100_000_000  # ingest_seq = file_seq * SEQ_BASE + record index (mkailin.ingest.pubmed)

# the command that writes each table again, for rows an ingest cannot restore
REWRITE = {
    "pubmedqa": "mkailin ingest pubmedqa FILE",
    "mesh_descriptors": "mkailin ingest mesh FILE",
    "mesh_tree": "mkailin ingest mesh FILE",
    "seed_qa": "mkailin ingest bioasq FILE --replace",
    "questions": "mkailin generate",
    "contexts": "mkailin retrieve",
    "answers": "mkailin answer",
}


@dataclass
class Finding:
    kind: str  # damaged | ledger | orphan | leftover | log
    table: str
    text: str
    part: Part | None = None


@dataclass
class Report:
    seq: int = 0
    parts: int = 0
    rows: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.kind != "leftover"]

    def lines(self) -> list[str]:
        out = [
            f"snapshot {self.seq}: {self.parts:,} part files, {self.rows:,} rows"
            + (", all readable and accounted for" if not self.problems else "")
        ]
        out += [f"  {f.kind}: {f.table}: {f.text}" for f in self.findings]
        if self.problems:
            out.append(
                f"{len(self.problems)} problem(s): `mkailin lake repair` says what it can do"
            )
        return out


def _check_part(lake: Lake, part: Part) -> str | None:
    path = lake.root / part.path
    if not path.exists():
        return f"{part.path} is missing ({part.rows:,} rows)"
    size = path.stat().st_size
    if size != part.size:
        return f"{part.path} has {size:,} bytes, committed with {part.size:,}"
    try:
        rows = pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as e:
        return f"{part.path} is not readable Parquet ({e})"
    if rows != part.rows:
        return f"{part.path} holds {rows:,} rows, committed with {part.rows:,}"
    return None


def verify(lake: Lake) -> Report:
    report = Report()
    seqs = lake._log_seqs()
    if not seqs:
        report.findings.append(
            Finding("log", "-", "no commit log; `mkailin init` adopts the parts")
        )
        return report
    for s in seqs:
        try:
            lake.read_snapshot(s)
        except LakeError as e:
            report.findings.append(Finding("log", "-", str(e)))
    snap = lake.snapshot()
    report.seq = snap.seq
    damaged: set[str] = set()
    for name, parts in sorted(snap.tables.items()):
        for part in parts:
            report.parts += 1
            report.rows += part.rows
            why = _check_part(lake, part)
            if why:
                damaged.add(name)
                report.findings.append(Finding("damaged", name, why, part))
    referenced = snap.files()
    kept = lake._referenced() or referenced
    for p in sorted(lake.tables_dir.glob("*/*.parquet")):
        rel = lake.rel(p)
        if rel not in kept:
            report.findings.append(
                Finding("leftover", p.parent.name, f"{rel}: no snapshot names it")
            )
    for p in sorted(lake.root.glob("**/.*.tmp")):
        report.findings.append(Finding("leftover", "-", f"{lake.rel(p)}: a temp file"))
    if not damaged & {"article_records", "article_mesh_records", "ingested_files"}:
        report.findings += _ledger_findings(lake)
    return report


def _ledger_findings(lake: Lake) -> list[Finding]:
    out = []
    rows = lake.query(
        f"""
        with have as (
            select ingest_seq // {SEQ_BASE} as file_seq, count(*) as n
            from article_records group by 1)
        select l.source, l.path, l.file_seq, l.rows, coalesce(h.n, 0)
        from ingested_files as l left join have as h using (file_seq)
        where l.rows is not null and l.rows <> coalesce(h.n, 0)
        order by l.file_seq"""
    )
    for source, path, seq, want, have in rows:
        out.append(
            Finding(
                "ledger",
                "article_records",
                f"{source} file {Path(path).name} (file_seq {seq}): the ledger says {want:,} rows, "
                f"the table holds {have:,}",
            )
        )
    (orphans,) = lake.query(
        f"""
        select count(*) from article_records
        where ingest_seq // {SEQ_BASE} not in (select file_seq from ingested_files)"""
    )[0]
    if orphans:
        out.append(Finding("orphan", "article_records", f"{orphans:,} rows of no ingested file"))
    (orphans,) = lake.query(
        """
        select count(*) from article_mesh_records as m
        anti join article_records as a using (pmid, ingest_seq)"""
    )[0]
    if orphans:
        out.append(
            Finding("orphan", "article_mesh_records", f"{orphans:,} MeSH rows of no article row")
        )
    return out


def repair(lake: Lake) -> list[str]:
    """Commit the lake without what verify found lost; returns what it did and could not."""
    said: list[str] = []
    with lake.lock("lake repair"):
        report = verify(lake)
        bad = [f for f in report.findings if f.kind == "damaged"]
        with lake.transaction("lake repair"):
            state = lake._state()
            for f in bad:
                state[f.table] = [p for p in state[f.table] if p != f.part]
                if not state[f.table]:  # a contract table stays, empty; another goes
                    if f.table in schema.TABLES:
                        empty = schema.TABLES[f.table].empty_table()
                        state[f.table] = [lake.stage_part(f.table, empty)]
                    else:
                        del state[f.table]
                said.append(f"dropped {f.part.path} ({f.part.rows:,} rows) from {f.table}")
                if f.table not in ("article_records", "article_mesh_records", "ingested_files"):
                    how = REWRITE.get(f.table, "the command that wrote it")
                    said.append(f"  cannot restore {f.table}'s {f.part.rows:,} rows: run {how}")
        if any(f.table == "ingested_files" for f in bad):
            said.append(
                "  the ledger lost rows: ingest the same files again (unledgered rows stay)"
            )
        said += _release_files(lake)
    if not said:
        said.append(f"snapshot {report.seq}: nothing to repair")
    return said


def _release_files(lake: Lake) -> list[str]:
    """Files whose rows are not all in the lake leave the ledger with what remains of them, so
    the next ingest of each restores it whole."""
    rows = lake.query(
        f"""
        with have as (
            select ingest_seq // {SEQ_BASE} as file_seq, count(*) as n
            from article_records group by 1)
        select l.source, l.path, l.file_seq
        from ingested_files as l left join have as h using (file_seq)
        where l.rows is not null and l.rows <> coalesce(h.n, 0)"""
    )
    said = []
    if not rows:
        return said
    seqs = sorted({seq for _, _, seq in rows})
    marks = ", ".join("?" * len(seqs))
    with lake.transaction("lake repair"):
        for table in ("article_records", "article_mesh_records"):
            lake.delete_where(table, f"ingest_seq // {SEQ_BASE} in ({marks})", seqs)
        lake.delete_where("ingested_files", f"file_seq in ({marks})", seqs)
    for source, path, _ in rows:
        there = Path(path).exists()
        said.append(
            f"{source} file {path}: rows lost; restore it with: mkailin ingest {source} {path}"
            if there
            else f"{source} file {path}: rows lost and the file is gone; ingest a copy of it"
        )
    return said
