"""``mkailin report coverage``: corpus rows and source articles per MeSH category against the
lake's articles, on the real MeSH 2017 tree and the 1,000 PubMedQA PQA-L articles."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pytest

from mkailin.coverage import COLUMNS, coverage_table, write_coverage
from mkailin.errors import InputError

from conftest import copy_tables

SVG = "{http://www.w3.org/2000/svg}"


def write_export(folder: Path, rows: list[tuple[int, list[int]]], created: str = "") -> Path:
    """An export folder as ``mkailin export`` writes it, as far as coverage reads it: one
    data.jsonl row per (source PMID, context PMIDs), with its lineage, and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (pmid, contexts) in enumerate(rows):
        lineage = {
            "source_pmid": pmid,
            "contexts": [{"pmid": c, "rank": r} for r, c in enumerate(contexts, start=1)],
        }
        row = {"id": f"q{i}", "pmid": pmid, "context_pmids": contexts, "lineage": lineage}
        lines.append(json.dumps(row) + "\n")
    (folder / "data.jsonl").write_text("".join(lines))
    manifest = {"kind": folder.name.removeprefix("corpus_"), "records": len(rows)}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "created": created}))
    return folder


def letters(lake, pmids) -> dict[int, set[str]]:
    """Each article's MeSH categories, from the letters of its descriptors' tree numbers."""
    out: dict[int, set[str]] = {p: set() for p in pmids}
    for pmid, tree_number in lake.query(
        "select m.pmid, t.tree_number from article_mesh as m "
        "join mesh_tree as t on t.descriptor_ui = m.descriptor_ui "
        "where m.pmid in (select unnest(?))",
        [list(pmids)],
    ):
        out[pmid].add(tree_number[0])
    return out


@pytest.fixture
def picked(mesh_lake):
    """Three source articles without a Humanities (K) descriptor, and one context with one."""
    k = "select pmid from article_mesh join mesh_tree using (descriptor_ui) where category = 'K'"
    sources = [
        p for (p,) in mesh_lake.query(f"select pmid from articles where pmid not in ({k}) limit 3")
    ]
    context = mesh_lake.query(f"{k} order by pmid limit 1")[0][0]
    return sources, context


def test_counts_by_category_from_source_articles_only(mesh_lake, picked, tmp_path):
    (a, b, c), ctx = picked
    folder = write_export(tmp_path / "corpus_cpt", [(a, [ctx]), (a, [ctx]), (b, [ctx]), (c, [])])
    table, totals = coverage_table(mesh_lake, [a, a, b, c])
    assert totals == {"rows": 4, "articles": 3, "missing_rows": 0, "lake_articles": 1000}
    assert table.schema == pa.schema(COLUMNS)
    got = {r["category"]: r for r in table.to_pylist()}
    assert list(got) == [*"ABCDEFGHIJKLMN", "V", "Z", "none"]
    cats = letters(mesh_lake, [a, b, c])
    for cat, r in got.items():
        if cat == "none":
            continue
        touching = [p for p in (a, a, b, c) if cat in cats[p]]
        assert r["corpus_rows"] == len(touching), cat
        assert r["corpus_articles"] == len(set(touching)), cat
        assert r["corpus_row_share"] == pytest.approx(len(touching) / 4)
        assert r["corpus_article_share"] == pytest.approx(len(set(touching)) / 3)
        # the lake's count, independently: articles with a tree number starting with the letter
        lake_n = mesh_lake.query(
            "select count(*) from articles as a where exists (select 1 from article_mesh as m "
            "join mesh_tree as t on t.descriptor_ui = m.descriptor_ui "
            "where m.pmid = a.pmid and t.tree_number like ? || '%')",
            [cat],
        )[0][0]
        assert r["lake_articles"] == lake_n, cat
        assert r["lake_share"] == pytest.approx(lake_n / 1000)
        if lake_n:
            assert r["ratio"] == pytest.approx((len(set(touching)) / 3) / (lake_n / 1000))
            assert r["row_ratio"] == pytest.approx((len(touching) / 4) / (lake_n / 1000))
        else:
            assert r["ratio"] is None and r["row_ratio"] is None
    # the real PubMedQA PQA-L articles: every one has MeSH, 791 touch Diseases, none V
    assert (got["C"]["lake_articles"], got["B"]["lake_articles"]) == (791, 993)
    assert got["V"]["lake_articles"] == 0 and got["none"]["lake_articles"] == 0
    # the context article touches Humanities; the corpus does not, through its sources
    assert "K" in letters(mesh_lake, [ctx])[ctx]
    assert (got["K"]["corpus_rows"], got["K"]["ratio"]) == (0, 0.0)
    assert got["K"]["lake_articles"] == 32
    # the written table is the same one
    r = write_coverage(mesh_lake, folder)
    assert (
        r["table"] == table and r["rows"] == 4 and r["out"] == str(tmp_path / "corpus_cpt_coverage")
    )


