"""The MeSH similarity views and macros (sql/010-034): fixture rows in, expected rows out.

The fixture tree and corpus are drawn in tests/mesh_fixture.py. Every expected value below is
worked out by hand from the definitions in docs/mesh-similarity.md; the arithmetic is in the
comments. ln = natural log, lg = log10.
"""

from __future__ import annotations

import math
import subprocess

import pytest
from mesh_fixture import P1, P2, P3, P4, P5, P6, fill

ln, lg = math.log, math.log10
approx = pytest.approx


@pytest.fixture(scope="module")
def flake(tmp_path_factory):
    """The fixture lake, shared read-only by this module."""
    from mkailin.lake import Lake

    return fill(Lake.init(tmp_path_factory.mktemp("meshsql") / "lake"))


@pytest.fixture(scope="module")
def con(flake):
    c = flake.connect()
    yield c
    c.close()


def rows(con, sql, params=None):
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def pairs(con, name, items):
    con.execute(f"create or replace temp table {name} (a varchar, b varchar)")
    con.executemany(f"insert into {name} values (?, ?)", items)


# ------------------------------------------------------------------------------ closure
def test_mesh_tree_prefixes(con):
    got = con.execute(
        "select descriptor_ui, tree_number, prefix, prefix_ui, distance from mesh_tree_prefixes "
        "where descriptor_ui in ('D04', 'D10') order by all"
    ).fetchall()
    assert got == [
        ("D04", "A01.100.300", "A01", "D01", 2),
        ("D04", "A01.100.300", "A01.100", "D02", 1),
        ("D04", "A01.100.300", "A01.100.300", "D04", 0),
        ("D04", "C01.500", "C01", "D06", 1),
        ("D04", "C01.500", "C01.500", "D04", 0),
        ("D10", "C02.100.050", "C02", "D08", 2),
        ("D10", "C02.100.050", "C02.100", "D07", 1),
        ("D10", "C02.100.050", "C02.100.050", "D10", 0),
        ("D10", "C02.200", "C02", "D08", 1),
        ("D10", "C02.200", "C02.200", "D10", 0),
    ]


def test_mesh_ancestors(con):
    got = con.execute("select * from mesh_ancestors order by all").fetchall()
    assert got == [
        ("D01", "D01", 0),
        ("D02", "D01", 1),
        ("D02", "D02", 0),
        ("D03", "D01", 2),
        ("D03", "D02", 1),
        ("D03", "D03", 0),
        # two tree numbers in two categories: the ancestors along both
        ("D04", "D01", 2),
        ("D04", "D02", 1),
        ("D04", "D04", 0),
        ("D04", "D06", 1),
        ("D05", "D01", 1),
        ("D05", "D05", 0),
        ("D06", "D06", 0),
        ("D07", "D06", 1),
        ("D07", "D07", 0),
        ("D07", "D08", 1),
        ("D08", "D08", 0),
        ("D09", "D09", 0),
        # D08 is 2 steps above C02.100.050 and 1 above C02.200: the fewest wins.
        # D06 owns no prefix of D10's tree numbers, but it is a parent of D10's parent D07
        # (C01.100): the closure is transitive over descriptors
        ("D10", "D06", 2),
        ("D10", "D07", 1),
        ("D10", "D08", 1),
        ("D10", "D10", 0),
    ]


def test_mesh_doc_terms(con):
    # P1's second D03 and its unmapped heading (descriptor_ui NULL) are dropped; P6 has none
    got = con.execute("select * from mesh_doc_terms order by all").fetchall()
    assert got == [
        (P1, "D03"),
        (P1, "D07"),
        (P1, "D99999"),
        (P2, "D04"),
        (P3, "D04"),
        (P3, "D05"),
        (P4, "D07"),
        (P4, "D08"),
        (P5, "D02"),
    ]


