"""The README's five-minute tour, run verbatim: every command of its shell block, in order, in a
temporary folder laid out like a clone (``configs/`` beside it, the shared data at
``../shared/data``), with the real models. Each command must succeed, and each one that writes
must add rows to the lake."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, shared

pytestmark = pytest.mark.slow


def tour_commands(readme: Path) -> list[str]:
    """The commands of the first ``bash`` block under "A five-minute tour": comments dropped,
    backslash continuations joined, the venv activation left out."""
    text = readme.read_text()
    section = text[text.index("## A five-minute tour") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    block = block.replace("\\\n", " ")
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith("#") or line.startswith(". "):
            continue
        out.append(line)
    return out


WRITES = ("ingest", "generate", "retrieve", "prefer", "train")


def _rows(lake_dir: Path) -> int:
    from mkailin.lake import Lake

    if not (lake_dir / ".mkailin-lake").exists():
        return 0
    lake = Lake.open(lake_dir)
    return sum(p.rows for ps in lake.snapshot().tables.values() for p in ps)


def test_the_readme_tour_runs_verbatim(tmp_path):
    data = shared("mesh").parent
    commands = tour_commands(ROOT / "README.md")
    assert len(commands) >= 12 and commands[0] == "mkailin init"
    # a folder laid out like the clone: ../shared/data beside it, configs/ in it
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(data)
    work = tmp_path / "main"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("MKAILIN_LAKE", None)
    env.pop("MKAILIN_CONFIG", None)
    for cmd in commands:
        argv = shlex.split(cmd)
        assert argv[0] == "mkailin", cmd
        before = _rows(work / "lake")
        r = subprocess.run(
            [sys.executable, "-m", "mkailin", *argv[1:]],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        said = r.stdout + r.stderr
        assert r.returncode == 0, f"{cmd}\n{said}"
        assert "Traceback" not in said, f"{cmd}\n{said}"
        verb = next((a for a in argv[1:] if not a.startswith("-") and a != "configs/demo.toml"), "")
        if verb == "init":
            assert (work / "lake" / ".mkailin-lake").exists(), said
        elif verb in WRITES:
            assert _rows(work / "lake") > before, f"{cmd} wrote no rows\n{said}"
        else:
            assert r.stdout.strip(), f"{cmd} printed nothing"
    from mkailin.lake import Lake

    lake = Lake.open(work / "lake")
    # prefer read the hybrid contexts retrieve made (the config says dense), with kailin
    assert lake.query("select distinct retriever from contexts") == [("hybrid:minilm",)]
    assert lake.query("select distinct scorer from preferences where judge = 'rule'") == [
        ("kailin/mean/top4",)
    ]
