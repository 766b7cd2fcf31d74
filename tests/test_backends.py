"""Generation backends against real models: transformers on SmolLM2 (GGUF), and the openai
backend against a real llama.cpp server on loopback, directly and through a fault proxy."""

from __future__ import annotations

import dataclasses

import pytest

from mkailin.backends.generation import GenParams, OpenAIGenerator, TransformersGenerator
from mkailin.config import SMOLLM2, ModelSpec
from mkailin.errors import BackendError

PROMPTS = [
    [{"role": "user", "content": "Write one question about asthma and inhaled corticosteroids."}],
    [{"role": "user", "content": "Name one organ of the human body."}],
]


def test_transformers_generates_and_scores_choices(smollm2_available):
    gen = TransformersGenerator(dataclasses.replace(SMOLLM2, batch_size=2), "smollm2")
    out = gen.generate(PROMPTS, GenParams(max_new_tokens=12))
    assert len(out) == 2 and all(g.text for g in out)
    assert all(g.prompt_tokens > 5 and 0 < g.completion_tokens <= 12 for g in out)
    again = gen.generate(PROMPTS[:1], GenParams(max_new_tokens=12))
    assert again[0].text == out[0].text  # greedy decoding is deterministic
    scores = gen.score_choices(["The capital of France is"], [" Paris", " banana"])
    assert scores[0][0] > scores[0][1]


def _spec(base: str, **kw) -> ModelSpec:
    return ModelSpec(backend="openai", model="smollm2", base_url=f"{base}/v1", **kw)


@pytest.mark.server
def test_openai_backend_against_real_llama_cpp(llama_server_url):
    gen = OpenAIGenerator(_spec(llama_server_url, price_input=1.0, price_output=2.0), "smollm2")
    out = gen.generate(PROMPTS, GenParams(max_new_tokens=16))
    assert all(g.text and g.error is None for g in out)
    assert all(g.prompt_tokens > 0 and g.completion_tokens > 0 for g in out)
    assert gen.usage.calls == 2
    assert gen.usage.prompt_tokens == sum(g.prompt_tokens for g in out)
    expected = sum(g.prompt_tokens * 1.0 + g.completion_tokens * 2.0 for g in out) / 1e6
    assert gen.usage.cost_usd == pytest.approx(expected)


@pytest.mark.server
def test_openai_backend_survives_429_500_and_timeouts(llama_server_url):
    from servers import FaultProxy

    faults = ["429", "500", "slow", "503", "ok", "429", "malformed", "truncated", "drop"]
    with FaultProxy(llama_server_url, faults=faults, slow_seconds=3.0) as proxy:
        gen = OpenAIGenerator(
            _spec(proxy.url, timeout=1.5, max_retries=8, max_concurrency=1), "smollm2"
        )
        gen.backoff_base = 0.05
        out = gen.generate(PROMPTS * 2, GenParams(max_new_tokens=8))
    assert len(out) == 4 and all(g.text and g.error is None for g in out)
    assert gen.usage.calls == 4  # usage counted once per successful call
    assert gen.usage.retries == len(faults) - 1  # every fault but the one "ok" was retried
    assert proxy.counts["429"] == 2 and proxy.counts["slow"] == 1


@pytest.mark.server
def test_openai_backend_gives_up_with_a_clear_error(llama_server_url):
    from servers import FaultProxy

    with FaultProxy(llama_server_url, faults=["503"] * 10) as proxy:
        gen = OpenAIGenerator(_spec(proxy.url, max_retries=2), "smollm2")
        gen.backoff_base = 0.01
        with pytest.raises(BackendError, match=r"gave up after 3 attempts: InternalServerError"):
            gen.generate(PROMPTS[:1], GenParams(max_new_tokens=4))


def test_openai_backend_without_key_for_a_remote_server_is_an_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gen = OpenAIGenerator(ModelSpec(backend="openai", model="gpt-4o"), "gpt-4o")
    with pytest.raises(
        BackendError, match="no API key: set the environment variable OPENAI_API_KEY"
    ):
        gen.generate(PROMPTS[:1], GenParams(max_new_tokens=4))


def test_score_choices_single_token_fast_path_matches_the_general_path(smollm2_available):
    gen = TransformersGenerator(SMOLLM2, "smollm2")
    prompts = [
        [{"role": "user", "content": "Pick 1 or 2. Which is a number?"}],
        [{"role": "user", "content": "Say 2"}],
    ]
    fast = gen.score_choices(prompts, ["1", "2"])  # one forward per prompt
    general = gen.score_choices(prompts, ["1", "2", "1 2"])  # one forward per choice
    for f, g in zip(fast, general):
        assert f == pytest.approx(g[:2], abs=1e-4)


def test_score_choices_scores_only_the_last_positions_and_matches_a_full_forward(
    smollm2_available,
):
    """Choices of several tokens, scored from the last positions' logits only, equal the sum of
    their tokens' log-probabilities from a forward pass over every position."""
    import torch

    gen = TransformersGenerator(dataclasses.replace(SMOLLM2, batch_size=4), "smollm2")
    tok, model = gen.tokenizer, gen.model
    prompts = ["The capital of France is", "Asthma is a disease of the"]
    choices = [" Paris", " the lungs and airways", " banana"]
    got = gen.score_choices(prompts, choices)
    for prompt, row in zip(prompts, got):
        pid = tok(gen._render(prompt), add_special_tokens=False)["input_ids"]
        for choice, score in zip(choices, row):
            cid = tok(choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([pid + cid])
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
            want = sum(float(logp[len(pid) - 1 + i, t]) for i, t in enumerate(cid))
            assert score == pytest.approx(want, abs=2e-3), (prompt, choice)
    assert got[0][0] > got[0][2]