def test_mesh_ic(con):
    # N = 5 articles with an annotation; M = 10 descriptors.
    # count: D01 <- P1 (D03), P2, P3 (D04), P5 (D02) = 4; D06 <- P1, P4 (D07), P2, P3 (D04) = 4;
    # D08 <- P1 (D07), P4 (D07 and D08, once) = 2; D07 <- P1, P4 = 2 (D10 adds nothing).
    # intrinsic: 1 - ln(desc + 1) / ln(10); D06's descendants are D04, D07 and D10 (below
    # D07's other tree number C02.100).
    seco = {d: 1 - ln(d + 1) / ln(10) for d in range(5)}
    expected = {
        "D01": (4, -ln(4 / 5), seco[4], 4),
        "D02": (4, -ln(4 / 5), seco[2], 2),
        "D03": (1, -ln(1 / 5), seco[0], 0),
        "D04": (2, -ln(2 / 5), seco[0], 0),
        "D05": (1, -ln(1 / 5), seco[0], 0),
        "D06": (4, -ln(4 / 5), seco[3], 3),
        "D07": (2, -ln(2 / 5), seco[1], 1),
        "D08": (2, -ln(2 / 5), seco[2], 2),
        "D09": (0, None, seco[0], 0),  # never seen: IC NULL
        "D10": (0, None, seco[0], 0),
    }
    got = {
        r["descriptor_ui"]: (r["count"], r["ic_corpus"], r["ic_intrinsic"], r["descendants"])
        for r in rows(con, "select * from mesh_ic")
    }
    assert got.keys() == expected.keys()
    for ui, (count, icc, ici, desc) in expected.items():
        assert got[ui][0] == count, ui
        assert got[ui][1] == (None if icc is None else approx(icc)), ui
        assert got[ui][2] == approx(ici), ui
        assert got[ui][3] == desc, ui


def test_mesh_sim_index(con):
    got = rows(con, "select * from mesh_sim_index where descriptor_ui = 'D04' order by ic_kind")
    assert [r["ic_kind"] for r in got] == ["corpus", "intrinsic"]
    corpus, intrinsic = got
    # ancestors by IC, highest first (ties by UI): D04 ln 2.5, then D01, D02, D06 at ln 1.25
    assert corpus["ancestor_uis"] == ["D04", "D01", "D02", "D06"]
    assert corpus["ancestor_ics"] == approx([ln(2.5), ln(1.25), ln(1.25), ln(1.25)])
    assert corpus["ancestor_ranks"] == sorted(corpus["ancestor_ranks"])
    # intrinsic: D04 1, D02 1 - ln 3/ln 10, D06 1 - ln 4/ln 10, D01 1 - ln 5/ln 10
    assert intrinsic["ancestor_uis"] == ["D04", "D02", "D06", "D01"]
    # roots: D01 (A), D06 and D08 (C), D09 (B); D04 reaches D01 and D06, D03 only D01
    bits = dict(
        con.execute(
            "select descriptor_ui, root_bits from mesh_sim_index where ic_kind = 'corpus'"
        ).fetchall()
    )
    assert bits["D04"] & bits["D03"] != 0 and bits["D04"] & bits["D07"] != 0
    assert bits["D03"] & bits["D08"] == 0 and bits["D09"] & bits["D03"] == 0
    n_unseen = con.execute(
        "select count(*) from mesh_sim_index where ic_kind = 'corpus' and ic is null"
    ).fetchone()[0]
    assert n_unseen == 2  # D09, D10


# ------------------------------------------------------------------------------ KAILIN IC
def test_mesh_category(con):
    got = con.execute(
        "select mesh_category('C04.557.470'), mesh_category('C04.557.470', 'top'),"
        " mesh_category('A01')"
    ).fetchone()
    assert got == ("C", "C04", "A")
    with pytest.raises(Exception, match="granularity must be letter or top"):
        con.execute("select mesh_category('A01', 'word')").fetchall()


