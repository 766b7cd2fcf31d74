"""Runner overhead: questions/s through the stage runner vs the same backend called in a loop.

Same model, same articles, same batch size, same process, interleaved repeats:

    python bench/generate.py --articles 48 --repeats 3 [--backend transformers|openai]

The direct loop renders the prompts, calls ``generate`` and cleans the outputs, exactly what the
question stage's batch function does, but writes nothing. The runner adds the input query with
its anti-join, the Parquet part per batch, the quarantine and the runs log. With a GPU and the
``vllm`` extra, ``--backend vllm`` measures tokens/s through the stage vs raw vLLM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# idle OpenMP threads sleep instead of spinning, so CPU seconds count work, not waiting
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mkailin.agents.question import QuestionWriter, question_stage, sample_sql  # noqa: E402
from mkailin.config import Config  # noqa: E402
from mkailin.ingest.mesh import ingest_mesh  # noqa: E402
from mkailin.ingest.pubmedqa import ingest_pubmedqa  # noqa: E402
from mkailin.lake import Lake  # noqa: E402
from mkailin.stage import run_stage  # noqa: E402


def build_lake(data: Path, where: Path) -> Lake:
    lake = Lake.init(where)
    ingest_mesh(lake, [data / "mesh" / "MeshTree2017.tsv"])
    ingest_pubmedqa(
        lake, data / "pubmedqa" / "ori_pqal.json", data / "pubmedqa" / "test_ground_truth.json"
    )
    return lake


def direct(lake: Lake, cfg: Config) -> tuple[float, int]:
    stage = question_stage(lake, cfg, "domain")
    fn = QuestionWriter(*stage.fn_args)
    sql, params = sample_sql(cfg)
    table = lake.query_arrow(sql, params)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for start in range(0, table.num_rows, cfg.runtime.batch_size):
        out = fn(table.slice(start, cfg.runtime.batch_size))
        n += out.num_rows
    return time.perf_counter() - t0, time.process_time() - c0, n


def through_runner(lake: Lake, cfg: Config) -> tuple[float, int]:
    lake.replace_table("questions", lake.read_table("questions").slice(0, 0))
    lake.replace_table("quarantine", lake.read_table("quarantine").slice(0, 0))
    stage = question_stage(lake, cfg, "domain")
    t0, c0 = time.perf_counter(), time.process_time()
    r = run_stage(lake, stage, progress=False)
    return time.perf_counter() - t0, time.process_time() - c0, r.rows_out + r.quarantined


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--articles", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="transformers", choices=["transformers", "openai", "vllm"])
    ap.add_argument("--base-url", default="", help="for --backend openai")
    ap.add_argument("--model", default="", help="HF id or path for --backend vllm")
    args = ap.parse_args()

    cfg = Config()
    cfg.generate.articles = args.articles
    cfg.generate.max_input_chars = 1000
    cfg.runtime.batch_size = args.batch_size
    cfg.agents["domain"].max_new_tokens = args.max_new_tokens
    spec = cfg.models["smollm2"]
    if args.backend == "openai":
        spec = dataclasses.replace(
            spec,
            backend="openai",
            base_url=args.base_url,
            model="smollm2",
            max_concurrency=args.batch_size,
        )
    elif args.backend == "vllm":
        spec = dataclasses.replace(
            spec, backend="vllm", model=args.model or spec.model, batch_size=args.batch_size
        )
    cfg.models["smollm2"] = dataclasses.replace(spec, batch_size=args.batch_size)

    tmp = Path(tempfile.mkdtemp(prefix="mkailin-bench-gen-"))
    try:
        lake = build_lake(Path(args.data), tmp / "lake")
        # warm-up: load the model
        direct(
            lake,
            dataclasses.replace(
                cfg, generate=dataclasses.replace(cfg.generate, articles=args.batch_size)
            ),
        )
        d_times, r_times, d_cpu, r_cpu = [], [], [], []
        for _ in range(args.repeats):
            dt, dc, n_d = direct(lake, cfg)
            rt, rc, n_r = through_runner(lake, cfg)
            d_times.append(dt)
            r_times.append(rt)
            d_cpu.append(dc)
            r_cpu.append(rc)
        d, r = statistics.median(d_times), statistics.median(r_times)
        # each repeat runs the two back to back, so their ratio sees the same machine load
        ratios = sorted(rt / dt for dt, rt in zip(d_times, r_times))
        res = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(
                ", "
            ),
            "backend": args.backend,
            "articles": args.articles,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "repeats": args.repeats,
            "direct_s": round(d, 2),
            "runner_s": round(r, 2),
            "direct_q_per_s": round(n_d / d, 3),
            "runner_q_per_s": round(n_r / r, 3),
            "overhead_pct": round(100 * (r - d) / d, 1),
            "overhead_pct_paired_median": round(100 * (statistics.median(ratios) - 1), 1),
            # CPU seconds of this process (all its threads): the work each path does, which
            # other load on a shared machine does not inflate the way it inflates wall time
            "direct_cpu_s": round(statistics.median(d_cpu), 2),
            "runner_cpu_s": round(statistics.median(r_cpu), 2),
            "overhead_pct_cpu": round(
                100 * (statistics.median(r_cpu) / statistics.median(d_cpu) - 1), 1
            ),
            "direct_cpu_all_s": [round(x, 2) for x in d_cpu],
            "runner_cpu_all_s": [round(x, 2) for x in r_cpu],
            "load_avg_1m_end": round(os.getloadavg()[0], 2),
            "direct_all_s": [round(x, 2) for x in d_times],
            "runner_all_s": [round(x, 2) for x in r_times],
        }
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
