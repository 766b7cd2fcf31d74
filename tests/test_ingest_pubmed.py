"""PubMed XML ingest: parsing, update rules, idempotence, parallel files, and every bad input."""

from __future__ import annotations

import gzip
import shutil

import pytest

from mkailin.errors import InputError
from mkailin.ingest.common import file_key
from mkailin.ingest.pubmed import ingest_file, ingest_pubmed

from conftest import FIXTURES, shared

SMALL = FIXTURES / "pubmed_small.xml"
UPDATE = FIXTURES / "pubmed_update.xml"


def articles(lake):
    return {
        r[0]: r[1:]
        for r in lake.query(
            "select pmid, title, abstract, journal, pub_year, language, version, source_file "
            "from articles order by pmid"
        )
    }


def test_parses_fields_sections_dates_and_mesh(lake):
    s = ingest_pubmed(lake, [SMALL], progress=False)
    assert (s.read, s.written, s.quarantined, s.errors) == (3, 3, 0, [])
    a = articles(lake)
    title, abstract, journal, year, lang, version, src = a[100001]
    assert title == "Inhaled corticosteroids in mild asthma."  # inline markup flattened
    assert abstract == (
        "BACKGROUND: Asthma is common; β2-agonists relieve symptoms.\n"
        "RESULTS: Exacerbations fell by 30% (P < 0.01)."
    )
    assert (journal, year, lang, version, src) == (
        "Journal of fixture medicine",
        2011,
        "eng",
        1,
        "pubmed_small.xml",
    )
    # MedlineDate gives the first year; a record with no abstract is kept with NULL
    assert a[100002][1] is None and a[100002][3] == 1998 and a[100002][4] == "fre"
    assert a[100003][1] == "Mitochondria move along transvacuolar strands."
    mesh = lake.query(
        "select pmid, descriptor_ui, descriptor_name, major_topic, qualifiers "
        "from article_mesh order by pmid, descriptor_ui"
    )
    assert mesh == [
        (100001, "D001249", "Asthma", True, ["drug therapy"]),  # starred qualifier -> major
        (100001, "D006801", "Humans", False, []),
        (100002, "D009369", "Neoplasms", True, []),
    ]
    assert s.extra["no abstract"] == 1


def test_update_file_replaces_and_deletes(lake):
    ingest_pubmed(lake, [SMALL], progress=False)
    s = ingest_pubmed(lake, [UPDATE], progress=False)
    assert s.extra["deletions"] == 1
    a = articles(lake)
    assert sorted(a) == [100001, 100002]  # 100003 deleted by DeleteCitation
    assert a[100001][0] == "Inhaled corticosteroids in mild asthma (revised)."
    # the MeSH of the replaced version are gone with it
    assert lake.query(
        "select descriptor_ui, major_topic from article_mesh where pmid = 100001"
    ) == [("D001249", True)]


def test_ingesting_the_same_file_twice_changes_nothing(lake):
    ingest_pubmed(lake, [SMALL, UPDATE], progress=False)
    before = lake.query("select * from article_records order by ingest_seq, pmid")
    s = ingest_pubmed(lake, [SMALL, UPDATE], progress=False)
    assert s.files == 0 and s.skipped_files == 2 and s.written == 0
    assert lake.query("select * from article_records order by ingest_seq, pmid") == before


