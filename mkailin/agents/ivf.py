"""An inverted-file (IVF) index searched in matrix products: batched approximate top-k for the
``retrieve`` stage when the exact GEMM is too slow and LanceDB's per-query ANN too.

Rows are grouped by their nearest of ``nlist`` centroids (spherical k-means). A batch of
queries is answered list by list: each query picks its ``nprobe`` nearest centroids, every list
is scored against all the queries that probe it in one matrix product, and each query keeps
the k best rows it saw. Scores are exact float32 inner products of the rows it looks at (a
flat IVF: no quantisation), so recall only depends on ``nprobe``, and the result for a query
does not depend on the batch it came in.

The index (centroids and each row's list) is kept next to the lake's vectors
(``lake/indexes/<table>.ivf.npz``) and rebuilt when the table's rows change.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

SMALL_BATCH = 4  # queries per call answered one by one in numpy


def default_nlist(n: int) -> int:
    """~4 sqrt(n) lists (a few hundred rows each at 100k-1M rows), as FAISS's guidance."""
    return int(min(65536, max(1, round(4 * math.sqrt(n)))))


def _torch():
    import torch

    return torch


def kmeans(
    x: np.ndarray, nlist: int, iters: int = 10, sample: int = 0, seed: int = 0
) -> np.ndarray:
    """Spherical k-means centroids (unit rows) of the rows of ``x``, trained on a sample of
    ``sample`` rows (default 64 per list, as FAISS does)."""
    torch = _torch()
    n = len(x)
    nlist = max(1, min(nlist, n))
    rng = np.random.default_rng(seed)
    sample = sample or min(n, 64 * nlist)
    pick = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    xs = torch.from_numpy(np.ascontiguousarray(x[pick], dtype=np.float32))
    c = xs[torch.from_numpy(rng.choice(len(xs), size=nlist, replace=False))].clone()
    with torch.inference_mode():
        for _ in range(iters):
            assign = _nearest(xs, c)
            sums = torch.zeros_like(c).index_add_(0, assign, xs)
            counts = torch.bincount(assign, minlength=nlist)
            empty = counts == 0
            if empty.any():  # re-seed empty lists with random rows
                sums[empty] = xs[torch.from_numpy(rng.choice(len(xs), int(empty.sum())))]
            c = torch.nn.functional.normalize(sums, dim=1)
    return c.numpy()


def _nearest(x, c, chunk: int = 16384):
    """Index of the highest-scoring centroid for each row of ``x``."""
    torch = _torch()
    out = torch.empty(len(x), dtype=torch.long)
    for s in range(0, len(x), chunk):
        out[s : s + chunk] = torch.mm(x[s : s + chunk], c.T).argmax(dim=1)
    return out


