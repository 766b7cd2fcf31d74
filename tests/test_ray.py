"""A real stage on a local Ray cluster: MiniLM embeddings with 2 actors put batches on both,
record how many each did, and equal the local executor's vectors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mkailin.config import Config, RuntimeConfig
from mkailin.lake import Lake
from mkailin.stage import run_stage

from conftest import has_module, need

pytestmark = pytest.mark.slow


def _articles(lake: Lake, n: int) -> None:
    lake.write_part(
        "article_records",
        pa.Table.from_pylist(
            [
                {
                    "pmid": p,
                    "title": f"Study {p} of protein marker {p % 13}",
                    "abstract": f"We measured marker {p} in {p % 7 + 2} cohorts of patients.",
                    "source": "pubmed",
                    "ingest_seq": p,
                    "deleted": False,
                }
                for p in range(1, n + 1)
            ]
        ),
    )


def _vectors(lake: Lake) -> dict[int, np.ndarray]:
    from mkailin.agents.retrieval import _open, vectors_table

    t = _open(lake, vectors_table("minilm")).to_arrow()
    return {
        p: np.asarray(v)
        for p, v in zip(t.column("pmid").to_pylist(), t.column("vector").to_pylist())
    }


def test_an_embedding_stage_on_two_ray_actors_uses_both_and_matches_local(
    tmp_path, minilm_available
):
    need(has_module("ray"), "ray is not installed (pip install 'mkailin[ray]')")
    from mkailin.agents.retrieval import embed_stage

    cfg = Config()
    cfg.encoders["minilm"].batch_size = 8
    cfg.eval.blocklist = "none"
    local, ray_lake = Lake.init(tmp_path / "local"), Lake.init(tmp_path / "ray")
    for lake in (local, ray_lake):
        _articles(lake, 64)
    a = run_stage(local, embed_stage(local, cfg), progress=False)
    b = run_stage(
        ray_lake,
        embed_stage(ray_lake, cfg),
        executor="ray",
        progress=False,
        runtime=RuntimeConfig(ray_num_cpus=2, ray_concurrency=2),
    )
    assert a.rows_out == b.rows_out == 64
    assert len(b.worker_batches) == 2, b.worker_batches  # both actors did batches
    assert sum(b.worker_batches.values()) >= 8
    (detail,) = ray_lake.query("select detail from runs where stage = 'embed:minilm'")[0]
    assert json.loads(detail)["worker_batches"] == b.worker_batches
    va, vb = _vectors(local), _vectors(ray_lake)
    assert va.keys() == vb.keys()
    assert max(float(np.abs(va[p] - vb[p]).max()) for p in va) < 1e-4
