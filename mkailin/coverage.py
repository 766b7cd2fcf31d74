"""MeSH coverage of an exported corpus against its lake (``mkailin report coverage``).

For each MeSH top-level category (the letter of a tree number: A Anatomy, C Diseases, …) it
counts the corpus rows and articles that touch the category and the lake's articles that do,
and compares their shares.

- An article touches a category when one of its MeSH descriptors has a tree number in it; an
  article touches several categories, so the shares of one column add up to more than 1.
- A corpus row touches a category through its **source article** (``lineage.source_pmid``),
  the article its question is about. The retrieved context articles do not count: they are
  what the question is answered from, and counting them would weigh every row k+1 times.
- Shares: ``corpus_row_share`` = rows touching / rows; ``corpus_article_share`` = distinct
  source articles touching / distinct source articles; ``lake_share`` = lake articles touching
  / lake articles. ``ratio`` = corpus_article_share / lake_share (article against article),
  ``row_ratio`` = corpus_row_share / lake_share; above 1 the corpus holds more of the category
  than the lake, below 1 less. Empty when the lake has no article in the category.
- The row ``none`` counts articles with no descriptor in the MeSH tree. Rows whose source
  article is not in the lake (an export of another lake, or an article deleted since) are left
  out of every count and reported as ``missing_rows``.

``write_coverage`` writes ``coverage.csv`` and ``coverage.svg`` (a bar chart drawn here, so the
report needs no plotting package) into ``<export folder>_coverage`` beside the export, never
into the export folder itself, whose manifest lists every file it holds.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import pyarrow as pa

from mkailin.errors import InputError
from mkailin.lake import Lake
from mkailin.report import MESH_CATEGORIES

CSV_NAME = "coverage.csv"
PLOT_NAME = "coverage.svg"
NONE = "none"  # the category row of articles with no descriptor in the MeSH tree

COLUMNS = [
    ("category", pa.string()),
    ("name", pa.string()),
    ("corpus_rows", pa.int64()),
    ("corpus_row_share", pa.float64()),
    ("corpus_articles", pa.int64()),
    ("corpus_article_share", pa.float64()),
    ("lake_articles", pa.int64()),
    ("lake_share", pa.float64()),
    ("ratio", pa.float64()),
    ("row_ratio", pa.float64()),
]


def read_sources(export_dir: str | Path) -> list[int]:
    """The source PMID of every row of an export folder's ``data.jsonl``, in row order."""
    path = Path(export_dir) / "data.jsonl"
    if not path.is_file():
        raise InputError(
            f"{export_dir}: no data.jsonl, not an export folder (write one with: mkailin export cpt)"
        )
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pmid = (row.get("lineage") or {}).get("source_pmid", row.get("pmid"))
                out.append(int(pmid))
            except (ValueError, TypeError, AttributeError):
                raise InputError(f"{path}:{n}: not a corpus row with a source PMID") from None
    if not out:
        raise InputError(f"{export_dir}: the export holds no rows")
    return out


def newest_export(lake: Lake, cfg) -> Path:
    """The lake's newest export folder (``corpus_cpt`` or ``corpus_sft`` under export.out, else
    ``<lake>/exports``), by the time its manifest says it was created."""
    from mkailin.export import export_dir

    found = []
    for kind in ("cpt", "sft"):
        folder = export_dir(lake, cfg, kind, None)
        if (folder / "data.jsonl").is_file():
            try:
                created = json.loads((folder / "manifest.json").read_text()).get("created") or ""
            except (OSError, ValueError):
                created = ""
            found.append((created, (folder / "data.jsonl").stat().st_mtime, folder))
    if not found:
        base = export_dir(lake, cfg, "cpt", None).parent
        raise InputError(
            f"no export in {base}; write one with `mkailin export cpt` or name one with --export"
        )
    return max(found)[2]


