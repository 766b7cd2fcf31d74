"""The PubMed reader cuts elements no field comes from (AuthorList, ChemicalList, PubmedData)
before libxml2 parses them: the rows stay what the whole XML gives, libxml2's line numbers stay
the file's, and a cut never crosses a record, whatever the block boundaries or the damage."""

from __future__ import annotations

import gzip
import io

import pytest
from lxml import etree

from mkailin.ingest.pubmed import _prune, _Pruned, ingest_pubmed, iter_records, parse_record

from conftest import shared

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n'
TAIL = "</PubmedArticleSet>\n"


def record(
    pmid: int,
    title: str = "A title",
    authors: str | None = None,
    chemicals: bool = True,
    pubmed_data: bool = True,
) -> str:
    if authors is None:
        authors = (
            '<AuthorList CompleteYN="Y">\n<Author ValidYN="Y">\n<LastName>Doe</LastName>\n'
            "<AffiliationInfo><Affiliation>Dept &amp; Lab, <i>X</i></Affiliation>"
            "</AffiliationInfo>\n</Author>\n</AuthorList>\n"
        )
    chem = (
        "<ChemicalList>\n<Chemical><RegistryNumber>0</RegistryNumber>"
        '<NameOfSubstance UI="D1">Water</NameOfSubstance></Chemical>\n</ChemicalList>\n'
        if chemicals
        else ""
    )
    data = (
        '<PubmedData>\n<History>\n<PubMedPubDate PubStatus="received"><Year>2001</Year>'
        "</PubMedPubDate>\n</History>\n<ReferenceList><Reference><Citation>Ref 1.</Citation>"
        "</Reference></ReferenceList>\n</PubmedData>\n"
        if pubmed_data
        else ""
    )
    return (
        f'<PubmedArticle>\n<MedlineCitation Status="MEDLINE">\n<PMID Version="1">{pmid}</PMID>\n'
        f"<Article>\n<Journal><Title>J</Title><JournalIssue><PubDate><Year>2001</Year>"
        f"</PubDate></JournalIssue></Journal>\n<ArticleTitle>{title}</ArticleTitle>\n"
        f'<Abstract><AbstractText Label="AIM">Text {pmid}.</AbstractText></Abstract>\n'
        f"{authors}<Language>eng</Language>\n</Article>\n{chem}"
        f'<MeshHeadingList>\n<MeshHeading><DescriptorName UI="D006801">Humans</DescriptorName>'
        f"</MeshHeading>\n</MeshHeadingList>\n</MedlineCitation>\n{data}</PubmedArticle>\n"
    )


def whole_parse(xml: bytes) -> list:
    root = etree.fromstring(xml, parser=etree.XMLParser(huge_tree=True))
    return [parse_record(e) for e in root.iter("PubmedArticle")]


def streamed(path) -> list:
    return [(e[1], e[2]) for e in iter_records(path) if e[0] == "article"]


def mixed_file() -> str:
    recs = [
        record(1),
        record(2, chemicals=False),
        record(3, authors=""),
        record(4, pubmed_data=False),
        record(5, authors="<AuthorList/>\n"),
        record(6, title="&lt;AuthorList&gt; in a title"),
        record(7),
    ]
    return HEAD + "".join(recs) + TAIL


def test_cuts_leave_the_rows_and_the_line_count(tmp_path):
    xml = mixed_file().encode()
    pruned = _prune(xml)
    assert len(pruned) < len(xml) * 0.75
    assert pruned.count(b"\n") == xml.count(b"\n")
    assert b"<AuthorList CompleteYN" not in pruned and b"<PubmedData>" not in pruned
    assert b"<AuthorList/>" in pruned  # an empty element is left as it is
    path = tmp_path / "mixed.xml"
    path.write_bytes(xml)
    assert streamed(path) == whole_parse(xml)


@pytest.mark.parametrize("block", [1, 7, 100, 4096, 1 << 20])
def test_block_boundaries_do_not_matter(block):
    xml = (HEAD + "".join(record(i, chemicals=i % 2 == 0) for i in range(1, 40)) + TAIL).encode()
    out = io.BytesIO()
    reader = _Pruned(io.BytesIO(xml), block=block)
    while chunk := reader.read(333):
        out.write(chunk)
    assert out.getvalue() == _prune(xml)
    assert whole_parse(out.getvalue()) == whole_parse(xml)


def test_a_truncated_stream_hands_out_every_byte_before_its_error():
    class Truncated(io.RawIOBase):
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def read(self, n=-1):
            b = self.data.read(n)
            if not b:
                raise EOFError("Compressed file ended before the end-of-stream marker")
            return b

    xml = (HEAD + record(1) + record(2)).encode()[:-40]  # record 2 cut short
    reader = _Pruned(Truncated(xml), block=64)
    got = b""
    with pytest.raises(EOFError):
        while True:
            got += reader.read(50)
    cut = xml.rindex(b"<PubmedArticle>")
    assert got[: len(_prune(xml[:cut]))] == _prune(xml[:cut])
    assert got.endswith(xml[cut:])  # the unfinished record comes as it is


def test_a_missing_end_tag_is_not_cut_across_records(tmp_path, lake):
    broken = record(2).replace("</AuthorList>", "")
    xml = HEAD + record(1) + broken + record(3) + TAIL
    path = tmp_path / "broken.xml"
    path.write_text(xml)
    # the cut would have swallowed record 2's end and record 3's start: it is not made
    assert b'<PMID Version="1">3</PMID>' in _prune(xml.encode())
    s = ingest_pubmed(lake, [path], progress=False)
    assert lake.query("select pmid from articles order by pmid") == [(1,), (3,)]
    assert s.quarantined == 1
    (err,) = lake.query("select error from quarantine where action = 'dropped'")
    assert err[0].startswith("record 2: malformed XML")


def test_line_numbers_of_errors_are_the_files(tmp_path, lake):
    good = record(1)
    bad = record(2).replace(
        "<ArticleTitle>A title</ArticleTitle>", "<ArticleTitle>A <b>title</ArticleTitle>"
    )
    xml = HEAD + good + bad + TAIL
    line = next(n for n, text in enumerate(xml.splitlines(), 1) if "<b>title" in text)
    try:
        etree.fromstring(xml.encode())
    except etree.XMLSyntaxError as e:
        expected = e.lineno
    assert expected >= line
    path = tmp_path / "bad.xml.gz"
    path.write_bytes(gzip.compress(xml.encode()))
    s = ingest_pubmed(lake, [path], progress=False)
    assert f"malformed XML at line {expected}:" in s.errors[0]


def test_damage_inside_a_cut_element_costs_nothing(tmp_path, lake):
    # bad UTF-8 and an unclosed tag inside the author list: no field comes from there
    rec = record(2).replace("<LastName>Doe</LastName>", "<LastName>D\xff\xfeoe<i></LastName>")
    path = tmp_path / "authors.xml"
    path.write_bytes((HEAD + record(1) + rec + TAIL).encode("latin-1"))
    s = ingest_pubmed(lake, [path], progress=False)
    assert (s.quarantined, s.errors) == (0, [])
    assert lake.query("select count(*) from articles") == [(2,)]


def test_real_records_parse_the_same_pruned(tmp_path):
    for name in ("pubmed-20000000.xml", "pubmed-29768149.xml"):
        src = shared("pubmed", name)
        xml = src.read_bytes()
        assert len(_prune(xml)) < len(xml)
        assert streamed(src) == whole_parse(xml)
