"""gemm_topk against a numpy brute-force top-k, in both of its paths.

``screen=True`` (bfloat16 candidates, float32 re-scoring) is forced so it runs on any CPU; both
paths must return the exact float32 top-k: the same scores, and ids that differ only among rows
with equal scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (a core dependency: gemm_topk runs on it)

from mkailin.agents.topk import Hits, gemm_topk

TOL = 1e-5


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Scores (float64) of every row for every query."""
    assert k >= 0
    return queries.astype(np.float64) @ matrix.astype(np.float64).T


def check(hits: Hits, matrix, ids, queries, k) -> None:
    """``hits`` is a top-k of the brute-force scores: right scores, ids right up to ties."""
    s = brute(matrix, queries, k)
    kk = min(k, len(ids))
    assert len(hits.pmids) == len(hits.scores) == len(queries)
    pos = {int(p): i for i, p in enumerate(ids)}
    for qi in range(len(queries)):
        got_ids, got_s = hits.pmids[qi], np.asarray(hits.scores[qi])
        assert len(got_ids) == len(got_s) == kk
        assert len(set(got_ids)) == kk, "an id twice"
        true_s = np.sort(s[qi])[::-1][:kk]
        np.testing.assert_allclose(got_s, true_s, atol=TOL)  # sorted, the exact values
        rows = [pos[int(p)] for p in got_ids]
        np.testing.assert_allclose(s[qi, rows], got_s, atol=TOL)  # each id has its score
        if kk:
            kth = true_s[-1]
            must = set(np.nonzero(s[qi] > kth + TOL)[0].tolist())  # strictly above the k-th
            assert must <= set(rows)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(5)


@pytest.mark.parametrize("screen", [False, True])
def test_random_unit_vectors(rng, screen):
    m = unit(rng.standard_normal((1003, 48)))  # not a multiple of the block
    q = unit(rng.standard_normal((57, 48)))
    ids = np.arange(1003, dtype=np.int64)
    check(gemm_topk(m, ids, q, 10, screen=screen), m, ids, q, 10)


@pytest.mark.parametrize("screen", [False, True])
def test_clustered_vectors_small_chunks_and_groups(rng, screen):
    """Close scores (clusters), several matrix chunks and several query groups per call."""
    centres = unit(rng.standard_normal((8, 32)))
    m = unit(centres[rng.integers(0, 8, 2500)] + 0.05 * rng.standard_normal((2500, 32)))
    q = unit(centres[rng.integers(0, 8, 70)] + 0.05 * rng.standard_normal((70, 32)))
    ids = rng.choice(10**9, 2500, replace=False).astype(np.int64)  # pmids, not row numbers
    hits = gemm_topk(m, ids, q, 15, chunk=700, block=16, buffer_bytes=2500 * 4 * 9, screen=screen)
    check(hits, m, ids, q, 15)


@pytest.mark.parametrize("screen", [False, True])
def test_duplicate_rows_and_ties(rng, screen):
    base = unit(rng.standard_normal((40, 24)))
    m = np.concatenate([base, base[:25], base[:10], base[:3]])  # rows 2, 3 and 4 times
    m = m[rng.permutation(len(m))]
    q = np.concatenate([base[:5], unit(rng.standard_normal((11, 24)))])  # queries = rows too
    ids = np.arange(len(m), dtype=np.int64) + 1000
    check(gemm_topk(m, ids, q, 7, block=8, screen=screen), m, ids, q, 7)


@pytest.mark.parametrize("screen", [False, True])
def test_identical_rows(rng, screen):
    """Every row within the bfloat16 error bound: the screen falls back, still exact."""
    row = unit(rng.standard_normal((1, 16)))
    m = np.repeat(row, 5000, axis=0) + 1e-4 * unit(rng.standard_normal((5000, 16)))
    q = unit(rng.standard_normal((9, 16)))
    ids = np.arange(5000, dtype=np.int64)
    check(gemm_topk(m.astype(np.float32), ids, q, 10, screen=screen), m, ids, q, 10)


@pytest.mark.parametrize("screen", [False, True])
def test_k_larger_than_n(rng, screen):
    m = unit(rng.standard_normal((7, 12)))
    q = unit(rng.standard_normal((4, 12)))
    ids = np.arange(7, dtype=np.int64) * 3
    hits = gemm_topk(m, ids, q, 10, screen=screen)
    assert all(len(p) == 7 for p in hits.pmids)
    check(hits, m, ids, q, 10)


@pytest.mark.parametrize("screen", [False, True])
def test_no_queries_and_k_zero(rng, screen):
    m = unit(rng.standard_normal((50, 8)))
    ids = np.arange(50, dtype=np.int64)
    hits = gemm_topk(m, ids, np.zeros((0, 8), np.float32), 5, screen=screen)
    assert hits.pmids == [] and hits.scores == []
    hits = gemm_topk(m, ids, m[:3], 0, screen=screen)
    assert hits.pmids == [[], [], []] and hits.scores == [[], [], []]


@pytest.mark.parametrize("screen", [False, True])
def test_unnormalised_float64_and_single_query(rng, screen):
    """Norms other than 1 (the screen's error bound scales with them), float64 input."""
    m = rng.standard_normal((333, 20)) * rng.uniform(0.1, 30, (333, 1))
    q = rng.standard_normal((1, 20)) * 7
    ids = np.arange(333, dtype=np.int64)
    hits = gemm_topk(m, ids, q, 12, block=1, screen=screen)
    s = brute(m, q, 12)[0]
    np.testing.assert_allclose(hits.scores[0], np.sort(s)[::-1][:12], rtol=1e-5)
    assert set(hits.pmids[0]) == set(np.argsort(-s)[:12].tolist())


def test_screen_matches_exact_path(rng):
    """The two paths agree with each other on a bigger batch (ids equal where no ties)."""
    m = unit(rng.standard_normal((4000, 64)))
    q = unit(rng.standard_normal((300, 64)))
    ids = np.arange(4000, dtype=np.int64)
    a = gemm_topk(m, ids, q, 10, screen=False)
    b = gemm_topk(m, ids, q, 10, screen=True)
    assert a.pmids == b.pmids
    np.testing.assert_allclose(np.array(a.scores), np.array(b.scores), atol=TOL)


def test_bf16_copy_kept_only_for_frozen_matrices(rng):
    """A read-only view of Arrow memory keeps its bfloat16 copy; a writable matrix does not."""
    import pyarrow as pa

    from mkailin.agents import topk as r

    m = unit(rng.standard_normal((600, 16)))
    q = unit(rng.standard_normal((20, 16)))
    ids = np.arange(600, dtype=np.int64)
    frozen = pa.array(m.ravel()).to_numpy().reshape(600, 16)  # zero-copy, read-only
    assert r._frozen(frozen)
    view = m.view()
    view.flags.writeable = False
    assert not r._frozen(m) and not r._frozen(view)  # the base can still be written
    r._BF16_COPY.clear()
    check(gemm_topk(m, ids, q, 5, screen=True), m, ids, q, 5)
    assert not r._BF16_COPY
    for _ in range(2):
        check(gemm_topk(frozen, ids, q, 5, screen=True), m, ids, q, 5)
        assert len(r._BF16_COPY) == 1
    del frozen
    import gc

    gc.collect()
    assert not r._BF16_COPY  # dropped with the matrix