def test_writes_the_csv_and_the_svg_beside_the_export(mesh_lake, picked, tmp_path):
    (a, b, c), ctx = picked
    folder = write_export(tmp_path / "exports" / "corpus_sft", [(a, [ctx]), (b, [a]), (c, [b])])
    before = sorted(p.name for p in folder.iterdir())
    r = write_coverage(mesh_lake, folder)
    out = tmp_path / "exports" / "corpus_sft_coverage"
    assert (r["csv"], r["plot"]) == (str(out / "coverage.csv"), str(out / "coverage.svg"))
    assert sorted(p.name for p in folder.iterdir()) == before  # the export is left as it was
    with open(out / "coverage.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "category",
        "name",
        "corpus_rows",
        "corpus_row_share",
        "corpus_articles",
        "corpus_article_share",
        "lake_articles",
        "lake_share",
        "ratio",
        "row_ratio",
    ]
    assert [row[0] for row in rows[1:]] == [*"ABCDEFGHIJKLMN", "V", "Z", "none"]
    table = {row["category"]: row for row in r["table"].to_pylist()}
    for row in rows[1:]:
        want = table[row[0]]
        assert int(row[2]) == want["corpus_rows"] and int(row[6]) == want["lake_articles"]
        assert row[8] == ("" if want["ratio"] is None else repr(want["ratio"]))
    assert next(x for x in rows if x[0] == "V")[8] == ""  # no lake article in V
    svg = out / "coverage.svg"
    assert svg.stat().st_size > 0
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    bars = [e for e in root.iter(f"{SVG}rect") if e.find(f"{SVG}title") is not None]
    assert len(bars) == 3 * 16  # three bars per category; the empty `none` row is not drawn
    texts = [e.text for e in root.iter(f"{SVG}text")]
    assert "C  Diseases" in texts and "ratio" in texts and "n/a" in texts
    tips = [b.find(f"{SVG}title").text for b in bars]
    assert "C Diseases: 79.1% (791 lake articles)" in tips
    # a second run replaces the files; another --out is honoured
    other = write_coverage(mesh_lake, folder, tmp_path / "elsewhere")
    assert Path(other["csv"]).read_text() == (out / "coverage.csv").read_text()


def test_sources_missing_from_the_lake_are_left_out_and_counted(mesh_lake, picked, tmp_path):
    (a, b, _), _ = picked
    folder = write_export(tmp_path / "corpus_cpt", [(a, []), (1, []), (b, []), (2, [])])
    r = write_coverage(mesh_lake, folder)
    assert (r["rows"], r["articles"], r["missing_rows"]) == (2, 2, 2)
    assert {x["category"]: x["corpus_rows"] for x in r["table"].to_pylist()}["M"] == sum(
        "M" in cats for cats in letters(mesh_lake, [a, b]).values()
    )
    from mkailin.coverage import describe

    line = describe(r)
    assert line.startswith(
        f"coverage of {folder}: 2 rows from 2 source articles against 1,000 lake articles; "
        "most over-represented "
    )
    assert line.endswith("; 2 rows whose source article is not in the lake")


def test_rows_without_lineage_use_their_pmid(mesh_lake, picked, tmp_path):
    (a, b, _), _ = picked
    folder = tmp_path / "corpus_cpt"
    folder.mkdir()
    (folder / "data.jsonl").write_text(
        json.dumps({"id": "x", "pmid": a}) + "\n\n" + json.dumps({"id": "y", "pmid": b}) + "\n"
    )
    assert write_coverage(mesh_lake, folder)["rows"] == 2


def test_errors(mesh_lake, picked, tmp_path):
    from mkailin.lake import Lake

    (a, _, _), _ = picked
    with pytest.raises(InputError, match=r"^.*nowhere: no data\.jsonl, not an export folder "):
        write_coverage(mesh_lake, tmp_path / "nowhere")
    empty = write_export(tmp_path / "corpus_empty", [])
    with pytest.raises(InputError, match="corpus_empty: the export holds no rows$"):
        write_coverage(mesh_lake, empty)
    bad = tmp_path / "corpus_bad"
    bad.mkdir()
    (bad / "data.jsonl").write_text(json.dumps({"id": "x", "pmid": a}) + "\n{not json\n")
    with pytest.raises(InputError, match=r"data\.jsonl:2: not a corpus row with a source PMID$"):
        write_coverage(mesh_lake, bad)
    folder = write_export(tmp_path / "corpus_cpt", [(a, [])])
    with pytest.raises(InputError, match="inside the export folder"):
        write_coverage(mesh_lake, folder, folder / "report")
    other = write_export(tmp_path / "corpus_other", [(1, []), (2, []), (2, [])])
    with pytest.raises(
        InputError,
        match=r"^none of the export's 2 source articles is in the lake at .*; is it the lake the",
    ):
        write_coverage(mesh_lake, other)
    bare = Lake.init(tmp_path / "bare")
    with pytest.raises(InputError, match="^the lake has no MeSH tree; load one with: mkailin"):
        write_coverage(bare, folder)
    tree_only = Lake.init(tmp_path / "tree_only")
    copy_tables(mesh_lake, tree_only, tables=("mesh_descriptors", "mesh_tree"))
    with pytest.raises(InputError, match="^no article in the lake has a MeSH descriptor in"):
        write_coverage(tree_only, folder)
    assert not (tmp_path / "corpus_cpt_coverage").exists()  # nothing written on an error


