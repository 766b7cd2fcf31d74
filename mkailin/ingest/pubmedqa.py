"""PubMedQA (``ori_pqal.json``, and the PQA-A/PQA-U files of the same shape) into the lake.

The ``pubmedqa`` table gets one row per PMID, with ``split = 'test'`` for the PMIDs of the
official test set (``test_ground_truth.json``). The abstracts also go into ``article_records``
(source ``pubmedqa``) and their MeSH names into ``article_mesh_records``; names map to
descriptor UIs through ``mesh_names`` (unmapped names keep a NULL UI and are counted).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from mkailin.errors import InputError
from mkailin.ingest.common import IngestSummary, Ledger, Timer, check_input, file_key
from mkailin.ingest.pubmed import SEQ_BASE
from mkailin.lake import Lake

SOURCE = "pubmedqa"
REQUIRED = ("QUESTION", "CONTEXTS")


def load_json(path: Path) -> object:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None


def _year(v) -> int | None:
    try:
        return int(str(v)[:4])
    except (TypeError, ValueError):
        return None


def _str_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def abstract_from_contexts(contexts: list[str], labels: list[str]) -> str:
    """Labelled sections joined the way PubMed abstracts are: ``LABEL: text`` per line."""
    out = []
    for i, c in enumerate(contexts):
        lab = labels[i] if i < len(labels) else None
        out.append(f"{lab}: {c}" if lab else c)
    return "\n".join(out)


def ingest_pubmedqa(
    lake: Lake, path: str | Path, ground_truth: str | Path | None = None, split: str = "train"
) -> IngestSummary:
    path = check_input(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object keyed by PMID (PubMedQA format)")
    test_ids: set[str] = set()
    if ground_truth is not None:
        gt_path = check_input(ground_truth)
        gt = load_json(gt_path)
        if not isinstance(gt, dict):
            raise InputError(f"{gt_path}: expected a JSON object of PMID -> yes/no/maybe")
        test_ids = set(gt)
    summary = IngestSummary(SOURCE)
    qa_rows, art_rows, mesh_rows, quarantine = [], [], [], []
    with Timer() as timer, lake.lock("ingest pubmedqa"):
        names = dict(lake.query("select name_lc, descriptor_ui from mesh_names"))
        treeless = {
            u
            for (u,) in lake.query(
                "select descriptor_ui from mesh_descriptors where len(tree_numbers) = 0"
            )
        }
        ledger = Ledger(lake, SOURCE)
        key = file_key(path)
        fresh = key not in ledger.complete
        seq = ledger.next_seq() if fresh else 0
        unmapped = set()
        n_unmapped = 0
        for i, (pmid_s, rec) in enumerate(data.items()):
            summary.read += 1
            missing = [k for k in REQUIRED if not isinstance(rec, dict) or k not in rec]
            if not str(pmid_s).isdigit() or missing:
                why = f"missing {', '.join(missing)}" if missing else f"bad PMID {pmid_s!r}"
                quarantine.append(
                    {
                        "source": SOURCE,
                        "file": str(path),
                        "record_key": str(pmid_s),
                        "error": why,
                        "raw_excerpt": json.dumps(rec)[:2000],
                    }
                )
                continue
            pmid = int(pmid_s)
            contexts, labels = _str_list(rec.get("CONTEXTS")), _str_list(rec.get("LABELS"))
            meshes = _str_list(rec.get("MESHES"))
            qa_rows.append(
                {
                    "pmid": pmid,
                    "question": rec.get("QUESTION"),
                    "contexts": contexts,
                    "labels": labels,
                    "meshes": meshes,
                    "year": _year(rec.get("YEAR")),
                    "reasoning_required_pred": rec.get("reasoning_required_pred"),
                    "reasoning_free_pred": rec.get("reasoning_free_pred"),
                    "final_decision": rec.get("final_decision"),
                    "long_answer": rec.get("LONG_ANSWER"),
                    "split": "test" if pmid_s in test_ids else split,
                }
            )
            for m in meshes:
                ui = names.get(m.lower())
                if ui is None:
                    n_unmapped += 1
                    unmapped.add(m)
            if fresh:
                ingest_seq = seq * SEQ_BASE + i
                art_rows.append(
                    {
                        "pmid": pmid,
                        "title": None,
                        "abstract": abstract_from_contexts(contexts, labels),
                        "journal": None,
                        "pub_year": _year(rec.get("YEAR")),
                        "language": "eng",
                        "source": SOURCE,
                        "source_file": path.name,
                        "version": 1,
                        "ingest_seq": ingest_seq,
                        "deleted": False,
                    }
                )
                mesh_rows += [
                    {
                        "pmid": pmid,
                        "ingest_seq": ingest_seq,
                        "descriptor_ui": names.get(m.lower()),
                        "descriptor_name": m,
                        "major_topic": False,
                        "qualifiers": [],
                    }
                    for m in meshes
                ]
        if not qa_rows:
            raise InputError(f"{path}: no PubMedQA records found")
        lake.replace_table("pubmedqa", pa.Table.from_pylist(qa_rows))
        if fresh and names:
            counts: dict[str, int] = {}
            for r in qa_rows:
                for m in r["meshes"]:
                    if m.lower() not in names or names[m.lower()] in treeless:
                        counts[m] = counts.get(m, 0) + 1
            quarantine += [
                {
                    "source": SOURCE,
                    "file": str(path),
                    "record_key": f"mesh:{m}",
                    "action": "kept",
                    "error": (
                        f"MeSH name {m!r} maps to no descriptor in the loaded MeSH; {n} "
                        "heading(s) kept with a NULL UI"
                        if m.lower() not in names
                        else f"MeSH name {m!r} ({names[m.lower()]}) has no tree number: no "
                        f"hierarchy, its similarities are NULL; {n} heading(s) kept"
                    ),
                    "raw_excerpt": None,
                }
                for m, n in sorted(counts.items())
            ]
        if fresh:
            prefix = f"part-{key[:16]}"
            for table in ("article_records", "article_mesh_records"):
                lake.delete_parts(table, f"{prefix}-*")
            lake.write_part("article_records", pa.Table.from_pylist(art_rows), f"{prefix}-00000")
            if mesh_rows:
                lake.write_part(
                    "article_mesh_records", pa.Table.from_pylist(mesh_rows), f"{prefix}-00000"
                )
            lake.quarantine(quarantine)
            ledger.record(path, key, seq, len(art_rows), len(quarantine), "complete")
            summary.files = 1
        else:
            summary.skipped_files = 1
        lake.sync_catalog()
    summary.seconds = timer.seconds
    summary.written = len(qa_rows)
    summary.quarantined = sum(q.get("action") != "kept" for q in quarantine)
    summary.extra = {
        "test split": sum(r["split"] == "test" for r in qa_rows),
        "articles added": len(art_rows),
        "mesh names": sum(len(r["meshes"]) for r in qa_rows),
        "mesh names unmapped": n_unmapped,
        "distinct unmapped names": len(unmapped),
    }
    if not names:
        summary.extra["note"] = (
            "no MeSH loaded yet: names resolve when you run `mkailin ingest mesh`"
        )
    return summary
