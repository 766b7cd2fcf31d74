"""The retrieval agent: embed the corpus into LanceDB, then fetch the top-k contexts per question.

Vectors live in one LanceDB table per encoder, ``article_vectors_<encoder>`` (pmid, encoder,
vector, text), filled by the ``embed`` stage through the runner (so resume and Ray apply). Above
``retrieval.index_threshold`` vectors the table gets an IVF_PQ index; searches then probe it
and re-rank the candidates exactly (refine). Below it, and for big batches of questions, an
exact GEMM over the matrix is faster than any index, so the searcher picks by size.

Lexical search is BM25 through LanceDB's full-text index on ``article_fts`` (pmid, text), and
hybrid search fuses the dense and BM25 rankings by reciprocal rank fusion (RRF).

``contexts`` rows are (question_id, rank, pmid, score, retriever), where ``retriever`` names the
method and encoder, e.g. ``dense:minilm``, ``bm25``, ``hybrid:minilm``. The question's own
article is left out unless ``retrieval.keep_source`` is set.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pyarrow as pa

from mkailin.agents.topk import Hits, gemm_topk
from mkailin.config import Config, EncoderSpec, RetrievalConfig
from mkailin.errors import InputError, StageError
from mkailin.labels import encoder_for, questions_where, retriever_label
from mkailin.lake import Lake
from mkailin.stage import LanceSink, RunResult, Stage, run_stage, scan

ARTICLE_TEXT_SQL = (
    "select pmid, trim(coalesce(title, '') || ' ' || coalesce(abstract, '')) as text "
    "from articles where abstract is not null or title is not null"
)


def article_text_sql(cfg: Config) -> str:
    """The retrieval candidates: every article with text, less the eval blocklist."""
    from mkailin.blocklist import not_blocked

    return f"select * from ({ARTICLE_TEXT_SQL}) where {not_blocked(cfg)}"


def drop_blocked(lake: Lake, cfg: Config, table: str) -> int:
    """Delete the blocklisted articles' rows from a LanceDB table (vectors or the BM25 corpus)
    written before they were blocked. Returns how many rows went."""
    from mkailin.blocklist import blocked_sql

    q = blocked_sql(cfg)
    tbl = _open(lake, table) if q else None
    if tbl is None:
        return 0
    blocked = [r[0] for r in lake.query(q)]
    gone = 0
    for i in range(0, len(blocked), 5000):
        chunk = ", ".join(map(str, blocked[i : i + 5000]))
        n = tbl.count_rows(f"pmid IN ({chunk})")
        if n:
            tbl.delete(f"pmid IN ({chunk})")
            gone += n
    return gone


FTS_TABLE = "article_fts"
_WORD = re.compile(r"[A-Za-z0-9]+")


def vectors_table(encoder_name: str) -> str:
    return "article_vectors_" + re.sub(r"[^a-z0-9_]", "_", encoder_name.lower())


def _db(lake: Lake):
    import lancedb

    lake.vectors_dir.mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(lake.vectors_dir))


def _open(lake: Lake, table: str):
    from mkailin.stage import _lance_tables

    db = _db(lake)
    return db.open_table(table) if table in _lance_tables(db) else None


# ------------------------------------------------------------------------------ embed
def vectors_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("pmid", pa.int64()),
            ("encoder", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
            ("text", pa.string()),
        ]
    )


class ArticleEmbedder:
    """Batch function: (pmid, text) -> (pmid, encoder, vector, text)."""

    def __init__(self, name: str, spec: EncoderSpec):
        from mkailin.backends.embedding import get_encoder

        self.name = name
        self.encoder = get_encoder(spec, name)

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        v = self.encoder.encode_documents(texts)
        return pa.table(
            {
                "pmid": batch.column("pmid"),
                "encoder": pa.array([self.name] * batch.num_rows, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(v.ravel(), pa.float32()), v.shape[1]
                ),
                "text": batch.column("text"),
            }
        )


def embed_stage(lake: Lake, cfg: Config, role: str | None = None) -> Stage:
    from mkailin.backends.embedding import get_encoder

    name, spec = encoder_for(cfg, role)
    dim = get_encoder(spec, name).dim
    table = vectors_table(name)
    return Stage(
        name=f"embed:{name}",
        input_sql=article_text_sql(cfg),
        output=table,
        key=("pmid",),
        fn=ArticleEmbedder,
        fn_args=(name, spec),
        batch_size=spec.batch_size,
        models={"encoder": spec.model},
        config_hash=cfg.hash("encoders"),
        sink=LanceSink(table, vectors_schema(dim)),
    )


def embed(
    lake: Lake,
    cfg: Config,
    role: str | None = None,
    executor: str | None = None,
    limit: int = 0,
    progress: bool | None = None,
) -> RunResult:
    stage = embed_stage(lake, cfg, role)
    drop_blocked(lake, cfg, stage.output)
    result = run_stage(
        lake, stage, executor or cfg.runtime.executor, cfg.runtime, progress=progress, limit=limit
    )
    ensure_index(lake, stage.output, cfg.retrieval)
    return result


def index_params(n: int, dim: int) -> dict:
    """IVF partitions ~ sqrt(n) (each a few hundred vectors), PQ sub-vectors of 8 dimensions."""
    parts = int(min(4096, max(16, round(math.sqrt(n)))))
    sub = next(s for s in (dim // 8, dim // 4, dim // 2, dim, 1) if s and dim % s == 0)
    return {"num_partitions": parts, "num_sub_vectors": sub}


def ensure_index(lake: Lake, table: str, rcfg: RetrievalConfig) -> str:
    """Build the ANN index above the threshold (or fold new rows into an existing one)."""
    tbl = _open(lake, table)
    if tbl is None:
        return "none"
    n = tbl.count_rows()
    has_index = any("vector" in (getattr(i, "columns", None) or []) for i in tbl.list_indices())
    if has_index:
        tbl.optimize()
        return "updated"
    if n < rcfg.index_threshold:
        return "flat"
    dim = tbl.schema.field("vector").type.list_size
    tbl.create_index(metric="cosine", index_type="IVF_PQ", **index_params(n, dim))
    return "created"


# ------------------------------------------------------------------------------ BM25 corpus
class _Passthrough:
    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch.select(["pmid", "text"])


def sync_fts(lake: Lake, cfg: Config, progress: bool | None = None) -> RunResult:
    """Copy new article text into ``article_fts`` and (re)build its BM25 index."""
    dropped = drop_blocked(lake, cfg, FTS_TABLE)
    stage = Stage(
        name="index:bm25",
        input_sql=article_text_sql(cfg),
        output=FTS_TABLE,
        key=("pmid",),
        fn=_Passthrough,
        batch_size=5000,
        models={"bm25": "lancedb-fts"},
        sink=LanceSink(FTS_TABLE, pa.schema([("pmid", pa.int64()), ("text", pa.string())])),
    )
    r = run_stage(lake, stage, "local", cfg.runtime, progress=progress)
    tbl = _open(lake, FTS_TABLE)
    if tbl is not None and (r.rows_out or dropped or not _has_fts(tbl)):
        from lancedb.index import FTS

        tbl.create_index("text", config=FTS(), replace=True)
    return r


def _has_fts(tbl) -> bool:
    return any("text" in (getattr(i, "columns", None) or []) for i in tbl.list_indices())


# ------------------------------------------------------------------------------ search
DENSE_MODES = ("auto", "gemm", "ivf", "ann", "flat")


class DenseSearcher:
    """Top-k by cosine similarity over a vectors table.

    Modes: ``gemm`` (exact, the matrix in memory), ``ivf`` (approximate: an inverted file
    searched in matrix products, see ``ivf.py``; ``nprobes`` lists per query), ``ann``
    (LanceDB's IVF_PQ index, ``nprobes`` and ``refine_factor``), ``flat`` (LanceDB without
    an index). ``auto`` takes ``gemm`` while the matrix fits ``gemm_max_bytes``, else ``ann``
    when the table has an index, else ``flat``."""

    def __init__(
        self,
        lake: Lake,
        table: str,
        mode: str = "auto",
        nprobes: int = 32,
        refine_factor: int = 10,
        gemm_max_bytes: int = 2 << 30,
    ):
        if mode not in DENSE_MODES:
            raise InputError(f"unknown dense search {mode!r} ({', '.join(DENSE_MODES)})")
        self.tbl = _open(lake, table)
        if self.tbl is None:
            raise StageError(f"no vectors in {table}: run `mkailin embed` first")
        n = self.tbl.count_rows()
        dim = self.tbl.schema.field("vector").type.list_size
        indexed = any(
            "vector" in (getattr(i, "columns", None) or []) for i in self.tbl.list_indices()
        )
        if mode == "auto":
            mode = "gemm" if n * dim * 4 <= gemm_max_bytes else ("ann" if indexed else "flat")
        self.mode, self.nprobes, self.refine = mode, nprobes, refine_factor
        self.built = False
        if mode in ("gemm", "ivf"):
            data = scan(self.tbl, ["pmid", "vector"])
            self.ids = data.column("pmid").to_numpy()
            flat = data.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            self.matrix = np.ascontiguousarray(flat.reshape(len(self.ids), dim), dtype=np.float32)
        if mode == "ivf":
            from mkailin.agents.ivf import load_or_build

            path = lake.root / "indexes" / f"{table}.ivf.npz"
            self.ivf, self.built = load_or_build(path, self.matrix, self.ids)
            self.matrix = None  # the index holds the rows, in list order

    def search(self, queries: np.ndarray, k: int) -> Hits:
        if self.mode == "gemm":
            return gemm_topk(self.matrix, self.ids, queries, k)
        if self.mode == "ivf":
            scores, ids = self.ivf.search(queries, k, self.nprobes)
            keep = ids >= 0
            return Hits(
                [row[m].tolist() for row, m in zip(ids, keep)],
                [row[m].tolist() for row, m in zip(scores, keep)],
            )
        q = self.tbl.search(queries).metric("cosine").limit(k).select(["pmid"])
        if self.mode == "ann":
            q = q.nprobes(self.nprobes).refine_factor(self.refine)
        else:
            q = q.bypass_vector_index()
        res = q.to_arrow()
        out_p: list[list[int]] = [[] for _ in range(len(queries))]
        out_s: list[list[float]] = [[] for _ in range(len(queries))]
        qi = (
            res.column("query_index").to_pylist()
            if "query_index" in res.column_names
            else [0] * res.num_rows
        )
        for i, p, d in zip(qi, res.column("pmid").to_pylist(), res.column("_distance").to_pylist()):
            out_p[i].append(p)
            out_s[i].append(1.0 - d)
        return Hits(out_p, out_s)


class BM25Searcher:
    def __init__(self, lake: Lake):
        self.tbl = _open(lake, FTS_TABLE)
        if self.tbl is None:
            raise StageError(
                "no BM25 index: run `mkailin retrieve --retriever bm25` "
                "(it builds article_fts) or `mkailin embed`"
            )

    def search_one(self, text: str, k: int) -> tuple[list[int], list[float]]:
        words = _WORD.findall(text or "")
        if not words:
            return [], []
        res = (
            self.tbl.search(" ".join(words), query_type="fts")
            .limit(k)
            .select(["pmid", "_score"])
            .to_arrow()
        )
        return res.column("pmid").to_pylist(), [float(x) for x in res.column("_score").to_pylist()]

    def search(self, texts: list[str], k: int) -> Hits:
        hits = [self.search_one(t, k) for t in texts]
        return Hits([h[0] for h in hits], [h[1] for h in hits])


def rrf(rankings: list[list[int]], k: int, rrf_k: int = 60) -> tuple[list[int], list[float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (rrf_k + rank(d))."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for r, pmid in enumerate(ranking, start=1):
            score[pmid] = score.get(pmid, 0.0) + 1.0 / (rrf_k + r)
    top = sorted(score.items(), key=lambda x: (-x[1], x[0]))[:k]
    return [p for p, _ in top], [s for _, s in top]


class Retriever:
    """dense | bm25 | hybrid search for question texts, with the source article left out."""

    def __init__(
        self,
        lake: Lake,
        method: str,
        encoder_name: str,
        spec: EncoderSpec,
        rcfg: RetrievalConfig,
        dense_mode: str = "auto",
    ):
        self.method = method
        self.rcfg = rcfg
        self.label = "bm25" if method == "bm25" else f"{method}:{encoder_name}"
        self.dense = self.bm25 = None
        if method in ("dense", "hybrid"):
            from mkailin.backends.embedding import get_encoder

            self.encoder = get_encoder(spec, encoder_name)
            self.dense = DenseSearcher(
                lake,
                vectors_table(encoder_name),
                rcfg.search if dense_mode == "auto" else dense_mode,
                nprobes=rcfg.nprobes,
                refine_factor=rcfg.refine_factor,
            )
        if method in ("bm25", "hybrid"):
            self.bm25 = BM25Searcher(lake)
        if self.dense is None and self.bm25 is None:
            raise InputError(f"unknown retriever {method!r} (dense, bm25 or hybrid)")

    def search(self, texts: list[str], k: int, exclude: list[int | None] | None = None) -> Hits:
        extra = 0 if exclude is None else 1
        pool = k + extra if self.method != "hybrid" else max(50, 10 * k)
        dense = bm25 = None
        if self.dense is not None:
            dense = self.dense.search(self.encoder.encode_queries(texts), pool)
        if self.bm25 is not None:
            bm25 = self.bm25.search(texts, pool)
        out_p, out_s = [], []
        for i in range(len(texts)):
            if self.method == "hybrid":
                p, s = rrf([dense.pmids[i], bm25.pmids[i]], pool, self.rcfg.rrf_k)
            else:
                h = dense or bm25
                p, s = h.pmids[i], h.scores[i]
            skip = exclude[i] if exclude is not None else None
            pairs = [(a, b) for a, b in zip(p, s) if a != skip][:k]
            out_p.append([a for a, _ in pairs])
            out_s.append([b for _, b in pairs])
        return Hits(out_p, out_s)


class ContextFetcher:
    """Batch function: questions (question_id, pmid, question) -> contexts rows."""

    def __init__(
        self,
        lake_root: str,
        method: str,
        encoder_name: str,
        spec: EncoderSpec,
        rcfg: RetrievalConfig,
        k: int,
    ):
        self.retriever = Retriever(Lake(lake_root), method, encoder_name, spec, rcfg)
        self.k = k
        self.keep_source = rcfg.keep_source

    def __call__(self, batch: pa.Table) -> pa.Table:
        qids = batch.column("question_id").to_pylist()
        src = batch.column("pmid").to_pylist()
        hits = self.retriever.search(
            batch.column("question").to_pylist(), self.k, None if self.keep_source else src
        )
        rows = {"question_id": [], "rank": [], "pmid": [], "score": [], "retriever": []}
        for qid, pm, sc in zip(qids, hits.pmids, hits.scores):
            for r, (p, s) in enumerate(zip(pm, sc), start=1):
                rows["question_id"].append(qid)
                rows["rank"].append(r)
                rows["pmid"].append(p)
                rows["score"].append(float(s))
                rows["retriever"].append(self.retriever.label)
        return pa.table(
            {
                "question_id": pa.array(rows["question_id"], pa.string()),
                "rank": pa.array(rows["rank"], pa.int32()),
                "pmid": pa.array(rows["pmid"], pa.int64()),
                "score": pa.array(rows["score"], pa.float64()),
                "retriever": pa.array(rows["retriever"], pa.string()),
                "top_k": pa.array([self.k] * len(rows["rank"]), pa.int32()),
            }
        )


def retrieve_stage(
    lake: Lake,
    cfg: Config,
    method: str | None = None,
    k: int | None = None,
    agents: tuple[str, ...] = (),
) -> Stage:
    method = method or cfg.retrieval.retriever
    k = k or cfg.retrieval.k
    name, spec = encoder_for(cfg)
    label = retriever_label(cfg, method)
    where = "question is not null"
    params: list = []
    if agents:  # the agents' questions written under this config (every question otherwise)
        mine, params = questions_where(lake, cfg, agents, alias="")
        where += f" and {mine}"
    return Stage(
        # k is part of the stage's identity: -k 8 after -k 4 is a new run with 8 contexts
        name=f"retrieve:{label}:top{k}",
        output="contexts",
        key=("question_id",),
        input_sql=f"select question_id, pmid, question from questions where {where}",
        input_params=params,
        output_filter="retriever = ? and top_k = ?",
        output_params=[label, k],
        fn=ContextFetcher,
        fn_args=(str(lake.root), method, name, spec, cfg.retrieval, k),
        # the ivf search answers a batch list by list: bigger batches share more of each list
        batch_size=max(
            cfg.runtime.batch_size,
            4096 if method != "bm25" and cfg.retrieval.search == "ivf" else 256,
        ),
        models={
            "encoder": spec.model if method != "bm25" else "",
            "retriever": label,
            "k": str(k),
        },
        config_hash=cfg.hash("retrieval", "encoders"),
    )


def retrieve(
    lake: Lake,
    cfg: Config,
    method: str | None = None,
    k: int | None = None,
    agents: tuple[str, ...] = (),
    executor: str | None = None,
    limit: int = 0,
    progress: bool | None = None,
) -> list[RunResult]:
    """Top-k contexts for every question: embeds and indexes what is missing first."""
    method = method or cfg.retrieval.retriever
    results = []
    if method in ("dense", "hybrid"):
        results.append(embed(lake, cfg, progress=progress))
    if method in ("bm25", "hybrid"):
        results.append(sync_fts(lake, cfg, progress=progress))
    stage = retrieve_stage(lake, cfg, method, k, agents)
    results.append(
        run_stage(
            lake,
            stage,
            executor or cfg.runtime.executor,
            cfg.runtime,
            progress=progress,
            limit=limit,
        )
    )
    return results


# ------------------------------------------------------------------------------ quality check
def eval_retrieval(
    lake: Lake,
    cfg: Config,
    methods: tuple[str, ...] = ("dense", "bm25", "hybrid"),
    ks: tuple[int, ...] = (1, 4, 10),
    limit: int = 0,
) -> pa.Table:
    """PubMedQA: each question retrieves from the corpus, its own article included; report
    recall@k and MRR (over the top max(ks)) per retriever. Only questions whose article is a
    retrieval candidate count: the eval blocklist's articles are not in the corpus."""
    from mkailin.blocklist import not_blocked

    rows = lake.query(
        "select question, pmid from pubmedqa where question is not null and "
        f"{not_blocked(cfg)} order by pmid"
    )
    if not rows:
        raise InputError(
            "no PubMedQA questions outside the eval blocklist (eval.blocklist): "
            "run `mkailin ingest pubmedqa` first, or block fewer items"
        )
    if limit:
        rows = rows[:limit]
    texts, gold = [r[0] for r in rows], [r[1] for r in rows]
    if any(m in ("dense", "hybrid") for m in methods):
        embed(lake, cfg, progress=False)
    if any(m in ("bm25", "hybrid") for m in methods):
        sync_fts(lake, cfg, progress=False)
    name, spec = encoder_for(cfg)
    kmax = max(ks)
    out = []
    n_docs = lake.query(f"select count(*) from ({article_text_sql(cfg)})")[0][0]
    for m in methods:
        r = Retriever(lake, m, name, spec, cfg.retrieval)
        hits = r.search(texts, kmax)
        ranks = [h.index(g) + 1 if g in h else None for h, g in zip(hits.pmids, gold)]
        rec = {f"recall_at_{k}": sum(1 for x in ranks if x and x <= k) / len(ranks) for k in ks}
        mrr = sum(1.0 / x for x in ranks if x) / len(ranks)
        out.append(
            {"retriever": r.label, "questions": len(ranks), "corpus": n_docs, **rec, "mrr": mrr}
        )
    return pa.Table.from_pylist(out)


