"""``mkailin mesh sim`` and ``mkailin mesh doc-sim`` on the fixture tree (tests/mesh_fixture.py)."""

from __future__ import annotations

import csv
import io
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mesh_fixture import P1, P2, P4, TREE, fill, tree_tables

ln = math.log
LIN_03_04 = 2 * ln(1.25) / (ln(5) + ln(2.5))  # MICA D02; see test_mesh_sql.py
JC_03_04 = 1 / (1 + ln(8))
LIN_07_04 = ln(1.25) / ln(2.5)
EXACT_02_05 = (1 + math.log10(0.6)) / 3  # kailin-exact; see test_kailin_exact.py


@pytest.fixture
def mesh_cli(cli_lake):
    from mkailin.lake import Lake

    fill(Lake.init(cli_lake.path))
    return cli_lake


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_sim_one_measure(mesh_cli):
    r = mesh_cli("mesh", "sim", "D03", "D04", "--measure", "lin", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = parse_csv(r.output)
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("a", "a_name", "b", "b_name", "measure", "ic")} == {
        "a": "D03",
        "a_name": "Ear",
        "b": "D04",
        "b_name": "Eye",
        "measure": "lin",
        "ic": "corpus",
    }
    assert float(rows[0]["similarity"]) == pytest.approx(LIN_03_04)


def test_sim_every_measure(mesh_cli):
    r = mesh_cli("mesh", "sim", "D03", "D04", "--ic", "intrinsic", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [x["measure"] for x in rows] == ["resnik", "lin", "jc", "kailin"]
    assert [x["ic"] for x in rows] == ["intrinsic"] * 3 + ["kailin"]
    seco_d02 = 1 - ln(3) / ln(10)  # the MICA, D02, has 2 descendants of M = 10 descriptors
    assert rows[0]["similarity"] == pytest.approx(seco_d02)


def test_sim_kailin_exact(mesh_cli):
    r = mesh_cli("mesh", "sim", "D02", "D05", "--measure", "kailin-exact", "--format", "json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert (row["measure"], row["ic"]) == ("kailin-exact", "kailin-exact")
    assert row["similarity"] == pytest.approx(EXACT_02_05)


def test_sim_table_shows_null_for_unseen_terms(mesh_cli):
    r = mesh_cli("mesh", "sim", "D10", "D08", "--measure", "jc")
    assert r.exit_code == 0
    assert r.output.splitlines()[2].split()[-1] == "NULL"  # D10 never occurs in the corpus


def test_sim_unknown_ui(mesh_cli):
    r = mesh_cli("mesh", "sim", "D03", "D77777")
    assert r.exit_code == 1
    assert r.output == "Error: unknown MeSH descriptor UI: D77777\n"


def test_sim_without_mesh(cli_lake):
    from mkailin.lake import Lake

    Lake.init(cli_lake.path)
    r = cli_lake("mesh", "sim", "D03", "D04")
    assert r.exit_code == 1
    assert r.output == (
        "Error: the lake has no MeSH tree; load one with: mkailin ingest mesh MeshTreeYYYY.tsv\n"
    )


def test_sim_corpus_ic_without_corpus(cli_lake):
    from mkailin.lake import Lake

    lake = Lake.init(cli_lake.path)
    desc, tree = tree_tables(TREE)
    lake.replace_table("mesh_descriptors", desc)
    lake.replace_table("mesh_tree", tree)
    r = cli_lake("mesh", "sim", "D03", "D04", "--ic", "corpus")
    assert r.exit_code == 1
    assert r.output.startswith("Error: the lake has no MeSH annotations to compute corpus IC")
    # without --ic the intrinsic IC is the fallback
    r = cli_lake("mesh", "sim", "D03", "D04", "--measure", "resnik", "--format", "csv")
    assert r.exit_code == 0
    assert parse_csv(r.output)[0]["ic"] == "intrinsic"


def test_sim_pairs_csv(mesh_cli, tmp_path):
    src = tmp_path / "pairs.csv"
    src.write_text("id,a,b\n1,D03,D04\n2,D04,D07\n3,D03,D77777\n4,D10,D08\n")
    out = tmp_path / "out" / "scored.parquet"
    r = mesh_cli("mesh", "sim", "--pairs", str(src), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("scored 4 pairs (resnik, lin, jc, kailin; corpus IC) in ")
    assert r.output.splitlines()[1] == "  pairs with an unknown descriptor UI (NULL scores): 1"
    t = pq.read_table(out)
    assert t.column_names == ["id", "a", "b", "resnik", "lin", "jc", "kailin"]
    rows = t.to_pylist()
    assert [x["id"] for x in rows] == [1, 2, 3, 4]  # input order kept
    assert rows[0]["lin"] == pytest.approx(LIN_03_04)
    assert rows[0]["jc"] == pytest.approx(JC_03_04)
    assert rows[1]["lin"] == pytest.approx(LIN_07_04)
    assert rows[2]["lin"] is None and rows[2]["kailin"] is None  # unknown UI
    assert rows[3]["lin"] is None and rows[3]["kailin"] == 1.0  # unseen: NULL; kailin has IC 0


def test_sim_pairs_kailin_exact(mesh_cli, tmp_path):
    src = tmp_path / "pairs.csv"
    src.write_text("a,b\nD02,D05\nD03,D77777\n")
    out = tmp_path / "scored.parquet"
    r = mesh_cli("mesh", "sim", "--pairs", str(src), "--out", str(out), "--measure", "kailin-exact")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("scored 2 pairs (kailin-exact; corpus IC) in ")
    t = pq.read_table(out)
    assert t.column_names == ["a", "b", "kailin_exact"]
    assert t.column("kailin_exact").to_pylist() == [pytest.approx(EXACT_02_05), None]


def test_sim_pairs_parquet_one_measure(mesh_cli, tmp_path):
    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"a": ["D03", "D07"], "b": ["D04", "D08"]}), src)
    out = tmp_path / "scored.parquet"
    r = mesh_cli(
        "mesh",
        "sim",
        "--pairs",
        str(src),
        "--out",
        str(out),
        "--measure",
        "jc",
        "--ic",
        "intrinsic",
    )
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    assert t.column_names == ["a", "b", "jc"]
    assert t.column("jc")[0].as_py() == pytest.approx(1 / (1 + 2 * (ln(3) / ln(10))))


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.csv", None, "{path}: no such file"),
        (
            "pairs.csv",
            "x,y\nD03,D04\n",
            "{path}: missing column(s) a, b; expected columns a and b holding MeSH descriptor UIs",
        ),
        (
            "pairs.csv",
            "a,b,lin\nD03,D04,1\n",
            "{path}: column name(s) lin are reserved for the scores; rename them",
        ),
        (
            "pairs.csv",
            "a,b,kailin_exact\nD03,D04,1\n",
            "{path}: column name(s) kailin_exact are reserved for the scores; rename them",
        ),
        ("pairs.json", "[]", "{path}: expected a .csv, .tsv or .parquet file of pairs"),
    ],
)
def test_sim_pairs_bad_input(mesh_cli, tmp_path, name, content, message):
    src = tmp_path / name
    if content is not None:
        src.write_text(content)
    r = mesh_cli("mesh", "sim", "--pairs", str(src), "--out", str(tmp_path / "o.parquet"))
    assert r.exit_code == 1
    assert r.output == f"Error: {message.format(path=src)}\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["D03", "D04", "--pairs", "p.csv", "--out", "o.parquet"],
            "give either A B or --pairs FILE, not both",
        ),
        (["--pairs", "p.csv"], "--pairs needs --out FILE.parquet"),
        (["D03"], "give two descriptor UIs A B, or --pairs FILE --out FILE"),
        (["D03", "D04", "--out", "o.parquet"], "--out goes with --pairs"),
    ],
)
def test_sim_usage_errors(mesh_cli, args, message):
    r = mesh_cli("mesh", "sim", *args)
    assert r.exit_code == 2
    assert r.output.endswith(f"Error: {message}\n")


