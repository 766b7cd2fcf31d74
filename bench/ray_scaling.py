"""Ray scaling: the embedding stage (MiniLM) over N generated articles, run by the local
executor and by a local Ray cluster with 1 and 2 actors.

    python bench/ray_scaling.py --articles 1024

Each run is a fresh lake; the time is the run_stage call (Ray start-up excluded: the cluster is
started once before the timed runs; model loading in the actors included). It records the
batches each actor did (runs.detail.worker_batches). Torch threads per actor are left at their
default; on a 2-core machine one actor already uses both cores, so the figures show the
overhead of the Ray path more than a speed-up.
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

import pyarrow as pa


def articles(lake, n: int) -> None:
    lake.write_part(
        "article_records",
        pa.Table.from_pylist(
            [
                {
                    "pmid": p,
                    "title": f"Study {p} of protein marker {p % 13} in chronic disease",
                    "abstract": f"We measured marker {p} in {p % 7 + 2} cohorts of patients "
                    "followed for five years, with outcomes adjusted for age and sex. " * 3,
                    "source": "pubmed",
                    "ingest_seq": p,
                    "deleted": False,
                }
                for p in range(1, n + 1)
            ]
        ),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="bench/out/ray_scaling.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from mkailin.agents.retrieval import embed_stage
    from mkailin.config import Config, RuntimeConfig
    from mkailin.lake import Lake
    from mkailin.stage import run_stage

    cfg = Config()
    cfg.encoders["minilm"].batch_size = args.batch_size
    cfg.eval.blocklist = "none"
    work = Path(tempfile.mkdtemp(prefix="mkailin-ray-"))
    rows = []
    try:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        for label, executor, actors in (
            ("local", "local", 0),
            ("ray", "ray", 1),
            ("ray", "ray", 2),
        ):
            lake = Lake.init(work / f"{label}{actors}")
            articles(lake, args.articles)
            rt = RuntimeConfig(ray_concurrency=max(1, actors))
            t = time.perf_counter()
            r = run_stage(
                lake, embed_stage(lake, cfg), executor=executor, runtime=rt, progress=False
            )
            secs = time.perf_counter() - t
            rows.append(
                {
                    "executor": label,
                    "actors": actors,
                    "articles": r.rows_out,
                    "seconds": round(secs, 2),
                    "articles_per_s": round(r.rows_out / secs, 1),
                    "worker_batches": sorted(r.worker_batches.values()),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "batch_size": args.batch_size,
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
