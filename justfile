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

# lint and format check
lint:
    {{venv}}/ruff check mkailin tests bench
    {{venv}}/ruff format --check mkailin tests bench || true

# run every benchmark (minutes to hours: see docs/benchmarks.md)
bench:
    {{venv}}/python bench/ingest.py
    {{venv}}/python bench/mesh_sim.py
