"""Every shell block in docs/ runs: each command of each ``bash``/``sh`` block, as written, from
a folder that holds a lake named ``lake`` with the real MeSH 2017 tree and the PubMedQA
articles, with ``mkailin`` and the stock ``duckdb`` CLI on PATH. Each command must exit 0 and
print something (unless it writes a file).

A block that cannot run here (it installs packages or starts a cluster) is preceded by
``<!-- docs-test: skip: <why> -->``; the test checks that every such block says why. The README's
tour runs in tests/test_docs.py."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, copy_tables, duckdb_cli

SKIP = re.compile(r"<!--\s*docs-test:\s*skip:\s*(?P<why>[^>]*?)\s*-->\s*$")
FENCE = re.compile(r"^```(bash|sh|shell)\s*$")


def shell_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """(line number, block text, skip reason or None) of each shell block of a Markdown file."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            prev = next((x for x in reversed(lines[:i]) if x.strip()), "")
            m = SKIP.search(prev)
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append((i + 1, "\n".join(lines[i + 1 : j]), m.group("why") if m else None))
            i = j
        i += 1
    return out


def commands(block: str) -> list[str]:
    """The commands of a block: comments dropped, continuation lines and quoted strings that
    span lines joined."""
    out, cur = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        cur = f"{cur}\n{line}" if cur else line
        try:
            shlex.split(cur, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        cmd = cur.strip()
        cur = ""
        if shlex.split(cmd, comments=True):
            out.append(cmd)
    assert not cur, f"unterminated command: {cur!r}"
    return out


DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCKS = [
    pytest.param(doc, line, text, id=f"{doc.name}:{line}")
    for doc in DOCS
    for line, text, why in shell_blocks(doc)
    if why is None
]


def test_every_skipped_block_says_why():
    for doc in DOCS:
        for line, _, why in shell_blocks(doc):
            assert why is None or len(why) > 10, f"{doc.name}:{line}: say why it is not run"
    assert BLOCKS, "docs/ has shell blocks to run"


@pytest.fixture(scope="module")
def docs_dir(mesh_lake, tmp_path_factory):
    """A folder with ``lake`` (MeSH + PubMedQA), and ``duckdb``/``mkailin`` on PATH."""
    from mkailin.lake import Lake

    root = tmp_path_factory.mktemp("docs")
    lake = Lake.init(root / "lake")
    copy_tables(mesh_lake, lake)
    lake.sync_catalog()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "duckdb").symlink_to(duckdb_cli())
    return root, bin_dir


@pytest.mark.parametrize(("doc", "line", "text"), BLOCKS)
def test_docs_shell_block_runs(doc, line, text, docs_dir):
    root, bin_dir = docs_dir
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
    }
    for cmd in commands(text):
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", cmd],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        where = f"{doc.name}:{line}: {cmd}"
        assert r.returncode == 0, f"{where}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        if ">" not in cmd:  # a command that does not write a file shows what it did
            assert r.stdout.strip(), f"{where}: printed nothing"
        assert "Traceback" not in r.stderr, where
