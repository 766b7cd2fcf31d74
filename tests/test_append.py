"""A lake that keeps every row: a second PubMedQA or BioASQ file adds its rows (a key seen again
replaces only its own row, a test-split row stays test, ``--replace`` is the only way to swap a
data set), and every PMID (PubMed XML, PubMedQA keys, BioASQ documents) is ASCII digits from 1
to 2**63-1, anything else a quarantine row while the rest of the file goes in.

Each test drives the CLI and then reopens the lake to check its rows."""

from __future__ import annotations

import json

import pytest

from mkailin.cli import cli
from mkailin.ingest.common import PMID_MAX, parse_pmid, pmid_problem
from mkailin.lake import Lake

from conftest import shared

TEST_PMID = 21645374  # in the PQA-L test split (test_ground_truth.json)


@pytest.fixture
def run(tmp_path, runner):
    """``run("ingest", ...)`` against one lake: the click Result, never a traceback."""
    path = tmp_path / "lake"

    def invoke(*args):
        r = runner.invoke(cli, ["--lake", str(path), *args])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
        return r

    invoke.lake = lambda: Lake.open(path)
    return invoke


def _write_json(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _qa(question: str, year: str = "2001") -> dict:
    return {"QUESTION": question, "CONTEXTS": [f"context of {question}"], "YEAR": year}


def _splits(lake) -> dict[str, int]:
    return dict(lake.query("select split, count(*) from pubmedqa group by 1"))


# ============================================================================ case 1: adding
def test_a_second_pubmedqa_file_adds_its_rows_to_the_real_pqal(run, tmp_path):
    pqal = shared("pubmedqa", "ori_pqal.json")
    gt = shared("pubmedqa", "test_ground_truth.json")
    r = run("ingest", "pubmedqa", str(pqal), "--ground-truth", str(gt))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "pubmedqa: 1,000 rows added, 0 replaced, 0 kept (1,000 rows, 500 in the test split)"
    )
    other = _write_json(tmp_path / "other.json", {"1": _qa("one?"), "2": _qa("two?")})
    r = run("ingest", "pubmedqa", other, "--split", "pqa-a")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "pubmedqa: 2 rows added, 0 replaced, 1,000 kept (1,002 rows, 500 in the test split)"
    )
    lake = run.lake()
    assert _splits(lake) == {"test": 500, "train": 500, "pqa-a": 2}
    assert lake.query("select split from pubmedqa where pmid = ?", [TEST_PMID]) == [("test",)]
    # the articles PubMedQA writes are appended the same way: the first file's are all there
    assert lake.count("articles") == 1002
    assert lake.query("select source_file, count(*) from articles group by 1 order by 1") == [
        ("ori_pqal.json", 1000),
        ("other.json", 2),
    ]


def test_a_pmid_seen_again_replaces_only_its_row_and_a_test_row_stays_test(run, tmp_path):
    first = {"10": _qa("ten?"), "11": _qa("eleven?"), "12": _qa("twelve?")}
    r = run(
        "ingest",
        "pubmedqa",
        _write_json(tmp_path / "a.json", first),
        "--ground-truth",
        _write_json(tmp_path / "gt.json", {"10": "yes"}),
    )
    assert r.exit_code == 0, r.output
    # a later file with the test PMID 10 (as pqa-a, no ground truth) and a new PMID 13
    later = _write_json(tmp_path / "b.json", {"10": _qa("ten, v2?"), "13": _qa("thirteen?")})
    r = run("ingest", "pubmedqa", later, "--split", "pqa-a")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "pubmedqa: 1 row added, 1 replaced, 2 kept (4 rows, 1 in the test split)"
    )
    lake = run.lake()
    assert lake.query("select pmid, question, split from pubmedqa order by pmid") == [
        (10, "ten, v2?", "test"),
        (11, "eleven?", "train"),
        (12, "twelve?", "train"),
        (13, "thirteen?", "pqa-a"),
    ]
    # the article of PMID 10 is the later file's, the earlier one's is kept as a version
    assert lake.query("select source_file from articles where pmid = 10") == [("b.json",)]
    assert lake.query("select count(*) from article_records where pmid = 10") == [(2,)]
    # the first file again, without its ground truth: nothing leaves the test split
    r = run("ingest", "pubmedqa", str(tmp_path / "a.json"))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "pubmedqa: 0 rows added, 3 replaced, 1 kept (4 rows, 1 in the test split)"
    )
    assert "0 file(s) ingested, 1 already in the lake" in r.output
    assert run.lake().query("select pmid, question, split from pubmedqa where pmid = 10") == [
        (10, "ten?", "test")
    ]
    assert run.lake().count("article_records") == 5  # the same file's articles are not doubled


