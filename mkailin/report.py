"""Analytics over the preference data, shared by ``mkailin report preferences`` and the
``notebooks/preferences.py`` notebook: the margin distribution, agent win rates, scores by MeSH
top-level category, and judge-vs-rule agreement."""

from __future__ import annotations

import html
from pathlib import Path

import pyarrow as pa

from mkailin.agents.preference import compare_judges
from mkailin.lake import Lake

MESH_CATEGORIES = {
    "A": "Anatomy",
    "B": "Organisms",
    "C": "Diseases",
    "D": "Chemicals and Drugs",
    "E": "Techniques and Equipment",
    "F": "Psychiatry and Psychology",
    "G": "Phenomena and Processes",
    "H": "Disciplines and Occupations",
    "I": "Anthropology, Education, Sociology",
    "J": "Technology, Industry, Agriculture",
    "K": "Humanities",
    "L": "Information Science",
    "M": "Named Groups",
    "N": "Health Care",
    "V": "Publication Characteristics",
    "Z": "Geographicals",
}


def margins(lake: Lake) -> pa.Table:
    return lake.query_arrow("select judge, scorer, margin from preferences order by judge, margin")


def win_rates(lake: Lake) -> pa.Table:
    """Per judge: how often each agent's question is chosen."""
    return lake.query_arrow("""
        select p.judge, q.agent, count(*) as wins,
               count(*) / sum(count(*)) over (partition by p.judge) as win_rate
        from preferences as p join questions as q on q.question_id = p.chosen_id
        group by 1, 2 order by 1, 2
    """)


def scores_by_category(lake: Lake) -> pa.Table:
    """Rule scores of chosen and rejected questions by the MeSH top-level categories of the
    document (a document counts once in each category it has a term in)."""
    return lake.query_arrow("""
        with doc_cats as (
            select distinct m.pmid, t.category
            from article_mesh as m
            join mesh_tree as t on t.descriptor_ui = m.descriptor_ui
        )
        select d.category, count(*) as pairs,
               avg(p.chosen_score) as chosen_score, avg(p.rejected_score) as rejected_score,
               avg(p.margin) as margin
        from preferences as p join doc_cats as d using (pmid)
        where p.judge = 'rule'
        group by 1 order by 1
    """)


def _plot_margins(t: pa.Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    by = {}
    for j, m in zip(t.column("judge").to_pylist(), t.column("margin").to_pylist()):
        if m is not None:
            by.setdefault(j, []).append(m)
    for j, ms in sorted(by.items()):
        ax.hist(ms, bins=20, alpha=0.6, label=f"{j} (n={len(ms)})")
    ax.set_xlabel("margin (chosen score - rejected score)")
    ax.set_ylabel("documents")
    ax.set_title("Preference margins")
    if by:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_bars(
    t: pa.Table, x: str, ys: list[str], title: str, path: Path, labels: dict | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [str(v) for v in t.column(x).to_pylist()] if t.num_rows else []
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(xs) + 2), 4))
    width = 0.8 / max(1, len(ys))
    for i, y in enumerate(ys):
        vals = [v or 0 for v in t.column(y).to_pylist()] if t.num_rows else []
        ax.bar([k + i * width for k in range(len(xs))], vals, width, label=y)
    ax.set_xticks([k + width * (len(ys) - 1) / 2 for k in range(len(xs))])
    ax.set_xticklabels(
        [labels.get(v, v) if labels else v for v in xs], rotation=45, ha="right", fontsize=8
    )
    ax.set_title(title)
    if len(ys) > 1:
        ax.legend(fontsize=8)
    fig.subplots_adjust(bottom=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _table_html(t: pa.Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.column_names)
    body = ""
    for r in t.to_pylist():
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values())
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))


def preferences_report(lake: Lake, out: str | Path) -> list[Path]:
    """Write the four plots as PNG, their tables as CSV, and an index.html; returns the files."""
    import csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "margins": margins(lake),
        "win_rates": win_rates(lake),
        "scores_by_category": scores_by_category(lake),
        "judge_agreement": compare_judges(lake),
    }
    files = []
    _plot_margins(tables["margins"], out / "margins.png")
    wr = tables["win_rates"]
    wr_plot = (
        pa.table(
            {
                "judge_agent": [
                    f"{j}/{a}"
                    for j, a in zip(wr.column("judge").to_pylist(), wr.column("agent").to_pylist())
                ],
                "win_rate": wr.column("win_rate"),
            }
        )
        if wr.num_rows
        else pa.table(
            {"judge_agent": pa.array([], pa.string()), "win_rate": pa.array([], pa.float64())}
        )
    )
    _plot_bars(wr_plot, "judge_agent", ["win_rate"], "Agent win rates", out / "win_rates.png")
    _plot_bars(
        tables["scores_by_category"],
        "category",
        ["chosen_score", "rejected_score"],
        "Rule scores by MeSH category",
        out / "scores_by_category.png",
        MESH_CATEGORIES,
    )
    ja = tables["judge_agreement"]
    ja_plot = pa.table(
        {
            "pair": [
                f"{a} vs {b}"
                for a, b in zip(ja.column("judge_a").to_pylist(), ja.column("judge_b").to_pylist())
            ],
            "agreement": ja.column("agreement"),
            "kappa": ja.column("kappa"),
        }
    )
    _plot_bars(
        ja_plot, "pair", ["agreement", "kappa"], "Judge agreement", out / "judge_agreement.png"
    )
    sections = []
    for name, t in tables.items():
        with open(out / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(t.column_names)
            for r in t.to_pylist():
                w.writerow(list(r.values()))
        files += [out / f"{name}.csv", out / f"{name}.png"]
        shown = t if name != "margins" else t.slice(0, 0)
        sections.append(
            f"<h2>{name.replace('_', ' ')}</h2><img src='{name}.png'>"
            + (_table_html(shown) if shown.num_rows else "")
        )
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>mkailin preferences</title>"
        "<style>body{font-family:sans-serif;max-width:60em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style><h1>Preferences</h1>"
        + "".join(sections)
    )
    files.append(out / "index.html")
    return files
