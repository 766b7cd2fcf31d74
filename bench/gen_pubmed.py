"""Generate a large, realistic PubmedArticleSet by varying the two real PubMed records.

The two real records in ``../shared/data/pubmed/*.xml`` (DTD 2017 and 2019) are the templates:
every generated record keeps one template's real structure byte for byte (MedlineCitation with
its dates, Article/Journal/JournalIssue/PubDate, Pagination, AuthorList with affiliations,
PublicationTypeList, MedlineJournalInfo, ChemicalList, CommentsCorrections, MeshHeadingList,
PubmedData/History/ArticleIdList) and varies:

- the PMID (``MedlineCitation/PMID`` and ``ArticleId[@IdType="pubmed"]``): new, unique,
  sequential from ``--first-pmid``;
- ``ArticleTitle``: a PubMedQA question; ``PubDate/Year``: that abstract's year;
- ``Abstract``: the PubMedQA contexts as ``AbstractText`` with their real ``Label``s (a few
  records get one unlabelled AbstractText, a few no abstract at all, a few an inline ``<i>``);
- ``AuthorList``: the first 1..n authors of the template;
- ``MeshHeadingList``: as many headings as the PubMedQA record has, about half of them its own
  (mapped to their 2017 UI through MeshTree2017.tsv), the rest drawn from the 2017 tree; each
  with ``UI`` and ``MajorTopicYN``, a third with ``QualifierName``s (UI, MajorTopicYN) taken
  from the real records; sorted by name, as PubMed lists them.

Output: ``pubmed-bench-NNNN.xml[.gz]`` files of ``records_per_file`` records each (PubMed
baseline files hold ~30k), under the 2019 DTD header, so that files ingest in parallel. It is
deterministic: the same seed and sizes give byte-identical files (gzip with mtime 0, no name).

    python bench/gen_pubmed.py --records 200000 --out bench/out/pubmed-200000 --gzip
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MKAILIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIRST_PMID = 40_000_001  # above every real PMID (~39.9M in 2025), so never collides with one
RECORDS_PER_FILE = 30_000
GENERATOR_VERSION = 1


# ---------------------------------------------------------------------------- sources
@dataclass
class Template:
    """One real record split into literal pieces around the parts that vary."""

    name: str
    pieces: list[str]  # literal text; the varying parts go between them, in _SLOTS order
    authors: list[str]  # each <Author> element with the whitespace before it
    authors_close_ws: str  # whitespace before </AuthorList>
    indent: str  # one indentation step of this template (4 spaces or a tab)
    abstract_ws: str  # whitespace before <Abstract>
    mesh_ws: str  # whitespace before <MeshHeadingList>


_SLOTS = ("pmid", "year", "title", "abstract", "authors", "mesh", "pmid")
_PATTERNS = [  # (slot, regex whose group 1 is the varying part), applied in document order
    ("pmid", r"<MedlineCitation[^>]*>\s*<PMID[^>]*>(\d+)</PMID>"),
    ("year", r"<PubDate>\s*<Year>(\d+)</Year>"),
    ("title", r"<ArticleTitle>(.*?)</ArticleTitle>"),
    ("abstract", r"(\s*<Abstract>.*?</Abstract>)"),
    ("authors", r"<AuthorList[^>]*>(.*?)</AuthorList>"),
    ("mesh", r"(\s*<MeshHeadingList>.*?</MeshHeadingList>)"),
    ("pmid", r'<ArticleId IdType="pubmed">(\d+)</ArticleId>'),
]


def load_template(path: Path) -> tuple[str, Template]:
    """The file's header (XML declaration + DOCTYPE) and its one record as a template."""
    text = path.read_text(encoding="utf-8")
    m = re.search(r"([ \t]*)<PubmedArticle>.*?</PubmedArticle>", text, re.S)
    if not m:
        raise ValueError(f"{path}: no <PubmedArticle>")
    header = text[: text.index("<PubmedArticleSet>")]
    rec = m.group(0)
    pieces, pos = [], 0
    spans = {}
    for slot, pat in _PATTERNS:
        mm = re.compile(pat, re.S).search(rec, pos)
        if not mm:
            raise ValueError(f"{path}: template has no {slot} ({pat})")
        pieces.append(rec[pos : mm.start(1)])
        spans.setdefault(slot, mm.group(1))
        pos = mm.end(1)
    pieces.append(rec[pos:])
    authors = re.findall(r"\s*<Author\b.*?</Author>", spans["authors"], re.S)
    close_ws = re.search(r"(\s*)$", spans["authors"]).group(1)
    abstract_ws = re.match(r"\s*", spans["abstract"]).group(0)
    mesh_ws = re.match(r"\s*", spans["mesh"]).group(0)
    lead = re.match(r"\s*", spans["mesh"]).group(0).split("\n")[-1]
    inner = re.search(r"\n([ \t]*)<MeshHeading>", spans["mesh"]).group(1)
    indent = inner[len(lead) :] or "\t"
    return header, Template(path.name, pieces, authors, close_ws, indent, abstract_ws, mesh_ws)