def test_replace_swaps_the_data_set_and_is_the_only_way_to_drop_the_test_split(run, tmp_path):
    a = _write_json(tmp_path / "a.json", {"10": _qa("ten?"), "11": _qa("eleven?")})
    gt = _write_json(tmp_path / "gt.json", {"10": "yes"})
    assert run("ingest", "pubmedqa", a, "--ground-truth", gt).exit_code == 0
    b = _write_json(tmp_path / "b.json", {"11": _qa("eleven, v2?"), "20": _qa("twenty?")})
    r = run("ingest", "pubmedqa", b, "--replace")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "pubmedqa: replaced: 2 rows now (0 in the test split); 2 rows before (1 in the test "
        "split), 1 removed, 1 left the test split"
    )
    lake = run.lake()
    assert lake.query("select pmid, question, split from pubmedqa order by pmid") == [
        (11, "eleven, v2?", "train"),
        (20, "twenty?", "train"),
    ]
    # --replace replaces the data set, not the articles: those stay append-only
    assert lake.query("select pmid from articles order by pmid") == [(10,), (11,), (20,)]


def test_ingest_pubmedqa_help_names_replace(run):
    r = run("ingest", "pubmedqa", "--help")
    assert "--replace" in r.output and "test split" in r.output
    r = run("ingest", "bioasq", "--help")
    assert "--replace" in r.output


def _bioasq(*questions) -> dict:
    return {
        "questions": [
            {
                "id": qid,
                "body": body,
                "type": "factoid",
                "documents": [f"http://www.ncbi.nlm.nih.gov/pubmed/{p}" for p in pmids],
            }
            for qid, body, pmids in questions
        ]
    }


def test_a_second_bioasq_file_adds_and_an_id_seen_again_replaces_only_its_row(run, tmp_path):
    a = _write_json(tmp_path / "a.json", _bioasq(("q1", "One?", [1]), ("q2", "Two?", [2])))
    r = run("ingest", "bioasq", a)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "bioasq: 2 questions added, 0 replaced, 0 kept (2 questions)"
    b = _write_json(tmp_path / "b.json", _bioasq(("q2", "Two, v2?", [22]), ("q3", "Three?", [3])))
    r = run("ingest", "bioasq", b)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "bioasq: 1 question added, 1 replaced, 1 kept (3 questions)"
    assert run.lake().query("select qa_id, question, pmids from seed_qa order by qa_id") == [
        ("q1", "One?", [1]),
        ("q2", "Two, v2?", [22]),
        ("q3", "Three?", [3]),
    ]
    r = run("ingest", "bioasq", a)  # a file already in the lake changes nothing
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "bioasq: a.json is already in the lake: 0 questions added, 0 replaced, 3 kept (3 questions)"
    )
    assert run.lake().count("seed_qa") == 3
    r = run("ingest", "bioasq", a, "--replace")  # ... unless it replaces the data set
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "bioasq: replaced: 2 questions now; 3 before, 1 of them removed"
    )
    assert run.lake().query("select qa_id, question from seed_qa order by qa_id") == [
        ("q1", "One?"),
        ("q2", "Two?"),
    ]


def test_a_bioasq_id_repeated_in_one_file_keeps_the_last(run, tmp_path):
    f = _write_json(tmp_path / "a.json", _bioasq(("q1", "First?", [1]), ("q1", "Last?", [2])))
    r = run("ingest", "bioasq", f)
    assert r.exit_code == 0, r.output
    lake = run.lake()
    assert lake.query("select qa_id, question from seed_qa") == [("q1", "Last?")]
    assert lake.query("select action from quarantine") == [("superseded",)]