class IVFIndex:
    """Rows of ``matrix`` grouped by centroid, searched list by list in matrix products."""

    def __init__(
        self,
        matrix: np.ndarray,
        ids: np.ndarray,
        centroids: np.ndarray,
        assign: np.ndarray | None = None,
    ):
        torch = _torch()
        self.centroids = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
        m = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
        with torch.inference_mode():
            a = (
                _nearest(m, self.centroids)
                if assign is None
                else torch.from_numpy(np.asarray(assign, dtype=np.int64))
            )
        self.assign = a.numpy()
        order = torch.argsort(a, stable=True)
        self.rows = m[order].contiguous()  # the matrix in list order
        self.ids = np.asarray(ids)[order.numpy()]
        counts = torch.bincount(a, minlength=len(self.centroids))
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        self._offs = self.offsets.tolist()

    @property
    def nlist(self) -> int:
        return len(self.centroids)

    @classmethod
    def build(
        cls, matrix: np.ndarray, ids: np.ndarray, nlist: int = 0, iters: int = 10, seed: int = 0
    ) -> IVFIndex:
        nlist = nlist or default_nlist(len(matrix))
        return cls(matrix, ids, kmeans(matrix, nlist, iters=iters, seed=seed))

    def search(
        self, queries: np.ndarray, k: int, nprobe: int = 16
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (queries, k), best first; a query that saw fewer than k rows
        gets -inf scores and id -1 in the rest."""
        torch = _torch()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        nprobe = max(1, min(nprobe, self.nlist))
        k = max(1, k)
        if len(queries) <= SMALL_BATCH and len(self.rows):
            return self._search_small(queries, k, nprobe)
        q = torch.from_numpy(queries)
        nq = len(q)
        out_s = torch.full((nq, nprobe * k), -torch.inf)
        out_r = torch.full((nq, nprobe * k), -1, dtype=torch.long)
        if nq == 0 or len(self.rows) == 0:
            return out_s[:, :k].numpy(), np.full((nq, k), -1)
        with torch.inference_mode():
            probes = torch.topk(torch.mm(q, self.centroids.T), nprobe, dim=1).indices
            flat = probes.reshape(-1)
            order = torch.argsort(flat, stable=True)  # (query, probe) pairs grouped by list
            lists = flat[order]
            pair_q = order // nprobe
            pair_slot = (order % nprobe) * k
            bounds = torch.searchsorted(lists, torch.arange(self.nlist + 1))
            starts, ends = bounds[:-1].tolist(), bounds[1:].tolist()
            offs = self.offsets.tolist()
            cols = torch.arange(k)
            for lst in torch.nonzero(bounds[1:] > bounds[:-1]).flatten().tolist():
                a, b = starts[lst], ends[lst]
                lo, hi = offs[lst], offs[lst + 1]
                if hi == lo:
                    continue
                qs = pair_q[a:b]
                scores = torch.mm(q[qs], self.rows[lo:hi].T)  # (queries of the list, rows)
                kk = min(k, hi - lo)
                s, j = torch.topk(scores, kk, dim=1)
                place = pair_slot[a:b].unsqueeze(1) + cols[:kk]
                out_s[qs.unsqueeze(1), place] = s
                out_r[qs.unsqueeze(1), place] = j + lo
            best_s, best_j = torch.topk(out_s, min(k, out_s.shape[1]), dim=1)
            best_r = torch.gather(out_r, 1, best_j)
        rows = best_r.numpy()
        ids = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)
        return best_s.numpy(), ids

    def _search_small(
        self, queries: np.ndarray, k: int, nprobe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A few queries, one at a time in numpy: per call, torch's dispatch costs more than
        these matrix-vector products. Same lists, same exact scores as the batched path."""
        rows, offs = self.rows.numpy(), self._offs
        cents = self.centroids.numpy()
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        for qi, q in enumerate(queries):
            c = cents @ q
            probe = (
                np.argpartition(-c, nprobe - 1)[:nprobe] if nprobe < len(c) else np.arange(len(c))
            )
            spans = [
                (offs[lst], offs[lst + 1]) for lst in probe.tolist() if offs[lst + 1] > offs[lst]
            ]
            if not spans:
                continue
            scores = np.concatenate([rows[lo:hi] @ q for lo, hi in spans])
            where = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
            kk = min(k, len(scores))
            top = (
                np.argpartition(-scores, kk - 1)[:kk]
                if kk < len(scores)
                else np.arange(len(scores))
            )
            top = top[np.argsort(-scores[top], kind="stable")]
            out_s[qi, :kk] = scores[top]
            out_i[qi, :kk] = self.ids[where[top]]
        return out_s, out_i

    # ---------------------------------------------------------------- persistence
    @staticmethod
    def fingerprint(ids: np.ndarray, matrix: np.ndarray) -> str:
        """What the index was built over: the row ids in order and a sample of the vectors."""
        h = hashlib.sha256(np.ascontiguousarray(ids).tobytes())
        step = max(1, len(matrix) // 1024)
        h.update(np.ascontiguousarray(matrix[::step], dtype=np.float32).tobytes())
        return h.hexdigest()

    def save(self, path: str | Path, fingerprint: str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            centroids=self.centroids.numpy(),
            assign=self.assign,
            fingerprint=np.array(fingerprint),
        )
        os.replace(tmp, path)


def load_or_build(
    path: str | Path, matrix: np.ndarray, ids: np.ndarray, nlist: int = 0
) -> tuple[IVFIndex, bool]:
    """The saved index when it was built over these rows, else a new one (saved). Returns
    (index, built)."""
    fp = IVFIndex.fingerprint(ids, matrix)
    path = Path(path)
    want = nlist or default_nlist(len(matrix))
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["fingerprint"]) == fp and len(z["centroids"]) == want:
                    return IVFIndex(matrix, ids, z["centroids"], z["assign"]), False
        except (OSError, ValueError, KeyError):
            pass  # unreadable: rebuild
    index = IVFIndex.build(matrix, ids, want)
    index.save(path, fp)
    return index, True
