"""A deterministic stage for plumbing tests of the runner (no model involved).

Run as a script it processes the ``items`` table of a lake slowly, so a test can SIGKILL it
at a random moment: ``python tests/fake_stage.py LAKE [SLEEP_SECONDS]``.
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

from mkailin.lake import Lake
from mkailin.stage import Stage, run_stage


class Shout:
    """Upper-cases ``text``; rejects texts containing 'bad'; counts fake usage."""

    def __init__(self, sleep: float = 0.0):
        self.sleep = sleep

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.sleep:
            time.sleep(self.sleep)
        text = batch.column("text")
        bad = pc.match_substring(text, "bad")
        err = pc.if_else(bad, pa.scalar("contains 'bad'"), pa.scalar(None, pa.string()))
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "shout": pc.utf8_upper(text),
                "_error": err,
                "_tokens_in": pc.utf8_length(text),
                "_tokens_out": pa.array([1] * batch.num_rows),
            }
        )


def stage(sleep: float = 0.0, batch_size: int = 3) -> Stage:
    return Stage(
        name="shout",
        input_sql="select item_id, text from items",
        output="shouts",
        key=("item_id",),
        fn=Shout,
        fn_args=(sleep,),
        batch_size=batch_size,
        models={"shouter": "fake"},
        config_hash="abc",
        output_schema=pa.schema([("item_id", pa.int64()), ("shout", pa.string())]),
    )


def make_items(lake: Lake, n: int) -> None:
    texts = [f"item {i}" if i % 7 else f"bad item {i}" for i in range(n)]
    lake.write_part("items", pa.table({"item_id": list(range(n)), "text": texts}))
    lake.sync_catalog()


if __name__ == "__main__":
    lake = Lake.open(sys.argv[1])
    sleep = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    run_stage(lake, stage(sleep, batch_size=2), progress=False)