# ============================================================================ case 2: PMIDs
# (the text, why it is no PMID)
BAD_PMIDS = [
    ("\u0663\u0664\u0665", "bad PMID '٣٤٥': not ASCII digits 0-9"),  # Arabic-Indic 345
    ("\u00b2", "bad PMID '²': not ASCII digits 0-9"),  # superscript two: int() raises
    ("\uff11\uff12", "bad PMID '１２': not ASCII digits 0-9"),  # fullwidth 12
    (str(2**63), f"bad PMID '{2**63}': out of range 1..{PMID_MAX}"),
    ("9" * 30, f"bad PMID '{'9' * 30}': out of range 1..{PMID_MAX}"),
    ("0", f"bad PMID '0': out of range 1..{PMID_MAX}"),
    ("-5", "bad PMID '-5'"),
    ("+5", "bad PMID '+5'"),
    ("1_000", "bad PMID '1_000'"),
    ("12a", "bad PMID '12a'"),
]


def test_pmid_check():
    assert parse_pmid("345") == 345 and parse_pmid(str(PMID_MAX)) == PMID_MAX
    assert parse_pmid("000123") == 123
    assert parse_pmid("0" * 5000 + "7") == 7  # leading zeros never reach int's digit limit
    assert pmid_problem("") == "no PMID"
    assert pmid_problem("9" * 5000).endswith(f"out of range 1..{PMID_MAX}")
    for text, why in BAD_PMIDS:
        assert pmid_problem(text) == why
        with pytest.raises(ValueError, match="bad PMID"):
            parse_pmid(text)


# the shape of a PubMed record, after /work/shared/data/pubmed/*.xml (DTD 2019)
RECORD = """<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="{version}">{pmid}</PMID>
    <DateCompleted><Year>2018</Year><Month>06</Month><Day>01</Day></DateCompleted>
    <Article PubModel="Print">
      <Journal>
        <ISSN IssnType="Electronic">1533-4406</ISSN>
        <JournalIssue CitedMedium="Internet">
          <Volume>378</Volume><Issue>20</Issue>
          <PubDate><Year>2018</Year><Month>05</Month><Day>17</Day></PubDate>
        </JournalIssue>
        <Title>The New England journal of medicine</Title>
      </Journal>
      <ArticleTitle>{title}</ArticleTitle>
      <Abstract><AbstractText Label="BACKGROUND">Abstract of {title}</AbstractText></Abstract>
      <AuthorList CompleteYN="Y"><Author ValidYN="Y"><LastName>Doe</LastName></Author></AuthorList>
      <Language>eng</Language>
    </Article>
    <MeshHeadingList>
      <MeshHeading><DescriptorName UI="D006801" MajorTopicYN="N">Humans</DescriptorName></MeshHeading>
    </MeshHeadingList>
    <CommentsCorrectionsList>
      <CommentsCorrections RefType="CommentIn"><PMID Version="1">29768146</PMID></CommentsCorrections>
    </CommentsCorrectionsList>
  </MedlineCitation>
  <PubmedData>
    <ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList>
  </PubmedData>
</PubmedArticle>
"""


def _pubmed_xml(path, records, deletions=()) -> str:
    body = "".join(
        RECORD.format(pmid=pmid, title=title, version=version)
        for pmid, title, version in ((r + ("1",))[:3] for r in records)
    )
    if deletions:
        body += "<DeleteCitation>\n"
        body += "".join(f'  <PMID Version="1">{p}</PMID>\n' for p in deletions)
        body += "</DeleteCitation>\n"
    path.write_text(
        '<?xml version="1.0" ?>\n'
        '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2019//EN" '
        '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">\n'
        f"<PubmedArticleSet>\n{body}</PubmedArticleSet>\n",
        encoding="utf-8",
    )
    return str(path)


