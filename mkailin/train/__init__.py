"""Training with trl and peft: LoRA SFT (question generators, downstream SFT), continued
pretraining, the pairwise judge, and DPO. Adapters go under ``lake/artifacts/`` and every run
is recorded in ``runs`` with its adapter path and base model in ``detail``."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager

from mkailin.errors import MissingDependencyError
from mkailin.lake import Lake
from mkailin.results import Result
from mkailin.runs import (
    log_event,
    new_run_id,  # noqa: F401  (re-exported)
    run_end,
)


def require_train_extra() -> None:
    for mod, pkg in (("trl", "trl"), ("peft", "peft"), ("datasets", "datasets")):
        try:
            __import__(mod)
        except ImportError:
            raise MissingDependencyError(pkg, "train", "training") from None


@contextmanager
def training_run(lake: Lake, stage: str, models: dict, config_hash: str, rows_in: int):
    """Log a training run: started, then finished with the figures the body puts in ``detail``
    (a dict it receives); skipped with the reason when the body raises :class:`StepSkipped`;
    interrupted on Ctrl-C; failed with the error otherwise. An adapter folder the body made
    under ``lake/artifacts`` is removed when the run does not finish, so no half-trained
    adapter is ever picked up."""
    run_id = new_run_id(stage)
    detail = Result(stage, run_id=run_id)
    with lake.lock(f"train {stage}"):
        log_event(
            lake,
            run_id,
            stage,
            "started",
            models=models,
            config_hash=config_hash,
            rows_in=rows_in,
        )
        try:
            yield detail
        except BaseException as e:
            _drop_unfinished(lake, run_id)
            event, error = run_end(e)
            log_event(lake, run_id, stage, event, rows_in=rows_in, error=error)
            raise
        log_event(
            lake,
            run_id,
            stage,
            "finished",
            rows_in=rows_in,
            rows_out=detail.get("steps", 0),
            detail=json.dumps(relative_paths(lake, detail), default=str),
        )


def relative_paths(lake: Lake, detail: dict) -> dict:
    """``detail`` with its adapter paths relative to the lake, as the runs table keeps them:
    a copied or moved lake finds its adapters (``artifacts.latest`` resolves them)."""
    out = dict(detail)
    for key in ("adapter", "path"):
        if isinstance(out.get(key), str) and out[key]:
            out[key] = lake.rel(out[key])
    if out.get("base_adapters"):
        out["base_adapters"] = [lake.rel(a) for a in out["base_adapters"]]
    return out


def _drop_unfinished(lake: Lake, run_id: str) -> None:
    import shutil

    for kind in ("adapters", "judges"):
        d = lake.artifacts_dir / kind / run_id
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


def loss_fell(losses: list[float], window: int = 5) -> bool:
    if len(losses) < 2:
        return False
    w = max(1, min(window, len(losses) // 2))
    return sum(losses[-w:]) / w < sum(losses[:w]) / w


def precision_args(model, tcfg) -> dict:
    """Trainer arguments for the device and precision: ``use_cpu`` on the CPU, and bfloat16
    autocast per ``train.precision``: "auto" on CUDA with bfloat16 only ("bf16" turns it on
    for the CPU too; on a 2-core CPU with native bfloat16 it saved at most 20 % of a LoRA step,
    slowed DPO, and its rounding moved the small demo runs), "float32" never."""
    import torch

    cpu = str(model.device) == "cpu"
    mode = getattr(tcfg, "precision", "auto")
    if mode not in ("auto", "bf16", "float32"):
        from mkailin.errors import InputError

        raise InputError(f"train.precision must be auto, bf16 or float32, not {mode!r}")
    if mode == "auto":
        bf16 = not cpu and torch.cuda.is_bf16_supported()
    else:
        bf16 = mode == "bf16"
    return {"use_cpu": cpu, "bf16": bf16, "gradient_checkpointing": checkpointing(tcfg, cpu)}


def checkpointing(tcfg, cpu: bool) -> bool:
    """``train.gradient_checkpointing``: "auto" recomputes activations in the backward pass on
    an accelerator only, where memory binds (the 7-8B runs); on the CPU memory is plentiful and
    the recomputation costs about a quarter of each LoRA step. "on" / "off" force it."""
    mode = getattr(tcfg, "gradient_checkpointing", "auto")
    if mode not in ("auto", "on", "off"):
        from mkailin.errors import InputError

        raise InputError(f"train.gradient_checkpointing must be auto, on or off, not {mode!r}")
    return not cpu if mode == "auto" else mode == "on"


def lora_config(tcfg):
    from peft import LoraConfig

    return LoraConfig(
        r=tcfg.lora_r,
        lora_alpha=tcfg.lora_alpha,
        lora_dropout=tcfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def quiet_transformers() -> None:
    import os
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"trl\..*")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


def progress_bars() -> bool:
    """Trainer progress bars on a terminal, none in logs, pipes and tests."""
    import sys

    return sys.stderr.isatty()


def silence(trainer) -> None:
    """Drop the callback that prints every log dict to stdout (the runs table keeps them); keep
    the step progress bar on a terminal only."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    if not progress_bars():
        trainer.remove_callback(ProgressCallback)


def log_losses(trainer) -> list[float]:
    return [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]


ProgressFn = Callable[[str], None]
