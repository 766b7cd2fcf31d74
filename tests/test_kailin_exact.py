"""The kailin-exact measure: the KAILIN scorer with the settings of KAILIN's own code.

kailin-exact = mesh_term_kailin over mesh_kailin_exact_index (sql/023: IC without the term
itself, categories by top-level tree, descriptors with a tree number only), and documents that
keep only their terms with a tree number (sql/030). Two kinds of check:

- the fixture tree of tests/mesh_fixture.py plus a check tag (D11 *Female*, no tree number),
  with every expected value worked out by hand below (lg = log10);
- the real MeSH 2017 tree and PubMedQA's articles, with Female and Male loaded as check tags
  from descriptor XML, against tests/mesh_reference.py's KailinCode (a function-by-function
  re-implementation of KAILIN's cal_mesh_score.py) and against values computed by KAILIN's
  unmodified code.
"""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest
from mesh_fixture import ANNOTATIONS, ARTICLES, P1, P2, P3, P4, P5, P6, fill, tree_tables

from conftest import shared

lg = math.log10
approx = pytest.approx
P7 = 107  # an article whose only heading is the check tag
CHECK_TAG = {"descriptor_ui": "D11", "name": "Female", "tree_numbers": [], "entry_terms": []}


def rows(con, sql, params=None):
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """The fixture lake, plus the check tag D11 on P2, P3 and P7."""
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path_factory.mktemp("kexact") / "lake")
    fill(
        lake,
        articles=[*ARTICLES, P7],
        annotations=[*ANNOTATIONS, (P2, "D11"), (P3, "D11"), (P7, "D11")],
    )
    desc, _ = tree_tables()
    check_tag = pa.Table.from_pylist([CHECK_TAG], schema=desc.schema)
    lake.replace_table("mesh_descriptors", pa.concat_tables([desc, check_tag]))
    c = lake.connect()
    yield c
    c.close()


# ------------------------------------------------------------------------------ fixture, by hand
# Categories are top-level trees. Annotations: D02 1, D03 1, D04 2, D05 1, D07 2, D08 1.
# Totals: A01 = D02 + D03 + D04 + D05 = 5; C01 = D04 + D07 = 4; C02 = D07 + D08 = 3; B01 = 0.
# IC without the term itself (descendants only):
#   D01 A01: D02 D03 D04 D05 = 5/5 -> 0;  D02 A01: D03 + D04 = 3/5 -> -lg .6
#   D06 C01: D07 + D04 = 4/4 -> 0;        D08 C02: D07 + D10 = 2/3 -> -lg(2/3)
#   every leaf, and D07 (only D10 below it, in C02, never annotated): 0
# MaxIC: A01 -lg .6; C01 0 (never counts); C02 -lg(2/3); B01 0.
EXACT_IC = {
    ("D01", "A01"): 0.0,
    ("D02", "A01"): -lg(0.6),
    ("D04", "A01"): 0.0,
    ("D04", "C01"): 0.0,
    ("D06", "C01"): 0.0,
    ("D07", "C01"): 0.0,
    ("D07", "C02"): 0.0,
    ("D08", "C02"): -lg(2 / 3),
}
D02_D05 = (1 + lg(0.6)) / 3  # see TERM_CASES
TERM_CASES = [
    # (a, b, kailin-exact)
    # D02 A01.100, D05 A01.500: LCA A01 = D01, IC 0 -> ictmp 0; summed = -lg .6 + 0 > 0:
    #   lin 0, rel 0, jiang = 1 - (-lg .6) = 1 + lg .6 = 0.778151; mean = 0.259384
    ("D02", "D05", D02_D05),
    # D02, D04 (A01.100.300): LCA D02, ictmp = 1, summed = -lg .6 = 0.221849:
    #   lin = 2 / 0.2218 -> 1; jiang = 1 - (0.2218 - 2) -> 1; rel = 9.015 (1 - .6) -> 1
    ("D02", "D04", 1.0),
    # D07 (C01.100, C02.100), D08 (C02): LCA C02 = D08, ictmp = 1, summed = 0 + -lg(2/3):
    #   lin -> 1; jiang -> 1; rel = 11.36 (1 - 2/3) -> 1
    ("D07", "D08", 1.0),
    # KAILIN's leaf quirk: D03 and D04 both have IC_A01 0, summed = 0, no category left
    ("D03", "D04", 0.0),
    # D07, D10: LCA C02.100 = D07; C01 has MaxIC 0; in C02 summed = 0 + 0: nothing left
    ("D07", "D10", 0.0),
    # different top-level trees
    ("D03", "D08", 0.0),
    ("D05", "D05", 1.0),
    # a check tag (no tree number) and a UI outside MeSH have no kailin-exact score
    ("D11", "D03", None),
    ("D11", "D11", None),
    ("D03", "D99999", None),
]


