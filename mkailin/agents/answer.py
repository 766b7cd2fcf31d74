"""The answer agent: answer each final question from its top-k contexts.

Two ways to run it:

- through the stage runner and any generation backend (GPT-4o in the paper; any
  OpenAI-compatible server; SmolLM2 offline), with token usage and cost counted per row;
- through the OpenAI Batch API for large jobs: the requests go to a JSONL file, which is
  uploaded and submitted; the batch is polled and its output collected into ``answers``. Every
  step is recorded in ``answer_batches``, so an interrupted job resumes where it stopped and a
  question is never submitted twice.
"""

from __future__ import annotations

import json
import time

import pyarrow as pa

from mkailin.agents.prompts import template
from mkailin.config import AgentSpec, Config, ModelSpec
from mkailin.errors import InputError
from mkailin.lake import Lake, now
from mkailin.runs import log_event
from mkailin.stage import RunResult, Stage, run_stage

FINAL_STATES = ("collected", "failed", "expired", "cancelled", "superseded")
BATCHES_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("input_file_id", pa.string()),
        ("output_file_id", pa.string()),
        ("status", pa.string()),
        ("requests", pa.int64()),
        ("question_ids", pa.list_(pa.string())),
        ("model", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("error", pa.string()),
    ]
)


def answer_input_sql(lake: Lake, cfg: Config, agents: tuple[str, ...]) -> tuple[str, list]:
    """The agents' questions written under ``cfg``, with their top-k context texts in rank
    order."""
    from mkailin.labels import contexts_where, questions_where

    chars = int(cfg.answer.context_chars)
    where, params = contexts_where(cfg)
    mine, mine_params = questions_where(lake, cfg, agents)
    sql = f"""
        with ctx as (
            select c.question_id,
                   list(substr(coalesce(a.title || '. ', '') || coalesce(a.abstract, ''), 1,
                               {chars}) order by c.rank) as contexts
            from contexts as c join articles as a on a.pmid = c.pmid
            where {where}
            group by c.question_id
        )
        select q.question_id, q.question, ctx.contexts
        from questions as q join ctx using (question_id)
        where {mine} and q.question is not null
    """
    return sql, [*params, *mine_params]


def answer_messages(tpl_id: str, question: str, contexts: list[str]) -> list[dict]:
    text = "\n".join(f"[{i}] {c}" for i, c in enumerate(contexts or [], start=1))
    return template(tpl_id).messages(question=question, contexts=text)