def test_bad_pmids_in_pubmed_xml_are_quarantined_and_the_rest_goes_in(run, tmp_path):
    real = _pubmed_xml(tmp_path / "real.xml", [("345", "Real 345"), ("2", "Real 2")])
    assert run("ingest", "pubmed", real).exit_code == 0
    # each bad form between two good records: record 2k+1 is good, record 2k+2 is bad
    records = [("1000", "Good 0")]
    for k, (text, _) in enumerate(BAD_PMIDS, start=1):
        records += [(text, f"Impostor {k}"), (str(1000 + k), f"Good {k}")]
    r = run("ingest", "pubmed", _pubmed_xml(tmp_path / "bad.xml", records))
    assert r.exit_code == 0, r.output
    n = len(BAD_PMIDS)
    assert f"rows read {2 * n + 1}, written {n + 1}, quarantined {n}" in r.output
    assert "quarantined records: mkailin sql" in r.output
    lake = run.lake()
    assert lake.query("select pmid, title from articles order by pmid") == [
        (2, "Real 2"),
        (345, "Real 345"),
        *[(1000 + k, f"Good {k}") for k in range(n + 1)],
    ]
    assert sorted(
        lake.query("select file, record_key, error, action from quarantine"),
        key=lambda q: int(q[1].split("#")[1]),
    ) == [
        (str(tmp_path / "bad.xml"), f"bad.xml#{2 * k}", why, "dropped")
        for k, (_, why) in enumerate(BAD_PMIDS, start=1)
    ]


def test_the_largest_pmid_is_kept_and_a_bad_version_is_no_traceback(run, tmp_path):
    f = _pubmed_xml(tmp_path / "edge.xml", [(str(PMID_MAX), "Max", "\u00b2"), ("7", "Seven")])
    r = run("ingest", "pubmed", f)
    assert r.exit_code == 0, r.output
    assert run.lake().query("select pmid, version from articles order by pmid") == [
        (7, 1),
        (PMID_MAX, 1),
    ]


def test_a_bad_pmid_in_a_deletion_deletes_nothing_and_is_quarantined(run, tmp_path):
    real = _pubmed_xml(tmp_path / "real.xml", [("345", "Real 345"), ("346", "Real 346")])
    assert run("ingest", "pubmed", real).exit_code == 0
    upd = _pubmed_xml(tmp_path / "upd.xml", [("1001", "New")], deletions=["٣٤٥", "346", "²"])
    r = run("ingest", "pubmed", upd)
    assert r.exit_code == 0, r.output
    lake = run.lake()
    assert lake.query("select pmid from articles order by pmid") == [(345,), (1001,)]
    assert lake.query("select record_key, error from quarantine order by error") == [
        (
            "upd.xml#2",
            "DeleteCitation: bad PMID '²': not ASCII digits 0-9; this deletion is skipped",
        ),
        (
            "upd.xml#2",
            "DeleteCitation: bad PMID '٣٤٥': not ASCII digits 0-9; this deletion is skipped",
        ),
    ]


def test_a_parallel_ingest_with_bad_pmids_lands_every_good_record(run, tmp_path):
    d = tmp_path / "baseline"
    d.mkdir()
    _pubmed_xml(d / "p1.xml", [("101", "a"), ("102", "b")])
    _pubmed_xml(d / "p2.xml", [("201", "c"), ("\u00b2", "superscript"), ("202", "d")])
    _pubmed_xml(d / "p3.xml", [(str(2**64), "too big"), ("301", "e")])
    _pubmed_xml(d / "p4.xml", [("401", "f")])
    r = run("ingest", "pubmed", str(d), "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert r.output.splitlines()[0] == "pubmed: 4 file(s) ingested, 0 already in the lake"
    assert "rows read 8, written 6, quarantined 2" in r.output
    assert "quarantined records: mkailin sql" in r.output
    lake = run.lake()
    assert [p for (p,) in lake.query("select pmid from articles order by pmid")] == [
        101,
        102,
        201,
        202,
        301,
        401,
    ]
    assert lake.query("select record_key, error from quarantine order by record_key") == [
        ("p2.xml#2", "bad PMID '²': not ASCII digits 0-9"),
        ("p3.xml#1", f"bad PMID '{2**64}': out of range 1..{PMID_MAX}"),
    ]
    assert lake.query("select status, count(*) from ingested_files group by 1") == [("complete", 4)]


def test_bad_pubmedqa_keys_are_quarantined_and_the_rest_goes_in(run, tmp_path):
    items = {"345": _qa("real?")}
    items.update({text: _qa(f"impostor {text}?") for text, _ in BAD_PMIDS})
    items["346"] = _qa("also real?")
    f = _write_json(tmp_path / "pq.json", items)
    r = run("ingest", "pubmedqa", str(f))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "pubmedqa: 2 rows added, 0 replaced, 0 kept (2 rows, 0 in the test split)"
    )
    lake = run.lake()
    assert lake.query("select pmid, question from pubmedqa order by pmid") == [
        (345, "real?"),
        (346, "also real?"),
    ]
    assert sorted(lake.query("select file, record_key, error from quarantine")) == sorted(
        (str(tmp_path / "pq.json"), text, why) for text, why in BAD_PMIDS
    )


