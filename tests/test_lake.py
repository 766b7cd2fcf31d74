"""The lake: tables, atomic writes, generations, the DuckDB catalog, the lock, and the CLI over it."""

from __future__ import annotations

import json
import pickle
import subprocess

import pyarrow as pa
import pytest

from mkailin import schema
from mkailin.errors import LakeError, LakeLockedError, QueryError, UnknownTableError
from mkailin.lake import CATALOG, KEEP_SNAPSHOTS, Lake


def test_init_creates_every_contract_table_empty(lake):
    assert set(schema.TABLES) <= set(lake.table_names())
    for name in schema.TABLES:
        assert lake.count(name) == 0
    assert lake.catalog_path.exists()
    # idempotent
    Lake.init(lake.root)
    assert lake.count("questions") == 0


def test_open_requires_a_lake(tmp_path):
    with pytest.raises(LakeError, match="is not a mkailin lake; create it with: mkailin init"):
        Lake.open(tmp_path / "nothing")


def test_write_part_appends_and_conforms_to_the_contract(lake):
    lake.write_part("questions", pa.Table.from_pylist([{"question_id": "q1", "pmid": 7}]))
    lake.write_part(
        "questions", pa.Table.from_pylist([{"pmid": 8, "question_id": "q2", "question": "why?"}])
    )
    rows = lake.query("select question_id, pmid, question from questions order by 1")
    assert rows == [("q1", 7, None), ("q2", 8, "why?")]
    # parts are whole files; no temp names remain
    assert not list(lake.table_path("questions").glob(".*"))


def test_replace_table_swaps_parts_in_one_commit(lake):
    lake.write_part("questions", pa.Table.from_pylist([{"question_id": "old", "pmid": 1}]))
    old_parts = lake.parts("questions")
    lake.replace_table("questions", pa.Table.from_pylist([{"question_id": "new", "pmid": 2}]))
    assert lake.query("select question_id from questions") == [("new",)]
    assert not set(old_parts) & set(lake.parts("questions"))
    # the old part stays while a kept snapshot names it, for readers of that snapshot
    assert all(p.exists() for p in old_parts)
    for i in range(KEEP_SNAPSHOTS):
        lake.write_part("scratch_notes", pa.table({"i": [i]}))
    assert not any(p.exists() for p in old_parts)


def test_one_database_per_lake_sees_every_later_write(lake, tmp_path, monkeypatch):
    """connect() reuses its views; writes by another Lake object (another process, say) and
    tables created after the first query are still seen, and cursors keep their temp tables."""
    assert lake.count("questions") == 0
    other = Lake.open(lake.root)
    other.write_part("questions", pa.Table.from_pylist([{"question_id": "a", "pmid": 1}]))
    assert lake.count("questions") == 1
    other.replace_table("questions", pa.Table.from_pylist([{"question_id": "b", "pmid": 2}]))
    assert lake.query("select question_id from questions") == [("b",)]
    other.ensure_table("scratch_notes", pa.schema([("note", pa.string())]))
    other.write_part("scratch_notes", pa.Table.from_pylist([{"note": "hi"}]))
    assert lake.query("select note from scratch_notes") == [("hi",)]

    con = lake.connect()
    con.execute("create temp table mine as select 1 as x")
    con.close()
    with pytest.raises(QueryError, match="mine"):
        lake.query("select * from mine")

    # an edited sql/ file is applied again on the next query
    extra = tmp_path / "zz_extra.sql"
    extra.write_text("create or replace view extra_view as select 41 as x;")
    monkeypatch.setattr("mkailin.lake.sql_files", lambda: [extra])
    assert lake.query("select x from extra_view") == [(41,)]
    extra.write_text("create or replace view extra_view as select 42 as x;")
    assert lake.query("select x from extra_view") == [(42,)]

    # a Lake sent to another process opens its own database there
    copy = pickle.loads(pickle.dumps(lake))
    assert copy.query("select question_id from questions") == [("b",)]