# Annotations (distinct articles per descriptor): D02 1, D03 1, D04 2, D05 1, D07 2, D08 1.
# Category totals, letter: A = D02+D03+D04+D05 = 5; C = D04+D07+D08 = 5 (D04 counts in both);
# B = 0. freq_A: D02 .2, D03 .2, D04 .4, D05 .2; freq_C: D04 .4, D07 .4, D08 .2.
KAILIN_IC = {  # (ui, category): (freq_total, ic), include_self, letter
    ("D01", "A"): (1.0, 0.0),  # D01..D05: 5/5 = 1 -> -lg 1 = 0
    ("D02", "A"): (0.8, -lg(0.8)),  # D02, D03, D04
    ("D03", "A"): (0.2, -lg(0.2)),
    ("D04", "A"): (0.4, -lg(0.4)),
    ("D05", "A"): (0.2, -lg(0.2)),
    ("D09", "B"): (0.0, 0.0),  # nothing annotated in B: IC 0
    ("D04", "C"): (0.4, -lg(0.4)),
    ("D06", "C"): (0.8, -lg(0.8)),  # D06 (0) + D04 via C01.500 + D07 via C01.100
    ("D07", "C"): (0.4, -lg(0.4)),  # itself + D10 (0)
    ("D08", "C"): (0.6, -lg(0.6)),  # D08 .2 + D07 .4 + D10 0
    ("D10", "C"): (0.0, 0.0),
}
MAX_IC = {"A": -lg(0.2), "B": 0.0, "C": -lg(0.4)}


def test_mesh_kailin_ic(con):
    got = {
        (r["descriptor_ui"], r["category"]): r for r in rows(con, "select * from mesh_kailin_ic")
    }
    assert got.keys() == KAILIN_IC.keys()
    for key, (freq, ic) in KAILIN_IC.items():
        assert got[key]["freq_total"] == approx(freq), key
        assert got[key]["ic"] == approx(ic, abs=1e-12), key
        assert got[key]["max_ic"] == approx(MAX_IC[key[1]]), key


def test_mesh_kailin_ic_without_self(con):
    # KAILIN's walk leaves t out: leaves get 0; D02 = D03 + D04 = .6; D08 = D07 + D10 = .4
    got = {
        (r["descriptor_ui"], r["category"]): r["ic"]
        for r in rows(con, "select * from mesh_kailin_ic_with(false, 'letter')")
    }
    assert got[("D02", "A")] == approx(-lg(0.6))
    assert got[("D06", "C")] == approx(-lg(0.8))
    assert got[("D08", "C")] == approx(-lg(0.4))
    for leaf in [("D03", "A"), ("D04", "A"), ("D05", "A"), ("D04", "C"), ("D07", "C")]:
        assert got[leaf] == 0.0, leaf


def test_mesh_kailin_ic_top_granularity(con):
    # Categories A01, B01, C01, C02 (KAILIN's code). Totals: C01 = D04 2 + D07 2 = 4;
    # C02 = D07 2 + D08 1 = 3. D07 is in C01 and C02, so it has two IC values.
    got = {
        (r["descriptor_ui"], r["category"]): r
        for r in rows(con, "select * from mesh_kailin_ic_with(true, 'top')")
    }
    assert got[("D07", "C01")]["ic"] == approx(-lg(2 / 4))
    assert got[("D07", "C02")]["ic"] == approx(-lg(2 / 3))  # itself + D10 (0), of 3
    assert got[("D06", "C01")]["ic"] == 0.0  # all of C01: 4/4
    assert got[("D08", "C02")]["ic"] == 0.0  # all of C02: 3/3
    assert got[("D04", "C01")]["max_ic"] == approx(-lg(0.5))


