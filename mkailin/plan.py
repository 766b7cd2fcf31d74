"""``mkailin plan``: rows, tokens, hours and API cost for a run over N articles, before it runs.

Every figure says where it comes from (the ``basis`` and ``gpu_basis`` columns):

- measured: the lake's own finished runs of the same stage, the same model (the run log's
  ``models`` names it) and the same hardware class (cpu, cuda or an API) as this config would
  run it on. Runs that carry no hardware record were measured on this machine. Nothing else is
  used, so a demo lake beside the paper's config does not price 7-8B GPU models from a 135M
  model on a laptop CPU.
- assumed: prompt tokens from the template and the average abstract length at 4 characters per
  token, the configured ``max_new_tokens`` as the output; GPU-hours at a serving throughput per
  GPU (``--gpu-tokens-per-second``, default 2,500 generated tokens/s for a 7-8B model under vLLM,
  and 20,000 prompt tokens/s; 100,000 tokens/s for a BERT-size encoder). API cost uses each
  model's prices in ``[models]``.
"""

from __future__ import annotations

import functools
import glob
import json
import os
from dataclasses import dataclass

import pyarrow as pa

from mkailin.config import Config, ModelSpec
from mkailin.lake import Lake

CHARS_PER_TOKEN = 4.0
DEFAULT_ABSTRACT_CHARS = 1500


