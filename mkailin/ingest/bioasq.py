"""BioASQ training JSON into ``seed_qa``: the (abstract/snippets -> question) seed pairs.

The format is ``{"questions": [{"id", "body", "type", "documents", "snippets",
"ideal_answer", "exact_answer"}]}``; documents are PubMed URLs. A file adds to ``seed_qa``:
BioASQ releases are cumulative, so a question id seen again replaces only its own earlier row,
and every other row is kept. ``replace=True`` (``--replace``) makes the file the whole table.

A document's PMID is the last segment of its URL (or the whole text), ASCII digits from 1 to
``PMID_MAX``; a document with anything else is left out of its question and gets a quarantine
row, and the question is kept with its other documents. A PMID listed twice (the same article
as ``http://www.ncbi.nlm.nih.gov/pubmed/N`` and ``https://pubmed.ncbi.nlm.nih.gov/N/``, say)
and a snippet text given twice are kept once, in their first place. A ``type`` that is not a
string is stored as null, with a quarantine row (action ``repaired``).

Which BioASQ files this reads, and which it does not: docs/bioasq.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa

from mkailin import schema
from mkailin.errors import InputError
from mkailin.ingest.common import (
    IngestSummary,
    Ledger,
    Timer,
    check_input,
    file_key,
    logged_ingest,
    plural,
    pmid_problem,
)
from mkailin.ingest.pubmedqa import load_json
from mkailin.lake import Lake, fetch_arrow

SOURCE = "bioasq"


def document_pmid(doc) -> int:
    """The PMID of a BioASQ document (``http://www.ncbi.nlm.nih.gov/pubmed/15829955``, or the
    bare number): its last path segment, or a ``ValueError`` that says why that is no PMID."""
    text = str(doc).strip().rstrip("/").rsplit("/", 1)[-1].strip()
    why = pmid_problem(text)
    if why is not None:
        raise ValueError(f"document {str(doc)[:200]!r}: {why}")
    return int(text.lstrip("0"))


def _first_text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, list):
        v = next((x for x in v if isinstance(x, str) and x.strip()), None)
    return v.strip() if isinstance(v, str) and v.strip() else None


def _unique(values: list) -> list:
    """``values`` without repeats, each in its first place."""
    return list(dict.fromkeys(values))


def parse_question(q: dict, source: str, notes: list[tuple[str, str]] | None = None) -> dict:
    """One BioASQ question into a ``seed_qa`` row; raises ``ValueError`` naming what is wrong.
    What is mended on the way is appended to ``notes`` as (why, quarantine action): a document
    without a PMID is left out (``dropped``), a ``type`` that is not a string is stored as null
    (``repaired``)."""
    if not isinstance(q, dict):
        raise ValueError("question is not a JSON object")
    body = q.get("body")
    if not isinstance(body, str) or not body.strip():
        raise ValueError("missing 'body'")
    snippets = q.get("snippets") or []
    if not isinstance(snippets, list):
        raise ValueError("'snippets' is not a list")
    docs = q.get("documents") or []
    if not isinstance(docs, list):
        raise ValueError("'documents' is not a list")
    pmids, bad = [], []
    for d in docs:
        try:
            pmids.append(document_pmid(d))
        except ValueError as e:
            bad.append(str(e))
    texts = [
        s.get("text").strip()
        for s in snippets
        if isinstance(s, dict) and isinstance(s.get("text"), str) and s.get("text").strip()
    ]
    if not texts and not pmids:
        if bad:
            raise ValueError(f"no snippets and no usable documents ({bad[0]})")
        raise ValueError("no snippets and no documents: nothing to generate from")
    kind = q.get("type")
    if notes is not None:
        notes += [(f"{why}: left out of the question, which is kept", "dropped") for why in bad]
        if kind is not None and not isinstance(kind, str):
            shown = json.dumps(kind, default=str)[:40]
            notes.append((f"'type' {shown} is not a string: stored as null", "repaired"))
    qid = q.get("id") or hashlib.sha256(body.encode()).hexdigest()[:24]
    exact = q.get("exact_answer")
    return {
        "qa_id": str(qid),
        "question": body.strip(),
        "type": kind if isinstance(kind, str) else None,
        "pmids": _unique(pmids),
        "snippets": _unique(texts),
        "ideal_answer": _first_text(q.get("ideal_answer")),
        "exact_answer": json.dumps(exact) if exact is not None else None,
        "source": source,
    }


def _parse_all(questions: list, path: Path) -> tuple[list[dict], list[dict]]:
    """The file's ``seed_qa`` rows (the last of a repeated id wins) and its quarantine rows."""
    rows: dict[str, dict] = {}
    quarantine = []

    def note(key: str, error: str, q, action: str = "dropped") -> None:
        quarantine.append(
            {
                "source": SOURCE,
                "file": str(path),
                "record_key": key,
                "error": error,
                "raw_excerpt": None if q is None else json.dumps(q, default=str)[:2000],
                "action": action,
            }
        )

    for i, q in enumerate(questions):
        notes: list[tuple[str, str]] = []
        try:
            row = parse_question(q, f"{SOURCE}:{path.name}", notes)
        except ValueError as e:
            key = q.get("id") if isinstance(q, dict) else None
            note(str(key or f"question {i + 1}"), str(e), q)
            continue
        qid = row["qa_id"]
        for why, action in notes:
            excerpt = q.get("documents") if action == "dropped" else q.get("type")
            note(qid, why, excerpt, action)
        if qid in rows:
            note(
                qid,
                f"question id {qid!r} appears earlier in this file; this later one wins",
                None,
                "superseded",
            )
        rows[qid] = row
    return list(rows.values()), quarantine


