"""What every generation backend shares: prompts, parameters, results, usage counting and the
``Generator`` interface. One module per backend implements it (``transformers_backend``,
``vllm_backend``, ``openai_backend``); ``generation`` picks one for a model spec.

A prompt is a list of chat messages (``[{"role": "user", "content": ...}]``) or a plain string.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from mkailin.config import ModelSpec

Prompt = list[dict] | str


@dataclass
class GenParams:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None  # a per-request failure (the row is quarantined, the run goes on)
    attempts: int = 1


@dataclass
class UsageCounter:
    """Thread-safe running totals of one generator's calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, g: Generation) -> None:
        with self._lock:
            self.prompt_tokens += g.prompt_tokens
            self.completion_tokens += g.completion_tokens
            self.cost_usd += g.cost_usd
            self.calls += 1
            self.retries += g.attempts - 1


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    for s in stop:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text


def cost(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * spec.price_input + completion_tokens * spec.price_output) / 1e6


class Generator:
    """The interface every backend implements."""

    model_id: str
    spec: ModelSpec

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        raise NotImplementedError

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[list[float]]:
        """Log-likelihood of each choice as the answer to each prompt."""
        raise NotImplementedError(f"{type(self).__name__} cannot score choices")


# ------------------------------------------------------------------------------ transformers