# ------------------------------------------------------------------------------ DuckDB UDF
class _PmidLists:
    def __init__(
        self,
        lake_root: str,
        method: str,
        encoder_name: str,
        spec: EncoderSpec,
        rcfg: RetrievalConfig,
        k: int,
    ):
        self.retriever = Retriever(Lake(lake_root), method, encoder_name, spec, rcfg)
        self.k = k

    def __call__(self, batch: pa.Table) -> pa.Table:
        hits = self.retriever.search(batch.column("question").to_pylist(), self.k)
        return pa.table({"pmids": pa.array(hits.pmids, pa.list_(pa.int64()))})


def register_retrieve_udf(
    con,
    lake: Lake,
    cfg: Config,
    name: str = "mk_retrieve",
    method: str | None = None,
    k: int | None = None,
) -> None:
    """``select mk_retrieve(question) from ...`` -> the top-k PMIDs, for ad-hoc SQL."""
    import duckdb

    from mkailin.stage import register_udf

    enc_name, spec = encoder_for(cfg)
    try:
        from duckdb import sqltypes
    except ImportError:  # DuckDB 1.x
        from duckdb import typing as sqltypes
    register_udf(
        con,
        name,
        _PmidLists,
        (
            str(lake.root),
            method or cfg.retrieval.retriever,
            enc_name,
            spec,
            cfg.retrieval,
            k or cfg.retrieval.k,
        ),
        ["question"],
        "pmids",
        [sqltypes.VARCHAR],
        duckdb.list_type(sqltypes.BIGINT),
    )
