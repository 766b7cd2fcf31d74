"""MeSH similarity of terms and documents, computed by the ``sql/`` views and macros.

The formulas live in SQL (``sql/010``–``sql/034``, documented in docs/mesh-similarity.md);
this module checks inputs, picks the IC source, and moves files in and out:

- :func:`term_similarity` scores one pair of descriptor UIs with one or every measure;
- :func:`score_pairs` scores a CSV or Parquet file of pairs (columns ``a``, ``b``) into Parquet,
  one column per measure;
- :func:`doc_similarity` scores two articles by their MeSH headings.

``kailin-exact`` is the KAILIN scorer with the settings of KAILIN's own code (no term in its own
IC, categories by top-level tree, check tags dropped from documents); ``kailin`` keeps
mkailin's defaults. Both are described in docs/mesh-similarity.md.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from mkailin.errors import InputError, QueryError
from mkailin.lake import Lake, fetch_arrow

MEASURES = ("resnik", "lin", "jc", "kailin", "kailin-exact")
DEFAULT_MEASURES = ("resnik", "lin", "jc", "kailin")  # what term and pair scoring give unasked
# the KAILIN measures and the index view each reads (sql/019, sql/023)
KAILIN_MEASURES = {"kailin": "mesh_kailin_index", "kailin-exact": "mesh_kailin_exact_index"}
IC_SOURCES = ("corpus", "intrinsic")
AGGREGATES = ("mean", "bma")


def column(measure: str) -> str:
    """The column :func:`score_pairs` writes a measure's scores to (``kailin-exact`` ->
    ``kailin_exact``, so that SQL can name it unquoted)."""
    return measure.replace("-", "_")


# Columns the similarity macros add or use internally; an input file may not bring its own.
_RESERVED = {
    "_row",
    "ic_a",
    "ic_b",
    "mica_ui",
    "mica_pos",
    "ic_mica",
    "lca_ui",
    "lca_id",
    "known",
    "ics_a",
    "ics_b",
    "categories_a",
    "categories_b",
    "terms",
    *(column(m) for m in MEASURES),
}


@dataclass
class PairsSummary:
    """What :func:`score_pairs` did; the CLI prints it."""

    rows: int
    unknown: int  # pairs with a UI that is not a MeSH descriptor (their scores are NULL)
    measures: tuple[str, ...]
    ic: str
    out: Path
    seconds: float

    def lines(self) -> list[str]:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return [
            f"scored {self.rows:,} pairs ({', '.join(self.measures)}; {self.ic} IC) "
            f"in {self.seconds:.2f} s ({rate:,.0f} pairs/s) -> {self.out}",
            f"  pairs with an unknown descriptor UI (NULL scores): {self.unknown:,}",
        ]


# ------------------------------------------------------------------------------ checks
def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"unknown {what} '{value}'; expected one of: {', '.join(allowed)}")
    return value


def _measures(measures) -> tuple[str, ...]:
    if measures is None:
        return DEFAULT_MEASURES
    if isinstance(measures, str):
        measures = (measures,)
    return tuple(_choice(m, MEASURES, "measure") for m in measures)


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    try:
        return fetch_arrow(con, sql, params)
    except duckdb.Error as e:
        raise QueryError(str(e).splitlines()[0]) from None


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    try:
        rows = con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None
    except duckdb.Error as e:
        raise QueryError(str(e).splitlines()[0]) from None


def _check_mesh(con: duckdb.DuckDBPyConnection) -> None:
    if not _scalar(con, "select count(*) from mesh_tree"):
        raise InputError(
            "the lake has no MeSH tree; load one with: mkailin ingest mesh MeshTreeYYYY.tsv"
        )


def resolve_ic(con: duckdb.DuckDBPyConnection, ic: str | None) -> str:
    """The IC source to use: ``corpus`` when the lake holds MeSH annotations, else ``intrinsic``.

    An explicit ``corpus`` on a lake without annotations is an error rather than all-NULL scores.
    """
    has_corpus = bool(_scalar(con, "select count(*) from (select 1 from mesh_doc_terms limit 1)"))
    if ic is None:
        return "corpus" if has_corpus else "intrinsic"
    _choice(ic, IC_SOURCES, "IC source")
    if ic == "corpus" and not has_corpus:
        raise InputError(
            "the lake has no MeSH annotations to compute corpus IC from; ingest articles "
            "(mkailin ingest pubmed|pubmedqa) or use --ic intrinsic"
        )
    return ic


def _check_uis(con: duckdb.DuckDBPyConnection, uis: list[str]) -> dict[str, str]:
    """Names of the given descriptor UIs; an ``InputError`` naming the first unknown one."""
    rows = _query(
        con,
        """
        select descriptor_ui, any_value(name) as name
        from (
            select descriptor_ui, name from mesh_descriptors
            union all
            select descriptor_ui, null from mesh_tree
        )
        where descriptor_ui in (select unnest(?::varchar[]))
        group by descriptor_ui
    """,
        [uis],
    ).to_pylist()
    names = {r["descriptor_ui"]: r["name"] for r in rows}
    for ui in uis:
        if ui not in names:
            raise InputError(f"unknown MeSH descriptor UI: {ui}")
    return names


def _check_pmids(con: duckdb.DuckDBPyConnection, pmids: list[int]) -> None:
    found = {
        r[0]
        for r in con.execute(
            "select pmid from articles where pmid in (select unnest(?::bigint[]))", [pmids]
        ).fetchall()
    }
    for p in pmids:
        if p not in found:
            raise InputError(f"unknown PMID: {p} (not among the lake's articles)")


def _materialise_indexes(
    con: duckdb.DuckDBPyConnection, ic: str, measures: tuple[str, ...]
) -> dict[str, str]:
    """Build the similarity indexes the measures need once into temp tables, so each scoring
    query reads them; returns the temp table of each KAILIN measure."""
    if any(m not in KAILIN_MEASURES for m in measures):
        con.execute(
            "create or replace temp table _mesh_idx as "
            "select * from mesh_sim_index where ic_kind = ?",
            [ic],
        )
    tables = {}
    for i, m in enumerate(m for m in measures if m in KAILIN_MEASURES):
        tables[m] = f"_mesh_kidx{i}"
        con.execute(
            f"create or replace temp table {tables[m]} as select * from {KAILIN_MEASURES[m]}"
        )
    return tables


# ------------------------------------------------------------------------------ terms
def term_similarity(lake: Lake, a: str, b: str, measures=None, ic: str | None = None) -> pa.Table:
    """The similarity of descriptor UIs ``a`` and ``b``: one row per measure.

    Columns: a, a_name, b, b_name, measure, ic (the IC source; the measure's name for kailin
    and kailin-exact, which have their own), similarity (NULL when a term never occurs in the
    corpus, for corpus IC; for kailin-exact, when a term has no tree number).
    """
    measures = _measures(measures)
    a, b = a.strip(), b.strip()
    con = lake.connect()
    try:
        _check_mesh(con)
        names = _check_uis(con, [a, b])
        ic = resolve_ic(con, ic)
        con.execute("create temp table _pair as select ?::varchar as a, ?::varchar as b", [a, b])
        rows = []
        ic_measures = [m for m in measures if m not in KAILIN_MEASURES]
        if ic_measures:
            r = _query(
                con, "select resnik, lin, jc from mesh_term_sim('_pair', ic := ?)", [ic]
            ).to_pylist()[0]
            rows += [(m, ic, r[m]) for m in ic_measures]
        for m in measures:
            if m in KAILIN_MEASURES:
                k = _scalar(
                    con, "select kailin from mesh_term_kailin('_pair', ?)", [KAILIN_MEASURES[m]]
                )
                rows.append((m, m, k))
    finally:
        con.close()
    order = {m: i for i, m in enumerate(measures)}
    rows.sort(key=lambda r: order[r[0]])
    return pa.table(
        {
            "a": [a] * len(rows),
            "a_name": [names[a]] * len(rows),
            "b": [b] * len(rows),
            "b_name": [names[b]] * len(rows),
            "measure": [r[0] for r in rows],
            "ic": [r[1] for r in rows],
            "similarity": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def read_pairs(path: str | os.PathLike) -> pa.Table:
    """A CSV or Parquet file with columns ``a`` and ``b`` (descriptor UIs), as Arrow."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a .csv or .parquet file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(p)
        elif suffix in (".csv", ".tsv"):
            from pyarrow import csv

            table = csv.read_csv(
                p,
                parse_options=csv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
                convert_options=csv.ConvertOptions(
                    column_types={"a": pa.string(), "b": pa.string()}
                ),
            )
        else:
            raise InputError(f"{p}: expected a .csv, .tsv or .parquet file of pairs")
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{p}: cannot read it: {str(e).splitlines()[0]}") from None
    missing = [c for c in ("a", "b") if c not in table.column_names]
    if missing:
        raise InputError(
            f"{p}: missing column(s) {', '.join(missing)}; "
            "expected columns a and b holding MeSH descriptor UIs"
        )
    clash = sorted(set(table.column_names) & _RESERVED)
    if clash:
        raise InputError(
            f"{p}: column name(s) {', '.join(clash)} are reserved for the scores; rename them"
        )
    for c in ("a", "b"):
        if not pa.types.is_string(table.schema.field(c).type):
            i = table.schema.get_field_index(c)
            table = table.set_column(i, c, table.column(c).cast(pa.string()))
    return table