def test_files_in_one_call_apply_in_name_order_across_processes(lake, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(SMALL, d / "pubmed25n0001.xml")
    with gzip.open(d / "pubmed25n0002.xml.gz", "wb") as f:
        f.write(UPDATE.read_bytes())
    s = ingest_pubmed(lake, [d], jobs=2, progress=False)
    assert s.extra["processes"] == 2 and s.files == 2
    assert sorted(articles(lake)) == [100001, 100002]


def test_chunked_parts_hold_every_record_once(lake):
    ingest_pubmed(lake, [SMALL], progress=False, chunk_rows=1)
    assert len(lake.parts("article_records")) >= 3
    assert lake.query("select count(*), count(distinct pmid) from article_records") == [(3, 3)]


def test_parts_of_a_killed_run_are_never_seen_and_are_swept(lake):
    # a worker that parsed the file and wrote its parts, then a kill before the commit
    stats = ingest_file(str(lake.root), str(SMALL), file_key(SMALL), 1)
    staged = [lake.root / part.path for _, part in stats["parts"]]
    assert staged and all(p.exists() for p in staged)
    assert lake.count("article_records") == 0  # staged parts are not in the table
    s = ingest_pubmed(lake, [SMALL], progress=False)
    assert s.files == 1
    assert lake.query("select count(*) from article_records") == [(3,)]
    assert not any(p.exists() for p in staged)  # the next writer swept them


def test_real_records(lake):
    d = shared("pubmed")
    s = ingest_pubmed(lake, [d], progress=False)
    assert s.read == 2 and s.errors == []
    a = articles(lake)
    assert a[29768149][0] == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma."
    assert a[29768149][2] == "The New England journal of medicine" and a[29768149][3] == 2018
    assert a[29768149][1].startswith("BACKGROUND: In patients with mild asthma")
    assert "\nCONCLUSIONS: " in a[29768149][1]
    assert a[20000000][3] == 2009
    counts = dict(lake.query("select pmid, count(*) from article_mesh group by 1"))
    assert counts == {20000000: 7, 29768149: 23}


# ---------------------------------------------------------------------------- bad input
def _records_kept(lake):
    return [r[0] for r in lake.query("select pmid from articles order by pmid")]


def _many_records(n: int) -> bytes:
    """``n`` records in the fixture's format, PMIDs 1..n, with varied text (so gzip can't
    squeeze them to nothing)."""
    text = SMALL.read_text()
    head, rest = text.split("<PubmedArticle>", 1)
    record = "<PubmedArticle>" + rest.split("</PubmedArticle>", 1)[0] + "</PubmedArticle>\n"
    body = "".join(
        record.replace("100001", str(i)).replace("mild asthma", f"asthma {i * 7919}")
        for i in range(1, n + 1)
    )
    return (head + body + "</PubmedArticleSet>\n").encode()


def test_truncated_gzip_keeps_complete_records_and_quarantines_the_rest(lake, tmp_path):
    data = gzip.compress(_many_records(400))
    bad = tmp_path / "trunc.xml.gz"
    bad.write_bytes(data[: len(data) // 2])
    s = ingest_pubmed(lake, [bad], progress=False)
    assert len(s.errors) == 1
    assert s.errors[0].startswith(f"{bad}: truncated or corrupt gzip")
    kept = _records_kept(lake)
    # every complete record before the cut is kept, in order, with no gaps
    assert 100 < len(kept) < 400 and kept == list(range(1, len(kept) + 1))
    q = lake.query("select record_key, error, action from quarantine order by action")
    assert q[0] == (
        f"trunc.xml.gz#{len(kept) + 1}",
        f"record {len(kept) + 1}: truncated at end of file (truncated or corrupt gzip "
        "(Compressed file ended before the end-of-stream marker was reached))",
        "dropped",
    )
    assert q[1][0] == "trunc.xml.gz" and q[1][2] == "resynced"
    assert lake.query("select status from ingested_files") == [("partial",)]


def test_malformed_xml_mid_file_keeps_good_records_before_and_after(lake, tmp_path):
    text = SMALL.read_text()
    # break the second record: an unclosed element inside it
    broken = text.replace(
        "<ArticleTitle>A letter without an abstract.</ArticleTitle>",
        "<ArticleTitle>A letter <b>without an abstract.</ArticleTitle>",
    )
    bad = tmp_path / "malformed.xml"
    bad.write_text(broken)
    s = ingest_pubmed(lake, [bad], progress=False)
    assert _records_kept(lake) == [100001, 100003]
    assert "malformed XML at line" in s.errors[0]
    q = lake.query(
        "select record_key, error, action, raw_excerpt from quarantine where action = 'dropped'"
    )
    assert len(q) == 1
    key, error, action, excerpt = q[0]
    assert key == "malformed.xml#2" and error.startswith("record 2: malformed XML")
    assert "100002" in excerpt


def test_record_without_pmid_is_quarantined(lake, tmp_path):
    bad = tmp_path / "nopmid.xml"
    bad.write_text(SMALL.read_text().replace('<PMID Version="1">100002</PMID>', ""))
    s = ingest_pubmed(lake, [bad], progress=False)
    assert s.errors == [] and s.quarantined == 1
    assert _records_kept(lake) == [100001, 100003]
    assert lake.query("select record_key, error from quarantine") == [
        ("nopmid.xml#2", "record has no PMID")
    ]


def test_non_utf8_bytes_are_repaired_and_kept(lake, tmp_path):
    bad = tmp_path / "latin1.xml"
    bad.write_bytes(
        SMALL.read_bytes().replace(b"Unlabelled abstract.", b"Unlabelled \xe9t\xe9 abstract.")
    )
    s = ingest_pubmed(lake, [bad], progress=False)
    assert _records_kept(lake) == [100001, 100002, 100003]
    assert lake.query("select title from articles where pmid = 100003") == [
        ("Unlabelled \ufffdt\ufffd abstract.",)
    ]
    assert s.extra["repaired records"] == 1
    assert lake.query("select record_key, action from quarantine where action = 'repaired'") == [
        ("latin1.xml#3", "repaired")
    ]


def test_empty_file_and_missing_path_are_errors(lake, tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.xml: empty file"):
        ingest_pubmed(lake, [empty], progress=False)
    with pytest.raises(InputError, match=r"nope\.xml: no such file"):
        ingest_pubmed(lake, [tmp_path / "nope.xml"], progress=False)
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="folder holds no .xml or .xml.gz files"):
        ingest_pubmed(lake, [tmp_path / "sub"], progress=False)


def test_wrong_root_element_is_an_error(lake):
    with pytest.raises(
        InputError, match=r"not a PubMed XML file \(root element <DescriptorRecordSet>"
    ):
        ingest_pubmed(lake, [FIXTURES / "desc_small.xml"], progress=False)


def test_cli_reports_summary_and_faults(cli_lake, tmp_path):
    r = cli_lake("ingest", "pubmed", str(SMALL))
    assert r.exit_code == 0, r.output
    assert "pubmed: 1 file(s) ingested, 0 already in the lake" in r.output
    assert "rows read 3, written 3, quarantined 0" in r.output
    data = gzip.compress(SMALL.read_bytes())
    bad = tmp_path / "trunc.xml.gz"
    bad.write_bytes(data[: len(data) // 2])
    r = cli_lake("ingest", "pubmed", str(bad))
    assert r.exit_code == 1
    assert (
        "Error: 1 file(s) had faults; good records were kept and the rest quarantined" in r.output
    )
    r = cli_lake("ingest", "pubmed", str(tmp_path / "missing.xml"))
    assert r.exit_code == 1
    assert f"Error: {tmp_path / 'missing.xml'}: no such file" in r.output


def test_a_file_that_fails_leaves_nothing_and_the_others_land(lake, tmp_path, monkeypatch):
    """One file's worker raising (a bug, a broken disk sector) costs that file only: the others
    commit with their ledger rows, the failed one has no row anywhere and is ingested again
    next time, and no file_seq is reused."""
    import mkailin.ingest.pubmed as pubmed

    files = []
    for i in range(3):
        f = tmp_path / f"p{i}.xml"
        f.write_text(SMALL.read_text().replace('<PMID Version="1">', f'<PMID Version="1">{i + 1}'))
        files.append(f)
    real = pubmed.ingest_file

    def flaky(root, path, key, seq, chunk_rows=pubmed.CHUNK_ROWS):
        if path.endswith("p1.xml"):
            raise RuntimeError("simulated worker failure")
        return real(root, path, key, seq, chunk_rows)

    monkeypatch.setattr(pubmed, "ingest_file", flaky)
    s = ingest_pubmed(lake, files, jobs=1, progress=False)
    assert s.files == 2 and len(s.errors) == 1 and "p1.xml: RuntimeError" in s.errors[0]
    assert lake.query("select count(*) from article_records") == [(6,)]
    ledger = lake.query("select path, file_seq from ingested_files order by file_seq")
    assert [p.rsplit("/", 1)[1] for p, _ in ledger] == ["p0.xml", "p2.xml"]
    monkeypatch.setattr(pubmed, "ingest_file", real)
    s = ingest_pubmed(lake, files, jobs=1, progress=False)
    assert (s.files, s.skipped_files) == (1, 2)
    seqs = [q for (q,) in lake.query("select file_seq from ingested_files")]
    assert len(seqs) == len(set(seqs)) == 3
    assert lake.query("select count(*) from article_records") == [(9,)]
