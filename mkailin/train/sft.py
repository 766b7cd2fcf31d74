"""LoRA SFT with trl's SFTTrainer on prompt -> completion pairs.

Used for the question generators (``mkailin train qg``: abstract/snippets -> question, from
BioASQ ``seed_qa`` or, when it is empty, PubMedQA's training split) and for the downstream SFT
recipe. The loss is taken on the completion only.
"""

from __future__ import annotations

import random
import tempfile

from mkailin.agents.prompts import template
from mkailin.artifacts import artifact_dir
from mkailin.config import Config, ModelSpec, TrainConfig
from mkailin.errors import InputError, StepSkipped
from mkailin.lake import Lake
from mkailin.train import (
    log_losses,
    lora_config,
    loss_fell,
    precision_args,
    progress_bars,
    quiet_transformers,
    require_train_extra,
    silence,
    training_run,
)
from mkailin.train.fit import PromptFields, fit_examples


def lora_sft(
    spec: ModelSpec,
    records: list[dict],
    tcfg: TrainConfig,
    out_dir: str,
    base_adapters: str = "",
    setting: str = "train.max_length",
) -> dict:
    """Train a LoRA adapter on ``records`` ({"prompt": messages or PromptFields, "completion":
    messages}) and save it to ``out_dir``. Prompts are first fitted to ``tcfg.max_length`` with
    their completion (see :mod:`mkailin.train.fit`; ``setting`` names that limit in messages).
    Returns the losses, the step count and the fitting tally."""
    require_train_extra()
    quiet_transformers()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mkailin.backends.generation import load_causal_lm

    # a fresh adapter trains on top of the merged ones
    tokenizer, model = load_causal_lm(spec, base_adapters, training=True)
    tokenizer.padding_side = "right"
    # the trainer sees max_steps x batch x accumulation examples: a seeded draw of that many
    # is fitted and tokenized, not the whole set (500 seed pairs for a 3-step demo run)
    available = len(records)
    need = max(1, tcfg.max_steps) * max(1, tcfg.batch_size) * max(1, tcfg.gradient_accumulation)
    if available > need:
        records = random.Random(tcfg.seed).sample(records, available)
    records, tally = fit_examples(
        records, tokenizer, tcfg.max_length, setting, spec.chat_template, limit=need
    )
    tally["examples_available"] = available
    if not records:
        raise StepSkipped(
            f"no training example left: every completion takes over half of {setting}="
            f"{tcfg.max_length} tokens"
        )
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            max_steps=tcfg.max_steps,
            learning_rate=tcfg.learning_rate,
            per_device_train_batch_size=tcfg.batch_size,
            gradient_accumulation_steps=tcfg.gradient_accumulation,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            max_length=tcfg.max_length,
            seed=tcfg.seed,
            **precision_args(model, tcfg),
            completion_only_loss=True,
            lr_scheduler_type="constant",
            warmup_steps=0,
            disable_tqdm=not progress_bars(),
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(records),
            processing_class=tokenizer,
            peft_config=lora_config(tcfg),
        )
        silence(trainer)
        if len(trainer.train_dataset) == 0:  # fitting makes this a bug, not a setting
            raise StepSkipped(
                f"the trainer kept none of the {len(records)} fitted examples "
                f"({setting}={tcfg.max_length})"
            )
        trainer.train()
        trainer.model.save_pretrained(out_dir)
    tokenizer.padding_side = "left"
    losses = log_losses(trainer)
    return {
        "losses": losses,
        "steps": len(losses),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_fell": loss_fell(losses),
        **tally,
    }


def qg_records(
    lake: Lake, cfg: Config, agent: str, source: str = "auto", limit: int = 0
) -> tuple[list[dict], str]:
    """Seed pairs for a question generator in the agent's own prompt format.

    BioASQ ``seed_qa`` (snippets, or the abstracts of its documents when the lake has them, in
    the question's document order, each once) comes first; PubMedQA's non-test questions serve
    when there is no BioASQ.
    """
    tpl = template(cfg.agent(agent).prompt)
    max_chars = cfg.generate.max_input_chars
    rows: list[tuple[str, str]] = []
    used = source
    if source in ("auto", "bioasq"):
        rows = lake.query(
            """
            with listed as (
                select qa_id,
                       unnest(pmids) as pmid,
                       generate_subscripts(pmids, 1) as position
                from seed_qa
            ),
            docs as (
                select s.qa_id, string_agg(a.abstract, '\n' order by s.position) as abstracts
                from (
                    select qa_id, pmid, min(position) as position from listed group by all
                ) as s
                join articles as a using (pmid)
                group by s.qa_id
            )
            select coalesce(nullif(array_to_string(q.snippets, '\n'), ''), d.abstracts), q.question
            from seed_qa as q
            left join docs as d using (qa_id)
            where q.question is not null
            order by q.qa_id
            """
        )
        rows = [(t, q) for t, q in rows if t]
        used = "bioasq"
    if not rows and source in ("auto", "pubmedqa"):
        rows = lake.query(
            "select array_to_string(contexts, '\n'), question from pubmedqa "
            "where split <> 'test' and question is not null order by pmid"
        )
        used = "pubmedqa"
    if not rows:
        raise InputError(
            "no seed pairs: ingest BioASQ (mkailin ingest bioasq) or PubMedQA "
            "(mkailin ingest pubmedqa) first"
        )
    if limit:
        rows = rows[:limit]
    records = [
        {
            "prompt": PromptFields(
                lambda f: tpl.messages(abstract=f["abstract"], title=""),
                {"abstract": text[:max_chars]},
                (("abstract",),),
            ),
            "completion": [{"role": "assistant", "content": q}],
        }
        for text, q in rows
    ]
    return records, used


def train_qg(lake: Lake, cfg: Config, agent: str, source: str = "auto", limit: int = 0) -> dict:
    """``mkailin train qg --agent domain|general``: LoRA SFT of a question generator."""
    if agent not in ("domain", "general"):
        raise InputError(f"--agent must be domain or general, not {agent!r}")
    records, used = qg_records(lake, cfg, agent, source, limit)
    agent_spec = cfg.agent(agent)
    spec = cfg.model(agent_spec.model)
    stage = f"train-qg:{agent}"
    with training_run(
        lake, stage, {agent: agent_spec.model}, cfg.hash("train", "models"), len(records)
    ) as detail:
        out = artifact_dir(lake, "adapters", detail["run_id"])
        detail.update(lora_sft(spec, records, cfg.train, str(out)))
        detail.update(
            adapter=str(out),
            base_model=spec.model,
            source=used,
            examples=len(records),
            prompt=agent_spec.prompt,
        )
    return detail