def coverage_table(lake: Lake, sources: list[int]) -> tuple[pa.Table, dict]:
    """The coverage table of a corpus whose rows have these source PMIDs, and its totals."""
    if not lake.query("select count(*) from mesh_tree")[0][0]:
        raise InputError(
            "the lake has no MeSH tree; load one with: mkailin ingest mesh MeshTreeYYYY.tsv"
        )
    cats = """
        with doc_cats as (
            select distinct m.pmid, t.category
            from article_mesh as m
            join mesh_tree as t on t.descriptor_ui = m.descriptor_ui
        )
    """
    lake_total, tagged = lake.query(
        f"{cats} select (select count(*) from articles), count(distinct pmid) from doc_cats"
    )[0]
    if not tagged:
        raise InputError(
            "no article in the lake has a MeSH descriptor in the MeSH tree; coverage needs "
            "articles with MeSH headings (ingest PubMed or PubMedQA after the tree)"
        )
    lake_by = dict(lake.query(f"{cats} select category, count(*) from doc_cats group by 1"))
    corpus = f"""{cats},
        corpus as (
            select unnest(?::bigint[]) as pmid
        ),
        present as (
            select c.pmid
            from corpus as c
            semi join articles as a on a.pmid = c.pmid
        )
    """
    rows, articles = lake.query(
        f"{corpus} select count(*), count(distinct pmid) from present", [sources]
    )[0]
    if not rows:
        raise InputError(
            f"none of the export's {len(set(sources)):,} source articles is in the lake at "
            f"{lake.root}; is it the lake the corpus was exported from?"
        )
    by = {
        c: (r, a)
        for c, r, a in lake.query(
            f"{corpus} select d.category, count(*), count(distinct p.pmid) "
            "from present as p join doc_cats as d using (pmid) group by 1",
            [sources],
        )
    }
    untagged = lake.query(
        f"{corpus} select count(*), count(distinct pmid) from present "
        "where pmid not in (select pmid from doc_cats)",
        [sources],
    )[0]
    names = dict(MESH_CATEGORIES)
    names.update({c: c for c in sorted(set(lake_by) | set(by)) if c not in names})
    names[NONE] = "no MeSH category"
    counts = {c: (*by.get(c, (0, 0)), lake_by.get(c, 0)) for c in names if c != NONE}
    counts[NONE] = (*untagged, lake_total - tagged)
    out = []
    for c, (r, a, la) in counts.items():
        row_share, art_share = r / rows, a / articles
        lake_share = la / lake_total
        out.append(
            {
                "category": c,
                "name": names[c],
                "corpus_rows": r,
                "corpus_row_share": row_share,
                "corpus_articles": a,
                "corpus_article_share": art_share,
                "lake_articles": la,
                "lake_share": lake_share,
                "ratio": art_share / lake_share if la else None,
                "row_ratio": row_share / lake_share if la else None,
            }
        )
    totals = {
        "rows": rows,
        "articles": articles,
        "missing_rows": len(sources) - rows,
        "lake_articles": lake_total,
    }
    return pa.Table.from_pylist(out, schema=pa.schema(COLUMNS)), totals


def write_coverage(lake: Lake, export_dir: str | Path, out_dir: str | Path | None = None) -> dict:
    """Write ``coverage.csv`` and ``coverage.svg`` for an export folder (default folder:
    ``<export_dir>_coverage`` beside it). Returns the paths, the totals and the table."""
    export_dir = Path(export_dir)
    out = Path(out_dir) if out_dir else export_dir.with_name(export_dir.name + "_coverage")
    if out.resolve().is_relative_to(export_dir.resolve()):
        raise InputError(
            f"{out}: inside the export folder {export_dir}, whose manifest lists every file in "
            "it; write the report elsewhere (--out)"
        )
    table, totals = coverage_table(lake, read_sources(export_dir))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / CSV_NAME, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(table.column_names)
        for r in table.to_pylist():
            w.writerow(["" if v is None else v for v in r.values()])
    title = f"MeSH coverage of {export_dir.name} ({totals['rows']:,} rows) against the lake"
    (out / PLOT_NAME).write_text(svg_chart(table, title), encoding="utf-8")
    return {
        "export": str(export_dir),
        "out": str(out),
        "csv": str(out / CSV_NAME),
        "plot": str(out / PLOT_NAME),
        **totals,
        "table": table,
    }


