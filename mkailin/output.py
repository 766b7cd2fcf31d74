"""Rendering query results for the terminal: an aligned table, CSV or JSON lines."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math

import pyarrow as pa


def _cell(v, width: int) -> str:
    if v is None:
        s = "NULL"
    elif isinstance(v, float):
        s = "NaN" if math.isnan(v) else f"{v:.6g}"
    else:
        s = str(v)
    s = s.replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 1] + "…"


def render(table: pa.Table, fmt: str = "table", max_width: int = 60) -> str:
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
    cells = [[_cell(r[c], max_width) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
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
