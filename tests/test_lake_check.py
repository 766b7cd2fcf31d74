"""`mkailin lake verify / repair / compact`, damaged parts, compaction, and faults of the machine
(a full disk, a read-only file system): each ends in one line and loses no row."""

from __future__ import annotations

import errno
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mkailin.cli import cli
from mkailin.lake import Lake

from conftest import FIXTURES

SMALL = FIXTURES / "pubmed_small.xml"


def _run(runner, lake: Lake, *args):
    r = runner.invoke(cli, ["--lake", str(lake.root), *args])
    assert "Traceback" not in r.output, r.output
    return r


@pytest.fixture
def ingested(lake, runner, tmp_path):
    """Three PubMed files ingested, and a few questions."""
    for i in range(3):
        f = tmp_path / f"p{i}.xml"
        f.write_text(SMALL.read_text().replace('<PMID Version="1">', f'<PMID Version="1">{i}'))
    r = _run(
        runner,
        lake,
        "ingest",
        "pubmed",
        str(tmp_path / "p0.xml"),
        str(tmp_path / "p1.xml"),
        str(tmp_path / "p2.xml"),
        "--jobs",
        "1",
    )
    assert r.exit_code == 0, r.output
    lake.write_part("questions", pa.table({"question_id": ["q1", "q2"], "pmid": [1, 2]}))
    return lake


def test_verify_a_whole_lake(ingested, runner):
    r = _run(runner, ingested, "lake", "verify")
    assert r.exit_code == 0, r.output
    assert "all readable and accounted for" in r.output.splitlines()[0]


def test_a_deleted_part_is_found_repaired_and_restored_by_a_re_ingest(ingested, runner, tmp_path):
    n = ingested.count("article_records")
    victim = ingested.parts("article_records")[-1]
    victim.unlink()
    # unrelated tables still answer; the damaged one names the damage
    assert ingested.count("questions") == 2
    with pytest.raises(Exception, match="cannot be read.*mkailin lake verify"):
        ingested.count("article_records")
    r = _run(runner, ingested, "lake", "verify")
    assert r.exit_code == 1 and "damaged: article_records:" in r.output and "is missing" in r.output
    r = _run(runner, ingested, "lake", "repair")
    assert r.exit_code == 0, r.output
    assert "dropped tables/article_records/" in r.output
    assert "restore it with: mkailin ingest pubmed" in r.output
    # re-ingesting the inputs restores the lost file whole, and only it
    r = _run(runner, ingested, "ingest", "pubmed", *sorted(str(p) for p in tmp_path.glob("p*.xml")))
    assert r.exit_code == 0 and "1 file(s) ingested, 2 already in the lake" in r.output, r.output
    assert ingested.count("article_records") == n
    assert _run(runner, ingested, "lake", "verify").exit_code == 0


def test_a_truncated_part_of_a_stage_table_is_named_and_dropped(ingested, runner):
    part = ingested.parts("questions")[-1]
    part.write_bytes(part.read_bytes()[:50])
    assert ingested.count("article_records") > 0  # other tables unaffected
    r = _run(runner, ingested, "lake", "verify")
    assert r.exit_code == 1 and "damaged: questions:" in r.output
    r = _run(runner, ingested, "lake", "repair")
    assert "cannot restore questions's 2 rows: run mkailin generate" in r.output, r.output
    assert ingested.count("questions") == 0
    assert _run(runner, ingested, "lake", "verify").exit_code == 0


def test_many_small_writes_are_compacted_and_lose_nothing(lake, runner):
    for i in range(100):
        lake.write_part("answers", pa.table({"question_id": [f"q{i}"], "answer": ["a"]}))
    assert len(lake.parts("answers")) <= lake.compact_parts + 1  # commits compact on the way
    assert lake.count("answers") == 100
    r = _run(runner, lake, "lake", "compact")
    assert r.exit_code == 0 and "answers:" in r.output, r.output
    assert len(lake.parts("answers")) == 1 and lake.count("answers") == 100
    assert sorted(q for (q,) in lake.query("select question_id from answers")) == sorted(
        f"q{i}" for i in range(100)
    )


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EROFS, "the file system is read-only")],
)
def test_a_full_disk_or_read_only_file_system_is_one_line_and_loses_nothing(
    ingested, runner, tmp_path, monkeypatch, code, words
):
    before = {t: ingested.count(t) for t in ("article_records", "ingested_files", "quarantine")}
    f = tmp_path / "new.xml"
    f.write_text(SMALL.read_text().replace('<PMID Version="1">', '<PMID Version="1">9'))

    def fail(*a, **k):
        raise OSError(code, "simulated", str(a[1]) if len(a) > 1 else None)

    monkeypatch.setattr(pq, "write_table", fail)
    r = _run(runner, ingested, "ingest", "pubmed", str(f), "--jobs", "1")
    monkeypatch.undo()
    assert r.exit_code != 0
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], r.output
    assert {t: ingested.count(t) for t in before} == before
    r = _run(runner, ingested, "ingest", "pubmed", str(f), "--jobs", "1")  # space again: it lands
    assert r.exit_code == 0, r.output
    assert ingested.count("article_records") > before["article_records"]