def test_two_keys_of_one_pmid_keep_the_later(run, tmp_path):
    f = _write_json(tmp_path / "pq.json", {"0345": _qa("first?"), "345": _qa("later?")})
    r = run("ingest", "pubmedqa", f)
    assert r.exit_code == 0, r.output
    lake = run.lake()
    assert lake.query("select pmid, question from pubmedqa") == [(345, "later?")]
    assert lake.query("select record_key, action from quarantine") == [("345", "superseded")]
    assert lake.query("select abstract from articles") == [("context of later?",)]


def test_a_bad_ground_truth_key_marks_nothing_and_is_quarantined(run, tmp_path):
    f = _write_json(tmp_path / "pq.json", {"345": _qa("a?"), "346": _qa("b?")})
    gt = _write_json(tmp_path / "gt.json", {"\u0663\u0664\u0665": "yes", "346": "no"})
    r = run("ingest", "pubmedqa", f, "--ground-truth", gt)
    assert r.exit_code == 0, r.output
    lake = run.lake()
    assert lake.query("select pmid, split from pubmedqa order by pmid") == [
        (345, "train"),
        (346, "test"),
    ]
    assert lake.query("select file, record_key, error from quarantine") == [
        (
            str(tmp_path / "gt.json"),
            "٣٤٥",
            "bad PMID '٣٤٥': not ASCII digits 0-9: not marked as test",
        )
    ]


def test_a_file_of_bad_keys_only_says_why_it_has_no_records(run, tmp_path):
    f = _write_json(tmp_path / "pq.json", {"\u00b2": _qa("a?")})
    r = run("ingest", "pubmedqa", f)
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {f}: no PubMedQA records found; 1 record(s) unusable (the first: '²': bad PMID "
        "'²': not ASCII digits 0-9)\n"
    )


def test_bad_bioasq_documents_are_quarantined_and_their_questions_kept(run, tmp_path):
    urls = [f"http://www.ncbi.nlm.nih.gov/pubmed/{text}" for text, _ in BAD_PMIDS]
    questions = [{"id": "fine", "body": "Fine?", "documents": ["12345"]}]
    for k, url in enumerate(urls):  # kept with its good document, or dropped with none left
        good = f"https://pubmed.ncbi.nlm.nih.gov/{345 + k}/"
        questions.append({"id": f"kept{k:02d}", "body": "Kept?", "documents": [url, good]})
        questions.append({"id": f"none{k:02d}", "body": "Dropped?", "documents": [url]})
    f = _write_json(tmp_path / "b.json", {"questions": questions})
    r = run("ingest", "bioasq", f)
    assert r.exit_code == 0, r.output
    n = len(BAD_PMIDS)
    assert r.output.splitlines()[0] == (
        f"bioasq: {n + 1} questions added, 0 replaced, 0 kept ({n + 1} questions)"
    )
    lake = run.lake()
    assert lake.query("select qa_id, pmids from seed_qa order by qa_id") == [
        ("fine", [12345]),
        *[(f"kept{k:02d}", [345 + k]) for k in range(n)],
    ]
    assert lake.query("select file, record_key, error from quarantine order by record_key") == [
        *[
            (
                str(f),
                f"kept{k:02d}",
                f"document {url!r}: {why}: left out of the question, which is kept",
            )
            for k, (url, (_, why)) in enumerate(zip(urls, BAD_PMIDS))
        ],
        *[
            (
                str(f),
                f"none{k:02d}",
                f"no snippets and no usable documents (document {url!r}: {why})",
            )
            for k, (url, (_, why)) in enumerate(zip(urls, BAD_PMIDS))
        ],
    ]
