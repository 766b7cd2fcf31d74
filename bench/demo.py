"""The demo's wall time on each numeric path: ``mkailin demo`` in a fresh lake, run as a user
runs it (a process of its own), with bfloat16 forced on and forced off (MKAILIN_CPU_BF16=1/0),
for one or more article samples (``generate.seed``).

    python bench/demo.py [--data ../shared/data] [--seeds 13] [--paths 1,0] [--quiet-wait 120]

Prints a Markdown table for docs/benchmarks.md: the CPU model, each run's wall seconds, the
cores other processes used meanwhile, the slowest steps, and whether the run finished."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadmeter import Timer, cpu_and_memory, wait_quiet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def step_seconds(lake: Path) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(str(lake / "mkailin.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "select stage, status, json_extract(detail, '$.seconds')::double from runs "
            "where stage like 'pipeline:%'"
        ).fetchall()
    finally:
        con.close()
    return {s.removeprefix("pipeline:"): (sec or 0.0, st) for s, st, sec in rows}


def run(data: str, bf16: str, seed: int, quiet_wait: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "demo.toml"
        cfg.write_text(f'extends = "{ROOT / "configs" / "demo.toml"}"\n[generate]\nseed = {seed}\n')
        env = {**os.environ, "MKAILIN_CPU_BF16": bf16, "HF_HUB_OFFLINE": "1"}
        lake = Path(tmp) / "lake"
        before = wait_quiet(quiet_wait)
        with Timer() as t:
            p = subprocess.run(
                [sys.executable, "-m", "mkailin", "--lake", str(lake), "--config", str(cfg),
                 "demo", "--data", data],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
        steps = step_seconds(lake) if p.returncode == 0 else {}
        skipped = [s for s, (_, st) in steps.items() if st == "skipped"]
        top = sorted(((sec, s) for s, (sec, _) in steps.items()), reverse=True)[:4]
        return {
            "bf16": bf16, "seed": seed, "seconds": round(t.seconds, 1),
            "other_cores": round(t.other, 2), "other_before": round(before, 2),
            "ok": p.returncode == 0, "skipped": skipped,
            "slowest": ", ".join(f"{s} {sec:.0f}" for sec, s in top),
            "tail": "" if p.returncode == 0 else (p.stdout + p.stderr)[-800:],
        }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--seeds", default="13")
    ap.add_argument("--paths", default="1,0", help="MKAILIN_CPU_BF16 values to run")
    ap.add_argument("--quiet-wait", type=float, default=120.0)
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    machine = cpu_and_memory()
    results = [
        run(a.data, bf16, int(seed), a.quiet_wait)
        for seed in a.seeds.split(",")
        for bf16 in a.paths.split(",")
    ]
    print(f"machine: {machine.get('cpu', '?')}, {os.cpu_count()} cores, "
          f"{machine.get('memory_gb', '?')} GB")  # fmt: skip
    print(
        "| MKAILIN_CPU_BF16 | seed | wall s | other cores | finished | skipped steps | slowest steps (s) |"
    )  # noqa: E501
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['bf16']} | {r['seed']} | {r['seconds']} | {r['other_cores']} | "
              f"{'yes' if r['ok'] else 'NO'} | {', '.join(r['skipped']) or '-'} | {r['slowest']} |")  # fmt: skip
        if r["tail"]:
            print(r["tail"], file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