def test_clean_temp_removes_leftovers_of_a_killed_writer(lake):
    junk = lake.table_path("questions") / ".part-x.parquet.abcd1234.tmp"
    junk.write_bytes(b"half a parquet file")
    with lake.lock("test"):
        pass
    assert not junk.exists()
    assert lake.count("questions") == 0


def test_table_names_are_checked(lake):
    with pytest.raises(UnknownTableError, match="not a valid table name"):
        lake.write_part('x"; drop table articles; --', pa.table({"a": [1]}))
    with pytest.raises(UnknownTableError, match="the lake has no table 'nope'"):
        lake.table_path("nope")


def test_lock_names_the_holder(lake):
    other = Lake(lake.root)
    with lake.lock("ingest pubmed"):
        with pytest.raises(
            LakeLockedError,
            match=r"being written by another process \(pid \d+: mkailin ingest pubmed\)",
        ):
            with other.lock("ingest mesh"):
                pass
    with other.lock("ingest mesh"):  # free again
        pass


def test_sync_catalog_records_checksums_and_reapplies_safely(lake):
    first = lake.sync_catalog()
    assert first["applied"] == 0 and first["skipped"] > 0
    lake.write_part("extra_table", pa.table({"a": [1, 2]}))  # the commit refreshes the catalog
    second = lake.sync_catalog()
    assert second["applied"] == 0 and second["skipped"] == first["skipped"] + 1
    import duckdb

    con = duckdb.connect(str(lake.catalog_path), read_only=True)
    try:
        con.execute(f"set file_search_path = '{lake.root}'")
        assert con.execute("select sum(a) from extra_table").fetchone() == (3,)
    finally:
        con.close()


def test_stock_duckdb_cli_reads_the_catalog(lake):
    from conftest import duckdb_cli

    exe = duckdb_cli()
    lake.write_part("questions", pa.Table.from_pylist([{"question_id": "q1", "pmid": 42}]))
    lake.sync_catalog()
    # the documented commands: from the lake folder, or with the lake as the file search path
    for cmd, cwd in (
        ([exe, "-readonly", "-json", CATALOG], lake.root),
        ([exe, "-cmd", f"set file_search_path = '{lake.root}'", "-json", lake.catalog_path], None),
    ):
        out = subprocess.run(
            [*map(str, cmd), "-c", "select question_id, pmid from questions"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,
        )
        assert json.loads(out.stdout) == [{"question_id": "q1", "pmid": 42}]
    # every view in the catalog binds in the stock CLI, not only in the Python duckdb
    out = subprocess.run(
        [
            exe,
            "-json",
            CATALOG,
            "-c",
            "select table_name from information_schema.tables",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=lake.root,
    )
    names = {r["table_name"] for r in json.loads(out.stdout)}
    for view in ("articles", "article_mesh", "mesh_names", "runs"):
        assert view in names
        subprocess.run(
            [exe, CATALOG, "-c", f"select count(*) from {view}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=lake.root,
        )


# ---------------------------------------------------------------------------- CLI
def test_cli_init_tables_and_sql(cli_lake):
    r = cli_lake("init")
    assert r.exit_code == 0, r.output
    assert "lake ready at" in r.output
    r = cli_lake("tables", "--format", "csv")
    assert r.exit_code == 0
    assert "questions,table,0" in r.output
    assert "articles,view,0" in r.output
    r = cli_lake("sql", "select 1 as one, 'a' as letter", "--format", "json")
    assert r.output.strip() == '{"one": 1, "letter": "a"}'
    r = cli_lake("sql", "select 41 + 1 as answer")
    assert r.output.splitlines()[0].strip() == "answer"
    assert "42" in r.output and "(1 row)" in r.output


def test_cli_errors_are_one_line_not_tracebacks(cli_lake):
    r = cli_lake("tables")
    assert r.exit_code == 1
    assert r.output.startswith("Error: ")
    assert "is not a mkailin lake; create it with: mkailin init" in r.output
    cli_lake("init")
    r = cli_lake("sql", "select * from no_such_table")
    assert r.exit_code == 1
    assert r.output.startswith("Error: Catalog Error: Table with name no_such_table does not exist")
    assert "Traceback" not in r.output