def score_pairs(
    lake: Lake,
    pairs: str | os.PathLike,
    out: str | os.PathLike,
    measures=None,
    ic: str | None = None,
) -> PairsSummary:
    """Score every pair of a CSV/Parquet file; write the input columns plus one column per measure.

    Rows keep their input order. A UI that is not a MeSH descriptor gives NULL scores. The
    column of a measure is :func:`column` of its name (``kailin_exact`` for kailin-exact).
    """
    measures = _measures(measures)
    table = read_pairs(pairs)
    out = Path(out)
    started = time.perf_counter()
    con = lake.connect()
    try:
        _check_mesh(con)
        ic = resolve_ic(con, ic)
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
        con.register("_pairs_in", table)
        con.execute("create temp table _pairs as select * from _pairs_in")
        kidx = _materialise_indexes(con, ic, measures)
        ic_measures = [m for m in measures if m not in KAILIN_MEASURES]
        source, extra = "_pairs", []
        if ic_measures:
            con.execute(
                "create temp table _scored as select * from "
                "mesh_term_sim('_pairs', ic := ?, index_table := '_mesh_idx')",
                [ic],
            )
            source, extra = (
                "_scored",
                [
                    "ic_a",
                    "ic_b",
                    "mica_ui",
                    *[m for m in ("resnik", "lin", "jc") if m not in ic_measures],
                ],
            )
        joins = []
        for i, m in enumerate(kidx):
            con.execute(
                f"create temp table _scored_k{i} as select _row, kailin as {column(m)} "
                f"from mesh_term_kailin('_pairs', index_table := '{kidx[m]}')"
            )
            joins.append(f"join _scored_k{i} using (_row)")
        drop = ", ".join(["_row", *extra])
        result = _query(
            con,
            f"select * exclude ({drop}) from {source} {' '.join(joins)} order by _row",
        )
        unknown = _scalar(
            con,
            """
            select count(*) from _pairs
            where a not in (select descriptor_ui from mesh_ancestors)
               or b not in (select descriptor_ui from mesh_ancestors)
               or a is null or b is null
        """,
        )
    finally:
        con.close()
    _write_parquet(result, out)
    return PairsSummary(
        rows=result.num_rows,
        unknown=unknown,
        measures=measures,
        ic=ic,
        out=out,
        seconds=time.perf_counter() - started,
    )


