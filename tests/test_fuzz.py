"""Fuzzing the parsers with hypothesis: the PubMed XML reader, the BioASQ question parser and the
MeSH loaders never fail with anything but their named errors (records they cannot read become
quarantine rows). The slow suite runs over 10k generated cases in all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkailin.errors import InputError
from mkailin.ingest.bioasq import parse_question
from mkailin.ingest.mesh import detect_format, read_tsv, read_xml
from mkailin.ingest.pubmed import iter_records

from conftest import FIXTURES

SLOW = os.environ.get("MKAILIN_FUZZ_EXAMPLES")
EXAMPLES = int(SLOW) if SLOW else 200
GOOD = (FIXTURES / "pubmed_small.xml").read_bytes()
TMP = Path(tempfile.mkdtemp(prefix="mkailin-fuzz-"))


def _write(data: bytes, name: str = "f.xml") -> Path:
    p = TMP / name
    p.write_bytes(data)
    return p


@st.composite
def mutated_pubmed(draw):
    """The fixture with random cuts, insertions and byte flips: the faults real files have."""
    data = bytearray(GOOD)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["cut", "insert", "flip", "truncate", "dup"]))
        i = draw(st.integers(0, len(data) - 1)) if data else 0
        if op == "cut" and data:
            del data[i : i + draw(st.integers(1, 200))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=40))
        elif op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[i:]
        elif op == "dup" and data:
            j = draw(st.integers(i, min(len(data), i + 400)))
            data[j:j] = data[i:j]
    return bytes(data)


def _check_pubmed(data: bytes, gz: bool) -> None:
    import gzip

    path = _write(gzip.compress(data) if gz else data, "f.xml.gz" if gz else "f.xml")
    events = list(iter_records(path))  # never raises
    kinds = {e[0] for e in events}
    assert kinds <= {"article", "delete", "book", "bad", "repaired", "fault", "fault_recovered"}
    for e in events:
        if e[0] == "article":
            assert isinstance(e[1][0], int)  # the PMID


settings.register_profile("fuzz", deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("fuzz")


@settings(max_examples=EXAMPLES)
@given(mutated_pubmed(), st.booleans())
def test_pubmed_reader_survives_mutations(data, gz):
    _check_pubmed(data, gz)


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=3000))
def test_pubmed_reader_survives_random_bytes(data):
    _check_pubmed(data, False)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=EXAMPLES)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": JSONISH,
            "body": JSONISH | st.text(max_size=80),
            "type": JSONISH,
            "documents": JSONISH | st.lists(st.text(max_size=60), max_size=4),
            "snippets": JSONISH
            | st.lists(st.fixed_dictionaries({"text": JSONISH | st.text()}), max_size=3),
            "ideal_answer": JSONISH,
            "exact_answer": JSONISH,
        },
    )
    | JSONISH
)
def test_bioasq_parser_raises_only_value_errors(q):
    try:
        row = parse_question(q, "fuzz")
    except ValueError:
        return
    assert isinstance(row["question"], str) and row["question"]
    assert all(isinstance(p, int) for p in row["pmids"])


@settings(max_examples=EXAMPLES)
@given(
    st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_characters="\t\n\r"), max_size=12),
            min_size=0,
            max_size=4,
        ),
        max_size=20,
    ),
    st.booleans(),
)
def test_mesh_tsv_loader_raises_only_input_errors(rows, header):
    text = (
        ("Tree Number\tDesc Ui\tTerm\n" if header else "")
        + "\n".join("\t".join(r) for r in rows)
        + "\n"
    )
    path = _write(text.encode("utf-8", "surrogatepass"), "t.tsv")
    try:
        if detect_format(path) == "tsv":
            read_tsv(path, {}, [])
        else:
            read_xml(path, {}, [])
    except InputError:
        pass


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=2000))
def test_mesh_loaders_raise_only_input_errors_on_random_bytes(data):
    path = _write(b"<DescriptorRecordSet>" + data, "d.xml")
    try:
        read_xml(path, {}, [])
    except InputError:
        pass


@pytest.mark.slow
def test_fuzz_at_volume():
    """Over 10k generated cases across the parsers (2,000 per property)."""
    import subprocess
    import sys

    env = {**os.environ, "MKAILIN_FUZZ_EXAMPLES": "2000"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(Path(__file__)),
            "-k",
            "not at_volume",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "5 passed" in r.stdout
