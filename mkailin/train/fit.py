"""Prompts fitted to a token budget by construction.

A training example holds a prompt built from a template and some text fields (a document,
its contexts, the questions) plus a completion. Rather than dropping an example whose prompt is
too long, :func:`fit_prompt` cuts its fields until prompt and completion fit ``max_length``:
the fields of the first tier are cut together (each to at most the same number of characters,
so the longest loses most), then, only if the first tier is cut to nothing, the next tier. A
template whose fixed words alone leave no room for the completion is a setting that cannot
work, and says so with the smallest ``max_length`` that would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mkailin.errors import ConfigError

Messages = list[dict]
Value = str | list[str]


@dataclass
class PromptFields:
    """A prompt still open to cutting: ``render(fields) -> messages``, with the fields to cut,
    in tiers (the first tier is cut first)."""

    render: Callable[[dict[str, Value]], Messages]
    fields: dict[str, Value]
    tiers: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    def messages(self) -> Messages:
        return self.render(self.fields)


def _size(v: Value) -> int:
    return len(v) if isinstance(v, str) else max((len(x) for x in v), default=0)


def _cap(v: Value, n: int) -> Value:
    return v[:n] if isinstance(v, str) else [x[:n] for x in v]


def fit_prompt(
    prompt: PromptFields, count: Callable[[Messages], int], budget: int, setting: str
) -> tuple[Messages, bool]:
    """(messages, cut) with ``count(messages) <= budget``; ``cut`` says whether a field was
    shortened. ``count`` measures the prompt together with its completion."""
    fields = dict(prompt.fields)
    if count(prompt.render(fields)) <= budget:
        return prompt.render(fields), False
    for tier in prompt.tiers:

        def at(n: int, tier=tier, base=fields) -> dict[str, Value]:
            return {**base, **{f: _cap(base[f], n) for f in tier}}

        if count(prompt.render(at(0))) > budget:
            fields = at(0)
            continue
        lo, hi = 0, max(_size(fields[f]) for f in tier)  # at(lo) fits, at(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count(prompt.render(at(mid))) <= budget else (lo, mid)
        return prompt.render(at(lo)), True
    need = count(prompt.render(fields))
    raise ConfigError(
        f"{setting}={budget} tokens cannot hold even the prompt's fixed words and the "
        f"completion ({need} tokens); set {setting} to at least {need + 16}"
    )


def token_counter(tokenizer, chat_template: bool = True) -> Callable[[Messages], int]:
    """Tokens of a conversation as the trainer will see it (chat template applied)."""

    def count(messages: Messages) -> int:
        if chat_template and getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n"
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def fit_examples(
    records: list[dict],
    tokenizer,
    max_length: int,
    setting: str,
    chat_template: bool = True,
    limit: int = 0,
) -> tuple[list[dict], dict]:
    """Fit every record's prompt to ``max_length`` with its completion (or, for preference
    records, with the longer of ``chosen`` and ``rejected``). A fitted record whose completion
    alone takes more than half of ``max_length`` is left out: cutting its prompt to nothing
    would teach nothing. Records whose prompt is already plain messages pass unchanged (the
    trainer truncates them). With ``limit``, fitting stops once that many records are kept.
    Returns the records with plain message prompts and a tally."""
    count = token_counter(tokenizer, chat_template)
    out, cut, too_long = [], 0, 0
    for r in records:
        if limit and len(out) >= limit:
            break
        p = r["prompt"]
        if not isinstance(p, PromptFields):
            out.append(r)
            continue
        answers = [r[k] for k in ("completion", "chosen", "rejected") if k in r]
        tail = max(answers, key=count) if answers else []
        if count(tail) > max_length // 2:
            too_long += 1
            continue
        msgs, was_cut = fit_prompt(p, lambda m, t=tail: count(m + t), max_length, setting)
        cut += was_cut
        out.append({**r, "prompt": msgs})
    return out, {"examples_used": len(out), "prompts_cut": cut, "dropped_long_completion": too_long}