def _merge(lake: Lake, rows: list[dict], replace: bool) -> tuple[pa.Table, str, int]:
    """``seed_qa`` after adding ``rows`` (an id seen again replaces only its own row), or
    ``rows`` alone with ``replace``; the line that says what changed; how many ids are new."""
    before = {r[0] for r in lake.query("select qa_id from seed_qa")}
    incoming = (
        schema.conform("seed_qa", pa.Table.from_pylist(rows)) if rows else schema.empty("seed_qa")
    )
    ids = {r["qa_id"] for r in rows}
    replaced = len(ids & before)
    if replace:
        return (
            incoming,
            (
                f"{SOURCE}: replaced: {plural(len(ids), 'question')} now; {len(before):,} "
                f"before, {len(before) - replaced:,} of them removed"
            ),
            len(ids) - replaced,
        )
    con = lake.connect()
    try:
        con.register("incoming", incoming)
        merged = fetch_arrow(
            con,
            "select * from seed_qa where qa_id not in (select qa_id from incoming) "
            "union all by name select * from incoming order by qa_id",
        )
    finally:
        con.close()
    return (
        merged,
        (
            f"{SOURCE}: {plural(len(ids) - replaced, 'question')} added, {replaced:,} replaced, "
            f"{len(before) - replaced:,} kept ({plural(merged.num_rows, 'question')})"
        ),
        len(ids) - replaced,
    )


@logged_ingest(SOURCE)
def ingest_bioasq(lake: Lake, path: str | Path, replace: bool = False) -> IngestSummary:
    """Add a BioASQ file's questions to ``seed_qa`` (an id seen again replaces only its own
    row); ``replace`` makes the file the whole table. A file already in the lake is skipped,
    unless ``replace``."""
    path = check_input(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise InputError(
            f"{path}: not BioASQ training JSON (expected a top-level 'questions' list)"
        )
    questions = data["questions"]
    if questions and not any(
        isinstance(q, dict) and (q.get("documents") or q.get("snippets")) for q in questions
    ):
        raise InputError(
            f"{path}: no question has documents or snippets (a BioASQ Phase A test batch?); "
            "seed_qa takes training sets and Phase B test batches"
        )
    summary = IngestSummary(SOURCE)
    with Timer() as timer:
        rows, quarantine = _parse_all(questions, path)
        with lake.lock("ingest bioasq"):
            ledger = Ledger(lake, SOURCE)
            key = file_key(path)
            if key in ledger.complete and not replace:
                n = lake.count("seed_qa")
                summary.skipped_files = 1
                summary.outcome = (
                    f"{SOURCE}: {path.name} is already in the lake: 0 questions added, "
                    f"0 replaced, {n:,} kept ({plural(n, 'question')})"
                )
                summary.seconds = timer.elapsed()
                return summary
            merged, summary.outcome, added = _merge(lake, rows, replace)
            with lake.transaction():  # the questions, quarantine and ledger rows: one commit
                lake.replace_table("seed_qa", merged)
                if key not in ledger.complete:
                    lake.quarantine(quarantine)
                seq = ledger.next_seq()
                ledger.record(path, key, seq, len(rows), len(quarantine), "complete")
    summary.seconds = timer.seconds
    summary.files = 1
    summary.read = len(questions)
    summary.written = len(rows)
    summary.quarantined = sum(q["action"] == "dropped" for q in quarantine)
    summary.extra = {"new questions": added, "questions in seed_qa": merged.num_rows}
    return summary