def test_doc_sim(mesh_cli):
    r = mesh_cli("mesh", "doc-sim", str(P1), str(P2), "--format", "json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    # mean of (D03, D04) and (D07, D04); P1's D99999 is not in MeSH and is skipped
    assert row["similarity"] == pytest.approx((LIN_03_04 + LIN_07_04) / 2)
    assert (row["measure"], row["ic"], row["aggregate"]) == ("lin", "corpus", "mean")
    assert (row["terms_a"], row["terms_b"], row["term_pairs"]) == (3, 1, 2)
    r = mesh_cli("mesh", "doc-sim", str(P1), str(P2), "--aggregate", "bma", "--format", "json")
    assert json.loads(r.output)["similarity"] == pytest.approx(
        ((LIN_03_04 + LIN_07_04) / 2 + LIN_07_04) / 2
    )
    r = mesh_cli("mesh", "doc-sim", str(P1), str(P2), "--measure", "kailin", "--format", "json")
    assert json.loads(r.output)["ic"] == "kailin"


def test_doc_sim_kailin_exact(mesh_cli):
    # P1 {D03, D07} (D99999 has no tree number: dropped) x P4 {D07, D08}: (D03, x) 0 and 0;
    # (D07, D07) 1; (D07, D08) 1 (test_kailin_exact.py)
    r = mesh_cli(
        "mesh", "doc-sim", str(P1), str(P4), "--measure", "kailin-exact", "--format", "json"
    )
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert (row["measure"], row["ic"], row["aggregate"]) == ("kailin-exact", "kailin-exact", "mean")
    assert row["similarity"] == pytest.approx(0.5)
    assert (row["terms_a"], row["terms_b"], row["term_pairs"]) == (2, 2, 4)


def test_doc_sim_unknown_pmid(mesh_cli):
    r = mesh_cli("mesh", "doc-sim", str(P1), "999")
    assert r.exit_code == 1
    assert r.output == "Error: unknown PMID: 999 (not among the lake's articles)\n"


def test_every_mesh_command_has_an_example(runner):
    from mkailin.cli import cli

    for name in ("sim", "doc-sim"):
        r = runner.invoke(cli, ["mesh", name, "--help"])
        assert r.exit_code == 0
        assert "Example:" in r.output
