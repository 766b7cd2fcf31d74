"""Regenerate the bad-input corpus in this folder: `python tests/data/bad/make.py`.

Each file is one way real inputs go wrong. tests/test_reliability.py runs every one through the
CLI and checks that it ends in a clear `Error: …` or a quarantine row, never a traceback.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOOD = (HERE.parent / "pubmed_small.xml").read_text()
HEAD, REST = GOOD.split("<PubmedArticleSet>", 1)
RECORDS = "<PubmedArticleSet>" + REST


def many(n: int) -> str:
    rec = (
        "<PubmedArticle>"
        + REST.split("<PubmedArticle>", 2)[1].split("</PubmedArticle>")[0]
        + "</PubmedArticle>\n"
    )
    body = "".join(
        rec.replace("100001", str(500000 + i)).replace("mild asthma", f"asthma {i * 7919}")
        for i in range(n)
    )
    return HEAD + "<PubmedArticleSet>\n" + body + "</PubmedArticleSet>\n"


def write(name: str, data: str | bytes) -> None:
    (HERE / name).write_bytes(data.encode() if isinstance(data, str) else data)


def main() -> None:
    # PubMed XML
    z = gzip.compress(many(300).encode(), mtime=0)
    write("pubmed-truncated.xml.gz", z[: len(z) // 2])
    write(
        "pubmed-malformed-mid.xml",
        GOOD.replace(
            "<ArticleTitle>A letter without an abstract.</ArticleTitle>",
            "<ArticleTitle>A letter <b>without an abstract.</ArticleTitle>",
        ),
    )
    write(
        "pubmed-wrong-dtd.xml",
        '<?xml version="1.0"?>\n<!DOCTYPE MedlineCitationSet PUBLIC '
        '"-//NLM//DTD Medline Citation, 1st January 2012//EN" "nlmmedlinecitationset_120101.dtd">\n'
        "<MedlineCitationSet><MedlineCitation><PMID>1</PMID></MedlineCitation></MedlineCitationSet>\n",
    )
    huge = GOOD.replace(
        "Mitochondria move along transvacuolar strands.",
        "Mitochondria move along transvacuolar strands. " * 400_000,
    )  # ~19 MB
    write("pubmed-huge-record.xml.gz", gzip.compress(huge.encode(), mtime=0))
    write("pubmed-nul-bytes.xml", GOOD.replace("Unlabelled abstract.", "Unlabelled\x00abstract."))
    write(
        "pubmed-invalid-utf8.xml",
        GOOD.encode().replace(b"Unlabelled abstract.", b"Unlabelled \xff\xfe abstract."),
    )
    write(
        "pubmed-duplicate-pmids.xml",
        GOOD.replace('<PMID Version="1">100003</PMID>', '<PMID Version="1">100001</PMID>'),
    )
    write("pubmed-unknown-mesh-ui.xml", GOOD.replace('UI="D009369"', 'UI="D999999"'))
    write("pubmed-no-pmid.xml", GOOD.replace('<PMID Version="1">100002</PMID>', ""))
    write("pubmed-empty.xml", b"")
    write("pubmed-not-xml.xml", bytes(range(256)) * 8)
    (HERE / "a-directory").mkdir(exist_ok=True)
    write("a-directory/.gitkeep", b"")
    # MeSH
    write("mesh-wrong-format.csv", "tree,ui,term\nA01,D001829,Body Regions\n")
    write(
        "mesh-bad-rows.tsv",
        "Tree Number\tDesc Ui\tTerm\nA01\tD001829\tBody Regions\nA01.111\n"
        "\tD000001\tno tree number\n",
    )
    write(
        "mesh-latin1.tsv",
        "Tree Number\tDesc Ui\tTerm\nA01\tD001829\tBody R\xe9gions\n".encode("latin-1"),
    )
    write(
        "mesh-not-descriptors.xml",
        '<?xml version="1.0"?>\n<QualifierRecordSet>'
        "<QualifierRecord><QualifierUI>Q000000981</QualifierUI></QualifierRecord>"
        "</QualifierRecordSet>\n",
    )
    # BioASQ
    write(
        "bioasq-missing-fields.json",
        json.dumps(
            {
                "questions": [
                    {
                        "id": "a",
                        "type": "yesno",
                        "documents": ["http://www.ncbi.nlm.nih.gov/pubmed/1"],
                    },
                    {"id": "b", "body": "Is X a gene?", "type": "yesno"},
                    {"id": "c", "body": "Is Y a gene?", "documents": "not a list"},
                    {
                        "id": "d",
                        "body": "Is Z a gene?",
                        "documents": ["http://www.ncbi.nlm.nih.gov/pubmed/2"],
                    },
                ]
            },
            indent=1,
        ),
    )
    write("bioasq-not-bioasq.json", json.dumps({"data": [{"question": "x"}]}))
    write("bioasq-truncated.json", '{"questions": [{"id": "a", "body": "Is')
    # PubMedQA
    write(
        "pubmedqa-missing-fields.json",
        json.dumps(
            {
                "1": {
                    "QUESTION": "Is it?",
                    "CONTEXTS": ["c"],
                    "MESHES": ["Humans"],
                    "YEAR": "2001",
                },
                "2": {"CONTEXTS": ["no question"]},
                "abc": {"QUESTION": "q?", "CONTEXTS": []},
            }
        ),
    )
    write(
        "pubmedqa-mesh-name-no-tree.json",
        json.dumps(
            {
                "7": {
                    "QUESTION": "Is it?",
                    "CONTEXTS": ["c"],
                    "MESHES": ["Female", "Asthma", "Not A Heading At All"],
                }
            }
        ),
    )
    # configs
    write("config-unknown-key.toml", "[retrieval]\nk = 4\ntop_k = 8\n")
    write("config-wrong-type.toml", '[generate]\narticles = "ten"\n')
    write("config-not-toml.toml", "[retrieval\nk = 4\n")
    write("config-bad-backend.toml", '[models.smollm2]\nbackend = "tensorflow"\n')


if __name__ == "__main__":
    main()