class AnswerWriter:
    """Batch function: (question_id, question, contexts) -> answers rows."""

    def __init__(self, model_name: str, spec: ModelSpec, agent: AgentSpec, adapter: str):
        from mkailin.backends.generation import GenParams, get_generator

        self.gen = get_generator(spec, model_name, adapter)
        self.model = model_name
        self.tpl = agent.prompt
        self.params = GenParams(
            max_new_tokens=agent.max_new_tokens, temperature=agent.temperature, top_p=agent.top_p
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        gens = self.gen.generate(
            [answer_messages(self.tpl, r["question"], r["contexts"]) for r in rows], self.params
        )
        out = []
        for r, g in zip(rows, gens):
            err = g.error or (None if g.text.strip() else "empty answer")
            out.append(
                {
                    "question_id": r["question_id"],
                    "answer": g.text.strip() or None,
                    "model": self.model,
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": g.completion_tokens,
                    "cost_usd": g.cost_usd,
                    "_error": err,
                    "_raw": g.text[:2000] if err else None,
                    "_tokens_in": g.prompt_tokens,
                    "_tokens_out": g.completion_tokens,
                    "_cost_usd": g.cost_usd,
                }
            )
        return pa.Table.from_pylist(out)


def answer_stage(lake: Lake, cfg: Config, agents: tuple[str, ...] | None = None) -> Stage:
    agents = agents or tuple(cfg.answer.agents)
    spec_agent = cfg.agent("answer")
    spec = cfg.model(spec_agent.model)
    sql, params = answer_input_sql(lake, cfg, agents)
    adapter = "" if spec_agent.adapter in ("auto", "none") else spec_agent.adapter
    return Stage(
        name="answer",
        input_sql=sql,
        input_params=params,
        output="answers",
        key=("question_id",),
        fn=AnswerWriter,
        fn_args=(spec_agent.model, spec, spec_agent, adapter),
        batch_size=cfg.runtime.batch_size,
        models={"answer": spec_agent.model, "adapter": adapter, "prompt": spec_agent.prompt},
        config_hash=cfg.hash("agents", "models", "answer"),
    )


def answer(
    lake: Lake,
    cfg: Config,
    agents: tuple[str, ...] | None = None,
    executor: str | None = None,
    limit: int = 0,
    progress: bool | None = None,
) -> RunResult:
    return run_stage(
        lake,
        answer_stage(lake, cfg, agents),
        executor or cfg.runtime.executor,
        cfg.runtime,
        progress=progress,
        limit=limit,
    )


# ------------------------------------------------------------------------------ Batch API
def _batch_client(spec: ModelSpec):
    import openai

    from mkailin.backends.generation import api_key

    return openai.OpenAI(
        base_url=spec.base_url or None,
        api_key=api_key(spec),
        timeout=spec.timeout,
        max_retries=spec.max_retries,
    )


def _batches(lake: Lake) -> list[dict]:
    """The latest state of every batch in ``answer_batches``."""
    lake.ensure_table("answer_batches", BATCHES_SCHEMA)
    return lake.query_arrow(
        "select * from answer_batches qualify row_number() over "
        "(partition by batch_id order by event_time desc) = 1 order by event_time"
    ).to_pylist()


def _record_batch(lake: Lake, **row) -> None:
    row["event_time"] = now()
    lake.write_part("answer_batches", pa.Table.from_pylist([row], schema=BATCHES_SCHEMA))


def batch_answer(
    lake: Lake,
    cfg: Config,
    agents: tuple[str, ...] | None = None,
    poll_seconds: float = 30.0,
    wait: bool = True,
    max_requests: int = 50_000,
    timeout_seconds: float = 24 * 3600,
) -> dict:
    """Answer through the OpenAI Batch API: submit what is neither answered nor pending, then
    poll every pending batch and collect finished ones. Safe to interrupt and re-run."""
    agents = agents or tuple(cfg.answer.agents)
    spec_agent = cfg.agent("answer")
    spec = cfg.model(spec_agent.model)
    if spec.backend != "openai":
        raise InputError(
            f"the Batch API needs an openai-backend model; agents.answer.model is "
            f"{spec_agent.model!r} with backend {spec.backend!r}"
        )
    client = _batch_client(spec)
    from mkailin.runs import new_run_id

    run_id = new_run_id("answer-batch")
    stats = {
        "submitted": 0,
        "collected": 0,
        "failed": 0,
        "pending": 0,
        "run_id": run_id,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
    }
    with lake.lock("answer --batch-api"):
        log_event(
            lake,
            run_id,
            "answer-batch",
            "started",
            models={"answer": spec_agent.model},
            config_hash=cfg.hash("agents", "models", "answer"),
        )
        try:
            pending = {b["batch_id"]: b for b in _batches(lake) if b["status"] not in FINAL_STATES}
            for bid, b in list(pending.items()):
                if b["status"] == "uploaded":  # killed between upload and batch creation
                    del pending[bid]
                    b = _create(lake, client, b)
                    pending[b["batch_id"]] = b
            in_flight = {q for b in pending.values() for q in (b["question_ids"] or [])}
            sql, params = answer_input_sql(lake, cfg, agents)
            todo = lake.query_arrow(
                f"select * from ({sql}) where question_id not in (select question_id from answers)"
                " order by question_id",
                params,
            ).to_pylist()
            todo = [r for r in todo if r["question_id"] not in in_flight][:max_requests]
            if todo:
                b = _submit(lake, client, spec, spec_agent, todo)
                pending[b["batch_id"]] = b
                stats["submitted"] = len(todo)
            deadline = time.monotonic() + timeout_seconds
            while pending:
                for bid in list(pending):
                    state = client.batches.retrieve(bid)
                    if state.status == "completed":
                        got = _collect(lake, client, spec, spec_agent, pending[bid], state, run_id)
                        for k in ("collected", "failed", "tokens_in", "tokens_out"):
                            stats[k] += got[k]
                        stats["cost_usd"] += got["cost_usd"]
                        del pending[bid]
                    elif state.status in ("failed", "expired", "cancelled"):
                        _record_batch(
                            lake,
                            **{
                                **pending[bid],
                                "status": state.status,
                                "error": str(state.errors)[:2000],
                            },
                        )
                        stats["failed"] += pending[bid]["requests"]
                        del pending[bid]
                if not pending or not wait or time.monotonic() > deadline:
                    break
                time.sleep(poll_seconds)
            stats["pending"] = sum(b["requests"] for b in pending.values())
        except Exception as e:
            log_event(
                lake, run_id, "answer-batch", "failed", error=f"{type(e).__name__}: {e}"[:2000]
            )
            raise
        log_event(
            lake,
            run_id,
            "answer-batch",
            "finished",
            rows_in=stats["submitted"],
            rows_out=stats["collected"],
            tokens_in=stats["tokens_in"],
            tokens_out=stats["tokens_out"],
            cost_usd=stats["cost_usd"],
            detail=json.dumps({k: v for k, v in stats.items() if k != "run_id"}),
        )
        lake.sync_catalog()
    return stats


def _submit(lake: Lake, client, spec: ModelSpec, agent: AgentSpec, todo: list[dict]) -> dict:
    folder = lake.artifacts_dir / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"requests-{int(time.time() * 1000)}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in todo:
            f.write(
                json.dumps(
                    {
                        "custom_id": r["question_id"],
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": spec.model,
                            "max_tokens": agent.max_new_tokens,
                            "temperature": agent.temperature,
                            "messages": answer_messages(agent.prompt, r["question"], r["contexts"]),
                        },
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    with open(path, "rb") as f:
        uploaded = client.files.create(file=f, purpose="batch")
    # recorded before the batch is created: a run killed in between finds the batch by its file
    row = {
        "batch_id": f"file:{uploaded.id}",
        "input_file_id": uploaded.id,
        "output_file_id": None,
        "status": "uploaded",
        "requests": len(todo),
        "question_ids": [r["question_id"] for r in todo],
        "model": spec.model,
        "error": None,
    }
    _record_batch(lake, **row)
    return _create(lake, client, row)


def _create(lake: Lake, client, row: dict) -> dict:
    """Create the batch for an uploaded file, or adopt the one a killed run already created."""
    existing = next(
        (b for b in client.batches.list(limit=100) if b.input_file_id == row["input_file_id"]), None
    )
    created = existing or client.batches.create(
        input_file_id=row["input_file_id"], endpoint="/v1/chat/completions", completion_window="24h"
    )
    _record_batch(lake, **{**row, "status": "superseded"})  # the file: row is done
    new = {**row, "batch_id": created.id, "status": "submitted"}
    _record_batch(lake, **new)
    return new


def _collect(
    lake: Lake, client, spec: ModelSpec, agent: AgentSpec, batch: dict, state, run_id: str
) -> dict:
    from mkailin.backends.generation import cost

    text = client.files.content(state.output_file_id).text
    done = {q for (q,) in lake.query("select question_id from answers")}
    rows, bad = [], []
    stats = {"collected": 0, "failed": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        qid = rec.get("custom_id")
        resp = rec.get("response") or {}
        body = resp.get("body") or {}
        if qid in done:
            continue
        if rec.get("error") or resp.get("status_code", 200) >= 400 or not body.get("choices"):
            bad.append(
                {
                    "source": "answer-batch",
                    "record_key": qid,
                    "error": json.dumps(rec.get("error") or body.get("error") or "no choices")[
                        :2000
                    ],
                    "raw_excerpt": line[:2000],
                }
            )
            continue
        usage = body.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        c = cost(spec, pt, ct) * spec.batch_discount
        rows.append(
            {
                "question_id": qid,
                "answer": body["choices"][0]["message"]["content"],
                "model": spec.model,
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "cost_usd": c,
                "run_id": run_id,
            }
        )
        done.add(qid)
        stats["tokens_in"] += pt
        stats["tokens_out"] += ct
        stats["cost_usd"] += c
    if bad:
        lake.quarantine(bad, run_id)
    lake.write_part(
        "answers",
        pa.Table.from_pylist(rows)
        if rows
        else pa.table({"question_id": pa.array([], pa.string())}),
    )
    stats["collected"], stats["failed"] = len(rows), len(bad)
    _record_batch(lake, **{**batch, "status": "collected", "output_file_id": state.output_file_id})
    return stats
