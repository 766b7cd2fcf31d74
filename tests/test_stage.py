"""The stage runner: batching, quarantine, usage, the runs log, resume after SIGKILL, Ray, UDFs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from mkailin.errors import StageError
from mkailin.lake import Lake
from mkailin.stage import Stage, register_udf, run_stage

from conftest import ROOT, has_module
from fake_stage import Shout, make_items, stage


def shouts(lake):
    return lake.query("select item_id, shout from shouts order by item_id")


def test_runs_batches_quarantines_and_logs(lake):
    make_items(lake, 20)
    r = run_stage(lake, stage(), progress=False)
    assert (r.rows_in, r.rows_out, r.quarantined) == (20, 17, 3)  # 0, 7, 14 contain 'bad'
    assert r.tokens_out == 20 and r.tokens_in == sum(len(f"item {i}") for i in range(20)) + 3 * 4
    assert shouts(lake)[0] == (1, "ITEM 1")
    q = lake.query("select source, record_key, error from quarantine order by record_key::int")
    assert q == [
        ("shout", "0", "contains 'bad'"),
        ("shout", "7", "contains 'bad'"),
        ("shout", "14", "contains 'bad'"),
    ]
    runs = lake.query(
        "select stage, status, rows_in, rows_out, tokens_out, config_hash, models from runs"
    )
    assert runs == [("shout", "finished", 20, 17, 20, "abc", '{"shouter": "fake"}')]


def test_rerun_does_nothing_and_new_input_is_picked_up(lake):
    make_items(lake, 10)
    run_stage(lake, stage(), progress=False)
    again = run_stage(lake, stage(), progress=False)
    assert again.status == "skipped" and again.rows_in == 0
    import pyarrow as pa

    lake.write_part("items", pa.table({"item_id": [100], "text": ["late item"]}))
    more = run_stage(lake, stage(), progress=False)
    assert (more.rows_in, more.rows_out) == (1, 1)
    assert len(shouts(lake)) == 9  # 10 - 2 bad + 1


def test_retry_quarantined(lake):
    make_items(lake, 8)
    run_stage(lake, stage(), progress=False)
    r = run_stage(lake, stage(), progress=False, retry_quarantined=True)
    assert r.rows_in == 2  # items 0 and 7 tried again (and rejected again)


def test_limit_caps_a_run(lake):
    make_items(lake, 10)
    r = run_stage(lake, stage(), progress=False, limit=4)
    assert r.rows_in == 4
    r = run_stage(lake, stage(), progress=False)
    assert r.rows_in == 10 - 4


def test_a_failing_batch_is_logged_as_failed(lake):
    make_items(lake, 6)

    class Boom:
        def __call__(self, batch):
            raise RuntimeError("model fell over")

    bad = Stage(
        name="boom",
        input_sql="select item_id, text from items",
        output="booms",
        key=("item_id",),
        fn=Boom,
        output_schema=pa.schema([("item_id", pa.int64())]),
    )
    with pytest.raises(RuntimeError, match="model fell over"):
        run_stage(lake, bad, progress=False)
    assert lake.query("select status, error from runs where stage = 'boom'") == [
        ("failed", "RuntimeError: model fell over")
    ]


def test_bad_input_query_is_a_stage_error(lake):
    bad = Stage(
        name="x",
        input_sql="select * from no_such_table",
        output="xs",
        key=("id",),
        fn=Shout,
        output_schema=pa.schema([("id", pa.int64())]),
    )
    with pytest.raises(StageError, match="x: the input query failed: Catalog Error"):
        run_stage(lake, bad, progress=False)


def _run_and_kill(lake_root, delay: float) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_stage.py"), str(lake_root), "0.03"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    return p.wait()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path, seed):
    reference = Lake.init(tmp_path / "ref")
    make_items(reference, 60)
    run_stage(reference, stage(batch_size=2), progress=False)
    expected = shouts(reference)

    lake = Lake.init(tmp_path / "lake")
    make_items(lake, 60)
    rng = random.Random(seed)
    kills = 0
    for _ in range(2):  # kill twice at random moments (start-up included), then finish
        rc = _run_and_kill(lake.root, rng.uniform(0.5, 4.0))
        kills += rc == -signal.SIGKILL
    r = run_stage(lake, stage(batch_size=2), progress=False)
    got = shouts(lake)
    assert got == expected, f"seed {seed}"
    assert len({i for i, _ in got}) == len(got)  # no duplicates
    assert not list(lake.tables_dir.glob("*/*/.*.tmp"))  # no partial files left
    statuses = [s for (s,) in lake.query("select status from runs order by started")]
    assert "running" not in statuses  # the killed runs are reaped
    # when a killed run had written every batch, or an earlier run finished, nothing is left
    # and the final run is skipped; otherwise it finishes the work
    if r.status == "skipped":
        assert statuses and statuses[-1] in ("killed", "finished"), statuses
    else:
        assert statuses[-1] == "finished", statuses
    if 0 < r.rows_in < 60 and kills:
        assert "killed" in statuses
        assert lake.query(
            "select resumed_from is not null from runs order by started desc limit 1"
        ) == [(True,)]


@pytest.mark.skipif(
    not has_module("ray"), reason="ray is not installed (pip install 'mkailin[ray]')"
)
def test_ray_executor_gives_the_same_rows(tmp_path):
    from mkailin.config import RuntimeConfig

    a = Lake.init(tmp_path / "a")
    b = Lake.init(tmp_path / "b")
    for lake in (a, b):
        make_items(lake, 30)
    run_stage(a, stage(), progress=False)
    r = run_stage(
        b,
        stage(),
        executor="ray",
        progress=False,
        runtime=RuntimeConfig(ray_num_cpus=2, ray_concurrency=2),
    )
    assert r.rows_out == 25 and shouts(a) == shouts(b)
    assert b.query("select count(*) from quarantine") == [(5,)]


def test_batch_function_as_duckdb_udf(lake):
    make_items(lake, 5)
    con = lake.connect()

    class Upper:
        def __call__(self, batch):
            import pyarrow as pa
            import pyarrow.compute as pc

            return pa.table({"out": pc.utf8_upper(batch.column("text"))})

    register_udf(con, "shout", Upper, (), ["text"], "out")
    rows = con.execute("select shout(text) from items order by item_id limit 2").fetchall()
    assert rows == [("BAD ITEM 0",), ("ITEM 1",)]