# ---------------------------------------------------------------------------- the command
def test_cli_reads_the_newest_export_and_prints_the_table(pqa_lake, picked, runner, tmp_path):
    from mkailin.cli import cli

    (a, b, c), ctx = picked
    exports = pqa_lake.root / "exports"
    write_export(exports / "corpus_cpt", [(a, [ctx])], created="2025-01-01T00:00:00+00:00")
    write_export(exports / "corpus_sft", [(a, [ctx]), (b, []), (c, [])], "2025-02-01T00:00:00")
    r = runner.invoke(cli, ["--lake", str(pqa_lake.root), "report", "coverage"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(
        f"coverage of {exports / 'corpus_sft'}: 3 rows from 3 source articles against 1,000 "
        "lake articles; "
    )
    assert lines[1].split() == [
        "category",
        "name",
        "corpus_rows",
        "corpus_article_share",
        "lake_share",
        "ratio",
    ]
    assert lines[5].split()[:2] == ["C", "Diseases"]
    assert lines[-2] == "(17 rows)"
    assert lines[-1] == f"wrote coverage.csv and coverage.svg to {exports / 'corpus_sft_coverage'}"
    assert (exports / "corpus_sft_coverage" / "coverage.svg").stat().st_size > 0
    # --export and --out
    out = tmp_path / "report"
    r = runner.invoke(
        cli,
        [
            "--lake",
            str(pqa_lake.root),
            "report",
            "coverage",
            "--export",
            str(exports / "corpus_cpt"),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith(
        f"coverage of {exports / 'corpus_cpt'}: 1 row from 1 source article against"
    )
    assert (out / "coverage.csv").read_text().count("\n") == 18


def test_cli_errors_are_one_line(pqa_lake, runner, tmp_path):
    from mkailin.cli import cli

    lake = ["--lake", str(pqa_lake.root)]
    r = runner.invoke(cli, [*lake, "report", "coverage"])
    assert r.exit_code == 1
    assert r.output == (
        f"Error: no export in {pqa_lake.root / 'exports'}; write one with `mkailin export cpt` "
        "or name one with --export\n"
    )
    empty = write_export(tmp_path / "corpus_sft", [])
    r = runner.invoke(cli, [*lake, "report", "coverage", "--export", str(empty)])
    assert (r.exit_code, r.output) == (1, f"Error: {empty}: the export holds no rows\n")
    folder = write_export(tmp_path / "corpus_cpt", [(1, [])])
    r = runner.invoke(cli, ["--lake", str(tmp_path / "bare"), "init"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["--lake", str(tmp_path / "bare"), "report", "coverage", "--export", str(folder)]
    )
    assert (r.exit_code, r.output) == (
        1,
        "Error: the lake has no MeSH tree; load one with: mkailin ingest mesh MeshTreeYYYY.tsv\n",
    )


def test_a_real_export(mesh_lake, tmp_path):
    """``mkailin export cpt`` on PubMedQA training articles with hand-made questions and
    contexts, then the coverage of what it wrote."""
    from mkailin.config import Config
    from mkailin.export import export
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake)
    docs = lake.query(
        "select pmid, question from pubmedqa where split = 'train' order by pmid limit 10"
    )
    qs, ctx = [], []
    for pmid, q in docs[:6]:
        qid = f"final-{pmid}"
        qs.append({"question_id": qid, "pmid": pmid, "agent": "final", "model": "m", "question": q})
        for r in range(1, 5):
            ctx.append(
                {
                    "question_id": qid,
                    "rank": r,
                    "pmid": docs[5 + r][0],
                    "score": 1.0 / r,
                    "retriever": "dense:minilm",
                }
            )
    lake.write_part("questions", pa.Table.from_pylist(qs))
    lake.write_part("contexts", pa.Table.from_pylist(ctx))
    done = export(lake, Config(), "cpt")
    r = write_coverage(lake, done["path"])
    assert (r["rows"], r["articles"], r["missing_rows"]) == (6, 6, 0)
    assert r["out"] == str(tmp_path / "lake" / "exports" / "corpus_cpt_coverage")
    cats = letters(lake, [p for p, _ in docs[:6]])
    for row in r["table"].to_pylist():
        if row["category"] != "none":
            n = sum(row["category"] in c for c in cats.values())
            assert (row["corpus_rows"], row["corpus_articles"]) == (n, n), row["category"]
    from mkailin.export import verify_export

    assert verify_export(done["path"])[1] == []  # the report left the export as it was
