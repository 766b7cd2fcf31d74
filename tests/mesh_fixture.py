"""A small MeSH tree and corpus whose similarities are computed by hand in the tests.

Tree (UI, tree numbers)::

    A01          D01 Body
    A01.100      D02 Head
    A01.100.200  D03 Ear
    A01.100.300  D04 Eye            also C01.500 (a second category)
    A01.500      D05 Limb
    B01          D09 Bacteria       (never annotated)
    C01          D06 Eye Diseases
    C01.100      D07 Eye Infection  also C02.100 (a second tree, same letter)
    C01.500      D04 Eye
    C02          D08 Infections
    C02.100      D07 Eye Infection
    C02.100.050  D10 Otitis         also C02.200 (two depths under D08; never annotated)
    C02.200      D10 Otitis

Corpus (distinct descriptors per article)::

    P1 = 101: D03, D07, D99999 (not a MeSH descriptor), D03 again, an unmapped heading
    P2 = 102: D04
    P3 = 103: D04, D05
    P4 = 104: D07, D08
    P5 = 105: D02
    P6 = 106: (no MeSH heading)

N = 5 articles with an annotation (P6 has none).
"""

from __future__ import annotations

import pyarrow as pa

TREE = [
    ("A01", "D01"),
    ("A01.100", "D02"),
    ("A01.100.200", "D03"),
    ("A01.100.300", "D04"),
    ("A01.500", "D05"),
    ("B01", "D09"),
    ("C01", "D06"),
    ("C01.100", "D07"),
    ("C01.500", "D04"),
    ("C02", "D08"),
    ("C02.100", "D07"),
    ("C02.100.050", "D10"),
    ("C02.200", "D10"),
]
NAMES = {
    "D01": "Body",
    "D02": "Head",
    "D03": "Ear",
    "D04": "Eye",
    "D05": "Limb",
    "D06": "Eye Diseases",
    "D07": "Eye Infection",
    "D08": "Infections",
    "D09": "Bacteria",
    "D10": "Otitis",
}
P1, P2, P3, P4, P5, P6 = 101, 102, 103, 104, 105, 106
ANNOTATIONS = [
    (P1, "D03"),
    (P1, "D07"),
    (P1, "D99999"),
    (P1, "D03"),
    (P1, None),
    (P2, "D04"),
    (P3, "D04"),
    (P3, "D05"),
    (P4, "D07"),
    (P4, "D08"),
    (P5, "D02"),
]
ARTICLES = [P1, P2, P3, P4, P5, P6]

# Questions and retrieved contexts for pair_scores / rule_preferences.
QUESTIONS = [
    ("q1", P1, "domain"),
    ("q2", P1, "general"),
    ("q8", P1, "final"),
    ("q3", P3, "domain"),
    ("q4", P3, "general"),
    ("q5", P5, "domain"),
    ("q6", P6, "domain"),
    ("q7", P6, "general"),
]
CONTEXTS = [
    ("q1", 1, P2),
    ("q1", 2, P4),
    ("q2", 1, P3),
    ("q2", 2, P6),
    ("q8", 1, P4),
    ("q3", 1, P2),
    ("q4", 1, P2),
    ("q5", 1, P1),
    ("q6", 1, P2),
    ("q7", 1, P2),
]


def tree_tables(tree=TREE, names=NAMES) -> tuple[pa.Table, pa.Table]:
    """mesh_descriptors and mesh_tree rows for a list of (tree_number, ui)."""
    trees: dict[str, list[str]] = {}
    for tn, ui in tree:
        trees.setdefault(ui, []).append(tn)
    desc = pa.Table.from_pylist(
        [
            {
                "descriptor_ui": ui,
                "name": names.get(ui, ui),
                "tree_numbers": sorted(tns),
                "entry_terms": [],
            }
            for ui, tns in sorted(trees.items())
        ]
    )
    rows = []
    for tn, ui in sorted(tree):
        parts = tn.split(".")
        rows.append(
            {
                "tree_number": tn,
                "descriptor_ui": ui,
                "parent_tree_number": ".".join(parts[:-1]) or None,
                "depth": len(parts),
                "category": tn[0],
            }
        )
    return desc, pa.Table.from_pylist(rows)


def corpus_tables(articles=ARTICLES, annotations=ANNOTATIONS) -> tuple[pa.Table, pa.Table]:
    """article_records and article_mesh_records rows (one current version per article)."""
    recs = pa.Table.from_pylist(
        [
            {
                "pmid": p,
                "title": f"article {p}",
                "abstract": "",
                "pub_year": 2017,
                "source": "pubmed",
                "version": 1,
                "ingest_seq": i,
                "deleted": False,
            }
            for i, p in enumerate(articles)
        ]
    )
    seq = {p: i for i, p in enumerate(articles)}
    mesh = pa.Table.from_pylist(
        [
            {
                "pmid": p,
                "ingest_seq": seq[p],
                "descriptor_ui": ui,
                "descriptor_name": NAMES.get(ui, "unmapped heading") if ui else "unmapped heading",
                "major_topic": False,
                "qualifiers": [],
            }
            for p, ui in annotations
        ]
    )
    return recs, mesh


def question_tables(questions=QUESTIONS, contexts=CONTEXTS) -> tuple[pa.Table, pa.Table]:
    q = pa.Table.from_pylist(
        [
            {"question_id": qid, "pmid": p, "agent": agent, "question": f"{qid}?"}
            for qid, p, agent in questions
        ]
    )
    c = pa.Table.from_pylist(
        [
            {
                "question_id": qid,
                "rank": rank,
                "pmid": p,
                "score": 1.0 / rank,
                "retriever": "fixture",
            }
            for qid, rank, p in contexts
        ]
    )
    return q, c


def fill(
    lake,
    tree=TREE,
    articles=ARTICLES,
    annotations=ANNOTATIONS,
    questions=QUESTIONS,
    contexts=CONTEXTS,
):
    """Write the fixture rows into a lake through its table API."""
    desc, tree_t = tree_tables(tree)
    lake.replace_table("mesh_descriptors", desc)
    lake.replace_table("mesh_tree", tree_t)
    recs, mesh = corpus_tables(articles, annotations)
    lake.replace_table("article_records", recs)
    lake.replace_table("article_mesh_records", mesh)
    q, c = question_tables(questions, contexts)
    lake.replace_table("questions", q)
    lake.replace_table("contexts", c)
    return lake
