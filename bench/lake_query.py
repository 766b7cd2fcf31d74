"""Per-query overhead of the lake (issue 15): ``Lake.query`` on its reused database against a
fresh in-memory DuckDB connection that defines every table view and sql/ view first (how each
query ran before), and the raw floor of a bare ``duckdb.connect()`` + query.

    python bench/lake_query.py [--lake PATH] [--queries 200]

Without --lake it makes a lake with every contract table in a temp folder. Three queries: a
constant (pure overhead), a count over a table, and a count through a sql/ view (``articles``). Prints ms per query for each way and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import duckdb

from mkailin.lake import Lake

from loadmeter import Timer, cpu_and_memory, wait_quiet  # bench/ is on sys.path as a script


def _fresh(lake: Lake, sql: str):
    con = duckdb.connect()
    try:
        for _, stmt in lake._statements():
            con.execute(stmt)
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _per_query_ms(fn, n: int) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1000)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lake", help="an existing lake (default: a new empty one)")
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    tmp = None
    if a.lake:
        lake = Lake.open(a.lake)
    else:
        tmp = tempfile.TemporaryDirectory()
        lake = Lake.init(tmp.name)
    queries = {
        "constant": "select 1",
        "count": "select count(*) from questions",
        "sql_view": "select count(*) from articles",  # sql/001_articles.sql over a table
    }
    wait_quiet(60)
    out = {"machine": cpu_and_memory(), "statements": len(lake._statements()), "ms": {}}
    with Timer() as timer:
        for name, sql in queries.items():
            reused = _per_query_ms(lambda sql=sql: lake.query(sql), a.queries)
            fresh = _per_query_ms(lambda sql=sql: _fresh(lake, sql), max(10, a.queries // 10))
            bare = _per_query_ms(lambda: duckdb.connect().execute("select 1").fetchall(), 50)
            out["ms"][name] = {
                "reused": round(reused, 2),
                "fresh_connection": round(fresh, 2),
                "bare_duckdb_connect": round(bare, 2),
                "ratio": round(fresh / reused, 1),
            }
    out["other_load_cores"] = round(timer.other, 2)
    print(json.dumps(out, indent=2))
    print(
        "median ratio, fresh connection / reused: "
        f"{statistics.median(v['ratio'] for v in out['ms'].values()):.1f}x"
    )
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