def test_mesh_kailin_index(con):
    idx = {r["descriptor_ui"]: r for r in rows(con, "select * from mesh_kailin_index")}
    ids = {r["descriptor_id"]: ui for ui, r in idx.items()}
    # D04's prefixes by string length, then text: A01.100.300, A01.100, C01.500, A01, C01
    assert [ids[i] for i in idx["D04"]["prefix_owners"]] == ["D04", "D02", "D04", "D01", "D06"]
    # categories A, B, C have ids 1, 2, 3: D04 is in A and C, IC -lg .4 in both
    assert idx["D04"]["categories"] == [1, 3]
    assert idx["D04"]["category_ics"] == approx([-lg(0.4), -lg(0.4)])
    assert idx["D02"]["lca_categories"] == [1]
    assert idx["D02"]["lca_tmps"] == approx([lg(0.8) / lg(0.2)])  # IC_A(D02) / MaxIC_A
    assert idx["D02"]["lca_rels"] == approx([1 - 0.8])  # 1 - 10^-IC_A(D02)
    assert idx["D09"]["lca_categories"] == []  # MaxIC_B = 0: B never counts
    # A01 and C01/C02 are different top-level trees: no shared bit, no LCA
    assert idx["D03"]["top_bits"] & idx["D08"]["top_bits"] == 0
    assert idx["D07"]["top_bits"] & idx["D08"]["top_bits"] != 0


# ------------------------------------------------------------------------------ terms
# Corpus IC: D01 D02 D06 ln 1.25; D04 D07 D08 ln 2.5; D03 D05 ln 5; D09 D10 NULL.
TERM_CASES = [
    # (a, b, resnik, lin, jc)
    # D03 Ear, D04 Eye: MICA D02 (ln 1.25). lin = 2 ln1.25 / (ln5 + ln2.5);
    # jc = 1 / (1 + (ln5 - ln1.25) + (ln2.5 - ln1.25)) = 1 / (1 + ln4 + ln2) = 1 / (1 + ln 8)
    ("D03", "D04", ln(1.25), 2 * ln(1.25) / (ln(5) + ln(2.5)), 1 / (1 + ln(8))),
    # D04 reaches D06 through its second tree number C01.500: MICA D06 (ln 1.25)
    # lin = 2 ln1.25 / (2 ln2.5); jc = 1 / (1 + 2 (ln2.5 - ln1.25)) = 1 / (1 + 2 ln 2)
    ("D04", "D07", ln(1.25), ln(1.25) / ln(2.5), 1 / (1 + 2 * ln(2))),
    # D08 is an ancestor of D07 with the same count: MICA D08, lin 1, jc 1
    ("D07", "D08", ln(2.5), 1.0, 1.0),
    # A and C, no common descriptor: 0
    ("D03", "D08", 0.0, 0.0, 0.0),
    # a = b
    ("D03", "D03", ln(5), 1.0, 1.0),
    # D10 is never seen in the corpus: NULL; so is a UI outside MeSH
    ("D10", "D08", None, None, None),
    ("D09", "D09", None, None, None),
    ("D03", "D99999", None, None, None),
]


def _check(got, expected):
    if expected is None:
        assert got is None
    else:
        assert got == approx(expected, abs=1e-12)


def test_mesh_term_sim_corpus(con):
    pairs(con, "tp", [(a, b) for a, b, *_ in TERM_CASES])
    got = {(r["a"], r["b"]): r for r in rows(con, "select * from mesh_term_sim('tp')")}
    for a, b, resnik, lin, jc in TERM_CASES:
        _check(got[(a, b)]["resnik"], resnik)
        _check(got[(a, b)]["lin"], lin)
        _check(got[(a, b)]["jc"], jc)
    assert got[("D04", "D07")]["mica_ui"] == "D06"
    assert got[("D03", "D08")]["mica_ui"] is None