def test_a_lost_log_loses_no_row_and_init_adopts(ingested, runner):
    n = ingested.count("article_records")
    shutil.rmtree(ingested.log_dir)
    r = runner.invoke(cli, ["init", str(ingested.root)])
    assert r.exit_code == 0 and "adopted" in r.output
    assert Lake.open(ingested.root).count("article_records") >= n


# ------------------------------------------------------------------------------ input limits
_REC = (
    '<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{p}</PMID>'
    "<Article><ArticleTitle>T{p}</ArticleTitle><Abstract><AbstractText>{a}</AbstractText>"
    "</Abstract></Article></MedlineCitation></PubmedArticle>"
)


def test_a_record_past_the_cap_is_left_out_and_the_rest_kept(lake, runner, tmp_path, monkeypatch):
    """A decompression bomb's one huge record (here 3 MB against a 1 MB cap) is quarantined
    without being held whole or parsed; the records around it go in."""
    import gzip

    monkeypatch.setenv("MKAILIN_MAX_RECORD_MB", "1")
    f = tmp_path / "bomb.xml.gz"
    with gzip.open(f, "wt") as g:
        g.write("<PubmedArticleSet>" + _REC.format(p=1, a="ok"))
        g.write(_REC.format(p=2, a="A" * 3_000_000) + _REC.format(p=3, a="fine"))
        g.write("</PubmedArticleSet>")
    r = _run(runner, lake, "ingest", "pubmed", str(f), "--jobs", "1")
    assert r.exit_code == 0, r.output
    assert sorted(p for (p,) in lake.query("select pmid from article_records")) == [1, 3]
    ((key, error),) = lake.query("select record_key, error from quarantine")
    assert key == "bomb.xml.gz#2" and "past the per-record cap of 1 MB" in error


def test_a_file_past_the_cap_stops_there_with_a_fault(lake, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("MKAILIN_MAX_FILE_MB", "1")
    f = tmp_path / "big.xml"
    body = "".join(_REC.format(p=i, a="x" * 2000) for i in range(1, 1001))  # about 2.2 MB
    f.write_text(f"<PubmedArticleSet>{body}</PubmedArticleSet>")
    r = _run(runner, lake, "ingest", "pubmed", str(f), "--jobs", "1")
    assert r.exit_code != 0 and "per-file cap" in r.output, r.output
    kept = lake.count("article_records")
    assert 0 < kept < 1000  # what came before the cap is kept, the ledger says partial
    assert lake.query("select status from ingested_files") == [("partial",)]


def test_an_oversized_mesh_tsv_field_is_quarantined(lake, runner, tmp_path):
    f = tmp_path / "mtrees.tsv"
    f.write_text(
        "Tree Number\tDesc Ui\tTerm\nA01\tD001\tBody Regions\n"
        f"A02\tD002\t{'x' * 200_000}\nA03\tD003\tMusculoskeletal System\n"
    )
    r = _run(runner, lake, "ingest", "mesh", str(f))
    assert r.exit_code == 0, r.output
    assert lake.count("mesh_descriptors") == 2
    ((error,),) = lake.query("select error from quarantine")
    assert "a field of 200,000 characters" in error


def test_deeply_nested_json_is_one_error_line(lake, runner, tmp_path):
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    r = _run(runner, lake, "ingest", "pubmedqa", str(f))
    assert r.exit_code != 0 and r.output.startswith("Error: ") and "nested deeper" in r.output


def test_a_moved_lake_finds_its_adapters(lake, tmp_path):
    import os

    from mkailin.artifacts import artifact_dir, latest
    from mkailin.train import training_run

    with training_run(lake, "train-qg:general", {"general": "m"}, "h", 1) as detail:
        out = artifact_dir(lake, "adapters", detail["run_id"])
        (out / "adapter_config.json").write_text("{}")
        detail.update(adapter=str(out), base_model="m", steps=1)
    (logged,) = lake.query("select detail from runs where stage = 'train-qg:general'")[0]
    assert f'"adapter": "artifacts/adapters/{detail["run_id"]}"' in logged  # relative
    moved = tmp_path / "moved"
    os.rename(lake.root, moved)
    d = latest(Lake.open(moved), "train-qg:general", "m")
    assert d["adapter"] == str(moved / "artifacts" / "adapters" / detail["run_id"])
