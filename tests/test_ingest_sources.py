"""MeSH, PubMedQA and BioASQ ingest, fetch from a loopback mirror, and the demo on real data."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import threading

import pytest

from mkailin.errors import DownloadError, InputError
from mkailin.ingest.bioasq import ingest_bioasq
from mkailin.ingest.fetch import fetch
from mkailin.ingest.mesh import ingest_mesh
from mkailin.ingest.pubmedqa import ingest_pubmedqa

from conftest import FIXTURES, shared

# ---------------------------------------------------------------------------- MeSH


def test_mesh_tree_2017_counts(lake):
    s = ingest_mesh(lake, [shared("mesh", "MeshTree2017.tsv")])
    assert s.extra["descriptors"] == 28_470
    assert s.extra["tree numbers"] == 57_840
    assert lake.count("mesh_descriptors") == 28_470
    assert lake.count("mesh_tree") == 57_840
    assert lake.query(
        "select tree_number, descriptor_ui, parent_tree_number, depth, category from mesh_tree "
        "where tree_number = 'A01.236.249'"
    ) == [("A01.236.249", "D042361", "A01.236", 3, "A")]
    # a descriptor with several tree numbers keeps them all
    assert lake.query("select len(tree_numbers) from mesh_descriptors where name = 'Asthma'") == [
        (4,)
    ]


def test_mesh_descriptor_xml_fixture(lake):
    s = ingest_mesh(lake, [FIXTURES / "desc_small.xml"])
    assert s.extra == {"descriptors": 3, "tree numbers": 5, "descriptors without a tree number": 1}
    rows = lake.query(
        "select descriptor_ui, name, tree_numbers, entry_terms from mesh_descriptors order by 1"
    )
    assert rows == [
        (
            "D001249",
            "Asthma",
            ["C08.127.108", "C08.381.495.108", "C08.674.095", "C20.543.480.680.095"],
            ["Asthma, Bronchial"],
        ),
        ("D005260", "Female", [], []),
        ("D012140", "Respiratory Tract Diseases", ["C08"], []),
    ]
    # entry terms resolve names too
    assert lake.query(
        "select descriptor_ui from mesh_names where name_lc = 'asthma, bronchial'"
    ) == [("D001249",)]


def test_mesh_gzip_and_reingest_replaces(lake, tmp_path):
    gz = tmp_path / "desc2017.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "desc_small.xml").read_bytes()))
    ingest_mesh(lake, [gz])
    ingest_mesh(lake, [gz])
    assert lake.count("mesh_descriptors") == 3


def test_mesh_wrong_format_and_encoding(lake, tmp_path):
    with pytest.raises(InputError, match="not a MeSH file: XML without <DescriptorRecordSet>"):
        ingest_mesh(lake, [FIXTURES / "pubmed_small.xml"])
    csv = tmp_path / "tree.csv"
    csv.write_text("tree,ui,term\nA01,D001829,Body Regions\n")
    with pytest.raises(InputError, match=r"tree\.csv: not a MeSH file: expected the header"):
        ingest_mesh(lake, [csv])
    latin = tmp_path / "latin1.tsv"
    latin.write_bytes(
        "Tree Number\tDesc Ui\tTerm\nA01\tD001829\tBody R\xe9gions\n".encode("latin-1")
    )
    with pytest.raises(InputError, match=r"latin1\.tsv: line 2: not UTF-8"):
        ingest_mesh(lake, [latin])
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        ingest_mesh(lake, [empty])


def test_mesh_bad_rows_are_quarantined(lake, tmp_path):
    tsv = tmp_path / "tree.tsv"
    tsv.write_text("Tree Number\tDesc Ui\tTerm\nA01\tD001829\tBody Regions\nA01.111\n")
    s = ingest_mesh(lake, [tsv])
    assert s.quarantined == 1 and lake.count("mesh_tree") == 1
    assert lake.query("select record_key from quarantine") == [("tree.tsv:line 3",)]


# ---------------------------------------------------------------------------- PubMedQA
def test_pubmedqa_real(lake):
    ingest_mesh(lake, [shared("mesh", "MeshTree2017.tsv")])
    s = ingest_pubmedqa(
        lake, shared("pubmedqa", "ori_pqal.json"), shared("pubmedqa", "test_ground_truth.json")
    )
    assert s.read == 1000 and s.written == 1000 and s.quarantined == 0
    assert s.extra["test split"] == 500
    assert lake.count("articles") == 1000
    row = lake.query(
        "select question, year, final_decision, split, len(contexts) from pubmedqa "
        "where pmid = 21645374"
    )
    assert row == [
        (
            "Do mitochondria play a role in remodelling lace plant leaves during "
            "programmed cell death?",
            2011,
            "yes",
            "test",
            2,
        )
    ]
    assert lake.query(
        "select abstract like 'BACKGROUND: Programmed cell death%' from articles "
        "where pmid = 21645374"
    ) == [(True,)]
    # names map to UIs; Female/Male have no tree number in 2017 and stay unmapped, counted
    mapped = dict(
        lake.query("select descriptor_name, descriptor_ui from article_mesh where pmid = 21645374")
    )
    assert mapped["Mitochondria"] == "D008928"
    unmapped = s.extra["mesh names unmapped"]
    assert (
        unmapped
        == lake.query("select count(*) from article_mesh where descriptor_ui is null")[0][0]
    )
    assert unmapped > 0 and s.extra["distinct unmapped names"] < 30


def test_pubmedqa_before_mesh_resolves_names_later(lake):
    ingest_pubmedqa(lake, shared("pubmedqa", "ori_pqal.json"))
    assert lake.query("select count(descriptor_ui) from article_mesh") == [(0,)]
    ingest_mesh(lake, [shared("mesh", "MeshTree2017.tsv")])
    assert lake.query("select count(descriptor_ui) > 10000 from article_mesh") == [(True,)]


def test_pubmedqa_bad_inputs(lake, tmp_path):
    bad = tmp_path / "pq.json"
    bad.write_text(
        json.dumps(
            {
                "1": {"QUESTION": "q?", "CONTEXTS": ["c"], "YEAR": "2001"},
                "2": {"CONTEXTS": ["no question"]},
                "x": {},
            }
        )
    )
    s = ingest_pubmedqa(lake, bad)
    assert (s.written, s.quarantined) == (1, 2)
    assert sorted(lake.query("select record_key, error from quarantine")) == [
        ("2", "missing QUESTION"),
        ("x", "missing QUESTION, CONTEXTS"),
    ]
    notjson = tmp_path / "nj.json"
    notjson.write_text("{not json")
    with pytest.raises(InputError, match=r"nj\.json: not valid JSON \(line 1, column 2"):
        ingest_pubmedqa(lake, notjson)


# ---------------------------------------------------------------------------- BioASQ
def test_bioasq_fixture(lake):
    s = ingest_bioasq(lake, FIXTURES / "bioasq_small.json")
    assert (s.read, s.written, s.quarantined) == (3, 2, 1)
    rows = lake.query(
        "select qa_id, type, pmids, snippets, ideal_answer, exact_answer from seed_qa "
        "order by qa_id"
    )
    assert rows[0] == (
        "55031181e9bde69634000014",
        "summary",
        [15829955, 6650562],
        [
            "Coding sequence mutations in RET, GDNF, EDNRB, EDN3, and SOX10 are involved "
            "in the development of Hirschsprung disease."
        ],
        "Hirschsprung disease is a multifactorial disorder with a complex pattern of inheritance.",
        None,
    )
    assert rows[1][5] == '"yes"'
    assert lake.query("select record_key, error from quarantine") == [
        ("54e25eaaae9738404b000017", "missing 'body'")
    ]
    again = ingest_bioasq(lake, FIXTURES / "bioasq_small.json")
    assert again.skipped_files == 1 and lake.count("seed_qa") == 2


def test_bioasq_cumulative_release_replaces_by_id(lake, tmp_path):
    ingest_bioasq(lake, FIXTURES / "bioasq_small.json")
    newer = tmp_path / "training13b.json"
    newer.write_text(
        json.dumps(
            {
                "questions": [
                    {
                        "id": "55046d5ff8aee20f27000007",
                        "body": "Is Papilin secreted? (v2)",
                        "type": "yesno",
                        "documents": ["http://www.ncbi.nlm.nih.gov/pubmed/21784067"],
                    },
                    {
                        "id": "new1",
                        "body": "What is BRCA1?",
                        "type": "factoid",
                        "documents": ["https://pubmed.ncbi.nlm.nih.gov/12345/"],
                    },
                ]
            }
        )
    )
    s = ingest_bioasq(lake, newer)
    assert s.extra["new questions"] == 1 and lake.count("seed_qa") == 3
    assert lake.query(
        "select question, pmids from seed_qa where qa_id in "
        "('55046d5ff8aee20f27000007', 'new1') order by qa_id"
    ) == [("Is Papilin secreted? (v2)", [21784067]), ("What is BRCA1?", [12345])]


def test_bioasq_not_bioasq(lake, tmp_path):
    f = tmp_path / "x.json"
    f.write_text('{"data": []}')
    with pytest.raises(InputError, match="not BioASQ training JSON"):
        ingest_bioasq(lake, f)


def test_ingest_cli_messages(cli_lake, tmp_path):
    r = cli_lake("ingest", "bioasq", str(FIXTURES / "bioasq_small.json"))
    assert r.exit_code == 0, r.output
    assert "rows read 3, written 2, quarantined 1" in r.output
    d = tmp_path / "adir"
    d.mkdir()
    r = cli_lake("ingest", "mesh", str(d))
    assert r.exit_code == 1 and r.output == f"Error: {d}: is a directory, expected a file\n"


# ---------------------------------------------------------------------------- fetch
@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    import mkailin.ingest.fetch as f

    monkeypatch.setattr(f, "BACKOFF_SECONDS", 0.0)


@pytest.fixture
def mirror(tmp_path):
    """A loopback HTTP server laid out like NLM's PubMed and MeSH folders and PubMedQA's repo."""
    root = tmp_path / "mirror"
    (root / "pubmed" / "baseline").mkdir(parents=True)
    for i in (1, 2, 3):
        data = gzip.compress(
            (FIXTURES / "pubmed_small.xml")
            .read_bytes()
            .replace(b"100001", str(200000 + i).encode())
        )
        name = f"pubmed25n{i:04d}.xml.gz"
        (root / "pubmed" / "baseline" / name).write_bytes(data)
        (root / "pubmed" / "baseline" / f"{name}.md5").write_text(
            f"MD5({name})= {hashlib.md5(data).hexdigest()}\n"
        )
    (root / "mesh").mkdir()
    (root / "mesh" / "desc2025.gz").write_bytes(
        gzip.compress((FIXTURES / "desc_small.xml").read_bytes())
    )
    (root / "pqa").mkdir()
    (root / "pqa" / "ori_pqal.json").write_text('{"1": {"QUESTION": "q?", "CONTEXTS": ["c"]}}')
    (root / "pqa" / "test_ground_truth.json").write_text('{"1": "yes"}')
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_baseline_checks_md5_and_resumes(mirror, tmp_path, lake):
    dest = tmp_path / "data"
    got = fetch("baseline", dest, base_url=f"{mirror}/pubmed/", limit=2)
    assert [f.path.name for f in got] == ["pubmed25n0001.xml.gz", "pubmed25n0002.xml.gz"]
    assert not any(f.skipped for f in got)
    again = fetch("baseline", dest, base_url=f"{mirror}/pubmed/")
    assert [f.skipped for f in again] == [True, True, False]
    from mkailin.ingest.pubmed import ingest_pubmed

    s = ingest_pubmed(lake, [dest / "pubmed" / "baseline"], progress=False)
    assert s.files == 3 and s.errors == []


def test_fetch_rejects_a_corrupt_download(mirror, tmp_path):
    md5 = next((tmp_path / "mirror" / "pubmed" / "baseline").glob("*0001.xml.gz.md5"))
    md5.write_text("MD5(x)= " + "0" * 32)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch("baseline", tmp_path / "data", base_url=f"{mirror}/pubmed/", limit=1)
    assert not list((tmp_path / "data").rglob("*.xml.gz"))  # nothing half-written is left


def test_fetch_mesh_and_pubmedqa(mirror, tmp_path):
    got = fetch("mesh", tmp_path / "d", base_url=f"{mirror}/mesh/")
    assert got[0].path == tmp_path / "d" / "mesh" / "desc2025.gz"
    got = fetch("pubmedqa", tmp_path / "d", base_url=f"{mirror}/pqa/")
    assert sorted(f.path.name for f in got) == ["ori_pqal.json", "test_ground_truth.json"]


def test_fetch_offline_says_what_to_do(tmp_path):
    # port 9 (discard) on loopback: nothing listens, so the connection is refused at once
    with pytest.raises(
        DownloadError, match=r"cannot reach http://127\.0\.0\.1:9/.*use local files"
    ):
        fetch("pubmedqa", tmp_path, base_url="http://127.0.0.1:9/")


# ---------------------------------------------------------------------------- demo
def test_demo_without_data_offline_says_pass_data(cli_lake, monkeypatch):
    import mkailin.ingest.fetch as f

    monkeypatch.setattr(f, "MESH_BASE", "http://127.0.0.1:9/")
    r = cli_lake("demo")
    assert r.exit_code == 1
    assert "Error: cannot reach http://127.0.0.1:9/" in r.output
    assert "mkailin demo --data DIR" in r.output
