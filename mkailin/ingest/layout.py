"""Where the demo's and the pipeline's inputs lie: a folder laid out like ``shared/data``, or
the small public files downloaded into one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mkailin.errors import InputError


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
