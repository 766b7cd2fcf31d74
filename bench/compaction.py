"""Compaction benchmark: a lake after N small PubMed ingests, with and without compaction.

    python bench/compaction.py --ingests 10000

Each ingest is ``ingest_pubmed`` of one file holding one record (its own PMID), in-process, as a
cron job that fetches PubMed's daily updates would add them. After every ``--every`` ingests it
times ``select count(*) from articles`` (the view over article_records and ingested_files) and
one more ingest. At the end it compares, on copies of the same lake:

- the lake as the ingests left it (commits compact a table past ``compact_parts`` parts);
- a lake of ``--off-ingests`` ingests with compaction turned off (``MKAILIN_COMPACT_PARTS``
  huge), the layout the lake had before compaction: one part per table per ingest (each ingest
  costs more than the last, so it is built to a smaller size);
- the lake after ``mkailin lake compact``: the fresh, compacted reference.

The query is timed best of 5 (a warm Lake, as a notebook or a stage holds one); the ingest is
the median of 3 more 1-record files. Results go to bench/out/compaction.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

RECORD = """<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">
<PMID Version="1">{pmid}</PMID><Article PubModel="Print"><Journal><Title>Bench J</Title>
<JournalIssue><PubDate><Year>2020</Year></PubDate></JournalIssue></Journal>
<ArticleTitle>Record {pmid}</ArticleTitle><Abstract><AbstractText>Marker {pmid} was measured.
</AbstractText></Abstract><Language>eng</Language></Article>
<MeshHeadingList><MeshHeading><DescriptorName UI="D006801">Humans</DescriptorName></MeshHeading>
</MeshHeadingList></MedlineCitation></PubmedArticle>"""


def write_file(folder: Path, pmid: int) -> Path:
    f = folder / f"upd{pmid:07d}.xml"
    f.write_text(f"<PubmedArticleSet>{RECORD.format(pmid=pmid)}</PubmedArticleSet>")
    return f


def time_query(lake, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        lake.query("select count(*) from articles")
        best = min(best, time.perf_counter() - t)
    return best


def time_ingest(lake, folder: Path, pmid: int) -> float:
    from mkailin.ingest.pubmed import ingest_pubmed

    f = write_file(folder, pmid)
    t = time.perf_counter()
    ingest_pubmed(lake, [f], jobs=1, progress=False)
    return time.perf_counter() - t


def build(root: Path, n: int, every: int, compact_parts: int) -> list[dict]:
    from mkailin.lake import Lake

    os.environ["MKAILIN_COMPACT_PARTS"] = str(compact_parts)
    lake = Lake.init(root)
    files = root.parent / f"in-{root.name}"
    files.mkdir()
    trace = []
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        dt = time_ingest(lake, files, i)
        if i % every == 0 or i == n:
            trace.append(
                {
                    "ingests": i,
                    "ingest_s": round(dt, 4),
                    "query_s": round(time_query(lake, 3), 4),
                    "parts": len(lake.parts("article_records")),
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps({"compact_parts": compact_parts, **trace[-1]}), flush=True)
    return trace


def measure(root: Path, label: str, pmid: int) -> dict:
    from mkailin.lake import Lake

    lake = Lake.open(root)
    out = {
        "lake": label,
        "parts_article_records": len(lake.parts("article_records")),
        "query_s": time_query(lake),
    }
    # the median of 3 more ingests (each a new 1-record file)
    times = sorted(time_ingest(lake, root.parent / "in-extra", pmid + i * 10) for i in range(3))
    out["ingest_s"] = times[1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingests", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument(
        "--off-ingests",
        type=int,
        default=1000,
        help="ingests for the lake without compaction (each costs more than the last)",
    )
    ap.add_argument("--out", default="bench/out/compaction.json")
    ap.add_argument(
        "--auto-lake",
        default="",
        help="measure this lake (built by an earlier run) instead of building the compacted one",
    )
    args = ap.parse_args()
    from mkailin.lake import Lake

    work = Path(tempfile.mkdtemp(prefix="mkailin-compaction-"))
    (work / "in-extra").mkdir()
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "ingests": args.ingests,
        "load_before": os.getloadavg(),
    }
    try:
        if args.auto_lake:
            shutil.copytree(args.auto_lake, work / "auto")
            results["trace_auto"] = "reused " + args.auto_lake
        else:
            results["trace_auto"] = build(work / "auto", args.ingests, args.every, 32)
        results["trace_off"] = build(
            work / "off", args.off_ingests, min(args.every, args.off_ingests), 10**9
        )
        shutil.copytree(work / "auto", work / "fresh")
        os.environ["MKAILIN_COMPACT_PARTS"] = "32"
        fresh = Lake.open(work / "fresh")
        with fresh.lock("bench"):
            fresh.compact()
        rows = [
            measure(work / "fresh", "freshly compacted", 10**8 + 1),
            measure(work / "auto", "automatic compaction", 10**8 + 2),
        ]
        os.environ["MKAILIN_COMPACT_PARTS"] = str(10**9)
        rows.append(measure(work / "off", "no compaction", 10**8 + 3))
        ref = rows[0]
        for r in rows:
            r["query_ratio"] = round(r["query_s"] / ref["query_s"], 2)
            r["ingest_ratio"] = round(r["ingest_s"] / ref["ingest_s"], 2)
        results["after"] = rows
        results["load_after"] = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("| lake | parts (article_records) | count(*) s | x fresh | 1 more ingest s | x fresh |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results["after"]:
        print(
            f"| {r['lake']} | {r['parts_article_records']:,} | {r['query_s']:.4f} | "
            f"{r['query_ratio']} | {r['ingest_s']:.3f} | {r['ingest_ratio']} |"
        )


if __name__ == "__main__":
    main()