def test_exact_ic_by_hand(con):
    got = {
        (r["descriptor_ui"], r["category"]): (r["ic"], r["max_ic"])
        for r in rows(con, "select * from mesh_kailin_ic_with(false, 'top')")
    }
    for key, ic in EXACT_IC.items():
        assert got[key][0] == approx(ic, abs=1e-15), key
    assert got[("D02", "A01")][1] == approx(-lg(0.6))
    assert got[("D06", "C01")][1] == 0.0
    index = {r["descriptor_ui"] for r in rows(con, "select * from mesh_kailin_exact_index")}
    assert "D11" not in index and {"D01", "D04", "D10"} <= index


@pytest.mark.parametrize("a,b,expected", TERM_CASES)
def test_term_kailin_exact_by_hand(con, a, b, expected):
    con.execute("create or replace temp table kp (a varchar, b varchar)")
    con.executemany("insert into kp values (?, ?)", [(a, b), (b, a)])
    got = rows(con, "select * from mesh_term_sim_with('kp', 'kailin-exact')")
    assert len(got) == 2
    for r in got:
        if expected is None:
            assert r["similarity"] is None
        else:
            assert r["similarity"] == approx(expected, abs=1e-12)


def test_kailin_keeps_its_own_settings(con):
    # the same pair under kailin (include_self, letter): IC_A(D02) = -lg .8, and the pair
    # scores below 1
    con.execute("create or replace temp table kp as select 'D02' as a, 'D04' as b")
    kailin = con.execute("select similarity from mesh_term_sim_with('kp', 'kailin')").fetchone()[0]
    exact = con.execute(
        "select similarity from mesh_term_sim_with('kp', 'kailin-exact')"
    ).fetchone()[0]
    assert exact == 1.0 and kailin < 1.0
    # and a check tag is a known descriptor to kailin: 0 against another term, 1 with itself
    con.execute(
        "create or replace temp table kp as select * from (values ('D11', 'D03'), "
        "('D11', 'D11')) t(a, b)"
    )
    got = con.execute("select a, b, similarity from mesh_term_sim_with('kp', 'kailin')").fetchall()
    assert sorted(got) == [("D11", "D03", 0.0), ("D11", "D11", 1.0)]


# Documents (distinct terms): P1 {D03, D07, D99999}, P2 {D04, D11}, P3 {D04, D05, D11},
# P4 {D07, D08}, P5 {D02}, P6 {}, P7 {D11}. kailin-exact drops D99999 and D11.
DOC_CASES = [
    # (a, b, similarity, terms_a, terms_b, term_pairs)
    # P3 {D04, D05} x P2 {D04}: (D04, D04) 1; (D05, D04): LCA A01 = D01, summed 0 -> 0
    (P3, P2, 0.5, 2, 1, 2),
    # P5 {D02} x P3 {D04, D05}: (D02, D04) 1, (D02, D05) D02_D05
    (P5, P3, (1 + D02_D05) / 2, 1, 2, 2),
    # P1 {D03, D07} x P4 {D07, D08}: (D03, .) 0 and 0 (A01 vs C); (D07, D07) 1; (D07, D08) 1
    (P1, P4, 0.5, 2, 2, 4),
    # a document with no MeSH, or only a check tag: no score
    (P1, P6, None, 2, 0, 0),
    (P7, P2, None, 0, 1, 0),
]


def test_doc_kailin_exact_by_hand(con):
    con.execute("create or replace temp table dp (a bigint, b bigint)")
    con.executemany("insert into dp values (?, ?)", [c[:2] for c in DOC_CASES])
    got = {
        (r["a"], r["b"]): r for r in rows(con, "select * from mesh_doc_sim('dp', 'kailin-exact')")
    }
    for a, b, sim, terms_a, terms_b, term_pairs in DOC_CASES:
        r = got[(a, b)]
        assert (r["terms_a"], r["terms_b"], r["term_pairs"]) == (terms_a, terms_b, term_pairs)
        if sim is None:
            assert r["similarity"] is None
        else:
            assert float(r["similarity"]) == approx(sim, abs=1e-15), (a, b)


def test_doc_kailin_counts_check_tags_as_zero(con):
    # kailin keeps D11: P3 {D04, D05, D11} x P2 {D04, D11}: (D04, D04) 1, (D11, D11) 1, the
    # four other pairs 0 ((D05, D04) is 0 under kailin too): 2 / 6
    con.execute(f"create or replace temp table dp as select {P3} as a, {P2} as b")
    r = rows(con, "select * from mesh_doc_sim('dp', 'kailin')")[0]
    assert float(r["similarity"]) == approx(2 / 6)
    assert (r["terms_a"], r["terms_b"], r["term_pairs"]) == (3, 2, 6)
    # and a document of only a check tag scores 0 against P2, not NULL
    con.execute(f"create or replace temp table dp as select {P7} as a, {P2} as b")
    assert float(rows(con, "select * from mesh_doc_sim('dp', 'kailin')")[0]["similarity"]) == 0.5


