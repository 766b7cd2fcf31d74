"""MeSH similarity benchmark (issue 3): the SQL macros against a per-pair Python implementation.

    python bench/mesh_sim.py --pairs 5000000 --doc-pairs 100000

On the real MeSH 2017 tree with corpus IC from PubMedQA's articles (../shared/data), it measures:

- index build: the similarity indexes (mesh_sim_index, mesh_kailin_index) materialised into temp
  tables once, timed apart from the scoring;
- term pairs/s for each measure: ``mesh_term_sim`` / ``mesh_term_kailin`` over N random pairs of
  descriptors seen in the corpus (so every corpus-IC score is defined), each result written into
  a temp table (a, b, score); best of --repeat runs. Most random pairs have no common ancestor,
  which the index rules out cheaply, so a second workload, *related*, draws N pairs that share a
  root (every one needs the full MICA / LCA search): the worst case;
- documents/s: ``mesh_doc_sim`` over M (document, context) pairs, every document with about 12
  MeSH terms drawn from PubMedQA's annotation frequencies (so frequent terms repeat as in real
  articles); best of --repeat runs;
- the same measures computed by tests/mesh_reference.py, a straightforward per-pair Python
  implementation (dicts and sets, one pair at a time), on a prefix of the same pairs: its rate,
  the ratio, and the largest difference between the two.

Timings are wall seconds of the query alone. The machine is shared: each run records the CPU
other processes used meanwhile, and waits first (up to --quiet-wait s) for them to go idle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadmeter import (  # bench/ is on sys.path when run as a script
    Timer,
    cpu_and_memory,
    wait_quiet,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "## MeSH similarity (bench/mesh_sim.py)"
HESML_PAIRS_PER_S = (
    824_000  # HESML, Lin on MeSH, Java (Lastra-Diaz et al., BMC Bioinformatics 2021)
)


# ---------------------------------------------------------------------------- machine and load
def machine() -> dict:
    import duckdb

    info = {
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }
    info.update(cpu_and_memory())
    return info


def best_of(fn, repeat: int, quiet: float) -> dict:
    runs = []
    for _ in range(repeat):
        wait_quiet(quiet)
        with Timer() as t:
            fn()
        runs.append({"seconds": t.seconds, "other_load": round(t.other, 2), "cpu_s": t.cpu})
    best = min(runs, key=lambda r: r["seconds"])
    return {
        "best_s": best["seconds"],
        "median_s": statistics.median(r["seconds"] for r in runs),
        "other_load_at_best": best["other_load"],
        "cpu_s_at_best": best["cpu_s"],
        "runs": runs,
    }


# ---------------------------------------------------------------------------- the benchmark
def build_lake(data: Path, where: Path):
    from mkailin.ingest.mesh import ingest_mesh
    from mkailin.ingest.pubmedqa import ingest_pubmedqa
    from mkailin.lake import Lake

    tree = data / "mesh" / "MeshTree2017.tsv"
    pqal = data / "pubmedqa" / "ori_pqal.json"
    for p in (tree, pqal):
        if not p.exists():
            sys.exit(f"missing {p}: the benchmark needs ../shared/data (or --data)")
    lake = Lake.init(where / "lake")
    ingest_mesh(lake, [tree])
    ingest_pubmedqa(lake, pqal)
    return lake


def run(a) -> dict:
    out = Path(a.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="mesh-bench-", dir=out))
    res: dict = {
        "command": " ".join(["python bench/mesh_sim.py", *map(shlex.quote, a.argv)]),
        "machine": machine(),
        "pairs": a.pairs,
        "doc_pairs": a.doc_pairs,
        "repeat": a.repeat,
        "seed": a.seed,
    }
    try:
        return _run(a, res, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(a, res: dict, scratch: Path) -> dict:
    import numpy as np
    import pyarrow as pa

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from mesh_reference import MeshReference

    lake = build_lake(Path(a.data), scratch)
    con = lake.connect()
    if a.threads:
        con.execute(f"set threads = {int(a.threads)}")
    res["threads"] = con.execute("select current_setting('threads')").fetchone()[0]
    res["corpus"] = dict(
        zip(
            ("articles", "annotations", "descriptors_seen"),
            con.execute(
                "select count(distinct pmid), count(*), count(distinct descriptor_ui) from mesh_doc_terms "
                "where descriptor_ui in (select descriptor_ui from mesh_tree)"
            ).fetchone(),
            strict=True,
        )
    )
    res["tree"] = dict(
        zip(
            ("descriptors", "tree_numbers", "ancestor_pairs"),
            con.execute(
                "select (select count(*) from mesh_descriptors), (select count(*) from mesh_tree), "
                "(select count(*) from mesh_ancestors)"
            ).fetchone(),
            strict=True,
        )
    )

    # -- views and index build (once; the scoring reads the temp tables)
    builds = {}
    for name, sql in [
        ("mesh_ancestors (view, counted)", "select count(*) from mesh_ancestors"),
        ("mesh_ic (view, counted)", "select count(*) from mesh_ic"),
        (
            "mesh_sim_index -> temp table",
            "create or replace temp table idx as select * from mesh_sim_index",
        ),
        (
            "mesh_kailin_index -> temp table",
            "create or replace temp table kidx as select * from mesh_kailin_index",
        ),
    ]:
        wait_quiet(a.quiet_wait)
        with Timer() as t:
            con.execute(sql).fetchall()
        builds[name] = round(t.seconds, 3)
    res["builds_s"] = builds

    # -- term pairs
    rng = np.random.default_rng(a.seed)
    seen = [
        r[0]
        for r in con.execute(
            "select descriptor_ui from mesh_ic where count > 0 order by 1"
        ).fetchall()
    ]
    every = [r[0] for r in con.execute("select descriptor_ui from mesh_ic order by 1").fetchall()]
    seen_arr, every_arr = np.array(seen), np.array(every)
    pairs = pa.table(
        {
            "a": seen_arr[rng.integers(0, len(seen), a.pairs)],
            "b": seen_arr[rng.integers(0, len(seen), a.pairs)],
        }
    )
    pairs_all = pa.table(
        {
            "a": every_arr[rng.integers(0, len(every), a.pairs)],
            "b": every_arr[rng.integers(0, len(every), a.pairs)],
        }
    )
    # related: b drawn among the seen descendants of a root ancestor of a
    root_rows = con.execute("""
        select a.descriptor_ui, list(a.ancestor_ui) from mesh_ancestors a
        where a.ancestor_ui in (select descriptor_ui from mesh_ancestors
                                group by 1 having max(distance) = 0)
          and a.descriptor_ui in (select descriptor_ui from mesh_ic where count > 0)
        group by 1""").fetchall()
    roots_of = dict(root_rows)
    below: dict[str, list[str]] = {}
    for ui, roots in root_rows:
        for r in roots:
            below.setdefault(r, []).append(ui)
    below_arr = {r: np.array(v) for r, v in below.items()}
    ra = seen_arr[rng.integers(0, len(seen), a.pairs)]
    rb = np.empty(a.pairs, dtype=object)
    for i, x in enumerate(ra):
        roots = roots_of[x]
        pool = below_arr[roots[int(rng.integers(0, len(roots)))]]
        rb[i] = pool[int(rng.integers(0, len(pool)))]
    related = pa.table({"a": ra, "b": pa.array(rb.tolist(), pa.string())})
    for name, t in (("pairs", pairs), ("pairs_all", pairs_all), ("pairs_related", related)):
        con.register(f"{name}_arrow", t)
        con.execute(f"create temp table {name} as select * from {name}_arrow")
        con.unregister(f"{name}_arrow")
    res["share_of_random_pairs_with_a_common_ancestor"] = con.execute(
        "select avg((lin > 0)::int) from mesh_term_sim('pairs', 'corpus', 'idx')"
    ).fetchone()[0]

    measures = [
        (
            "resnik",
            "corpus",
            "pairs",
            "select a, b, resnik from mesh_term_sim('pairs', 'corpus', 'idx')",
        ),
        ("lin", "corpus", "pairs", "select a, b, lin from mesh_term_sim('pairs', 'corpus', 'idx')"),
        ("jc", "corpus", "pairs", "select a, b, jc from mesh_term_sim('pairs', 'corpus', 'idx')"),
        (
            "lin",
            "intrinsic",
            "pairs_all",
            "select a, b, lin from mesh_term_sim('pairs_all', 'intrinsic', 'idx')",
        ),
        ("kailin", "kailin", "pairs", "select a, b, kailin from mesh_term_kailin('pairs', 'kidx')"),
        (
            "resnik+lin+jc",
            "corpus",
            "pairs",
            "select a, b, resnik, lin, jc from mesh_term_sim('pairs', 'corpus', 'idx')",
        ),
        (
            "lin",
            "corpus",
            "pairs_related",
            "select a, b, lin from mesh_term_sim('pairs_related', 'corpus', 'idx')",
        ),
        (
            "kailin",
            "kailin",
            "pairs_related",
            "select a, b, kailin from mesh_term_kailin('pairs_related', 'kidx')",
        ),
    ]
    terms = []
    for measure, ic, table, sql in measures:
        r = best_of(
            lambda sql=sql: con.execute(f"create or replace temp table o as {sql}"),
            a.repeat,
            a.quiet_wait,
        )
        n = con.execute("select count(*) from o").fetchone()[0]
        assert n == a.pairs, (measure, n)
        r.update(
            measure=measure,
            ic=ic,
            pairs=n,
            drawn_from=table,
            pairs_per_s=n / r["best_s"],
            nulls=con.execute(
                f"select count(*) - count({measure.split('+')[-1]}) from o"
            ).fetchone()[0],
        )
        terms.append(r)
        print(
            f"{measure:>14} {ic:>9} {table}: {r['pairs_per_s']:>12,.0f} pairs/s "
            f"(best {r['best_s']:.2f} s, other load {r['other_load_at_best']})",
            flush=True,
        )
    res["terms"] = terms

    # -- the per-pair Python implementation, on a prefix of the same pairs
    tree_rows = con.execute("select tree_number, descriptor_ui from mesh_tree").fetchall()
    ann = con.execute("select pmid, descriptor_ui from mesh_doc_terms").fetchall()
    with Timer() as t:
        ref = MeshReference(tree_rows, ann)
    res["python_build_s"] = round(t.seconds, 2)
    py = []
    sql_by = {(m, ic, tb): r for r, (m, ic, tb, _sql) in zip(terms, measures, strict=True)}
    sources = {"pairs": pairs, "pairs_all": pairs_all, "pairs_related": related}
    for measure, ic, table in [
        ("resnik", "corpus", "pairs"),
        ("lin", "corpus", "pairs"),
        ("jc", "corpus", "pairs"),
        ("lin", "intrinsic", "pairs_all"),
        ("kailin", "kailin", "pairs"),
        ("lin", "corpus", "pairs_related"),
        ("kailin", "kailin", "pairs_related"),
    ]:
        src = sources[table]
        n = min(a.python_pairs, src.num_rows)
        aa, bb = src.column("a").to_pylist()[:n], src.column("b").to_pylist()[:n]
        fn = (
            ref.kailin
            if measure == "kailin"
            else (lambda x, y, m=measure, i=ic: ref.sim(x, y, m, i))
        )
        wait_quiet(a.quiet_wait)
        with Timer() as t:
            got = [fn(x, y) for x, y in zip(aa, bb, strict=True)]
        # the SQL scores of the same pairs (row order of a temp table copy is not kept: join)
        sub = pa.table({"i": list(range(n)), "a": aa, "b": bb})
        con.register("sub_arrow", sub)
        col = measure if measure != "kailin" else "kailin"
        q = (
            f"select i, {col} from mesh_term_kailin('sub_arrow', 'kidx') order by i"
            if measure == "kailin"
            else f"select i, {col} from mesh_term_sim('sub_arrow', '{ic}', 'idx') order by i"
        )
        sql_vals = [r[1] for r in con.execute(q).fetchall()]
        con.unregister("sub_arrow")
        diffs = [
            abs(x - y)
            for x, y in zip(got, sql_vals, strict=True)
            if x is not None and y is not None
        ]
        mismatched_nulls = sum(
            (x is None) != (y is None) for x, y in zip(got, sql_vals, strict=True)
        )
        rate = n / t.seconds
        sql_rate = sql_by[(measure, ic, table)]["pairs_per_s"]
        py.append(
            {
                "measure": measure,
                "ic": ic,
                "drawn_from": table,
                "pairs": n,
                "seconds": t.seconds,
                "pairs_per_s": rate,
                "sql_over_python": sql_rate / rate,
                "max_abs_diff": max(diffs) if diffs else 0.0,
                "null_mismatches": mismatched_nulls,
                "other_load": round(t.other, 2),
            }
        )
        print(
            f"python {measure:>7} {ic:>9} {table}: {rate:>12,.0f} pairs/s; SQL is "
            f"{sql_rate / rate:,.0f}x; max |diff| {py[-1]['max_abs_diff']:.1e}",
            flush=True,
        )
    res["python_terms"] = py

    # -- documents: synthetic (document, context) pairs with ~12 terms each
    freq = con.execute(
        "select descriptor_ui, count(*) from mesh_doc_terms "
        "where descriptor_ui in (select descriptor_ui from mesh_tree) group by 1 order by 1"
    ).fetchall()
    uis = np.array([f[0] for f in freq])
    w = np.array([f[1] for f in freq], dtype=float)
    w /= w.sum()
    n_docs, n_ctx = max(1, a.doc_pairs // 5), max(1, a.doc_pairs // 2)
    ids = np.arange(n_docs + n_ctx, dtype=np.int64) + 10**9  # not real PMIDs
    picks = rng.choice(len(uis), size=(len(ids), a.terms_per_doc), p=w)
    con.register(
        "syn_arrow",
        pa.table({"pmid": np.repeat(ids, a.terms_per_doc), "descriptor_ui": uis[picks.ravel()]}),
    )
    con.execute("create temp table syn_terms as select distinct * from syn_arrow")
    con.unregister("syn_arrow")
    docs_a = ids[:n_docs][rng.integers(0, n_docs, a.doc_pairs * 2)]
    docs_b = ids[n_docs:][rng.integers(0, n_ctx, a.doc_pairs * 2)]
    con.register("dp_arrow", pa.table({"a": docs_a, "b": docs_b}))
    con.execute(f"create temp table dp as select distinct a, b from dp_arrow limit {a.doc_pairs}")
    con.unregister("dp_arrow")
    n_dp = con.execute("select count(*) from dp").fetchone()[0]
    stats = con.execute("select count(*) / count(distinct pmid) from syn_terms").fetchone()[0]
    term_pairs = con.execute(
        "select count(*) from dp join syn_terms x on x.pmid = dp.a "
        "join syn_terms y on y.pmid = dp.b"
    ).fetchone()[0]
    res["docs_shape"] = {
        "doc_pairs": n_dp,
        "documents": n_docs,
        "contexts": n_ctx,
        "terms_per_doc": round(stats, 2),
        "term_pairs": term_pairs,
    }
    docs = []
    for measure, aggregate in [("lin", "mean"), ("kailin", "mean"), ("lin", "bma")]:
        sql = (
            f"create or replace temp table o as select * from mesh_doc_sim("
            f"'dp', '{measure}', 'corpus', '{aggregate}', 'idx', 'kidx', 'syn_terms')"
        )
        r = best_of(lambda sql=sql: con.execute(sql), a.repeat, a.quiet_wait)
        r.update(
            measure=measure,
            aggregate=aggregate,
            doc_pairs=n_dp,
            docs_per_s=n_dp / r["best_s"],
            term_pairs_per_s=term_pairs / r["best_s"],
        )
        docs.append(r)
        print(
            f"docs {measure:>7} {aggregate:>5}: {r['docs_per_s']:>10,.0f} (document, context) "
            f"pairs/s (best {r['best_s']:.2f} s)",
            flush=True,
        )
    res["docs"] = docs

    # python, on a prefix of the document pairs
    syn = {}
    for pmid, ui in con.execute("select pmid, descriptor_ui from syn_terms").fetchall():
        syn.setdefault(pmid, []).append(ui)
    dps = con.execute("select a, b from dp order by a, b").fetchall()[: a.python_doc_pairs]
    py_docs = []
    for measure, aggregate in [("lin", "mean"), ("kailin", "mean")]:
        wait_quiet(a.quiet_wait)
        with Timer() as t:
            for x, y in dps:
                ref.doc_sim(syn[x], syn[y], measure, "corpus", aggregate)
        rate = len(dps) / t.seconds
        sql_rate = next(
            d["docs_per_s"] for d in docs if d["measure"] == measure and d["aggregate"] == aggregate
        )
        py_docs.append(
            {
                "measure": measure,
                "aggregate": aggregate,
                "doc_pairs": len(dps),
                "seconds": t.seconds,
                "docs_per_s": rate,
                "sql_over_python": sql_rate / rate,
            }
        )
        print(
            f"python docs {measure:>7} {aggregate}: {rate:,.0f}/s; SQL is {sql_rate / rate:,.0f}x",
            flush=True,
        )
    res["python_docs"] = py_docs
    con.close()
    return res


# ---------------------------------------------------------------------------- report
def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        SECTION,
        "",
        f"`{res['command']}`, {time.strftime('%Y-%m-%d')}: {m.get('cores')}-core {m.get('arch')} "
        f"({m.get('cpu', '?')}), {m.get('memory_gb', '?')} GB, Python {m['python']}, DuckDB "
        f"{m['duckdb']} with {res['threads']} threads. MeSH 2017 "
        f"({res['tree']['descriptors']:,} descriptors, {res['tree']['tree_numbers']:,} tree "
        f"numbers, {res['tree']['ancestor_pairs']:,} ancestor pairs); corpus IC from PubMedQA "
        f"({res['corpus']['articles']:,} articles, {res['corpus']['annotations']:,} annotations, "
        f"{res['corpus']['descriptors_seen']:,} descriptors seen).",
        "",
        "Index build, once before scoring (mesh_sim_index holds both IC sources; the scoring "
        "below reads these temp tables):",
        "",
        "| step | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["builds_s"].items()]
    lines += [
        "",
        f"Term pairs: {res['pairs']:,} pairs per workload, scored into a temp table (a, b, score);"
        f" best of {res['repeat']} runs. *random*: uniform pairs of descriptors seen in the corpus "
        f"({res['share_of_random_pairs_with_a_common_ancestor']:.1%} have a common ancestor; the "
        "others are ruled out by a bit filter); *all*: uniform pairs of all descriptors; "
        "*related*: pairs sharing a root, so every one needs the full MICA / LCA search (the "
        "worst case). Python = tests/mesh_reference.py, one pair at a time, on the first "
        f"{res['python_terms'][0]['pairs']:,} pairs of the same list (its index built in "
        f"{res['python_build_s']} s, not counted).",
        "",
        "| measure | IC | pairs | pairs/s (SQL) | per thread | Python pairs/s | SQL / Python |"
        " vs HESML 824k/s | max abs diff | other load (cores) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    py = {(p["measure"], p["ic"], p["drawn_from"]): p for p in res["python_terms"]}
    names = {"pairs": "random", "pairs_all": "all", "pairs_related": "related"}
    for t in res["terms"]:
        p = py.get((t["measure"], t["ic"], t["drawn_from"]))
        lines.append(
            f"| {t['measure']} | {t['ic']} | {names[t['drawn_from']]}"
            f" | {t['pairs_per_s']:,.0f} | {t['pairs_per_s'] / int(res['threads']):,.0f} | "
            + (f"{p['pairs_per_s']:,.0f} | {p['sql_over_python']:,.0f}x | " if p else "– | – | ")
            + f"{t['pairs_per_s'] / HESML_PAIRS_PER_S:.1f}x | "
            + (f"{p['max_abs_diff']:.0e} | " if p else "– | ")
            + f"{t['other_load_at_best']} |"
        )
    s = res["docs_shape"]
    lines += [
        "",
        f"Documents: {s['doc_pairs']:,} (document, context) pairs over {s['documents']:,} "
        f"documents and {s['contexts']:,} contexts, {s['terms_per_doc']} distinct terms each "
        f"(drawn from PubMedQA's annotation frequencies), {s['term_pairs']:,} term pairs; "
        "`mesh_doc_sim` into a temp table, best of "
        f"{res['repeat']} runs.",
        "",
        "| measure | aggregate | (document, context) pairs/s | term pairs/s | Python pairs/s | SQL / Python |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    pyd = {(p["measure"], p["aggregate"]): p for p in res["python_docs"]}
    for d in res["docs"]:
        p = pyd.get((d["measure"], d["aggregate"]))
        lines.append(
            f"| {d['measure']} | {d['aggregate']} | {d['docs_per_s']:,.0f} | "
            f"{d['term_pairs_per_s']:,.0f} | "
            + (f"{p['docs_per_s']:,.0f} | {p['sql_over_python']:,.0f}x |" if p else "– | – |")
        )
    slowest = min(res["terms"], key=lambda t: t["pairs_per_s"])
    ratios = [p["sql_over_python"] for p in res["python_terms"] + res["python_docs"]]
    lin_random = next(
        t
        for t in res["terms"]
        if (t["measure"], t["ic"], t["drawn_from"]) == ("lin", "corpus", "pairs")
    )
    lin_related = next(
        (t for t in res["terms"] if (t["measure"], t["drawn_from"]) == ("lin", "pairs_related")),
        lin_random,
    )
    spread = max(t["median_s"] / t["best_s"] - 1 for t in res["terms"] + res["docs"])
    lines += [
        "",
        "Summary:",
        f"- Goal (≥ 2M term pairs/s on this machine): the slowest workload, {slowest['measure']} "
        f"on {names[slowest['drawn_from']]} pairs, runs at {slowest['pairs_per_s'] / 1e6:.1f}M "
        f"pairs/s: {'met' if slowest['pairs_per_s'] >= 2e6 else 'NOT met'}.",
        f"- Lin: {lin_random['pairs_per_s'] / 1e6:.1f}M pairs/s on random pairs, "
        f"{lin_related['pairs_per_s'] / 1e6:.1f}M on related ones: "
        f"{lin_random['pairs_per_s'] / HESML_PAIRS_PER_S:.1f}x and "
        f"{lin_related['pairs_per_s'] / HESML_PAIRS_PER_S:.1f}x HESML's 824k pairs/s.",
        f"- SQL over the per-pair Python implementation: {min(ratios):.0f}x to {max(ratios):.0f}x "
        "(2 DuckDB threads against one Python thread).",
        f"- The median run is at most {spread:.0%} slower than the best.",
    ]
    lines += [
        "",
        "How to read it:",
        "- pairs/s = pairs / wall seconds of the scoring query alone (index built beforehand); "
        "per thread = divided by DuckDB's threads. The Python implementation runs on one core.",
        "- HESML's 824k pairs/s (Lin on MeSH, Java; Lastra-Díaz et al., BMC Bioinformatics 2021) "
        "was measured on other hardware: the ratio is an order of magnitude, not a contest.",
        "- max abs diff: the largest difference between the SQL and Python scores of the same "
        "pairs (both implement docs/mesh-similarity.md independently).",
        "- other load: cores other processes used during the best run; the machine is shared.",
        "- Full results: bench/out/mesh_sim.json.",
    ]
    return "\n".join(lines) + "\n"


def write_md(path: Path, text: str) -> None:
    """Put ``text`` (starting with SECTION) into ``path``, replacing only that section."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        new = (
            "".join(lines[:start])
            + text.rstrip("\n")
            + "\n"
            + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
        )
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5_000_000, help="term pairs (default 5M)")
    ap.add_argument(
        "--doc-pairs", type=int, default=100_000, help="(document, context) pairs (default 100k)"
    )
    ap.add_argument("--terms-per-doc", type=int, default=12)
    ap.add_argument(
        "--python-pairs",
        type=int,
        default=100_000,
        help="pairs the Python implementation scores per measure (default 100k)",
    )
    ap.add_argument("--python-doc-pairs", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per SQL measure; the best counts")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (default: its own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--data",
        default=os.environ.get("MKAILIN_SHARED_DATA", str(ROOT.parent / "shared" / "data")),
    )
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench" / "out"),
        help="folder for the scratch lake and mesh_sim.json (default bench/out)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each run, wait up to this many seconds for other processes "
        "to go idle (0: do not wait)",
    )
    ap.add_argument(
        "--md",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="markdown file whose MeSH section is replaced ('' for none)",
    )
    ap.add_argument(
        "--report",
        metavar="JSON",
        help="do not measure: render the markdown of an earlier mesh_sim.json",
    )
    a = ap.parse_args(argv)
    a.argv = argv
    if a.report:
        res = json.loads(Path(a.report).read_text())
    else:
        t0 = time.perf_counter()
        res = run(a)
        res["total_s"] = round(time.perf_counter() - t0, 1)
        out = Path(a.out).absolute()
        (out / "mesh_sim.json").write_text(json.dumps(res, indent=2, default=str))
    text = markdown(res)
    print(text)
    if a.md:
        write_md(Path(a.md), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
