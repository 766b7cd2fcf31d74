"""BioASQ training JSON into ``seed_qa``: the (abstract/snippets -> question) seed pairs.

The format is ``{"questions": [{"id", "body", "type", "documents", "snippets",
"ideal_answer", "exact_answer"}]}``; documents are PubMed URLs. BioASQ releases are
cumulative, so a question id seen again replaces the earlier row.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa

from mkailin import schema
from mkailin.errors import InputError
from mkailin.ingest.common import IngestSummary, Ledger, Timer, check_input, file_key
from mkailin.ingest.pubmedqa import load_json
from mkailin.lake import Lake, fetch_arrow

SOURCE = "bioasq"
_PMID = re.compile(r"(\d+)\s*/?\s*$")


def _pmid(url) -> int | None:
    m = _PMID.search(str(url))
    return int(m.group(1)) if m else None


def _first_text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, list):
        v = next((x for x in v if isinstance(x, str) and x.strip()), None)
    return v.strip() if isinstance(v, str) and v.strip() else None


def parse_question(q: dict, source: str) -> dict:
    """One BioASQ question into a ``seed_qa`` row; raises ``ValueError`` naming what is wrong."""
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
    pmids = [p for p in (_pmid(d) for d in docs) if p is not None]
    texts = [
        s.get("text").strip()
        for s in snippets
        if isinstance(s, dict) and isinstance(s.get("text"), str) and s.get("text").strip()
    ]
    if not texts and not pmids:
        raise ValueError("no snippets and no documents: nothing to generate from")
    qid = q.get("id") or hashlib.sha256(body.encode()).hexdigest()[:24]
    exact = q.get("exact_answer")
    return {
        "qa_id": str(qid),
        "question": body.strip(),
        "type": q.get("type"),
        "pmids": pmids,
        "snippets": texts,
        "ideal_answer": _first_text(q.get("ideal_answer")),
        "exact_answer": json.dumps(exact) if exact is not None else None,
        "source": source,
    }


def ingest_bioasq(lake: Lake, path: str | Path) -> IngestSummary:
    path = check_input(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise InputError(
            f"{path}: not BioASQ training JSON (expected a top-level 'questions' list)"
        )
    summary = IngestSummary(SOURCE)
    rows, quarantine = [], []
    with Timer() as timer:
        for i, q in enumerate(data["questions"]):
            summary.read += 1
            try:
                rows.append(parse_question(q, f"{SOURCE}:{path.name}"))
            except ValueError as e:
                key = q.get("id") if isinstance(q, dict) else None
                quarantine.append(
                    {
                        "source": SOURCE,
                        "file": str(path),
                        "record_key": str(key or f"question {i + 1}"),
                        "error": str(e),
                        "raw_excerpt": json.dumps(q)[:2000],
                    }
                )
        with lake.lock("ingest bioasq"):
            ledger = Ledger(lake, SOURCE)
            key = file_key(path)
            if key in ledger.complete:
                summary.skipped_files, summary.read = 1, 0
                summary.seconds = timer.elapsed()
                return summary
            con = lake.connect()
            try:
                con.register(
                    "incoming",
                    schema.conform("seed_qa", pa.Table.from_pylist(rows))
                    if rows
                    else schema.empty("seed_qa"),
                )
                merged = fetch_arrow(
                    con,
                    "select * from seed_qa where qa_id not in (select qa_id from incoming) "
                    "union all by name select * from incoming order by qa_id",
                )
            finally:
                con.close()
            known = {r[0] for r in lake.query("select qa_id from seed_qa")}
            lake.replace_table("seed_qa", merged)
            lake.quarantine(quarantine)
            ledger.record(path, key, ledger.next_seq(), len(rows), len(quarantine), "complete")
            lake.sync_catalog()
    summary.seconds = timer.seconds
    summary.files = 1
    summary.written = len(rows)
    summary.quarantined = len(quarantine)
    summary.extra = {
        "new questions": sum(r["qa_id"] not in known for r in rows),
        "questions in seed_qa": merged.num_rows,
    }
    return summary
