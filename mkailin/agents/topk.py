"""Exact top-k inner products by matrix multiplication: the dense search for corpora that fit
in memory (``retrieval.search = "gemm"``, or ``auto`` below the IVF threshold). ``ivf.py``
beside it is the approximate search for larger ones."""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import numpy as np

from mkailin.backends import native_bf16


@dataclass
class Hits:
    pmids: list[list[int]]
    scores: list[list[float]]


def gemm_topk(
    matrix: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    chunk: int = 65536,
    block: int = 32,
    buffer_bytes: int = 256 << 20,
    screen: bool | None = None,
) -> Hits:
    """Exact top-k inner products, sorted by score (descending).

    Queries go in groups whose scores against the whole matrix fit ``buffer_bytes``; the scores
    are matrix products (torch, all cores) written chunk by chunk (``chunk`` matrix rows) into
    one (rows, queries) buffer. Selection avoids a top-k over every score: the rows are cut into
    blocks of ``block`` and a query only looks inside its blocks with the highest maxima (its k
    best blocks hold k scores >= the k-th largest block maximum, so no row outside them can beat
    the k-th best score, equal scores aside).

    ``screen`` (default: on for batches of 256+ queries over 64k+ rows when the CPU multiplies
    bfloat16 natively) computes the buffer in bfloat16, about twice as fast, and then re-scores
    the candidates in float32, so the result is still the exact float32 top-k: every bfloat16
    score is within ``eps = 4 * 2**-8 * |q| * max|x|`` of the exact one (inputs rounded to 8
    significant bits, float32 accumulation, one rounding of the output, plus slack), so the true
    top k all score >= (k-th best bfloat16 score - 2 eps) in bfloat16, and every such row is
    re-scored. A read-only matrix over memory nothing can write (such as the zero-copy view of
    Arrow data ``DenseSearcher`` holds) keeps its bfloat16 copy while it lives, so repeated calls
    (the ``retrieve`` stage searches batch by batch) do not convert it again."""
    import torch

    nq, n = len(queries), len(ids)
    k = min(k, n)
    if nq == 0 or k <= 0:
        return Hits([[] for _ in range(nq)], [[] for _ in range(nq)])
    mat = np.ascontiguousarray(matrix, dtype=np.float32)
    with warnings.catch_warnings():  # read-only arrays (zero-copy from Arrow) are only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        m = torch.from_numpy(mat)
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    block = max(1, min(block, n))
    if screen is None:
        screen = nq >= 256 and n >= 65536 and native_bf16()
    with torch.inference_mode():
        if screen:
            mb, mnorm = _bf16_copy(mat, m)
            best_s, best_i = _topk_screened(m, q, k, chunk, block, buffer_bytes, mb, mnorm)
        else:
            best_s, best_i = _topk_exact(m, q, k, chunk, block, buffer_bytes)
    return Hits(ids[best_i.numpy()].tolist(), best_s.numpy().tolist())


_BF16_COPY: dict[int, tuple] = {}  # id(matrix) -> (weak reference, bfloat16 copy, max row norm)


