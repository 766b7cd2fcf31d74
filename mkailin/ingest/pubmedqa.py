"""PubMedQA (``ori_pqal.json``, and the PQA-A/PQA-U files of the same shape) into the lake.

The ``pubmedqa`` table gets one row per PMID, with ``split = 'test'`` for the PMIDs of the
official test set (``test_ground_truth.json``). A file adds to the table: a PMID seen again
replaces only its own row, and a test-split row stays in the test split whatever the file or
its ``split`` say (the test split keeps evaluation abstracts out of training data). Only
``replace=True`` (``--replace``) swaps the whole table, test split included.

Keys must be PMIDs (ASCII digits, 1 to ``PMID_MAX``); any other key, in the data file or the
ground truth, is a quarantine row and the rest of the file goes in.

The abstracts also go into ``article_records`` (source ``pubmedqa``) and their MeSH names into
``article_mesh_records``, append-only like PubMed's: one part per input file (named by its
sha256), whose ``ingest_seq`` is later than every earlier file's, so earlier files' articles
stay and the ``articles`` view shows the latest record of each PMID. ``replace`` leaves them
too: it replaces the data set, not the articles. Names map to descriptor UIs through
``mesh_names`` (unmapped names keep a NULL UI and are counted).
"""

from __future__ import annotations

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
from mkailin.ingest.pubmed import SEQ_BASE
from mkailin.lake import Lake, fetch_arrow

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
    except RecursionError:
        raise InputError(
            f"{path}: JSON nested deeper than the reader allows; PubMedQA and BioASQ files "
            "nest three levels"
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


def _ground_truth(path: str | Path) -> tuple[set[int], list[dict]]:
    """The test PMIDs of a ``test_ground_truth.json``, and a quarantine row per key that is no
    PMID (that key marks nothing)."""
    gt_path = check_input(path)
    gt = load_json(gt_path)
    if not isinstance(gt, dict):
        raise InputError(f"{gt_path}: expected a JSON object of PMID -> yes/no/maybe")
    test_ids, bad = set(), []
    for k, v in gt.items():
        why = pmid_problem(k)
        if why is None:
            test_ids.add(int(k.lstrip("0")))
        else:
            bad.append(
                {
                    "source": SOURCE,
                    "file": str(gt_path),
                    "record_key": k,
                    "error": f"{why}: not marked as test",
                    "raw_excerpt": json.dumps({k: v})[:2000],
                }
            )
    return test_ids, bad


def _merge(lake: Lake, rows: list[dict], replace: bool) -> tuple[pa.Table, str]:
    """The ``pubmedqa`` table after adding ``rows`` (a PMID seen again replaces only its own row,
    and a test row stays in the test split), or ``rows`` alone with ``replace``; and the line
    that says what changed."""
    before = dict(lake.query("select pmid, split from pubmedqa"))
    n_test_before = sum(s == "test" for s in before.values())
    incoming = {r["pmid"] for r in rows}
    if replace:
        merged = schema.conform("pubmedqa", pa.Table.from_pylist(rows))
        n_test = sum(r["split"] == "test" for r in rows)
        gone = [p for p in before if p not in incoming]
        lost = sum(before[p] == "test" for p in gone)
        lost += sum(before.get(r["pmid"]) == "test" and r["split"] != "test" for r in rows)
        return merged, (
            f"{SOURCE}: replaced: {plural(len(rows), 'row')} now ({n_test:,} in the test split); "
            f"{plural(len(before), 'row')} before ({n_test_before:,} in the test split), "
            f"{len(gone):,} removed, {lost:,} left the test split"
        )
    for r in rows:  # a plain ingest never demotes a test row
        if before.get(r["pmid"]) == "test":
            r["split"] = "test"
    con = lake.connect()
    try:
        con.register("incoming", schema.conform("pubmedqa", pa.Table.from_pylist(rows)))
        merged = fetch_arrow(
            con,
            "select * from pubmedqa where pmid not in (select pmid from incoming) "
            "union all by name select * from incoming order by pmid",
        )
    finally:
        con.close()
    replaced = sum(p in before for p in incoming)
    n_test = sum(s == "test" for s in merged.column("split").to_pylist())
    return merged, (
        f"{SOURCE}: {plural(len(incoming) - replaced, 'row')} added, {replaced:,} replaced, "
        f"{len(before) - replaced:,} kept ({plural(merged.num_rows, 'row')}, {n_test:,} in the "
        "test split)"
    )


@logged_ingest(SOURCE)
def ingest_pubmedqa(
    lake: Lake,
    path: str | Path,
    ground_truth: str | Path | None = None,
    split: str = "train",
    replace: bool = False,
) -> IngestSummary:
    """Add a PubMedQA file's rows to ``pubmedqa``: a PMID already there has its row replaced
    (a test-split row stays in the test split), every other row is kept. ``replace`` makes
    the file the whole table instead; it is the only way to take rows out of the test split."""
    path = check_input(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object keyed by PMID (PubMedQA format)")
    test_ids: set[int] = set()
    gt_quarantine: list[dict] = []
    if ground_truth is not None:
        test_ids, gt_quarantine = _ground_truth(ground_truth)
    summary = IngestSummary(SOURCE)
    by_pmid: dict[int, dict] = {}  # keys '0345' and '345' are one PMID: the later one wins
    art_rows, mesh_rows, quarantine = [], [], []
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
            why = f"missing {', '.join(missing)}" if missing else pmid_problem(pmid_s)
            if why is not None:
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
            pmid = int(pmid_s.lstrip("0"))
            contexts, labels = _str_list(rec.get("CONTEXTS")), _str_list(rec.get("LABELS"))
            meshes = _str_list(rec.get("MESHES"))
            if pmid in by_pmid:
                quarantine.append(
                    {
                        "source": SOURCE,
                        "file": str(path),
                        "record_key": str(pmid_s),
                        "action": "superseded",
                        "error": f"PMID {pmid} appears earlier in this file; this later key wins",
                        "raw_excerpt": None,
                    }
                )
            by_pmid[pmid] = {
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
                "split": "test" if pmid in test_ids else split,
            }
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
        qa_rows = list(by_pmid.values())
        if not qa_rows:
            first = f" (the first: {quarantine[0]['record_key']!r}: {quarantine[0]['error']})"
            raise InputError(
                f"{path}: no PubMedQA records found"
                + (f"; {len(quarantine):,} record(s) unusable{first}" if quarantine else "")
            )
        merged, summary.outcome = _merge(lake, qa_rows, replace)
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
        # the items, their articles and MeSH rows, quarantine and ledger rows: one commit
        with lake.transaction():
            lake.replace_table("pubmedqa", merged)
            lake.quarantine(gt_quarantine)
            if fresh:
                lake.write_part("article_records", pa.Table.from_pylist(art_rows))
                if mesh_rows:
                    lake.write_part("article_mesh_records", pa.Table.from_pylist(mesh_rows))
                lake.quarantine(quarantine)
                ledger.record(
                    path, key, seq, len(art_rows), len(quarantine), "complete", rows=len(art_rows)
                )
        if fresh:
            summary.files = 1
        else:
            summary.skipped_files = 1
    summary.seconds = timer.seconds
    summary.written = len(qa_rows)
    summary.quarantined = sum(
        q.get("action") not in ("kept", "superseded") for q in quarantine + gt_quarantine
    )
    summary.extra = {
        "test split": sum(s == "test" for s in merged.column("split").to_pylist()),
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
