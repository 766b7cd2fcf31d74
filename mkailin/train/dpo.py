"""``mkailin train dpo``: DPO of the general question generator on the preference set.

The preferences (from the configured judge) are exported in TRL's conversational preference
format: ``prompt`` is the general agent's question-writing prompt for the document, ``chosen``
and ``rejected`` the two questions. The policy is the general generator (its SFT adapter, if
any, merged in) with a fresh LoRA adapter; the reference is the same model with the adapter
switched off. The run records the reward margins it logged, so "the margin rises" is checkable.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mkailin.agents.prompts import template
from mkailin.artifacts import artifact_dir, resolve_adapter
from mkailin.config import Config
from mkailin.errors import InputError, StepSkipped
from mkailin.labels import dpo_config_hash, questions_where, scorer_label
from mkailin.lake import Lake
from mkailin.train import (
    lora_config,
    precision_args,
    progress_bars,
    quiet_transformers,
    require_train_extra,
    silence,
    training_run,
)
from mkailin.train.fit import PromptFields, fit_examples


def preference_records(lake: Lake, cfg: Config, judge: str | None = None) -> list[dict]:
    """TRL preference rows for the chosen judge (the rule's rows of the configured scorer)."""
    judge = judge or cfg.preference.judge
    tpl = template(cfg.agent("general").prompt)
    where, params = "p.judge = ?", [judge]
    if judge == "rule":
        where += " and p.scorer = ?"
        params.append(scorer_label(cfg))
    # the pairs of the questions written under cfg (another config's share the lake)
    mine, mine_params = questions_where(lake, cfg, ("domain", "general"), alias="")
    where += f" and p.chosen_id in (select question_id from questions where {mine})"
    params += mine_params
    rows = lake.query(
        f"select a.abstract, p.chosen, p.rejected from preferences as p "
        f"join articles as a using (pmid) where {where} and p.chosen <> p.rejected "
        f"order by p.pmid",
        params,
    )
    stage = "prefer:rule" if judge == "rule" else f"prefer:{judge}"
    ran = lake.query("select 1 from runs where stage = ? and status = 'finished' limit 1", [stage])
    if not rows and not ran:
        raise InputError(
            f"no preferences from the {judge!r} judge: run `mkailin prefer --judge {judge}` first"
        )
    n = cfg.generate.max_input_chars
    return [
        {
            "prompt": PromptFields(
                lambda f: tpl.messages(abstract=f["abstract"], title=""),
                {"abstract": (abstract or "")[:n]},
                (("abstract",),),
            ),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        for abstract, chosen, rejected in rows
    ]


def export_trl(records: list[dict], path: str | Path) -> Path:
    """Write the preference set as JSONL in TRL's format (prompt, chosen, rejected)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _mean_head(x: list[float], w: int) -> float:
    w = max(1, min(w, len(x) // 2))
    return sum(x[:w]) / w


def _mean_tail(x: list[float], w: int) -> float:
    w = max(1, min(w, len(x) // 2))
    return sum(x[-w:]) / w


def train_dpo(lake: Lake, cfg: Config, judge: str | None = None) -> dict:
    require_train_extra()
    quiet_transformers()
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from mkailin.backends.generation import load_causal_lm

    records = preference_records(lake, cfg, judge)
    agent = cfg.agent("general")
    spec = cfg.model(agent.model)
    base = resolve_adapter(lake, agent.adapter, "train-qg:general", spec.model)
    t = cfg.train
    with training_run(
        lake,
        "train-dpo:general",
        {"general": agent.model},
        dpo_config_hash(cfg),
        len(records),
    ) as detail:
        need = max(1, t.dpo_min_pairs)
        if len(records) < need:
            raise StepSkipped(
                f"{len(records)} preference pair{'s' if len(records) != 1 else ''} from the "
                f"{judge or cfg.preference.judge!r} judge, fewer than the {need} DPO needs "
                "(train.dpo_min_pairs)",
                "the final questions come from the generator DPO would have tuned",
            )
        out = artifact_dir(lake, "adapters", detail["run_id"])
        tokenizer, model = load_causal_lm(spec, base, training=True)
        tokenizer.padding_side = "left"
        records, tally = fit_examples(
            records, tokenizer, t.max_length, "train.max_length", spec.chat_template
        )
        detail.update(tally)
        if len(records) < need:
            raise StepSkipped(
                f"{len(records)} preference pairs left with questions short enough for "
                f"train.max_length={t.max_length}, fewer than the {need} DPO needs",
                "the final questions come from the generator DPO would have tuned",
            )
        export_trl(records, out / "preferences.trl.jsonl")
        with tempfile.TemporaryDirectory() as tmp:
            args = DPOConfig(
                output_dir=tmp,
                max_steps=t.max_steps,
                learning_rate=t.learning_rate,
                per_device_train_batch_size=t.batch_size,
                gradient_accumulation_steps=t.gradient_accumulation,
                beta=t.beta,
                max_length=t.max_length,
                logging_steps=1,
                save_strategy="no",
                report_to=[],
                seed=t.seed,
                **precision_args(model, t),
                disable_tqdm=not progress_bars(),
                lr_scheduler_type="constant",
                warmup_steps=0,
                dataloader_num_workers=0,
            )
            trainer = DPOTrainer(
                model=model,
                args=args,
                train_dataset=Dataset.from_list(records),
                processing_class=tokenizer,
                peft_config=lora_config(t),
            )
            silence(trainer)
            if len(trainer.train_dataset) == 0:  # fitting makes this a bug, not a setting
                raise StepSkipped(
                    f"none of the {len(records)} preference pairs leaves room for "
                    f"its answer in max_length={t.max_length} tokens; raise "
                    "train.max_length or lower generate.max_input_chars"
                )
            trainer.train()
            trainer.model.save_pretrained(out)
        hist = trainer.state.log_history
        margins = [float(h["rewards/margins"]) for h in hist if "rewards/margins" in h]
        losses = [float(h["loss"]) for h in hist if "loss" in h]
        detail.update(
            adapter=str(out),
            base_adapters=[a for a in base.split("+") if a],
            base_model=spec.model,
            judge=judge or cfg.preference.judge,
            pairs=len(records),
            steps=len(losses),
            beta=t.beta,
            losses=losses,
            margins=margins,
            margin_first=margins[0] if margins else None,
            margin_last=margins[-1] if margins else None,
            margin_rose=_mean_tail(margins, 5) > _mean_head(margins, 5)
            if len(margins) > 1
            else False,
        )
    return detail
