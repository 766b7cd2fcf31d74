"""The fast record parser of ingest/pubmed.py gives exactly what the plain ElementPath version
gave (kept here as the reference), on odd records, the fixtures, the real records and generated
ones; and a chunk that starts with a deletion keeps the article columns of the rows after it."""

from __future__ import annotations

import importlib.util
import random
import re
import sys

import pytest
from lxml import etree

from mkailin.ingest import pubmed as P
from mkailin.ingest.pubmed import RecordError, ingest_pubmed, parse_article

from conftest import DATA, FIXTURES, ROOT, shared


# ---------------------------------------------------------------- the reference (ElementPath)
def _ref_text(el):
    if el is None:
        return None
    t = " ".join("".join(el.itertext()).split())
    return t or None


def _ref_year(article):
    pd = article.find("Journal/JournalIssue/PubDate")
    if pd is None:
        return None
    y = pd.findtext("Year")
    if not y:
        y = pd.findtext("MedlineDate") or ""
    m = re.search(r"(1[89]|20)\d\d", y)
    return int(m.group(0)) if m else None


def ref_parse_article(elem):
    mc = elem.find("MedlineCitation")
    pmid_el = mc.find("PMID") if mc is not None else None
    pmid_text = (pmid_el.text or "").strip() if pmid_el is not None else ""
    if not pmid_text.isdigit():
        raise RecordError("record has no PMID" if not pmid_text else f"bad PMID {pmid_text!r}")
    pmid = int(pmid_text)
    art = mc.find("Article")
    if art is None:
        raise RecordError(f"PMID {pmid}: record has no <Article>")
    sections = []
    for s in art.iterfind("Abstract/AbstractText"):
        t = _ref_text(s)
        if t:
            label = s.get("Label")
            sections.append(f"{label}: {t}" if label else t)
    version = pmid_el.get("Version")
    row = {
        "pmid": pmid,
        "title": _ref_text(art.find("ArticleTitle")),
        "abstract": "\n".join(sections) or None,
        "journal": art.findtext("Journal/Title"),
        "pub_year": _ref_year(art),
        "language": art.findtext("Language"),
        "version": int(version) if version and version.isdigit() else 1,
    }
    mesh = []
    for mh in mc.iterfind("MeshHeadingList/MeshHeading"):
        d = mh.find("DescriptorName")
        if d is None:
            continue
        quals = mh.findall("QualifierName")
        mesh.append(
            {
                "pmid": pmid,
                "descriptor_ui": d.get("UI"),
                "descriptor_name": _ref_text(d),
                "major_topic": d.get("MajorTopicYN") == "Y"
                or any(q.get("MajorTopicYN") == "Y" for q in quals),
                "qualifiers": [_ref_text(q) for q in quals],
            }
        )
    return row, mesh


def _outcome(fn, elem):
    try:
        return fn(elem)
    except RecordError as e:
        return ("RecordError", str(e))


def _assert_same(xml: bytes):
    root = etree.fromstring(xml, parser=etree.XMLParser(huge_tree=True))
    records = [e for e in root.iter("PubmedArticle")]
    assert records
    for e in records:
        assert _outcome(parse_article, e) == _outcome(ref_parse_article, e)


