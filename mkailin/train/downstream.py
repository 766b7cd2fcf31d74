"""Downstream recipes: continued pretraining on ``corpus_cpt``, then SFT on ``corpus_sft``.

Both are LoRA runs through trl on the target model (``downstream.model``). SFT starts from the
CPT adapter merged into the weights when one exists, and can mix PubMedQA PQA-L training
examples (question + contexts -> "yes/no/maybe. long answer"), as the paper does. The final
adapter is what ``mkailin eval pubmedqa --adapter auto`` evaluates.

On a GPU the same recipe trains a bigger target: name it in ``[models]`` (e.g. Llama-3-8B) and
set ``downstream.model``; the trainer picks CUDA and bfloat16 by itself.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from mkailin.artifacts import artifact_dir, resolve_adapter
from mkailin.config import Config, ModelSpec, TrainConfig
from mkailin.errors import InputError
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
from mkailin.train.sft import lora_sft


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(
            f"{path}: no such corpus; run `mkailin export "
            f"{'cpt' if 'cpt' in path.parent.name else 'sft'}` first"
        )
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_path(lake: Lake, cfg: Config, kind: str, corpus: str | None) -> Path:
    from mkailin.export import export_dir

    folder = Path(corpus) if corpus else export_dir(lake, cfg, kind, None)
    return folder / "data.jsonl"


def lora_lm(
    spec: ModelSpec, texts: list[str], tcfg: TrainConfig, out_dir: str, base_adapters: str = ""
) -> dict:
    """Plain language-model LoRA training on texts (continued pretraining)."""
    require_train_extra()
    quiet_transformers()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mkailin.backends.generation import load_causal_lm

    tokenizer, model = load_causal_lm(spec, base_adapters, training=True)
    tokenizer.padding_side = "right"
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
            dataset_text_field="text",
            packing=False,
            lr_scheduler_type="constant",
            warmup_steps=0,
            disable_tqdm=not progress_bars(),
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list([{"text": t} for t in texts]),
            processing_class=tokenizer,
            peft_config=lora_config(tcfg),
        )
        silence(trainer)
        trainer.train()
        trainer.model.save_pretrained(out_dir)
    losses = log_losses(trainer)
    return {
        "losses": losses,
        "steps": len(losses),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_fell": loss_fell(losses),
    }


def train_cpt(lake: Lake, cfg: Config, corpus: str | None = None) -> dict:
    texts = [r["text"] for r in _read_jsonl(corpus_path(lake, cfg, "cpt", corpus))]
    name = cfg.downstream.model
    spec = cfg.model(name)
    with training_run(
        lake, "train-cpt", {"target": name}, cfg.hash("train", "downstream"), len(texts)
    ) as detail:
        out = artifact_dir(lake, "adapters", detail["run_id"])
        tcfg = dataclasses.replace(cfg.train, max_length=cfg.downstream.max_length)
        detail.update(lora_lm(spec, texts, tcfg, str(out)))
        detail.update(adapter=str(out), base_model=spec.model, examples=len(texts))
    return detail


def pubmedqa_sft_records(lake: Lake, n: int) -> list[dict]:
    rows = lake.query(
        "select question, contexts, final_decision, long_answer from pubmedqa "
        "where split <> 'test' and final_decision is not null order by pmid limit ?",
        [n],
    )
    return [
        {
            "prompt": [
                {"role": "user", "content": f"Context: {' '.join(c or [])}\n\nQuestion: {q}"}
            ],
            "completion": [{"role": "assistant", "content": f"{d}. {la or ''}".strip()}],
        }
        for q, c, d, la in rows
    ]


def train_sft(
    lake: Lake, cfg: Config, corpus: str | None = None, mix_pubmedqa: int | None = None
) -> dict:
    records = [
        {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}
        for r in _read_jsonl(corpus_path(lake, cfg, "sft", corpus))
    ]
    mix = cfg.downstream.mix_pubmedqa if mix_pubmedqa is None else mix_pubmedqa
    if mix:
        records += pubmedqa_sft_records(lake, mix)
    name = cfg.downstream.model
    spec = cfg.model(name)
    cpt = resolve_adapter(lake, "auto", "train-cpt", spec.model)
    with training_run(
        lake, "train-sft", {"target": name}, cfg.hash("train", "downstream"), len(records)
    ) as detail:
        out = artifact_dir(lake, "adapters", detail["run_id"])
        tcfg = dataclasses.replace(cfg.train, max_length=cfg.downstream.max_length)
        detail.update(lora_sft(spec, records, tcfg, str(out), cpt))
        detail.update(
            adapter=str(out),
            base_adapters=[a for a in cpt.split("+") if a],
            base_model=spec.model,
            examples=len(records),
            pubmedqa_mixed=mix,
        )
    return detail
