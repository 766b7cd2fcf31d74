"""Preference data, explored: margins, agent win rates, scores by MeSH category, judge agreement.

A marimo notebook. Open it with `marimo edit notebooks/preferences.py`, or run it top to bottom
headless with `python notebooks/preferences.py`. It reads the lake named by MKAILIN_LAKE
(default ./lake); set MKAILIN_NOTEBOOK_OUT to a folder to also save the figures there.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import os
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mkailin import report
    from mkailin.lake import Lake

    lake = Lake.open(os.environ.get("MKAILIN_LAKE", "lake"))
    out = (
        Path(os.environ["MKAILIN_NOTEBOOK_OUT"]) if os.environ.get("MKAILIN_NOTEBOOK_OUT") else None
    )
    if out:
        out.mkdir(parents=True, exist_ok=True)
    return lake, out, plt, report


@app.cell
def _(lake):
    prefs = lake.query_arrow(
        "select judge, scorer, count(*) as pairs, avg(margin) as mean_margin "
        "from preferences group by all order by judge"
    ).to_pylist()
    prefs
    return (prefs,)


@app.cell
def _(lake, out, plt, report):
    margins = report.margins(lake)
    fig_m, ax_m = plt.subplots(figsize=(6, 3.5))
    by_judge = {}
    for j, m in zip(margins.column("judge").to_pylist(), margins.column("margin").to_pylist()):
        if m is not None:
            by_judge.setdefault(j, []).append(m)
    for j, ms in sorted(by_judge.items()):
        ax_m.hist(ms, bins=20, alpha=0.6, label=f"{j} (n={len(ms)})")
    ax_m.set_xlabel("margin")
    ax_m.set_title("Preference margins")
    if by_judge:
        ax_m.legend()
    if out:
        fig_m.savefig(out / "margins.png")
    fig_m
    return (by_judge,)


@app.cell
def _(lake, out, plt, report):
    wins = report.win_rates(lake).to_pylist()
    fig_w, ax_w = plt.subplots(figsize=(6, 3.5))
    ax_w.bar([f"{r['judge']}/{r['agent']}" for r in wins], [r["win_rate"] for r in wins])
    ax_w.set_title("Agent win rates")
    ax_w.tick_params(axis="x", rotation=30)
    if out:
        fig_w.savefig(out / "win_rates.png")
    fig_w
    return (wins,)


@app.cell
def _(lake, out, plt, report):
    cats = report.scores_by_category(lake).to_pylist()
    fig_c, ax_c = plt.subplots(figsize=(7, 3.5))
    xs = [report.MESH_CATEGORIES.get(r["category"], r["category"]) for r in cats]
    ax_c.bar(
        [i - 0.2 for i in range(len(cats))], [r["chosen_score"] for r in cats], 0.4, label="chosen"
    )
    ax_c.bar(
        [i + 0.2 for i in range(len(cats))],
        [r["rejected_score"] for r in cats],
        0.4,
        label="rejected",
    )
    ax_c.set_xticks(range(len(cats)))
    ax_c.set_xticklabels(xs, rotation=45, ha="right", fontsize=7)
    ax_c.set_title("Rule scores by MeSH top-level category")
    ax_c.legend()
    fig_c.subplots_adjust(bottom=0.35)
    if out:
        fig_c.savefig(out / "scores_by_category.png")
    fig_c
    return (cats,)


@app.cell
def _(lake, out, plt, report):
    agree = report.compare_judges(lake).to_pylist()
    fig_a, ax_a = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['judge_a']} vs {r['judge_b']}" for r in agree]
    ax_a.bar(
        [i - 0.2 for i in range(len(agree))],
        [r["agreement"] or 0 for r in agree],
        0.4,
        label="agreement",
    )
    ax_a.bar(
        [i + 0.2 for i in range(len(agree))],
        [r["kappa"] or 0 for r in agree],
        0.4,
        label="Cohen's kappa",
    )
    ax_a.set_xticks(range(len(agree)))
    ax_a.set_xticklabels(labels, fontsize=8)
    ax_a.set_title("Judge vs rule agreement")
    ax_a.legend()
    if out:
        fig_a.savefig(out / "judge_agreement.png")
    fig_a
    return (agree,)


@app.cell
def _(agree, by_judge, cats, out, wins):
    import json

    summary = {
        "pairs_by_judge": {j: len(ms) for j, ms in by_judge.items()},
        "win_rates": wins,
        "categories": len(cats),
        "judge_pairs_compared": len(agree),
    }
    if out:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    summary
    return


if __name__ == "__main__":
    app.run()
