"""``mkailin plan``: rows, tokens, hours and API cost for a run over N articles, before it runs.

Per-item figures come from the lake's own runs when it has them (tokens and seconds per row of
the latest finished run of each stage, measured on this machine) and from stated assumptions
otherwise (prompt tokens from the template and the average abstract length at 4 characters per
token, the configured ``max_new_tokens`` as the output). GPU-hours assume a serving throughput
per GPU (``--gpu-tokens-per-second``, default 2,500 generated tokens/s for a 7-8B model under
vLLM, and 20,000 prompt tokens/s; 100,000 tokens/s for a BERT-size encoder); API cost uses each model's prices in ``[models]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from mkailin.config import Config
from mkailin.lake import Lake

CHARS_PER_TOKEN = 4.0
DEFAULT_ABSTRACT_CHARS = 1500


@dataclass
class StageFigures:
    tokens_in: float  # per row
    tokens_out: float
    seconds: float | None  # per row, on the machine that measured it
    basis: str  # measured | assumed


def _measured(lake: Lake | None, stage_like: str) -> StageFigures | None:
    if lake is None:
        return None
    rows = lake.query(
        "select rows_in, tokens_in, tokens_out, seconds from runs "
        "where stage like ? and status = 'finished' and rows_in > 0 "
        "order by finished desc limit 1",
        [stage_like],
    )
    if not rows:
        return None
    n, ti, to, sec = rows[0]
    return StageFigures((ti or 0) / n, (to or 0) / n, (sec or 0) / n, "measured")


def plan(
    cfg: Config,
    articles: int,
    lake: Lake | None = None,
    gpu_tokens_per_second: float = 2500.0,
    gpu_prompt_tokens_per_second: float = 20000.0,
    batch_api: bool = False,
    gpu_encode_tokens_per_second: float = 100000.0,
) -> pa.Table:
    avg_chars = DEFAULT_ABSTRACT_CHARS
    if lake is not None:
        got = lake.query("select avg(length(abstract)) from articles where abstract is not null")
        if got and got[0][0]:
            avg_chars = float(got[0][0])
    doc_tokens = min(avg_chars, cfg.generate.max_input_chars) / CHARS_PER_TOKEN
    k = cfg.retrieval.k
    n_docs = articles if not cfg.generate.articles else min(articles, cfg.generate.articles)
    plans = []

    def add(
        stage: str,
        role: str | None,
        rows: int,
        assumed_in: float,
        assumed_out: float,
        measured_like: str,
        model_stage: bool = True,
    ):
        fig = _measured(lake, measured_like) or StageFigures(
            assumed_in, assumed_out, None, "assumed"
        )
        spec = cfg.model(cfg.agent(role).model) if role else None
        t_in, t_out = fig.tokens_in * rows, fig.tokens_out * rows
        cost = 0.0
        gpu_h = None
        if spec is not None and spec.backend == "openai":
            cost = (t_in * spec.price_input + t_out * spec.price_output) / 1e6
            if batch_api and role == "answer":
                cost *= spec.batch_discount
        elif model_stage and spec is not None:
            gpu_h = (t_in / gpu_prompt_tokens_per_second + t_out / gpu_tokens_per_second) / 3600
        elif stage == "embed":
            gpu_h = t_in / gpu_encode_tokens_per_second / 3600
        plans.append(
            {
                "stage": stage,
                "rows": rows,
                "tokens_in": int(t_in),
                "tokens_out": int(t_out),
                "hours_here": fig.seconds * rows / 3600 if fig.seconds is not None else None,
                "gpu_hours": gpu_h,
                "cost_usd": cost,
                "basis": fig.basis,
                "model": spec.model if spec else "",
            }
        )

    qg_in = 60 + doc_tokens
    add(
        "generate-questions:domain",
        "domain",
        n_docs,
        qg_in,
        cfg.agent("domain").max_new_tokens,
        "generate-questions:domain",
    )
    add(
        "generate-questions:general",
        "general",
        n_docs,
        qg_in,
        cfg.agent("general").max_new_tokens,
        "generate-questions:general",
    )
    add("embed", None, articles, doc_tokens, 0, "embed:%", model_stage=False)
    add("retrieve (3 question sets)", None, 3 * n_docs, 0, 0, "retrieve:%", model_stage=False)
    judge_in = (
        120
        + (cfg.preference.judge_document_chars + 2 * k * cfg.preference.judge_context_chars)
        / CHARS_PER_TOKEN
    )
    if cfg.preference.judge != "rule":
        add(
            f"prefer:{cfg.preference.judge} (both orders)",
            "judge",
            2 * n_docs,
            judge_in,
            0,
            f"prefer:{cfg.preference.judge}",
        )
    add(
        "generate-questions:final",
        "general",
        n_docs,
        qg_in,
        cfg.agent("general").max_new_tokens,
        "generate-questions:final",
    )
    ans_in = 80 + k * cfg.answer.context_chars / CHARS_PER_TOKEN
    add("answer", "answer", n_docs, ans_in, cfg.agent("answer").max_new_tokens, "answer")
    schema = pa.schema(
        [
            ("stage", pa.string()),
            ("rows", pa.int64()),
            ("tokens_in", pa.int64()),
            ("tokens_out", pa.int64()),
            ("hours_here", pa.float64()),
            ("gpu_hours", pa.float64()),
            ("cost_usd", pa.float64()),
            ("basis", pa.string()),
            ("model", pa.string()),
        ]
    )
    total = {
        "stage": "total",
        "rows": sum(p["rows"] for p in plans),
        "tokens_in": sum(p["tokens_in"] for p in plans),
        "tokens_out": sum(p["tokens_out"] for p in plans),
        "hours_here": sum(p["hours_here"] or 0 for p in plans) or None,
        "gpu_hours": sum(p["gpu_hours"] or 0 for p in plans) or None,
        "cost_usd": sum(p["cost_usd"] for p in plans),
        "basis": "",
        "model": "",
    }
    return pa.Table.from_pylist(plans + [total], schema=schema)
