"""Rendering query results for the terminal: an aligned table, CSV or JSON lines.

The table is for people: integers carry thousands separators (16,095,000,000), floats are fixed
notation with a few significant digits (1,400,880 and 0.0000237, never 1.40088e+06), money
columns (``cost_usd``, ``*_usd``) read $1,234.56, and identifiers (``pmid``, ``*_id``, years) are
left as they are. CSV and JSON keep the exact values for programs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re

import pyarrow as pa

# an integer column whose name has one of these words is an identifier or a year, not a quantity
_IDENTIFIER_WORDS = {"id", "ids", "pmid", "pmids", "pid", "uid", "ui", "year", "years"}
NOTES_KEY = b"mkailin.notes"  # schema metadata: lines to print under the table


def is_identifier(column: str) -> bool:
    return any(w in _IDENTIFIER_WORDS for w in re.split(r"[^a-z0-9]+", column.lower()))


def is_money(column: str) -> bool:
    words = re.split(r"[^a-z0-9]+", column.lower())
    return "usd" in words or "cost" in words


def format_int(v: int) -> str:
    """16095000000 -> '16,095,000,000'."""
    return f"{v:,}"


def _decimals(v: float) -> int:
    """Decimals that show ``v`` with about three significant digits in fixed notation."""
    a = abs(v)
    if a == 0 or not math.isfinite(a):
        return 0
    if a >= 1000:
        return 0
    if a >= 100:
        return 1
    if a >= 1:
        return 2
    return 2 - math.floor(math.log10(a))  # 0.5 -> 3, 0.0237 -> 4, 0.0000237 -> 7


def format_float(v: float, decimals: int | None = None) -> str:
    """1400880.4 -> '1,400,880'; 2.372 -> '2.37'; 0.0000237256 -> '0.0000237'; 3e-9 -> '3.00e-09'."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and abs(v) < 1e-6:
        return f"{v:.2e}"  # only for the truly tiny
    d = _decimals(v) if decimals is None else decimals
    return f"{v:,.{d}f}"


def format_money(v: float, decimals: int | None = None) -> str:
    """1234.5 -> '$1,234.50'; 0.0042 -> '$0.0042'; -3 -> '-$3.00'."""
    if math.isnan(v):
        return "NaN"
    if decimals is None:
        decimals = 2 if v == 0 or abs(v) >= 0.01 else 4
    s = f"${abs(v):,.{decimals}f}"
    return "-" + s if v < 0 else s


def format_number(v, column: str = "") -> str:
    """One number as the table shows it (``column`` names money and identifier columns)."""
    if isinstance(v, bool) or v is None:
        return "NULL" if v is None else str(v)
    if isinstance(v, int):
        if is_money(column):
            return format_money(float(v))
        return str(v) if is_identifier(column) else format_int(v)
    if is_money(column):
        return format_money(v)
    return format_float(v)


def _float_column(values: list, column: str) -> list[str]:
    """Floats of one column with one number of decimals, so that the points line up, unless
    the column spans magnitudes so far apart that shared decimals would drown the large ones."""
    finite = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if is_money(column):
        small = any(0 < abs(v) < 0.01 for v in finite)
        return ["NULL" if v is None else format_money(v, 4 if small else 2) for v in values]
    shown = [v for v in finite if v == 0 or abs(v) >= 1e-6]
    if not shown:
        return ["NULL" if v is None else format_float(v) for v in values]
    need = max(_decimals(v) for v in shown)
    biggest = max(shown, key=abs)
    if need - _decimals(biggest) > 3:
        return ["NULL" if v is None else format_float(v) for v in values]
    return [
        "NULL" if v is None else format_float(v, need if v == 0 or abs(v) >= 1e-6 else None)
        for v in values
    ]


def _text(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    return str(v)


def _clip(s: str, width: int) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 1] + "…"


def table_notes(table: pa.Table) -> list[str]:
    """The lines a table carries for its reader (a legend), from its schema metadata."""
    meta = table.schema.metadata or {}
    raw = meta.get(NOTES_KEY)
    return raw.decode().splitlines() if raw else []


def with_notes(table: pa.Table, notes: list[str]) -> pa.Table:
    """``table`` carrying ``notes`` to print under it (a legend of its column labels)."""
    meta = dict(table.schema.metadata or {})
    meta[NOTES_KEY] = "\n".join(notes).encode()
    return table.replace_schema_metadata(meta)


def render(
    table: pa.Table,
    fmt: str = "table",
    max_width: int = 60,
    footnotes: tuple[str, ...] = (),
) -> str:
    """``footnotes``: text columns whose values, in the table format, become [1], [2], … with the
    texts listed under the table (CSV and JSON keep the text in the column)."""
    rows = table.to_pylist()
    cols = table.column_names
    if fmt == "json":
        return "\n".join(json.dumps(r, default=_json_default, ensure_ascii=False) for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r[c] is None else _json_scalar(r[c]) for c in cols])
        return buf.getvalue().rstrip("\n")
    types = table.schema.types
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in types]
    notes: dict[str, int] = {}
    columns = []
    for c, t in zip(cols, types):
        values = [r[c] for r in rows]
        if c in footnotes:
            cells = []
            for v in values:
                if v:
                    notes.setdefault(v, len(notes) + 1)
                cells.append(f"[{notes[v]}]" if v else "")
        elif pa.types.is_floating(t):
            cells = _float_column(values, c)
        elif pa.types.is_integer(t):
            cells = [format_number(v, c) for v in values]
        else:
            cells = [_text(v) for v in values]
        columns.append([_clip(s, max_width) for s in cells])
    cells = [list(row) for row in zip(*columns)] if rows else []
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})")
    out += [f"[{n}] {text}" for text, n in notes.items()]
    out += table_notes(table)
    return "\n".join(out)


def _json_default(v):
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _json_scalar(v):
    if isinstance(v, list | dict):
        return json.dumps(v, default=_json_default, ensure_ascii=False)
    return v