def _frozen(a: np.ndarray) -> bool:
    """Whether ``a`` is a read-only view of memory no ndarray can write: every array down its
    ``base`` chain is read-only and the chain ends in a foreign buffer (e.g. Arrow's)."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        if a.base is None:  # owns its data: its writeable flag can be turned back on
            return False
        a = a.base
    return True


def _bf16_copy(mat: np.ndarray, m):
    """(bfloat16 copy of ``m``, its largest row norm), kept between calls for a frozen matrix."""
    import torch

    key = id(mat)
    hit = _BF16_COPY.get(key)
    if hit is not None and hit[0]() is mat:
        return hit[1], hit[2]
    mb = m.to(torch.bfloat16)
    mnorm = float(torch.linalg.vector_norm(m, dim=1).max())
    if _frozen(mat):
        _BF16_COPY.clear()  # one matrix at a time: a copy is half the matrix's memory
        _BF16_COPY[key] = (
            weakref.ref(mat, lambda _, key=key: _BF16_COPY.pop(key, None)),
            mb,
            mnorm,
        )
    return mb, mnorm


def _score_buffer(m, q, n: int, npad: int, chunk: int, out):
    """out[:n] = m @ q.T, chunk by chunk; out[n:] (padding of the last block) = -inf."""
    import torch

    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        torch.mm(m[start:stop], q.T, out=out[start:stop])
    if npad > n:
        out[n:] = -torch.inf
    return out


def _topk_exact(m, q, k: int, chunk: int, block: int, buffer_bytes: int):
    """float32 scores; the k best blocks of each query, then a top-k over their rows."""
    import torch

    n, nq = len(m), len(q)
    nb = -(-n // block)
    npad = nb * block
    kb = min(k, nb)
    group = int(max(1, min(nq, buffer_bytes // (4 * npad))))
    offsets = torch.arange(block)
    out_s = torch.empty(nq, k, dtype=torch.float32)
    out_i = torch.empty(nq, k, dtype=torch.long)
    buf = None
    for g in range(0, nq, group):
        qq = q[g : g + group]
        b = len(qq)
        if buf is None or buf.shape[1] != b:
            buf = torch.empty(npad, b, dtype=torch.float32)
        scores = _score_buffer(m, qq, n, npad, chunk, buf)
        block_max = scores.view(nb, block, b).amax(dim=1)  # (blocks, queries)
        top_blocks = torch.topk(block_max.T, kb, dim=1).indices  # (queries, kb)
        cand = (top_blocks.unsqueeze(-1) * block + offsets).reshape(b, -1)
        vals = scores[cand, torch.arange(b).unsqueeze(1)]  # (queries, kb * block)
        top_s, top_j = torch.topk(vals, k, dim=1)  # sorted, descending
        out_s[g : g + b] = top_s
        out_i[g : g + b] = torch.gather(cand, 1, top_j)
    return out_s, out_i


def _topk_screened(
    m, q, k: int, chunk: int, block: int, buffer_bytes: int, mb=None, mnorm: float | None = None
):
    """bfloat16 scores to find candidates, float32 re-scoring of them (see gemm_topk).

    A query with more candidate rows than ``4 * k * block`` (at least 4096: many rows within
    the error bound of its k-th score, e.g. near-duplicate vectors) and a query the screen
    cannot bound (NaN) go through the float32 path instead, which keeps memory bounded."""
    import torch

    n, nq = len(m), len(q)
    nb = -(-n // block)
    npad = nb * block
    kb = min(k, nb)
    cap = max(4096, 4 * kb * block)  # candidate rows per query before the float32 path
    if mb is None:
        mb = m.to(torch.bfloat16)
    if mnorm is None:
        mnorm = float(torch.linalg.vector_norm(m, dim=1).max())
    eps = 4 * 2.0**-8 * torch.linalg.vector_norm(q, dim=1) * mnorm + 1e-6
    group = int(max(1, min(nq, buffer_bytes // (2 * npad))))
    offsets = torch.arange(block)
    out_s = torch.empty(nq, k, dtype=torch.float32)
    out_i = torch.empty(nq, k, dtype=torch.long)
    redo = []
    buf = None
    for g in range(0, nq, group):
        qq = q[g : g + group]
        b = len(qq)
        if buf is None or buf.shape[1] != b:
            buf = torch.empty(npad, b, dtype=torch.bfloat16)
        approx = _score_buffer(mb, qq.to(torch.bfloat16), n, npad, chunk, buf)
        block_max = approx.view(nb, block, b).amax(dim=1).T.float()  # (queries, blocks)
        # the k-th best bfloat16 score of each query, from its k best blocks
        top_b = torch.topk(block_max, kb, dim=1).indices
        cand = (top_b.unsqueeze(-1) * block + offsets).reshape(b, -1)
        kth = torch.topk(approx[cand, torch.arange(b).unsqueeze(1)].float(), k, dim=1).values[:, -1]
        floor = kth - 2 * eps[g : g + b]  # every true top-k row scores >= floor in bfloat16
        # every (query, block) whose maximum reaches the floor; too many: the float32 path
        above = block_max >= floor.unsqueeze(1)
        wide = above.sum(1) * block > cap
        above[wide] = False
        qi, bi = torch.nonzero(above, as_tuple=True)
        # then every (query, row) of those blocks at or above the floor
        keep = approx.view(nb, block, b)[bi, :, qi].float() >= floor[qi].unsqueeze(1)
        rows = (bi.unsqueeze(1) * block + offsets)[keep]  # padding rows are -inf: never kept
        qi = qi.unsqueeze(1).expand(-1, block)[keep]
        # exact float32 scores of the candidates (in slices), then the k best of each query
        exact = torch.empty(len(rows), dtype=torch.float32)
        for s in range(0, len(rows), 1 << 15):
            r, i = rows[s : s + (1 << 15)], qi[s : s + (1 << 15)]
            exact[s : s + len(r)] = torch.bmm(m[r].unsqueeze(1), qq[i].unsqueeze(2)).reshape(-1)
        order = torch.argsort(exact, descending=True)
        order = order[torch.argsort(qi[order], stable=True)]  # by query, best first
        counts = torch.bincount(qi, minlength=b)  # >= k: the bfloat16 top k are all kept
        first = torch.cumsum(counts, 0) - counts
        if len(order):
            pos = (first.unsqueeze(1) + torch.arange(k)).clamp(max=len(order) - 1).reshape(-1)
            out_s[g : g + b] = exact[order[pos]].reshape(b, k)
            out_i[g : g + b] = rows[order[pos]].reshape(b, k)
        short = torch.nonzero((counts < k) | wide).flatten()  # NaN or too many candidates
        redo.append(g + short)
    redo = torch.cat(redo)
    if len(redo):
        s2, i2 = _topk_exact(m, q[redo], k, chunk, block, buffer_bytes)
        out_s[redo] = s2
        out_i[redo] = i2
    return out_s, out_i
