"""``mkailin train judge``: a pairwise LLM judge fine-tuned on the MeSH rule labels.

Each rule-labelled document gives two training examples, one per order of its two
question-context pairs, with the answer "1" or "2" as the completion (LoRA SFT through trl).
A held-out share of documents (by a stable hash of the PMID) measures agreement with the rule:
accuracy and Cohen's kappa, recorded in the run's ``detail``.
"""

from __future__ import annotations

import dataclasses
import zlib

from mkailin.agents.preference import (
    cohen_kappa,
    judge_messages,
    pair_input_sql,
    pair_probability,
    scorer_label,
)
from mkailin.artifacts import artifact_dir
from mkailin.config import Config
from mkailin.errors import InputError, StepSkipped
from mkailin.lake import Lake
from mkailin.train import training_run
from mkailin.train.fit import PromptFields
from mkailin.train.sft import lora_sft


def labelled_pairs(lake: Lake, cfg: Config) -> list[dict]:
    """Judge inputs joined with the rule label: ``domain_wins`` per document. Empty when the
    rule ran and labelled nothing; an error when it never ran."""
    sql, params = pair_input_sql(lake, cfg)
    rows = lake.query_arrow(
        f"select i.*, p.chosen_id = i.q1_id as domain_wins from ({sql}) as i "
        "join preferences as p on p.pmid = i.pmid and p.judge = 'rule' and p.scorer = ? "
        "and p.chosen_id in (i.q1_id, i.q2_id) and p.rejected_id in (i.q1_id, i.q2_id) "
        "order by i.pmid",
        [*params, scorer_label(cfg)],
    ).to_pylist()
    ran = lake.query(
        "select 1 from runs where stage = 'prefer:rule' and status = 'finished' limit 1"
    )
    if not rows and not ran:
        raise InputError(
            "no rule preferences to learn from: run `mkailin prefer --judge rule` "
            "first (it needs questions from both agents and their contexts)"
        )
    return rows


def is_holdout(pmid: int, share: float) -> bool:
    return (zlib.crc32(str(pmid).encode()) % 1000) < share * 1000


def _prompt(r: dict, flip: bool, template_id: str) -> PromptFields:
    """The judge prompt of a labelled row, open to cutting: the document and the contexts give
    way first, the questions only if that is not enough."""
    a, b, c, d = (
        ("q2", "contexts2", "q1", "contexts1") if flip else ("q1", "contexts1", "q2", "contexts2")
    )
    return PromptFields(
        lambda f: judge_messages(f["document"], f["q1"], f["c1"], f["q2"], f["c2"], template_id),
        {
            "document": r["document"] or "",
            "q1": r[a],
            "c1": list(r[b] or []),
            "q2": r[c],
            "c2": list(r[d] or []),
        },
        (("document", "c1", "c2"), ("q1", "q2")),
    )


def examples(rows: list[dict], template_id: str) -> list[dict]:
    """Two training examples per labelled document, one per order of its two pairs."""
    out = []
    for r in rows:
        for flip in (False, True):
            first_wins = bool(r["domain_wins"]) != flip
            out.append(
                {
                    "prompt": _prompt(r, flip, template_id),
                    "completion": [{"role": "assistant", "content": "1" if first_wins else "2"}],
                }
            )
    return out


def agreement(gen, rows: list[dict], template_id: str) -> dict:
    if not rows:
        return {"n": 0, "accuracy": None, "kappa": None}
    probs = pair_probability(gen, rows, template_id)
    pred = [p >= 0.5 for p in probs]
    gold = [bool(r["domain_wins"]) for r in rows]
    return {
        "n": len(rows),
        "accuracy": sum(a == b for a, b in zip(pred, gold)) / len(rows),
        "kappa": cohen_kappa(pred, gold),
    }


def train_judge(lake: Lake, cfg: Config) -> dict:
    from mkailin.backends.generation import TransformersGenerator

    rows = labelled_pairs(lake, cfg)
    need = max(1, cfg.train.judge_min_pairs)
    train = [r for r in rows if not is_holdout(r["pmid"], cfg.train.holdout)]
    held = [r for r in rows if is_holdout(r["pmid"], cfg.train.holdout)]
    if len(train) < need <= len(rows):  # too few to hold any out: train on all of them
        train, held = rows, []
    agent = cfg.agent("judge")
    spec = cfg.model(agent.model)
    with training_run(
        lake, "train-judge", {"judge": agent.model}, cfg.hash("train", "preference"), len(rows)
    ) as detail:
        if len(rows) < need:
            raise StepSkipped(
                f"{len(rows)} rule-labelled pair{'s' if len(rows) != 1 else ''}, fewer than "
                f"the {need} a judge needs (train.judge_min_pairs)",
                "the rule labels stand in for the judge's",
            )
        out = artifact_dir(lake, "adapters", detail["run_id"])
        tcfg = dataclasses.replace(cfg.train, max_length=cfg.train.judge_max_length)
        detail.update(
            lora_sft(
                spec,
                examples(train, agent.prompt),
                tcfg,
                str(out),
                setting="train.judge_max_length",
            )
        )
        gen = TransformersGenerator(spec, agent.model, str(out))
        base = TransformersGenerator(spec, agent.model, "")
        detail.update(
            adapter=str(out),
            base_model=spec.model,
            scorer=scorer_label(cfg),
            train_pairs=len(train),
            holdout_pairs=len(held),
            holdout=agreement(gen, held, agent.prompt),
            untrained_holdout=agreement(base, held, agent.prompt),
        )
    return detail
