"""The inverted-file search (ivf.py) against numpy brute force on clustered unit vectors: exact
scores for the rows it returns, recall that rises with nprobe to 1.0 when every list is probed,
answers that do not depend on the batch, and an index that is reused only for the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from mkailin.agents.ivf import IVFIndex, default_nlist, kmeans, load_or_build


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """4,000 rows in 40 clusters (a random matrix has no neighbourhoods to find) and 300
    queries near them."""
    rng = np.random.default_rng(7)
    centers = unit(rng.standard_normal((40, 48)))
    x = unit(centers[rng.integers(0, 40, 4000)] + 0.06 * rng.standard_normal((4000, 48)))
    q = unit(x[rng.integers(0, 4000, 300)] + 0.03 * rng.standard_normal((300, 48)))
    ids = np.arange(10_000, 14_000, dtype=np.int64)
    return x, ids, q


def truth(x, ids, q, k):
    s = q.astype(np.float64) @ x.astype(np.float64).T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids[top], np.take_along_axis(s, top, 1)


def recall(got, want) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, want)]))


def test_kmeans_gives_unit_centroids_that_cover_the_rows(data):
    x, _, _ = data
    c = kmeans(x, 32, iters=8)
    assert c.shape == (32, 48)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    used = np.unique(np.argmax(x @ c.T, axis=1))
    assert len(used) >= 28  # no list left empty for long


def test_recall_rises_with_nprobe_and_scores_are_exact(data):
    x, ids, q = data
    index = IVFIndex.build(x, ids, nlist=64)
    want_ids, want_s = truth(x, ids, q, 10)
    r = []
    for nprobe in (1, 4, 16, 64):
        s, got = index.search(q, 10, nprobe)
        assert got.shape == (300, 10)
        r.append(recall(got, want_ids))
        # every returned score is the exact inner product of the returned row
        pos = {int(p): i for i, p in enumerate(ids)}
        exact = np.array([[q[i] @ x[pos[int(p)]] for p in row] for i, row in enumerate(got)])
        np.testing.assert_allclose(s, exact, atol=1e-5)
        assert np.all(np.diff(s, axis=1) <= 1e-7)  # best first
    assert r == sorted(r) and r[1] >= 0.8
    assert r[-1] == 1.0  # every list probed: exact
    np.testing.assert_allclose(index.search(q, 10, 64)[0], want_s, atol=1e-5)


def test_answers_do_not_depend_on_the_batch(data):
    x, ids, q = data
    index = IVFIndex.build(x, ids, nlist=64)
    s_all, i_all = index.search(q, 5, 8)
    for lo, hi in ((0, 1), (17, 18), (100, 163)):
        s, i = index.search(q[lo:hi], 5, 8)
        np.testing.assert_array_equal(i, i_all[lo:hi])
        np.testing.assert_allclose(s, s_all[lo:hi], atol=1e-6)


@pytest.mark.parametrize("nq", [2, 12])  # one by one in numpy, and batched in torch
def test_short_lists_pad_with_minus_one(nq):
    x = unit(np.random.default_rng(0).standard_normal((6, 8)))
    index = IVFIndex.build(x, np.arange(6), nlist=3)
    q = np.resize(x, (nq, 8))
    s, i = index.search(q, 10, 1)  # one list holds fewer than 10 rows
    assert i.shape == (nq, 10) and (i == -1).any()
    assert np.all(np.isneginf(s[i == -1]))
    s, i = index.search(q, 10, 3)
    assert all(sorted(r[r >= 0].tolist()) == list(range(6)) for r in i)
    empty = index.search(np.zeros((0, 8), np.float32), 4, 2)
    assert empty[1].shape == (0, 4)


def test_saved_index_is_reused_only_for_the_same_rows(data, tmp_path):
    x, ids, q = data
    path = tmp_path / "v.ivf.npz"
    a, built = load_or_build(path, x, ids, nlist=32)
    assert built and path.is_file()
    b, built = load_or_build(path, x, ids, nlist=32)
    assert not built
    np.testing.assert_array_equal(a.search(q, 5, 4)[1], b.search(q, 5, 4)[1])
    _, built = load_or_build(path, x[:-1], ids[:-1], nlist=32)  # a row less: rebuilt
    assert built
    path.write_bytes(b"not an npz")
    _, built = load_or_build(path, x, ids, nlist=32)
    assert built


def test_default_nlist():
    assert default_nlist(1) == 4 and default_nlist(200_000) == 1789