def test_mesh_term_sim_intrinsic(con):
    # Seco: D02 1 - ln3/ln10, D03 D04 1; D10 is a leaf (1) and now has a value
    pairs(con, "tp", [("D03", "D04"), ("D10", "D08"), ("D09", "D03")])
    got = {(r["a"], r["b"]): r for r in rows(con, "select * from mesh_term_sim('tp', 'intrinsic')")}
    mica = 1 - ln(3) / ln(10)
    assert got[("D03", "D04")]["resnik"] == approx(mica)
    assert got[("D03", "D04")]["lin"] == approx(2 * mica / 2)
    assert got[("D03", "D04")]["jc"] == approx(1 / (1 + 2 * (1 - mica)))
    # D10 (1) and D08 (1 - ln3/ln10, its ancestor): lin = 2 IC(D08) / (1 + IC(D08))
    assert got[("D10", "D08")]["lin"] == approx(2 * mica / (1 + mica))
    assert got[("D09", "D03")]["lin"] == 0.0  # B and A


KAILIN_CASES = [
    # (a, b, include_self, granularity, expected)
    # D03, D04: LCA = longest common prefix A01.100 = D02; shared category A; MaxIC_A = -lg .2
    #   ictmp = lg .8 / lg .2 = 0.138647; summed = -lg .2 - lg .4 = lg 12.5 = 1.096910
    #   lin = 2 ictmp / summed = 0.252797; jiang = 1 - (summed - 2 ictmp) = 0.180384
    #   rel = lin (1 - 10^(-ictmp MaxIC_A)) = lin (1 - 0.8) = 0.050559; mean = 0.161247
    (
        "D03",
        "D04",
        True,
        "letter",
        (lambda t, s: (2 * t / s + 1 - (s - 2 * t) + 2 * t / s * 0.2) / 3)(
            lg(0.8) / lg(0.2), lg(12.5)
        ),
    ),
    # D04, D07: LCA C01 = D06 (IC_C .8); MaxIC_C = -lg .4; ictmp = lg .8 / lg .4 = 0.243529
    #   summed = 2 (-lg .4) = 0.795880; lin = 0.611977; jiang = 0.691178; rel = lin * 0.2
    (
        "D04",
        "D07",
        True,
        "letter",
        (lambda t, s: (2 * t / s + 1 - (s - 2 * t) + 2 * t / s * 0.2) / 3)(
            lg(0.8) / lg(0.4), -2 * lg(0.4)
        ),
    ),
    # D07, D08: LCA C02 = D08; ictmp = lg .6 / lg .4 = 0.557490; summed = -lg .4 - lg .6
    #   lin = 1.798979 -> clipped 1; jiang = 1 - (0.619789 - 1.114981) = 1.495 -> 1
    #   rel = 1.798979 * (1 - 10^lg .6) = 1.798979 * 0.4 = 0.719592; mean = 0.906531
    (
        "D07",
        "D08",
        True,
        "letter",
        (1 + 1 + 2 * (lg(0.6) / lg(0.4)) / (-lg(0.4) - lg(0.6)) * 0.4) / 3,
    ),
    # A and C: no common prefix
    ("D03", "D08", True, "letter", 0.0),
    ("D05", "D05", True, "letter", 1.0),
    # never annotated (IC 0 everywhere), still scored: D10, D08 -> LCA C02 = D08
    #   ictmp = lg .6 / lg .4; summed = 0 + -lg .6; lin = 2 ictmp / summed = 2/(-lg .4) > 1 -> 1
    #   jiang = 1 - min(1, -lg .6 - 2 ictmp) -> 1; rel = lin * 0.4 = 2 * 0.4 / -lg .4 = 2.01 -> 1
    ("D10", "D08", True, "letter", 1.0),
    # KAILIN's leaf quirk: without t itself, D03 and D04 both have IC_A 0, so summed = 0 and
    # no category is left: 0
    ("D03", "D04", False, "letter", 0.0),
    # top granularity: D04, D07 share C01 (LCA D06, IC_C01 = 0, MaxIC_C01 = lg 2)
    #   ictmp 0: lin 0, rel 0; jiang = 1 - min(1, 2 lg 2) = 1 - 0.60206; mean = 0.132647
    ("D04", "D07", True, "top", (1 - 2 * lg(2)) / 3),
    ("D03", "D99999", True, "letter", None),
]