# ---------------------------------------------------------------- odd records
ODD = """<?xml version="1.0" encoding="UTF-8"?>
<PubmedArticleSet>
<PubmedArticle><MedlineCitation><PMID Version="2"> 5 </PMID><Article>
 <Journal><Title></Title><JournalIssue><PubDate><MedlineDate>1998 Dec-1999 Jan</MedlineDate>
 </PubDate></JournalIssue></Journal>
 <ArticleTitle>  A&#160;title\twith <i>mixed</i><!-- c --> content  &amp; <sub>2</sub>  </ArticleTitle>
 <Abstract><AbstractText>  lead  space </AbstractText><AbstractText Label="X">a&#x2009;b</AbstractText>
 <AbstractText/><AbstractText Label="E">   </AbstractText><AbstractText><b>x</b> <i>y</i></AbstractText>
 <AbstractText>tab\tin&#13;cr</AbstractText><AbstractText>ok</AbstractText><AbstractText>end </AbstractText>
 <AbstractText>a\u00a0b</AbstractText><AbstractText>&#x1F600; emoji</AbstractText></Abstract>
 <Abstract><AbstractText>second abstract</AbstractText></Abstract>
 <Language></Language><Language>fre</Language>
</Article>
<MeshHeadingList>
 <MeshHeading><!-- c --><QualifierName MajorTopicYN="Y">q first</QualifierName>
  <DescriptorName UI="D1">  Name   with  spaces </DescriptorName><DescriptorName UI="D2">second</DescriptorName>
 </MeshHeading>
 <MeshHeading><QualifierName>only qual</QualifierName></MeshHeading>
 <MeshHeading><DescriptorName UI="D3" MajorTopicYN="Y"><i>ital</i>ic</DescriptorName><QualifierName/>
  <QualifierName MajorTopicYN="N"> a <b>b</b> </QualifierName></MeshHeading>
 <MeshHeading><DescriptorName/></MeshHeading>
 <MeshHeading><DescriptorName UI="D5" MajorTopicYN="N">x</DescriptorName>
  <QualifierName MajorTopicYN="N">n</QualifierName><QualifierName MajorTopicYN="Y">y</QualifierName></MeshHeading>
 <MeshHeading xmlns:n="urn:x"><n:DescriptorName UI="N1">ns</n:DescriptorName><DescriptorName UI="D6">plain</DescriptorName></MeshHeading>
 <Other/>
</MeshHeadingList>
<MeshHeadingList><MeshHeading><DescriptorName UI="D4">Second list</DescriptorName></MeshHeading></MeshHeadingList>
</MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID>abc</PMID><Article/></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID/></MedlineCitation></PubmedArticle>
<PubmedArticle><Other/></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID>7</PMID></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="x">8</PMID><Article><Journal><JournalIssue><PubDate>
 <Year></Year><MedlineDate>Spring 2001</MedlineDate></PubDate></JournalIssue></Journal><ArticleTitle/>
 </Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID>9</PMID><Article><Journal><JournalIssue><PubDate><Year>2020</Year>
 </PubDate><PubDate><Year>1900</Year></PubDate></JournalIssue></Journal><ArticleTitle>Ünïcödé  title</ArticleTitle>
 <Abstract><AbstractText Label="">empty label</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID>10</PMID><Article><Journal><JournalIssue><PubDate></PubDate>
 </JournalIssue></Journal></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID>11</PMID><Article><Journal><!-- c --><Title><!-- c -->T</Title>
 </Journal></Article><PMID>12</PMID></MedlineCitation><MedlineCitation><PMID>13</PMID></MedlineCitation>
</PubmedArticle>
</PubmedArticleSet>
"""


def test_odd_records_parse_as_the_reference_does():
    _assert_same(ODD.encode("utf-8"))


def test_fixtures_parse_as_the_reference_does():
    for f in sorted(FIXTURES.glob("pubmed_*.xml")):
        _assert_same(f.read_bytes())


def test_real_records_parse_as_the_reference_does():
    for f in sorted(shared("pubmed").glob("*.xml")):
        _assert_same(f.read_bytes())


def test_generated_records_parse_as_the_reference_does():
    shared("pubmed")
    shared("mesh", "MeshTree2017.tsv")
    shared("pubmedqa", "ori_pqal.json")
    spec = importlib.util.spec_from_file_location("gen_pubmed", ROOT / "bench" / "gen_pubmed.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_pubmed", gen)  # its dataclasses look their module up there
    spec.loader.exec_module(gen)
    src = gen.load_sources(DATA)
    rng = random.Random(7)
    body = "".join(gen.make_record(rng, src, 40_000_001 + i) for i in range(300))
    _assert_same(f"<PubmedArticleSet>{body}</PubmedArticleSet>".encode())


def test_norm_is_split_join():
    for t in [
        "a b",
        " a",
        "a ",
        "a  b",
        "a\tb",
        "a\nb",
        "a\rb",
        "a\x0bb",
        "a\x0cb",
        "a\x1cb",
        "a\x1fb",
        "a\u00a0b",
        "a\u2009b",
        "a\u3000b",
        "ünï côdé",
        "x",
        "  ",
        " ",
    ]:
        assert P._norm(t) == " ".join(t.split()), repr(t)


def test_chunk_starting_with_a_deletion_keeps_article_columns(lake, tmp_path):
    f = tmp_path / "delete_first.xml"
    f.write_text(
        '<?xml version="1.0"?>\n<PubmedArticleSet>\n'
        "<DeleteCitation><PMID>1</PMID></DeleteCitation>\n"
        "<PubmedArticle><MedlineCitation><PMID>5</PMID><Article><ArticleTitle>Kept</ArticleTitle>"
        "<Language>eng</Language></Article></MedlineCitation></PubmedArticle>\n"
        "</PubmedArticleSet>\n"
    )
    ingest_pubmed(lake, [f], progress=False)
    rows = lake.query("select pmid, title, language, deleted from article_records order by pmid")
    assert rows == [(1, None, None, True), (5, "Kept", "eng", False)]


@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
def test_gc_is_restored_after_ingest(lake, chunk_rows):
    import gc

    assert gc.isenabled()
    ingest_pubmed(
        lake, [FIXTURES / "pubmed_small.xml"], progress=False, jobs=1, chunk_rows=chunk_rows
    )
    assert gc.isenabled()