def _write_parquet(table: pa.Table, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot write it: {e.strerror or e}") from None


# ------------------------------------------------------------------------------ documents
def doc_similarity(
    lake: Lake,
    pmid_a: int,
    pmid_b: int,
    measure: str = "lin",
    ic: str | None = None,
    aggregate: str = "mean",
) -> pa.Table:
    """The MeSH similarity of two articles: one row.

    Columns: a, b, measure, ic, aggregate, similarity (NULL when either article has no MeSH
    heading or no term pair has a score), terms_a, terms_b (the terms that enter the score:
    kailin-exact drops those without a tree number), term_pairs.
    """
    _choice(measure, MEASURES, "measure")
    _choice(aggregate, AGGREGATES, "aggregate")
    con = lake.connect()
    try:
        _check_mesh(con)
        _check_pmids(con, [int(pmid_a), int(pmid_b)])
        ic = measure if measure in KAILIN_MEASURES else resolve_ic(con, ic)
        con.execute(
            "create temp table _docs as select ?::bigint as a, ?::bigint as b",
            [int(pmid_a), int(pmid_b)],
        )
        return _query(
            con,
            """
            select a, b, ?::varchar as measure, ?::varchar as ic, ?::varchar as aggregate,
                   similarity, terms_a, terms_b, term_pairs
            from mesh_doc_sim('_docs', ?, ?, ?)
        """,
            [measure, ic, aggregate, measure, "corpus" if ic == measure else ic, aggregate],
        )
    finally:
        con.close()
