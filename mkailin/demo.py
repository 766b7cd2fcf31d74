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
    mesh = sorted([*data_dir.glob("mesh/*.tsv"), *data_dir.glob("mesh/desc*.xml"),
                   *data_dir.glob("mesh/desc*.gz")])
    pubmed = sorted([*data_dir.glob("pubmed/**/*.xml"), *data_dir.glob("pubmed/**/*.xml.gz")])
    pqal = data_dir / "pubmedqa" / "ori_pqal.json"
    gt = data_dir / "pubmedqa" / "test_ground_truth.json"
    if not mesh:
        raise InputError(f"{data_dir}/mesh: no MeSH file (MeshTree*.tsv or desc*.xml[.gz])")
    if not pqal.is_file():
        raise InputError(f"{pqal}: missing (the demo needs PubMedQA PQA-L)")
    return {"mesh": mesh, "pubmed": pubmed, "pubmedqa": [pqal], "ground_truth":
            [gt] if gt.is_file() else []}


def download_inputs(dest: Path, echo: Callable[[str], None]) -> Path:
    from mkailin.ingest.fetch import fetch

    echo(f"no --data given: downloading the small public files into {dest}")
    for source in ("mesh", "pubmedqa"):
        for f in fetch(source, dest):
            echo(f"  {f.path}")
    return dest


def run_demo(lake_path: str, data_dir: str | None, config_path: str | None = None,
             echo: Callable[[str], None] = print) -> Lake:
    from mkailin import config as config_mod
    from mkailin.agents.question import generate_questions
    from mkailin.ingest.mesh import ingest_mesh
    from mkailin.ingest.pubmed import ingest_pubmed
    from mkailin.ingest.pubmedqa import ingest_pubmedqa

    cfg = config_mod.load(config_path or config_mod.configs_dir() / "demo.toml")
    data = Path(data_dir) if data_dir else download_inputs(Path("data"), echo)
    inputs = find_inputs(data)
    lake = Lake.open(lake_path, create=True)
    echo(f"demo lake: {lake.root}")
    steps = [("mesh", lambda: ingest_mesh(lake, inputs["mesh"]))]
    if inputs["pubmed"]:
        steps.append(("pubmed", lambda: ingest_pubmed(lake, inputs["pubmed"], progress=False)))
    gt = inputs["ground_truth"][0] if inputs["ground_truth"] else None
    steps.append(("pubmedqa", lambda: ingest_pubmedqa(lake, inputs["pubmedqa"][0], gt)))
    for name, step in steps:
        summary = step()
        for line in summary.lines()[:2]:
            echo(line)
        for err in summary.errors:
            echo(f"  fault: {err}")
    for r in generate_questions(lake, cfg, ("domain", "general"), progress=False):
        for line in r.lines():
            echo(line)
    echo("")
    echo("tables:")
    for name, kind, rows in lake.relations():
        if kind == "table" and rows:
            echo(f"  {name:<24} {rows:>9,}")
    echo(f"\nquery it: duckdb {lake.catalog_path} -c \"select count(*) from articles\"")
    return lake