@pytest.mark.parametrize("a,b,include_self,granularity,expected", KAILIN_CASES)
def test_mesh_term_kailin(con, a, b, include_self, granularity, expected):
    pairs(con, "kp", [(a, b), (b, a)])
    con.execute(
        "create or replace temp table kidx as "
        f"select * from mesh_kailin_index_with({include_self}, '{granularity}')"
    )
    got = rows(con, "select * from mesh_term_kailin('kp', 'kidx')")
    assert len(got) == 2
    for r in got:
        _check(r["kailin"], expected)


def test_mesh_term_kailin_lca(con):
    pairs(con, "kp", [("D03", "D04"), ("D07", "D08"), ("D03", "D08")])
    got = {(r["a"], r["b"]): r["lca_ui"] for r in rows(con, "select * from mesh_term_kailin('kp')")}
    assert got == {("D03", "D04"): "D02", ("D07", "D08"): "D08", ("D03", "D08"): None}


def test_mesh_term_sim_with(con):
    pairs(con, "tp", [("D03", "D04")])
    for measure, expected in [
        ("resnik", ln(1.25)),
        ("lin", 2 * ln(1.25) / ln(12.5)),
        ("jc", 1 / (1 + ln(8))),
        ("kailin", KAILIN_CASES[0][4]),
        ("kailin-exact", 0.0),  # D03, D04 are leaves of A01 (IC 0 without themselves)
    ]:
        got = con.execute(
            "select a, b, similarity from mesh_term_sim_with('tp', ?)", [measure]
        ).fetchall()
        assert got == [("D03", "D04", approx(expected))]
    with pytest.raises(
        Exception, match="measure must be resnik, lin, jc, kailin or kailin-exact, not cosine"
    ):
        con.execute("select * from mesh_term_sim_with('tp', 'cosine')").fetchall()
    with pytest.raises(Exception, match="ic must be corpus or intrinsic, not seco"):
        con.execute("select * from mesh_term_sim_with('tp', 'lin', 'seco')").fetchall()


# ------------------------------------------------------------------------------ documents
LIN_03_04 = 2 * ln(1.25) / (ln(5) + ln(2.5))  # 0.176697
LIN_07_04 = ln(1.25) / ln(2.5)  # 0.243529
LIN_03_05 = ln(1.25) / ln(5)  # 0.138647
DOC_P1_P2 = (LIN_03_04 + LIN_07_04) / 2  # the D99999 pair is NULL and skipped
DOC_P1_P4 = (0 + 0 + 1 + 1) / 4  # (D03,D07) (D03,D08) 0; (D07,D07) (D07,D08) 1
DOC_P1_P3 = (LIN_03_04 + LIN_03_05 + LIN_07_04 + 0) / 4  # (D07, D05): no common ancestor
DOC_P3_P2 = (1 + LIN_03_04) / 2  # (D04,D04) 1; (D05,D04) same as (D03,D04)


def test_mesh_doc_sim_mean(con):
    con.execute(
        "create or replace temp table dp as select * from (values "
        f"({P1}, {P2}), ({P1}, {P4}), ({P1}, {P3}), ({P3}, {P2}), ({P1}, {P6}), "
        f"({P6}, {P6})) t(a, b)"
    )
    got = {(r["a"], r["b"]): r for r in rows(con, "select * from mesh_doc_sim('dp')")}
    assert got[(P1, P2)]["similarity"] == approx(DOC_P1_P2)
    assert (got[(P1, P2)]["terms_a"], got[(P1, P2)]["terms_b"], got[(P1, P2)]["term_pairs"]) == (
        3,
        1,
        2,
    )
    assert got[(P1, P4)]["similarity"] == approx(DOC_P1_P4)
    assert got[(P1, P3)]["similarity"] == approx(DOC_P1_P3)
    assert got[(P3, P2)]["similarity"] == approx(DOC_P3_P2)
    # an empty MeSH list: NULL, no term pairs
    assert got[(P1, P6)]["similarity"] is None and got[(P1, P6)]["term_pairs"] == 0
    assert got[(P6, P6)]["similarity"] is None and got[(P6, P6)]["terms_a"] == 0