def describe(result: dict) -> str:
    """One line on a coverage report: the most over- and under-represented categories."""
    rows = [r for r in result["table"].to_pylist() if r["ratio"] is not None]
    rows = [r for r in rows if r["category"] != NONE]
    line = (
        f"coverage of {result['export']}: {_n(result['rows'], 'row')} from "
        f"{_n(result['articles'], 'source article')} against "
        f"{_n(result['lake_articles'], 'lake article')}"
    )
    if rows:
        hi = max(rows, key=lambda r: (r["ratio"], r["category"]))
        lo = min(rows, key=lambda r: (r["ratio"], r["category"]))
        line += (
            f"; most over-represented {hi['category']} {hi['name']} ({hi['ratio']:.2f}x), "
            f"most under-represented {lo['category']} {lo['name']} ({lo['ratio']:.2f}x)"
        )
    if result["missing_rows"]:
        line += f"; {_n(result['missing_rows'], 'row')} whose source article is not in the lake"
    return line


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------ the chart
BARS = (  # column, legend, colour
    ("lake_share", "lake articles", "#9e9e9e"),
    ("corpus_article_share", "corpus source articles", "#1f77b4"),
    ("corpus_row_share", "corpus rows", "#aec7e8"),
)
_LEFT, _PLOT_W, _RIGHT, _TOP = 270, 380, 80, 70  # px: labels, bars, ratio column, header
_BAR_H, _GAP = 7, 10  # px: one bar, between categories


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def svg_chart(table: pa.Table, title: str) -> str:
    """A horizontal grouped bar chart of the three shares per category, with the ratio at the
    right; self-contained SVG. The ``none`` row is drawn only when it holds an article."""
    rows = [
        r
        for r in table.to_pylist()
        if r["category"] != NONE or r["corpus_articles"] or r["lake_articles"]
    ]
    top = max([r[c] for r in rows for c, _, _ in BARS] + [0.0])
    step = 0.1 if top <= 0.5 else 0.2
    xmax = max(step, math.ceil(top / step - 1e-9) * step)
    group = len(BARS) * _BAR_H + _GAP
    height = _TOP + len(rows) * group + 62
    width = _LEFT + _PLOT_W + _RIGHT
    esc = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{esc(title)}</text>',
    ]
    x = 10
    for _, label, colour in BARS:
        out.append(f'<rect x="{x}" y="34" width="12" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="43">{esc(label)}</text>')
        x += 22 + 7 * len(label)
    out.append(f'<text x="{_LEFT + _PLOT_W + 10}" y="{_TOP - 8}" font-weight="bold">ratio</text>')
    bottom = _TOP + len(rows) * group
    ticks = round(xmax / step)
    for i in range(ticks + 1):
        gx = _LEFT + _PLOT_W * i / ticks
        out.append(
            f'<line x1="{gx:.1f}" y1="{_TOP - 4}" x2="{gx:.1f}" y2="{bottom}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{gx:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{round(100 * step * i)}%</text>"
        )
    for i, r in enumerate(rows):
        y0 = _TOP + i * group
        label = f"{r['category']}  {r['name']}"
        out.append(
            f'<text x="{_LEFT - 8}" y="{y0 + len(BARS) * _BAR_H / 2 + 4}" '
            f'text-anchor="end">{esc(label)}</text>'
        )
        counts = {
            "lake_share": f"{r['lake_articles']:,} lake articles",
            "corpus_article_share": f"{r['corpus_articles']:,} source articles",
            "corpus_row_share": f"{r['corpus_rows']:,} rows",
        }
        for j, (col, _, colour) in enumerate(BARS):
            w = _PLOT_W * r[col] / xmax
            tip = f"{r['category']} {r['name']}: {_pct(r[col])} ({counts[col]})"
            out.append(
                f'<rect x="{_LEFT}" y="{y0 + j * _BAR_H}" width="{w:.1f}" height="{_BAR_H}" '
                f'fill="{colour}"><title>{esc(tip)}</title></rect>'
            )
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        out.append(
            f'<text x="{_LEFT + _PLOT_W + 10}" y="{y0 + len(BARS) * _BAR_H / 2 + 4}">{ratio}</text>'
        )
    out.append(f'<line x1="{_LEFT}" y1="{_TOP - 4}" x2="{_LEFT}" y2="{bottom}" stroke="#333"/>')
    notes = (
        "share: the fraction of articles (or rows) with a MeSH descriptor in the category",
        "ratio: corpus source-article share / lake share (n/a: no lake article in the category)",
    )
    for i, note in enumerate(notes):
        out.append(
            f'<text x="10" y="{bottom + 36 + 14 * i}" font-size="11" fill="#555">{note}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
