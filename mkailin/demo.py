"""``mkailin demo``: build a lake from real data and run the pipeline on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mkailin.errors import InputError
from mkailin.lake import Lake


def find_inputs(data_dir: Path) -> dict[str, list[Path]]:
    """The demo's inputs in a folder laid out like ``shared/data``."""
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: no such folder (expected mesh/, pubmed/, pubmedqa/)")
    mesh = sorted(
        [
            *data_dir.glob("mesh/*.tsv"),
            *data_dir.glob("mesh/desc*.xml"),
            *data_dir.glob("mesh/desc*.gz"),
        ]
    )
    pubmed = sorted([*data_dir.glob("pubmed/**/*.xml"), *data_dir.glob("pubmed/**/*.xml.gz")])
    pqal = data_dir / "pubmedqa" / "ori_pqal.json"
    gt = data_dir / "pubmedqa" / "test_ground_truth.json"
    if not mesh:
        raise InputError(f"{data_dir}/mesh: no MeSH file (MeshTree*.tsv or desc*.xml[.gz])")
    if not pqal.is_file():
        raise InputError(f"{pqal}: missing (the demo needs PubMedQA PQA-L)")
    return {
        "mesh": mesh,
        "pubmed": pubmed,
        "pubmedqa": [pqal],
        "ground_truth": [gt] if gt.is_file() else [],
    }


def download_inputs(dest: Path, echo: Callable[[str], None]) -> Path:
    from mkailin.ingest.fetch import fetch

    echo(f"no --data given: downloading the small public files into {dest}")
    for source in ("mesh", "pubmedqa"):
        for f in fetch(source, dest):
            echo(f"  {f.path}")
    return dest


def run_demo(
    lake_path: str,
    data_dir: str | None,
    config_path: str | None = None,
    echo: Callable[[str], None] = print,
) -> Lake:
    """Run ``configs/demo.toml`` (or the given config) end to end, then summarise."""
    import time

    from mkailin import config as config_mod
    from mkailin.output import render
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
    echo(f"demo lake: {lake.root}  (config {cfg.source}, hash {cfg.hash()})")
    summary = run_pipeline(lake, cfg, str(data), echo=echo)
    echo("")
    echo("tables:")
    for name, kind, rows in lake.relations(count_views=False):
        if kind == "table" and rows:
            echo(f"  {name:<24} {rows:>9,}")
    exports = summary["ctx"].get("exports") or {}
    if not exports and cfg.pipeline.export:
        from mkailin.export import export_dir

        exports = {k: str(export_dir(lake, cfg, k, None)) for k in ("cpt", "sft")}
    for kind, path in exports.items():
        echo(f"corpus_{kind}: {path}")
    table = summary["ctx"].get("eval_table")
    if table is None and cfg.pipeline.evaluate:
        from mkailin.evaluate import side_by_side, slice_report

        labels = [
            m for (m,) in lake.query("select distinct model from eval_predictions order by 1")
        ]
        setting = cfg.pipeline.eval_setting or cfg.eval.setting
        table = side_by_side(slice_report(lake, labels, setting, cfg.eval.mesh_slices), labels)
    if table is not None:
        echo("\nPubMedQA (base vs tuned target):")
        echo(render(table))
    echo(
        f"\ndone in {time.perf_counter() - t0:.0f} s. Query it: duckdb {lake.catalog_path} "
        '-c "select count(*) from articles"'
    )
    return lake
