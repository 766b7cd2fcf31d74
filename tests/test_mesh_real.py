"""The MeSH similarity views on real data: the MeSH 2017 tree with PubMedQA's article_mesh.

The SQL is checked against the per-pair Python reference (tests/mesh_reference.py) on random
pairs, and audited over the whole tree.
"""

from __future__ import annotations

import random

import pytest
from mesh_reference import MeshReference


@pytest.fixture(scope="module")
def real(mesh_lake):
    con = mesh_lake.connect()
    tree = con.execute("select tree_number, descriptor_ui from mesh_tree").fetchall()
    annotations = con.execute("select pmid, descriptor_ui from mesh_doc_terms").fetchall()
    ref = MeshReference(tree, annotations)
    con.execute("create temp table idx as select * from mesh_sim_index")
    con.execute("create temp table kidx as select * from mesh_kailin_index")
    yield con, ref
    con.close()


def test_real_corpus_shape(real):
    con, ref = real
    n_articles = con.execute("select count(distinct pmid) from mesh_doc_terms").fetchone()[0]
    assert n_articles == len(ref.docs) > 900  # PubMedQA's 1,000 labelled articles
    n_desc, n_anc = con.execute(
        "select count(distinct descriptor_ui), count(*) from mesh_ancestors"
    ).fetchone()
    assert n_desc == 28470  # MeSH 2017
    assert n_anc == sum(len(a) for a in ref.ancestors.values())
    # Humans is on nearly every article: IC close to 0
    ic_humans = con.execute(
        "select ic_corpus from mesh_ic where descriptor_ui = 'D006801'"
    ).fetchone()[0]
    assert 0 < ic_humans < 0.3


def test_real_ic_falls_towards_the_root(real):
    con, _ = real
    bad = con.execute("""
        select count(*) from mesh_ancestors as a
        join mesh_ic as d on d.descriptor_ui = a.descriptor_ui
        join mesh_ic as u on u.descriptor_ui = a.ancestor_ui
        where u.ic_corpus > d.ic_corpus
           or u.ic_intrinsic > d.ic_intrinsic
           or (a.distance > 0 and u.ic_intrinsic >= d.ic_intrinsic)
    """).fetchone()[0]
    assert bad == 0


def test_real_pairs_match_the_reference(real):
    con, ref = real
    rng = random.Random(2017)
    seen = sorted(u for u, c in ref.count.items() if c > 0)
    every = sorted(ref.descriptors)
    pairs = [(rng.choice(seen), rng.choice(seen)) for _ in range(1500)]
    pairs += [(rng.choice(every), rng.choice(every)) for _ in range(500)]
    pairs += [(a, a) for a, _ in pairs[:20]]
    con.execute("create or replace temp table rp (a varchar, b varchar)")
    con.executemany("insert into rp values (?, ?)", pairs)
    for ic in ("corpus", "intrinsic"):
        got = con.execute(
            f"select a, b, resnik, lin, jc from mesh_term_sim('rp', '{ic}', 'idx')"
        ).fetchall()
        assert len(got) == len(pairs)
        for a, b, resnik, lin, jc in got:
            for measure, value in (("resnik", resnik), ("lin", lin), ("jc", jc)):
                expected = ref.sim(a, b, measure, ic)
                assert value == (None if expected is None else pytest.approx(expected, abs=1e-12))
            if lin is not None:
                assert 0 <= lin <= 1 and 0 <= jc <= 1
    got = con.execute("select a, b, kailin from mesh_term_kailin('rp', 'kidx')").fetchall()
    for a, b, k in got:
        assert k == pytest.approx(ref.kailin(a, b), abs=1e-9), (a, b)
        assert 0 <= k <= 1
    nonzero = sum(1 for *_, k in got if k > 0)
    assert nonzero > 20  # random pairs rarely share a top-level tree, but some do


def test_real_documents_match_the_reference(real):
    con, ref = real
    rng = random.Random(7)
    pmids = sorted(ref.docs)
    docs = [(rng.choice(pmids), rng.choice(pmids)) for _ in range(40)]
    con.execute("create or replace temp table dp (a bigint, b bigint)")
    con.executemany("insert into dp values (?, ?)", docs)
    for measure, aggregate in (("lin", "mean"), ("kailin", "mean"), ("jc", "bma")):
        got = con.execute(
            f"select a, b, similarity from mesh_doc_sim('dp', '{measure}', 'corpus', "
            f"'{aggregate}', 'idx', 'kidx')"
        ).fetchall()
        assert len(got) == len(set(docs))
        for a, b, sim in got:
            expected = ref.doc_sim(ref.docs[a], ref.docs[b], measure, "corpus", aggregate)
            assert sim == pytest.approx(expected, abs=1e-9), (a, b, measure, aggregate)


def test_real_known_pair(real):
    """Neoplasms (C04) and its descendant Breast Neoplasms (C04.588.180, C17.800.090.500)."""
    con, ref = real
    con.execute("create or replace temp table kp as select 'D009369' as a, 'D001943' as b")
    r = con.execute(
        "select mica_ui, resnik, lin from mesh_term_sim('kp', 'corpus', 'idx')"
    ).fetchone()
    ic = ref.ic["corpus"]
    assert r[0] == "D009369"  # the ancestor is the MICA
    assert r[1] == pytest.approx(ic["D009369"])
    assert r[2] == pytest.approx(2 * ic["D009369"] / (ic["D009369"] + ic["D001943"]))
