"""Text generation behind one small interface, with three backends, one module each:

- ``transformers`` (``transformers_backend``): batched, CPU or GPU, GGUF, chat templates, LoRA
  adapters, log-likelihood scoring of fixed choices;
- ``vllm`` (``vllm_backend``): the same on vLLM (optional extra, imported lazily);
- ``openai`` (``openai_backend``): any OpenAI-compatible server, with retries and usage counting.

This module picks one for a model spec and caches it per process.
"""

from __future__ import annotations

from mkailin.backends.base import (  # noqa: F401  (the interface, for callers)
    Generation,
    Generator,
    GenParams,
    Prompt,
    UsageCounter,
    cost,
)
from mkailin.backends.openai_backend import OpenAIGenerator, api_key  # noqa: F401
from mkailin.backends.transformers_backend import (  # noqa: F401
    _MODEL_CACHE,
    TransformersGenerator,
    dequantized,
    load_causal_lm,
    render_prompt,
)
from mkailin.backends.vllm_backend import VLLMGenerator
from mkailin.config import ModelSpec
from mkailin.errors import ModelError

# ------------------------------------------------------------------------------ registry
BACKENDS = {"transformers": TransformersGenerator, "vllm": VLLMGenerator, "openai": OpenAIGenerator}
_GENERATORS: dict[tuple, Generator] = {}


def get_generator(spec: ModelSpec, name: str = "", adapter: str = "") -> Generator:
    """A generator for a model spec, built once per process and reused."""
    key = (name, repr(spec), adapter)
    if key not in _GENERATORS:
        cls = BACKENDS.get(spec.backend)
        if cls is None:
            raise ModelError(f"unknown backend {spec.backend!r}")
        _GENERATORS[key] = cls(spec, name, adapter)
    return _GENERATORS[key]


def release_models() -> None:
    """Forget every cached generator and model (between pipeline steps: each adapter chain is a
    full copy of the weights)."""
    import gc

    for g in _GENERATORS.values():
        release = getattr(g, "release", None)  # vLLM engines hold GPU memory until released
        if release is not None:
            release()
    _GENERATORS.clear()
    _MODEL_CACHE.clear()
    gc.collect()