def test_mesh_doc_sim_bma(con):
    # rows of P1: D03 best 0.176697, D07 best 0.243529, D99999 no score (skipped);
    # column D04 of P2: best 0.243529. BMA = (mean(0.176697, 0.243529) + 0.243529) / 2
    con.execute(f"create or replace temp table dp as select {P1} as a, {P2} as b")
    got = rows(con, "select * from mesh_doc_sim('dp', aggregate := 'bma')")
    assert got[0]["similarity"] == approx((DOC_P1_P2 + LIN_07_04) / 2)
    assert got[0]["term_pairs"] == 2
    with pytest.raises(Exception, match="aggregate must be mean or bma, not max"):
        con.execute("select * from mesh_doc_sim('dp', aggregate := 'max')").fetchall()


def test_mesh_doc_sim_kailin(con):
    # P3 vs P2: (D04, D04) = 1; (D05, D04): LCA A01 = D01 with IC_A 0 -> ictmp 0:
    # lin 0, rel 0, jiang = 1 - min(1, -lg .2 - lg .4) = 0 (summed 1.097 > 1). Mean = 0.5
    con.execute(f"create or replace temp table dp as select {P3} as a, {P2} as b")
    got = rows(con, "select * from mesh_doc_sim('dp', 'kailin')")
    assert got[0]["similarity"] == approx(0.5)


# ------------------------------------------------------------------------------ pair_scores
Q1 = (DOC_P1_P2 + DOC_P1_P4) / 2  # 0.355056
Q2 = DOC_P1_P3  # P6 has no MeSH: that context is skipped
Q3 = Q4 = DOC_P3_P2
Q5 = (2 * ln(1.25) / (ln(1.25) + ln(5)) + 0) / 2  # P5 {D02} vs P1: (D02,D03), (D02,D07)
Q8 = DOC_P1_P4


def test_pair_scores(con):
    got = {r["question_id"]: r for r in rows(con, "select * from pair_scores")}
    expected = {  # question_id: (pmid, agent, similarity, n_contexts, n_scored)
        "q1": (P1, "domain", Q1, 2, 2),
        "q2": (P1, "general", Q2, 2, 1),
        "q8": (P1, "final", Q8, 1, 1),
        "q3": (P3, "domain", Q3, 1, 1),
        "q4": (P3, "general", Q4, 1, 1),
        "q5": (P5, "domain", Q5, 1, 1),
        "q6": (P6, "domain", None, 1, 0),
        "q7": (P6, "general", None, 1, 0),
    }
    assert got.keys() == expected.keys()
    for qid, (pmid, agent, sim, n, n_scored) in expected.items():
        r = got[qid]
        assert (r["pmid"], r["agent"], r["n_contexts"], r["n_scored"]) == (pmid, agent, n, n_scored)
        assert r["similarity"] == (None if sim is None else approx(sim)), qid
        assert r["scorer"] == "lin/corpus/mean"


def test_pair_scores_with_top_k(con):
    got = {r["question_id"]: r for r in rows(con, "select * from pair_scores_with(k := 1)")}
    assert got["q1"]["similarity"] == approx(DOC_P1_P2)  # rank 1 only: P2
    assert got["q1"]["n_contexts"] == 1
    assert got["q1"]["scorer"] == "lin/corpus/mean/top1"
    got = {r["question_id"]: r for r in rows(con, "select * from pair_scores_with('kailin')")}
    assert got["q3"]["similarity"] == approx(0.5)
    assert got["q3"]["scorer"] == "kailin/mean"


