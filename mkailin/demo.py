"""``mkailin demo``: build a lake from real data and run the pipeline on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mkailin.ingest.layout import download_inputs, find_inputs
from mkailin.lake import Lake


def run_demo(
    lake_path: str,
    data_dir: str | None,
    config_path: str | None = None,
    echo: Callable[[str], None] = print,
    lock_wait: float | None = None,
) -> Lake:
    """Run ``configs/demo.toml`` (or the given config) end to end, then summarise."""
    import time

    from mkailin import config as config_mod
    from mkailin.pipeline import run_pipeline

    t0 = time.perf_counter()
    cfg = config_mod.load(config_path or config_mod.configs_dir() / "demo.toml")
    data = (
        Path(data_dir)
        if data_dir
        else (Path(cfg.inputs.data) if cfg.inputs.data else download_inputs(Path("data"), echo))
    )
    find_inputs(data)  # a clear error now rather than mid-run
    lake = Lake.open(lake_path, create=True)
    if lock_wait is not None:
        lake.lock_wait = lock_wait
    echo(f"demo lake: {lake.root}  (config {cfg.source}, hash {cfg.hash()})")
    summary = run_pipeline(lake, cfg, str(data), echo=echo)
    for line in closing_summary(lake, cfg, summary, time.perf_counter() - t0):
        echo(line)
    return lake


def closing_summary(lake: Lake, cfg, summary: dict, seconds: float) -> list[str]:
    """What the demo made: table counts, each question agent's usable-question rate, the steps
    skipped and why, where the corpora are, the PubMedQA table, and how to query the lake."""
    import shutil
    import sys

    from mkailin.agents.question import usable_counts
    from mkailin.output import render

    out = ["", "tables:"]
    for name, kind, rows in lake.relations(count_views=False):
        if kind == "table" and rows:
            out.append(f"  {name:<24} {rows:>9,}")
    agents = ("domain", "general", "final") if cfg.pipeline.dpo else ("domain", "general")
    out.append("usable questions (the rest are in quarantine with the reason):")
    for agent, (k, n) in usable_counts(lake, cfg, agents).items():
        out.append(f"  {agent:<8} {k:>4} of {n:<4} {k / n if n else 0:>6.0%}")
    skipped = summary["ctx"].get("skipped") or {}
    if skipped:
        out.append("skipped steps:")
        out += [f"  {name}: {why}" for name, why in skipped.items()]
    exports = summary["ctx"].get("exports") or {}
    if not exports and cfg.pipeline.export and "export" not in skipped:
        from mkailin.export import export_dir

        exports = {k: str(export_dir(lake, cfg, k, None)) for k in ("cpt", "sft")}
    out += [f"corpus_{kind}: {path}" for kind, path in exports.items()]
    table = summary["ctx"].get("eval_table")
    if table is None and cfg.pipeline.evaluate:
        from mkailin.evaluate import side_by_side, slice_report

        labels = [
            m for (m,) in lake.query("select distinct model from eval_predictions order by 1")
        ]
        setting = cfg.pipeline.eval_setting or cfg.eval.setting
        report = slice_report(lake, labels, setting, cfg.eval.mesh_slices, cfg.eval.context_chars)
        table = side_by_side(report, labels)
    if table is not None:
        out += ["", "PubMedQA (base vs tuned target):", render(table)]
    duckdb = shutil.which("duckdb") or str(Path(sys.executable).parent / "duckdb")
    out.append(
        f"\ndone in {seconds:.0f} s. Query it: {duckdb} {lake.catalog_path} "
        '-c "select count(*) from articles"'
    )
    return out