def test_doc_kailin_exact_bma(con):
    # P5 {D02} x P3 {D04, D05}: best of D02 = 1; best of D04 = 1, of D05 = D02_D05
    con.execute(f"create or replace temp table dp as select {P5} as a, {P3} as b")
    r = rows(con, "select * from mesh_doc_sim('dp', 'kailin-exact', aggregate := 'bma')")[0]
    assert float(r["similarity"]) == approx((1 + (1 + D02_D05) / 2) / 2, abs=1e-15)


def test_pair_scores_with_kailin_exact(con):
    # q5: P5 {D02} with context P1 {D03, D07}: (D02, D03) LCA D02, all three clip to 1;
    # (D02, D07) different top-level trees, 0. Mean 0.5.
    got = {r["question_id"]: r for r in rows(con, "select * from pair_scores_with('kailin-exact')")}
    assert float(got["q5"]["similarity"]) == approx(0.5)
    assert got["q5"]["scorer"].startswith("kailin-exact/")
    # q3: P3 with context P2, as DOC_CASES
    assert float(got["q3"]["similarity"]) == approx(0.5)


def test_scorer_config_and_label():
    from mkailin.config import Config, validate
    from mkailin.labels import scorer_label

    cfg = Config()
    cfg.preference.scorer = "kailin-exact"
    validate(cfg)
    assert scorer_label(cfg) == f"kailin-exact/{cfg.preference.aggregate}/top{cfg.retrieval.k}"


def test_unknown_measure_names_kailin_exact(con):
    con.execute("create or replace temp table kp as select 'D02' as a, 'D04' as b")
    with pytest.raises(
        Exception, match="resnik, lin, jc, kailin or kailin-exact, not kailin_exact"
    ):
        con.execute("select * from mesh_term_sim_with('kp', 'kailin_exact')").fetchall()


# ------------------------------------------------------------------------------ real data
CHECK_TAGS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<DescriptorRecordSet LanguageCode="eng">
  <DescriptorRecord DescriptorClass="3">
    <DescriptorUI>D005260</DescriptorUI>
    <DescriptorName><String>Female</String></DescriptorName>
  </DescriptorRecord>
  <DescriptorRecord DescriptorClass="3">
    <DescriptorUI>D008297</DescriptorUI>
    <DescriptorName><String>Male</String></DescriptorName>
  </DescriptorRecord>