def test_rule_preferences(con):
    got = rows(con, "select * from rule_preferences")
    # P1: q1 beats q2 (q8 is agent 'final', left out); P3: q3 and q4 tie -> no pair;
    # P5: one question; P6: no score -> no pair
    assert got == [
        {
            "pmid": P1,
            "chosen_id": "q1",
            "rejected_id": "q2",
            "chosen": "q1?",
            "rejected": "q2?",
            "chosen_score": approx(Q1),
            "rejected_score": approx(Q2),
            "margin": approx(Q1 - Q2),
            "scorer": "lin/corpus/mean",
        }
    ]


def test_rule_preferences_with_options(con):
    # every agent: q8 (0.5) is chosen over q2
    got = rows(
        con, "select chosen_id, rejected_id, margin from rule_preferences_with(agents := null)"
    )
    assert got == [{"chosen_id": "q8", "rejected_id": "q2", "margin": approx(Q8 - Q2)}]
    # KAILIN's filter: both scores must be <= threshold; q1 = 0.355 > 0.3 drops the pair
    assert rows(con, "select * from rule_preferences_with(threshold := 0.3)") == []
    assert len(rows(con, "select * from rule_preferences_with(threshold := 0.5)")) == 1
    got = rows(con, "select margin, scorer from rule_preferences_with(k := 1)")
    assert got == [{"margin": approx(DOC_P1_P2 - DOC_P1_P3), "scorer": "lin/corpus/mean/top1"}]


# ------------------------------------------------------------------------------ audits
def test_audits_return_no_rows(con):
    con.execute(
        "create or replace temp table allp as "
        "select x.descriptor_ui as a, y.descriptor_ui as b "
        "from mesh_ancestors x, mesh_ancestors y group by all"
    )
    for ic in ("corpus", "intrinsic"):
        con.execute(
            "create or replace temp table s as "
            f"select * from mesh_term_sim('allp', '{ic}') natural join mesh_term_kailin('allp')"
        )
        audits = {
            "lin, jc, kailin in [0, 1]": "select * from s where lin not between 0 and 1 "
            "or jc not between 0 and 1 or kailin not between 0 and 1",
            "resnik <= min IC": "select * from s where resnik > least(ic_a, ic_b) + 1e-12",
            "symmetric": "select * from s x join s y on x.a = y.b and x.b = y.a "
            "where x.lin is distinct from y.lin or x.jc is distinct from y.jc "
            "or x.resnik is distinct from y.resnik or x.kailin is distinct from y.kailin",
        }
        for name, sql in audits.items():
            assert con.execute(sql).fetchall() == [], f"{ic}: {name}"
    # IC never rises from a descriptor to its ancestor
    bad = con.execute("""
        select * from mesh_ancestors a
        join mesh_ic d on d.descriptor_ui = a.descriptor_ui
        join mesh_ic u on u.descriptor_ui = a.ancestor_ui
        where u.ic_corpus > d.ic_corpus or u.ic_intrinsic > d.ic_intrinsic
           or (a.distance > 0 and u.ic_intrinsic >= d.ic_intrinsic)
    """).fetchall()
    assert bad == []


# ------------------------------------------------------------------------------ catalog / CLI
def test_views_run_in_the_stock_duckdb_cli(flake):
    """The catalog's views and macros also parse and run in the duckdb CLI (an older DuckDB)."""
    from conftest import duckdb_cli

    exe = duckdb_cli()
    flake.sync_catalog()
    sql = (
        "create temp table p as select 'D03' as a, 'D04' as b; "
        "select round(lin, 6) as lin, round(kailin, 6) as kailin "
        "from mesh_term_sim('p') natural join mesh_term_kailin('p'); "
        "select count(*) from rule_preferences; "
        "select count(*) from pair_scores where similarity is not null; "
        "select count(*) from mesh_kailin_index_with(false, 'top');"
    )
    out = subprocess.run(
        [exe, "-csv", "-noheader", "mkailin.duckdb", "-c", sql],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=flake.root,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == f"{round(LIN_03_04, 6)},{round(KAILIN_CASES[0][4], 6)}"
    assert lines[1:] == ["1", "6", "10"]