@functools.cache
def machine_class() -> str:
    """cuda when this machine has an NVIDIA GPU it may use, else cpu (no torch import)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return "cpu"
    return "cuda" if glob.glob("/dev/nvidia[0-9]*") else "cpu"


def device_class(device: str) -> str:
    """auto | cpu | cuda[:N] | mps -> the hardware class it runs on here."""
    device = (device or "auto").lower()
    if device == "auto":
        return machine_class()
    return "cuda" if device.startswith("cuda") else device.split(":")[0]


def model_class(spec: ModelSpec) -> str:
    """Where this config runs a generation model: api, cuda (vLLM serves on GPUs) or the device."""
    if spec.backend == "openai":
        return "api"
    if spec.backend == "vllm":
        return "cuda"
    return device_class(spec.device)


@dataclass
class Measured:
    runs: int
    rows: int
    tokens_in: int
    tokens_out: int
    seconds: float
    hardware: str
    what: str  # the model, as the basis names it

    def text(self) -> str:
        return (
            f"measured: {self.runs:,} run{'s' if self.runs != 1 else ''} of {self.what} "
            f"on {self.hardware}"
        )


def _run_hardware(detail: str | None, default: str) -> str:
    """The hardware class a run recorded in its detail (``device``), else ``default``."""
    try:
        d = json.loads(detail) if detail else {}
    except ValueError:
        d = {}
    device = (d.get("device") or d.get("hardware")) if isinstance(d, dict) else None
    return device_class(str(device)) if device else default


def measured(
    lake: Lake | None, stage_like: str, match: dict[str, set[str]], hardware: str, what: str
) -> tuple[Measured | None, Measured | None]:
    """(the finished runs of the stage with the same models on ``hardware``, summed; the same
    for runs of the same models on other hardware, to say why they were not used)."""
    if lake is None:
        return None, None
    try:
        rows = lake.query(
            "select models, detail, rows_in, tokens_in, tokens_out, seconds from runs "
            "where stage like ? and status = 'finished' and rows_in > 0",
            [stage_like],
        )
    except Exception:  # a lake from another version: plan from the assumptions
        return None, None
    here: dict[str, list] = {}
    for models, detail, n, ti, to, sec in rows:
        try:
            recorded = json.loads(models or "{}")
        except ValueError:
            continue
        if not all(recorded.get(k) in names for k, names in match.items()):
            continue
        hw = "api" if hardware == "api" else _run_hardware(detail, machine_class())
        acc = here.setdefault(hw, [0, 0, 0, 0, 0.0])
        for i, v in enumerate((1, n, ti or 0, to or 0, sec or 0.0)):
            acc[i] += v

    def summed(hw):
        runs, n, ti, to, sec = here[hw]
        return Measured(runs, n, ti, to, sec, hw, what)

    same = summed(hardware) if hardware in here else None
    other = [summed(hw) for hw in sorted(here) if hw != hardware]
    return same, (other[0] if other else None)


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
    source = f"a typical PubMed abstract has {DEFAULT_ABSTRACT_CHARS:,}"
    if lake is not None:
        try:
            n_art, mean = lake.query(
                "select count(*), avg(length(abstract)) from articles where abstract is not null"
            )[0]
        except Exception:
            n_art, mean = 0, None
        if mean:
            avg_chars = float(mean)
            source = f"the lake's {n_art:,} abstracts average {avg_chars:,.0f}"
    doc_chars = min(avg_chars, cfg.generate.max_input_chars)
    cut = "; generate.max_input_chars cuts them" if doc_chars < avg_chars else ""
    abstract_basis = f"{doc_chars:,.0f}-char abstracts: {source}{cut}"
    doc_tokens = doc_chars / CHARS_PER_TOKEN
    k = cfg.retrieval.k
    n_docs = articles if not cfg.generate.articles else min(articles, cfg.generate.articles)
    here = machine_class()
    gpu_gen = (
        f"assumed: one GPU serving {gpu_tokens_per_second:,.0f} generated and "
        f"{gpu_prompt_tokens_per_second:,.0f} prompt tok/s (a 7-8B model under vLLM)"
    )
    gpu_enc = (
        f"assumed: one GPU encoding {gpu_encode_tokens_per_second:,.0f} tok/s (a BERT-size encoder)"
    )
    plans = []

    def add(
        stage: str,
        rows: int,
        assumed_in: float,
        assumed_out: float,
        assumed_text: str,
        stage_like: str,
        match: dict[str, set[str]],
        hardware: str,
        what: str,
        model_id: str,
        kind: str,  # generate | encode | search
        spec: ModelSpec | None = None,
    ):
        m, elsewhere = measured(lake, stage_like, match, hardware, what)
        tok_in, tok_out, basis = assumed_in, assumed_out, f"assumed: {assumed_text}"
        seconds = None
        if m is not None:
            seconds = m.seconds / m.rows
            if m.tokens_in or m.tokens_out or kind == "search":
                tok_in, tok_out, basis = m.tokens_in / m.rows, m.tokens_out / m.rows, m.text()
            else:  # the run counted no tokens (a scoring judge, an encoder): time only
                basis = f"time {m.text()}; tokens assumed: {assumed_text}"
        elif elsewhere is not None:
            basis += f" (not the lake's runs on {elsewhere.hardware}: this runs on {hardware})"
        t_in, t_out = tok_in * rows, tok_out * rows
        cost, gpu_h, gpu_basis = 0.0, None, ""
        if spec is not None and hardware == "api":
            cost = (t_in * spec.price_input + t_out * spec.price_output) / 1e6
            if batch_api and stage == "answer":
                cost *= spec.batch_discount
        elif kind != "search":
            if m is not None and m.hardware == "cuda":
                gpu_h, gpu_basis = seconds * rows / 3600, m.text()
            elif kind == "generate":
                gpu_h = (t_in / gpu_prompt_tokens_per_second + t_out / gpu_tokens_per_second) / 3600
                gpu_basis = gpu_gen
            else:
                gpu_h, gpu_basis = t_in / gpu_encode_tokens_per_second / 3600, gpu_enc
        here_h = None
        if m is not None and m.hardware == here:
            here_h = seconds * rows / 3600
        plans.append(
            {
                "stage": stage,
                "rows": rows,
                "tokens_in": int(t_in),
                "tokens_out": int(t_out),
                "hours_here": here_h,
                "gpu_hours": gpu_h,
                "cost_usd": cost,
                "basis": basis,
                "gpu_basis": gpu_basis,
                "model": model_id,
            }
        )

    def add_agent(
        stage: str, agent: str, role: str, rows: int, t_in: float, text: str, run: str = ""
    ):
        a = cfg.agent(role)
        spec = cfg.model(a.model)
        out = 0 if role == "judge" else a.max_new_tokens
        text += f", {out:,} new tokens" if out else ", scored (no new tokens)"
        add(
            stage,
            rows,
            t_in,
            out,
            text,
            run or stage,
            {agent: {a.model, spec.model}},
            model_class(spec),
            a.model,
            spec.model,
            "generate",
            spec,
        )

    qg_in = 60 + doc_tokens
    qg_text = f"prompts of {qg_in:,.0f} tokens ({abstract_basis})"
    add_agent("generate-questions:domain", "domain", "domain", n_docs, qg_in, qg_text)
    add_agent("generate-questions:general", "general", "general", n_docs, qg_in, qg_text)

    enc_name = (
        cfg.retrieval.domain_encoder
        if cfg.retrieval.encoder == "domain"
        else cfg.retrieval.general_encoder
    )
    enc = cfg.encoder(enc_name)
    enc_hw = device_class(enc.device)
    enc_tokens = min(avg_chars / CHARS_PER_TOKEN, enc.max_length)
    enc_cut = enc_tokens < avg_chars / CHARS_PER_TOKEN
    add(
        "embed",
        articles,
        enc_tokens,
        0,
        f"{enc_tokens:,.0f} tokens an article ({source} chars"
        + (f"; the encoder reads {enc.max_length:,} tokens" if enc_cut else "")
        + ")",
        "embed:%",
        {"encoder": {enc.model}},
        enc_hw,
        enc_name,
        enc.model,
        "encode",
    )
    method = cfg.retrieval.retriever
    label = "bm25" if method == "bm25" else f"{method}:{enc_name}"
    add(
        "retrieve (3 question sets)",
        3 * n_docs,
        0,
        0,
        f"no model tokens; no time without a measured run of {label}",
        f"retrieve:{label}:top%",
        {"retriever": {label}} | ({} if method == "bm25" else {"encoder": {enc.model}}),
        here,
        label,
        "" if method == "bm25" else enc.model,
        "search",
    )
    if cfg.preference.judge != "rule":
        judge_in = (
            120
            + (cfg.preference.judge_document_chars + 2 * k * cfg.preference.judge_context_chars)
            / CHARS_PER_TOKEN
        )
        add_agent(  # a row is one document, its two pairs judged in both orders
            f"prefer:{cfg.preference.judge} (both orders)",
            "judge",
            "judge",
            n_docs,
            2 * judge_in,
            f"2 prompts of {judge_in:,.0f} tokens (the document and 2 x {k} contexts)",
            run=f"prefer:{cfg.preference.judge}",
        )
    add_agent("generate-questions:final", "final", "general", n_docs, qg_in, qg_text)
    ans_in = 80 + k * cfg.answer.context_chars / CHARS_PER_TOKEN
    add_agent(
        "answer",
        "answer",
        "answer",
        n_docs,
        ans_in,
        f"prompts of {ans_in:,.0f} tokens ({k} contexts of {cfg.answer.context_chars:,} chars)",
    )
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
            ("gpu_basis", pa.string()),
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
        "gpu_basis": "",
        "model": "",
    }
    return pa.Table.from_pylist(plans + [total], schema=schema)
