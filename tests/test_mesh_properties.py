"""Property tests (hypothesis) of the MeSH similarity views on random polyhierarchies.

Each example draws a random MeSH-like forest (several tree numbers per descriptor, several
categories) and a random corpus, writes them into a lake, and checks over every pair of terms:
symmetry; Lin, JC and kailin in [0, 1]; Resnik <= min(IC(a), IC(b)); IC never rising from a
descriptor to its ancestors; and agreement with the per-pair Python reference.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mesh_fixture import corpus_tables, tree_tables
from mesh_reference import MeshReference

CATEGORIES = "ABC"


@st.composite
def forests(draw):
    """Tree numbers for D00..Dn; each descriptor sits under earlier ones only (a DAG, like MeSH)."""
    n = draw(st.integers(2, 14))
    tree: list[tuple[str, str]] = []
    used: set[str] = set()
    for i in range(n):
        ui = f"D{i:02d}"
        for _ in range(draw(st.integers(1, 2))):  # one or two tree numbers
            earlier = [tn for tn, owner in tree if owner != ui]  # never under itself
            if earlier and draw(st.booleans()):
                parent = draw(st.sampled_from(earlier))
                tn = f"{parent}.{draw(st.integers(1, 3)):03d}"
            else:
                tn = f"{draw(st.sampled_from(CATEGORIES))}{draw(st.integers(1, 2)):02d}"
            if tn not in used:
                used.add(tn)
                tree.append((tn, ui))
    uis = sorted({ui for _, ui in tree})
    annotations = draw(
        st.lists(st.tuples(st.integers(1, 6), st.sampled_from(uis)), min_size=0, max_size=14)
    )
    return tree, annotations


@pytest.fixture(scope="module")
def plake(tmp_path_factory):
    from mkailin.lake import Lake

    return Lake.init(tmp_path_factory.mktemp("meshprop") / "lake")


def load(lake, tree, annotations):
    desc, tree_t = tree_tables(tree, names={})
    recs, mesh = corpus_tables(
        articles=sorted({p for p, _ in annotations} | {1}), annotations=annotations
    )
    lake.replace_table("mesh_descriptors", desc)
    lake.replace_table("mesh_tree", tree_t)
    lake.replace_table("article_records", recs)
    lake.replace_table("article_mesh_records", mesh)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(forests())
def test_similarity_properties(plake, forest):
    tree, annotations = forest
    load(plake, tree, annotations)
    ref = MeshReference(tree, annotations)
    con = plake.connect()
    try:
        con.execute(
            "create temp table p as select x.descriptor_ui as a, y.descriptor_ui as b "
            "from mesh_ancestors x, mesh_ancestors y group by all"
        )
        ics = {
            ic: dict(con.execute(f"select descriptor_ui, ic_{ic} from mesh_ic").fetchall())
            for ic in ("corpus", "intrinsic")
        }
        kailin = {
            (a, b): k
            for a, b, k in con.execute("select a, b, kailin from mesh_term_kailin('p')").fetchall()
        }
        for ic in ("corpus", "intrinsic"):
            sims = {
                (a, b): (r, lin, jc)
                for a, b, r, lin, jc in con.execute(
                    f"select a, b, resnik, lin, jc from mesh_term_sim('p', '{ic}')"
                ).fetchall()
            }
            for (a, b), (resnik, lin, jc) in sims.items():
                assert sims[(b, a)] == (resnik, lin, jc), "symmetric"
                if ics[ic][a] is None or ics[ic][b] is None:
                    assert (resnik, lin, jc) == (None, None, None)
                    continue
                assert 0 <= lin <= 1 and 0 < jc <= 1 or jc == 0
                assert resnik <= min(ics[ic][a], ics[ic][b]) + 1e-12
                for measure, got in (("resnik", resnik), ("lin", lin), ("jc", jc)):
                    assert got == pytest.approx(ref.sim(a, b, measure, ic), abs=1e-12), (
                        a,
                        b,
                        measure,
                        ic,
                    )
        for (a, b), k in kailin.items():
            assert kailin[(b, a)] == pytest.approx(k, abs=1e-12), "symmetric"
            assert 0 <= k <= 1
            assert k == pytest.approx(ref.kailin(a, b), abs=1e-9), (a, b, "kailin")
        # IC falls (never rises) from a descriptor to each ancestor; Seco strictly
        for d, u, dist in con.execute("select * from mesh_ancestors").fetchall():
            if ics["corpus"][d] is not None:
                assert ics["corpus"][u] <= ics["corpus"][d] + 1e-12
            if dist > 0 and u != d:
                assert ics["intrinsic"][u] < ics["intrinsic"][d]
        for ui, v in ics["corpus"].items():
            r = ref.ic["corpus"][ui]
            assert (v is None and r is None) or math.isclose(v, r, abs_tol=1e-12)
    finally:
        con.close()
