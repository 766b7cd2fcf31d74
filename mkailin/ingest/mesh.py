"""MeSH into ``mesh_descriptors`` and ``mesh_tree``.

Two formats, told apart by content, not by name:

- NLM descriptor XML (``descYYYY.xml`` or ``.xml.gz``): ``<DescriptorRecordSet>`` of
  ``<DescriptorRecord>`` with UI, name, tree numbers and entry terms. Descriptors with no tree
  number (check tags such as *Female* in some years) are kept, with an empty tree list.
- MeshTree TSV (``Tree Number<TAB>Desc Ui<TAB>Term``), one row per tree number.

Several files are merged by descriptor UI; the result replaces both tables in one swap each.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pyarrow as pa
from lxml import etree

from mkailin.errors import InputError
from mkailin.ingest.common import (
    IngestSummary,
    Ledger,
    Timer,
    check_input,
    file_key,
    logged_ingest,
    open_bytes,
    read_head,
)
from mkailin.lake import Lake

SOURCE = "mesh"
TSV_HEADER = ["Tree Number", "Desc Ui", "Term"]


def detect_format(path: Path) -> str:
    head = read_head(path, 4096)
    text = head.decode("utf-8-sig", "replace").lstrip()
    if text.startswith("<"):
        if "<DescriptorRecordSet" in text or "<DescriptorRecord" in text:
            return "xml"
        raise InputError(
            f"{path}: not a MeSH file: XML without <DescriptorRecordSet> "
            "(expected NLM descYYYY.xml or a MeshTree TSV)"
        )
    first = text.splitlines()[0] if text else ""
    cols = [c.strip() for c in first.split("\t")]
    if [c.lower() for c in cols[:3]] == [c.lower() for c in TSV_HEADER]:
        return "tsv"
    raise InputError(
        f"{path}: not a MeSH file: expected the header 'Tree Number<TAB>Desc Ui<TAB>Term' "
        f"or NLM descriptor XML, found {first[:80]!r}"
    )


def _first_bad_line(path: Path) -> int:
    """The number of the first line that is not UTF-8 (text is decoded ahead, in chunks, so
    the decoder's own position does not say which line it was)."""
    with open_bytes(path) as raw:
        for lineno, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 0


# csv's own limit is 128 kB a field, past which it raises; fields are read up to 16 MB and any
# longer than MAX_FIELD characters is quarantined with its line
csv.field_size_limit(16 << 20)
MAX_FIELD = 4096


def read_tsv(path: Path, descriptors: dict, quarantine: list[dict]) -> int:
    n = 0
    with open_bytes(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
        reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            next(reader, None)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    n += 1
                    quarantine.append(_qrow(path, f"line {reader.line_num}", f"{e}", ""))
                    continue
                lineno = reader.line_num
                n += 1
                if any(len(c) > MAX_FIELD for c in row):
                    quarantine.append(
                        _qrow(
                            path,
                            f"line {lineno}",
                            f"a field of {max(map(len, row)):,} characters, past the "
                            f"{MAX_FIELD:,} a tree number, UI or term can have",
                            "\t".join(row)[:2000],
                        )
                    )
                    continue
                if len(row) < 3 or not row[0].strip() or not row[1].strip():
                    quarantine.append(
                        _qrow(
                            path,
                            f"line {lineno}",
                            "expected 3 tab-separated columns: tree number, descriptor UI, term",
                            "\t".join(row),
                        )
                    )
                    continue
                tree, ui, term = row[0].strip(), row[1].strip(), row[2].strip()
                d = descriptors.setdefault(ui, {"name": term, "trees": [], "entries": []})
                d["name"] = d["name"] or term
                if tree not in d["trees"]:
                    d["trees"].append(tree)
        except UnicodeDecodeError as e:
            raise InputError(
                f"{path}: line {_first_bad_line(path)}: not UTF-8 ({e.reason})"
            ) from None
    return n


def read_xml(path: Path, descriptors: dict, quarantine: list[dict]) -> int:
    n = 0
    try:
        with open_bytes(path) as f:
            for _, el in etree.iterparse(
                f, events=("end",), tag="DescriptorRecord", huge_tree=True
            ):
                n += 1
                ui = (el.findtext("DescriptorUI") or "").strip()
                name = (el.findtext("DescriptorName/String") or "").strip()
                if not ui or not name:
                    quarantine.append(
                        _qrow(
                            path,
                            f"record {n}",
                            "descriptor without UI or name",
                            etree.tostring(el, encoding="unicode")[:2000],
                        )
                    )
                else:
                    trees = [
                        t.text.strip() for t in el.iterfind("TreeNumberList/TreeNumber") if t.text
                    ]
                    entries = sorted(
                        {
                            t.text.strip()
                            for t in el.iterfind("ConceptList/Concept/TermList/Term/String")
                            if t.text
                        }
                        - {name}
                    )
                    d = descriptors.setdefault(ui, {"name": name, "trees": [], "entries": []})
                    d["name"] = name
                    d["trees"] += [t for t in trees if t not in d["trees"]]
                    d["entries"] = sorted(set(d["entries"]) | set(entries))
                el.clear(keep_tail=True)
                while el.getprevious() is not None:
                    del el.getparent()[0]
    except (etree.XMLSyntaxError, EOFError, OSError) as e:
        raise InputError(f"{path}: after descriptor record {n}: {e}") from None
    return n


def _qrow(path: Path, key: str, error: str, excerpt: str) -> dict:
    return {
        "source": SOURCE,
        "file": str(path),
        "record_key": f"{path.name}:{key}",
        "error": error,
        "raw_excerpt": excerpt,
    }


def build_tables(descriptors: dict) -> tuple[pa.Table, pa.Table]:
    drows, trows = [], []
    owner: dict[str, str] = {}
    for ui in sorted(descriptors):
        d = descriptors[ui]
        trees = sorted(d["trees"])
        drows.append(
            {
                "descriptor_ui": ui,
                "name": d["name"],
                "tree_numbers": trees,
                "entry_terms": d["entries"],
            }
        )
        for t in trees:
            owner[t] = ui
    for t in sorted(owner):
        parts = t.split(".")
        trows.append(
            {
                "tree_number": t,
                "descriptor_ui": owner[t],
                "parent_tree_number": ".".join(parts[:-1]) or None,
                "depth": len(parts),
                "category": t[0],
            }
        )
    return pa.Table.from_pylist(drows), pa.Table.from_pylist(trows)


def release(path: Path) -> str:
    """The MeSH release a file holds, from its name (``desc2017.xml``, ``mtrees2017.bin``)."""
    m = re.search(r"(?<![0-9])(19|20)[0-9]{2}(?![0-9])", path.name)
    return f"MeSH {m.group(0)}" if m else path.name


@logged_ingest(SOURCE)
def ingest_mesh(lake: Lake, inputs: list[str | Path]) -> IngestSummary:
    files = [check_input(p) for p in inputs]
    formats = [(f, detect_format(f)) for f in files]
    summary = IngestSummary(SOURCE)
    descriptors: dict = {}
    quarantine: list[dict] = []
    with Timer() as timer:
        for f, fmt in formats:
            summary.read += (read_xml if fmt == "xml" else read_tsv)(f, descriptors, quarantine)
            summary.files += 1
        if not descriptors:
            raise InputError(f"{', '.join(map(str, files))}: no MeSH descriptors found")
        dtab, ttab = build_tables(descriptors)
        with lake.lock("ingest mesh"):
            ledger = Ledger(lake, SOURCE)
            before = lake.query(
                "select path from ingested_files where source = ? order by file_seq desc limit 1",
                [SOURCE],
            )
            seq = ledger.next_seq()
            # the descriptors, the tree, quarantine and ledger rows: one commit
            with lake.transaction():
                lake.replace_table("mesh_descriptors", dtab)
                lake.replace_table("mesh_tree", ttab)
                lake.quarantine(quarantine)
                for f in files:
                    ledger.record(f, file_key(f), seq, dtab.num_rows, len(quarantine), "complete")
    summary.seconds = timer.seconds
    summary.written = dtab.num_rows + ttab.num_rows
    summary.quarantined = len(quarantine)
    summary.extra = {
        "descriptors": dtab.num_rows,
        "tree numbers": ttab.num_rows,
        "descriptors without a tree number": sum(1 for d in descriptors.values() if not d["trees"]),
    }
    new = f"{release(files[0])} ({', '.join(f.name for f in files)})"
    if before:
        old = Path(before[0][0])
        summary.outcome = f"{SOURCE}: {new} replaced {release(old)} ({old.name}) in one commit"
    else:
        summary.outcome = f"{SOURCE}: {new} loaded"
    return summary