@dataclass
class Sources:
    header: str
    templates: list[Template]
    descriptors: list[tuple[str, str]]  # (UI, name) of every 2017 descriptor, sorted by UI
    by_name: dict[str, str]  # MeSH name -> UI
    names: dict[str, str]  # UI -> MeSH name
    qualifiers: list[tuple[str, str]]  # (UI, name) from the real records
    qa: list[dict]  # PubMedQA records: question, contexts, labels, meshes, year


def load_sources(data: Path = DATA) -> Sources:
    pm = sorted((data / "pubmed").glob("*.xml"))
    if not pm:
        raise FileNotFoundError(f"no real PubMed records in {data / 'pubmed'}")
    loaded = [load_template(p) for p in pm]
    # the newest DTD header for every output file (records of the 2017 DTD parse under it too)
    header = max(loaded, key=lambda ht: re.search(r"pubmed_(\d+)\.dtd", ht[0]).group(1))[0]
    names: dict[str, str] = {}
    with open(data / "mesh" / "MeshTree2017.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, ui, term = line.rstrip("\n").split("\t")
            names[ui] = term
    descriptors = sorted(names.items())
    by_name = {term: ui for ui, term in descriptors}
    quals: dict[str, str] = {}
    for p in pm:
        for ui, name in re.findall(r'<QualifierName[^>]*UI="(Q\d+)"[^>]*>([^<]+)<', p.read_text()):
            quals[ui] = name  # names stay XML-escaped, as in the source
    raw = json.loads((data / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    qa = []
    for pmid in sorted(raw):
        r = raw[pmid]
        qa.append(
            {
                "question": r["QUESTION"],
                "contexts": r["CONTEXTS"],
                "labels": r["LABELS"],
                "meshes": r.get("MESHES", []),
                "year": r.get("YEAR") or "2010",
            }
        )
    return Sources(
        header, [t for _, t in loaded], descriptors, by_name, names, sorted(quals.items()), qa
    )


# ---------------------------------------------------------------------------- one record
def _abstract(rng: random.Random, t: Template, qa: dict) -> str:
    r = rng.random()
    if r < 0.03:  # no abstract (about a third of all PubMed records lack one; few here)
        return ""
    ind = t.abstract_ws + t.indent
    parts = [escape(c) for c in qa["contexts"]]
    if parts and rng.random() < 0.05:  # mixed content, as in real abstracts (<sub>, <i>, ...)
        words = parts[0].split(" ")
        k = rng.randrange(len(words))
        words[k] = f"<i>{words[k]}</i>"
        parts[0] = " ".join(words)
    if r < 0.13 or not qa["labels"]:  # one unlabelled section, like the 2017 record
        body = f"{ind}<AbstractText>{' '.join(parts)}</AbstractText>"
    else:
        body = "".join(
            f'{ind}<AbstractText Label="{escape(lab)}">{c}</AbstractText>'
            for lab, c in zip(qa["labels"], parts, strict=False)
        )
    return f"{t.abstract_ws}<Abstract>{body}{t.abstract_ws}</Abstract>"


def _mesh(rng: random.Random, t: Template, src: Sources, qa: dict) -> str:
    # as many headings as the PubMedQA record has (4..30, mean 14.5: a real distribution), about
    # half of them its own (those the 2017 tree knows), the rest drawn from the whole tree
    want = max(len(qa["meshes"]), 1)
    uis = {src.by_name[n] for n in qa["meshes"] if n in src.by_name and rng.random() < 0.5}
    while len(uis) < want:
        uis.add(src.descriptors[rng.randrange(len(src.descriptors))][0])
    names = src.names
    heads = sorted(uis, key=lambda u: names[u])
    i1 = t.mesh_ws + t.indent
    i2 = i1 + t.indent
    out = [f"{t.mesh_ws}<MeshHeadingList>"]
    for ui in heads:
        major = "Y" if rng.random() < 0.2 else "N"
        out.append(
            f'{i1}<MeshHeading>{i2}<DescriptorName UI="{ui}" MajorTopicYN="{major}">'
            f"{escape(names[ui])}</DescriptorName>"
        )
        if rng.random() < 0.35:
            for qui, qname in sorted(
                rng.sample(src.qualifiers, rng.randint(1, 3)), key=lambda q: q[1]
            ):
                qmaj = "Y" if rng.random() < 0.3 else "N"
                out.append(
                    f'{i2}<QualifierName UI="{qui}" MajorTopicYN="{qmaj}">{qname}</QualifierName>'
                )
        out.append(f"{i1}</MeshHeading>")
    out.append(f"{t.mesh_ws}</MeshHeadingList>")
    return "".join(out)


def make_record(rng: random.Random, src: Sources, pmid: int) -> str:
    t = src.templates[rng.randrange(len(src.templates))]
    qa = src.qa[rng.randrange(len(src.qa))]
    authors = "".join(t.authors[: rng.randint(1, len(t.authors))]) + t.authors_close_ws
    values = {
        "pmid": str(pmid),
        "title": escape(qa["question"]),
        "abstract": _abstract(rng, t, qa),
        "year": str(qa["year"]),
        "authors": authors,
        "mesh": _mesh(rng, t, src, qa),
    }
    out = [t.pieces[0]]
    for slot, piece in zip(_SLOTS, t.pieces[1:], strict=True):
        out.append(values[slot])
        out.append(piece)
    return "".join(out)


# ---------------------------------------------------------------------------- files
def file_name(index: int, gz: bool) -> str:
    return f"pubmed-bench-{index + 1:04d}.xml" + (".gz" if gz else "")


def write_file(
    path: str,
    src: Sources,
    seed: int,
    index: int,
    first_pmid: int,
    n: int,
    gz: bool,
    level: int = 6,
) -> tuple[str, int, int]:
    """Write one file of ``n`` records; returns (path, records, uncompressed bytes)."""
    rng = random.Random(f"pubmed-bench:{seed}:{index}")
    tmp = f"{path}.tmp"
    size = 0
    with open(tmp, "wb") as raw:
        f = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level)
            if gz
            else raw
        )
        buf: list[str] = [src.header, "<PubmedArticleSet>\n"]
        for i in range(n):
            buf.append(make_record(rng, src, first_pmid + i))
            buf.append("\n")
            if len(buf) >= 512:
                b = "".join(buf).encode("utf-8")
                size += len(b)
                f.write(b)
                buf = []
        buf.append("</PubmedArticleSet>\n")
        b = "".join(buf).encode("utf-8")
        size += len(b)
        f.write(b)
        if gz:
            f.close()
    os.replace(tmp, path)
    return path, n, size


_SRC: Sources | None = None


def _worker(args):
    global _SRC
    data, *rest = args
    if _SRC is None:
        _SRC = load_sources(Path(data))
    return write_file(rest[0], _SRC, *rest[1:])


def generate(
    out: str | Path,
    records: int,
    seed: int = 0,
    records_per_file: int = RECORDS_PER_FILE,
    gz: bool = True,
    first_pmid: int = FIRST_PMID,
    jobs: int | None = None,
    data: str | Path = DATA,
    level: int = 6,
    quiet: bool = False,
) -> dict:
    """Write ``records`` records into ``out`` (a folder) and a ``manifest.json``; returns the
    manifest. A folder whose manifest matches (same parameters, files present) is kept as is."""
    out = Path(out)
    params = {
        "generator": GENERATOR_VERSION,
        "records": records,
        "seed": seed,
        "records_per_file": records_per_file,
        "gzip": gz,
        "first_pmid": first_pmid,
        "level": level if gz else None,
    }
    man_path = out / "manifest.json"
    if man_path.exists():
        man = json.loads(man_path.read_text())
        if man.get("params") == params and all((out / f["name"]).exists() for f in man["files"]):
            return man
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("pubmed-bench-*.xml"), *out.glob("pubmed-bench-*.xml.gz")]:
        old.unlink()
    man_path.unlink(missing_ok=True)
    tasks = []
    done = 0
    for i in range((records + records_per_file - 1) // records_per_file):
        n = min(records_per_file, records - done)
        tasks.append(
            (str(data), str(out / file_name(i, gz)), seed, i, first_pmid + done, n, gz, level)
        )
        done += n
    t0 = time.perf_counter()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    if jobs == 1:
        results = [_worker(t) for t in tasks]
    else:
        with cf.ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(_worker, tasks))
    files = [
        {
            "name": Path(p).name,
            "records": n,
            "xml_bytes": size,
            "file_bytes": Path(p).stat().st_size,
        }
        for p, n, size in results
    ]
    man = {
        "params": params,
        "files": files,
        "seconds": round(time.perf_counter() - t0, 1),
        "xml_bytes": sum(f["xml_bytes"] for f in files),
        "file_bytes": sum(f["file_bytes"] for f in files),
    }
    man_path.write_text(json.dumps(man, indent=1) + "\n")
    if not quiet:
        print(
            f"generated {records:,} records in {len(files)} files under {out} "
            f"({man['xml_bytes'] / 1e9:.2f} GB XML, {man['file_bytes'] / 1e9:.2f} GB on disk) "
            f"in {man['seconds']} s",
            file=sys.stderr,
        )
    return man


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench" / "out" / "pubmed"),
        help="output folder (default: bench/out/pubmed, git-ignored)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--records-per-file", type=int, default=RECORDS_PER_FILE)
    ap.add_argument(
        "--gzip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write .xml.gz (default) or plain .xml",
    )
    ap.add_argument("--first-pmid", type=int, default=FIRST_PMID)
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    ap.add_argument("--data", default=str(DATA), help="the shared data folder")
    a = ap.parse_args(argv)
    generate(a.out, a.records, a.seed, a.records_per_file, a.gzip, a.first_pmid, a.jobs, a.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