</DescriptorRecordSet>
"""

# Document scores computed by KAILIN's own DPO/mesh_score/cal_mesh_score.py (commit 515034b,
# unmodified, run outside this repository) on this lake's tree and annotations: compare_lists
# of the two articles' descriptors with a tree number. (a, b, score, check tags dropped in a, b)
KAILIN_CODE_VALUES = [
    (1571683, 17244100, 0.011405567802337301, 0, 2),
    (2503176, 23831910, 0.04702226370243877, 1, 2),
    (7482275, 27615402, 0.050421166715961814, 2, 2),
    (23379759, 26601554, 0.05605470294985406, 0, 2),
    (17919952, 19836806, 0.05589638220349707, 2, 1),
    (15588538, 28707539, 0.055531853871029345, 2, 1),
    (21712147, 23025584, 0.05498189945345389, 2, 1),
    (1571683, 1571683, 0.125, 0, 0),
    (27757987, 27757987, 0.16411445105802838, 2, 2),
]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """MeSH 2017 (TSV) plus Female and Male as check tags (descriptor XML without tree numbers,
    their UIs and names as in NLM's records), and PubMedQA's 1,000 labelled articles."""
    from mesh_reference import KailinCode

    from mkailin.ingest.mesh import ingest_mesh
    from mkailin.ingest.pubmedqa import ingest_pubmedqa
    from mkailin.lake import Lake

    tree_tsv = shared("mesh", "MeshTree2017.tsv")
    pqal = shared("pubmedqa", "ori_pqal.json")
    truth = shared("pubmedqa", "test_ground_truth.json")
    where = tmp_path_factory.mktemp("kexact_real")
    xml = where / "desc2017_checktags.xml"
    xml.write_text(CHECK_TAGS_XML)
    lake = Lake.init(where / "lake")
    ingest_mesh(lake, [tree_tsv, xml])
    ingest_pubmedqa(lake, pqal, truth)
    c = lake.connect()
    tree = c.execute("select tree_number, descriptor_ui from mesh_tree").fetchall()
    annotations = c.execute("select pmid, descriptor_ui from mesh_doc_terms").fetchall()
    yield c, KailinCode(tree, annotations), annotations
    c.close()


def test_real_check_tags_are_in_the_documents(real):
    con, ref, annotations = real
    tagged = {p for p, ui in annotations if ui in ("D005260", "D008297")}
    assert len(tagged) == 844  # of PubMedQA's 1,000 articles
    assert all(ui in ref.trees for uis in ref.docs.values() for ui in uis)


def test_real_ic_matches_kailins_code(real):
    """IC and MaxIC of mesh_kailin_ic_with(false, 'top') against KAILIN's getMeSHIC: equal but
    for float sums, except 34 category roots never annotated, whose descendants' frequencies
    sum to exactly 1 (IC 0) and KAILIN's float sum to 1 - ulp (IC below 1e-14)."""
    con, ref, _ = real
    got = con.execute(
        "select descriptor_ui, category, ic, max_ic from mesh_kailin_ic_with(false, 'top')"
    ).fetchall()
    assert len(got) == sum(len(ref.ic(ui)) for ui in ref.trees)
    roots = set()
    for ui, c, ic, max_ic in got:
        expected = ref.ic(ui)[c]
        if ic == 0 and expected != 0:
            assert 0 < expected < 1e-14, (ui, c)
            roots.add(ui)
        else:
            assert ic == approx(expected, rel=1e-13, abs=1e-15), (ui, c)
        assert max_ic == approx(ref.max_ic[c], rel=1e-13), c
    assert len(roots) == 34
    annotated = {ui for uis in ref.docs.values() for ui in uis}
    for ui in roots:
        assert ui not in annotated
        assert any("." not in tn for tn in ref.trees[ui])  # a category root


def test_real_documents_match_kailins_code(real):
    """mesh_doc_sim('kailin-exact'), with its default arguments, against KailinCode's
    compare_lists on 400 random pairs of PubMedQA articles (each with ~13 terms), to 1e-9."""
    con, ref, _ = real
    rng = random.Random(16)
    pmids = sorted(ref.docs)
    docs = sorted({(rng.choice(pmids), rng.choice(pmids)) for _ in range(400)})
    con.execute("create or replace temp table dp (a bigint, b bigint)")
    con.executemany("insert into dp values (?, ?)", docs)
    got = rows(con, "select * from mesh_doc_sim('dp', 'kailin-exact')")
    assert len(got) == len(docs)
    worst = 0.0
    for r in got:
        a, b = ref.docs[r["a"]], ref.docs[r["b"]]
        assert (r["terms_a"], r["terms_b"], r["term_pairs"]) == (len(a), len(b), len(a) * len(b))
        worst = max(worst, abs(float(r["similarity"]) - ref.compare_lists(a, b)))
    assert worst < 1e-9


def test_real_documents_pinned_to_kailins_code(real):
    con, ref, annotations = real
    con.execute("create or replace temp table dp (a bigint, b bigint)")
    con.executemany("insert into dp values (?, ?)", [v[:2] for v in KAILIN_CODE_VALUES])
    got = {
        (r["a"], r["b"]): r for r in rows(con, "select * from mesh_doc_sim('dp', 'kailin-exact')")
    }
    kailin = {
        (r["a"], r["b"]): r["terms_a"]
        for r in rows(con, "select * from mesh_doc_sim('dp', 'kailin')")
    }
    for a, b, score, dropped_a, _ in KAILIN_CODE_VALUES:
        assert float(got[(a, b)]["similarity"]) == approx(score, abs=1e-9), (a, b)
        assert ref.compare_lists(ref.docs[a], ref.docs[b]) == approx(score, abs=1e-15)
        assert kailin[(a, b)] - got[(a, b)]["terms_a"] == dropped_a  # kailin keeps check tags


def test_real_term_pair_at_an_unannotated_category_root(real):
    """Where the float sum matters: D009057 (Stomatognathic Diseases, root of C07, never
    annotated) has IC 0 in C07; KAILIN's sum gives it 3.9e-16, so against a leaf of C07 (IC 0)
    KAILIN finds summed > 0 and scores lin 1, jiang 1, rel ~0: 2/3 where kailin-exact has no
    category left and gives 0."""
    con, ref, _ = real
    leaf = "D065710"
    con.execute(f"create or replace temp table kp as select 'D009057' as a, '{leaf}' as b")
    got = con.execute("select similarity from mesh_term_sim_with('kp', 'kailin-exact')").fetchone()
    assert got[0] == 0.0
    assert ref.simil("D009057", leaf) == approx(2 / 3)
