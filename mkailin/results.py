"""What a command hands back: model stages a :class:`~mkailin.stage.RunResult`, every other step
(rule preferences, training, export) a :class:`Result`. Both print themselves with ``lines()``,
so ``mkailin <command>`` and ``mkailin run`` say the same thing about the same run.

A :class:`Result` is the run's figures as a dict (what the run log's ``detail`` holds) with the
stage it came from; its one-line summary is made here, in one place per kind of stage."""

from __future__ import annotations

from collections.abc import Callable


def _loss(d: dict) -> str:
    first, last = d.get("loss_first"), d.get("loss_last")
    if first is None or last is None:
        return "no loss recorded"
    return f"loss {first:.3f} -> {last:.3f}"


def _adapter(d: dict) -> str:
    return f"; adapter {d['adapter']}" if d.get("adapter") else ""


def _run(d: dict) -> str:
    return f" [run {d['run_id']}]" if d.get("run_id") else ""


def _prefer_rule(d: dict) -> str:
    return (
        f"prefer:rule: {d['pairs']:,} pairs from {d['documents']:,} documents "
        f"(scorer {d['scorer']}, contexts {d['retriever']})"
    )


def _train_qg(d: dict) -> str:
    used = d.get("examples_used", d.get("examples", 0))
    cut = d.get("prompts_cut")
    cut_text = f" ({cut:,} prompts cut to train.max_length)" if cut is not None else ""
    return (
        f"{d['stage']}: {d.get('steps', 0)} steps on {used:,} of {d.get('examples', 0):,} "
        f"{d.get('source', '')} pairs{cut_text}, {_loss(d)}{_adapter(d)}"
    )


def _train_judge(d: dict) -> str:
    h = d.get("holdout") or {}
    agree = (
        f"held-out agreement {h['accuracy']:.2f}, kappa {h['kappa']:.2f} on {h['n']} pairs"
        if h.get("n")
        else "no held-out pairs (too few documents)"
    )
    return f"train-judge: {d.get('steps', 0)} steps on {d.get('train_pairs', 0)} pairs; {agree}" + (
        _adapter(d)
    )


def _train_dpo(d: dict) -> str:
    first, last = d.get("margin_first"), d.get("margin_last")
    margin = (
        f"reward margin {first:.3f} -> {last:.3f}" if None not in (first, last) else "no margin"
    )
    return (
        f"train-dpo: {d.get('steps', 0)} steps on {d.get('pairs', 0)} pairs from the "
        f"{d.get('judge')!r} judge, {margin}{_adapter(d)}"
    )


def _train_target(d: dict) -> str:
    what = "texts" if d["stage"] == "train-cpt" else "records"
    return (
        f"{d['stage']}: {d.get('steps', 0)} steps on {d.get('examples', 0):,} {what}, "
        f"{_loss(d)}{_adapter(d)}"
    )


def _export(d: dict) -> str:
    kind = d["stage"].split(":", 1)[1]
    return (
        f"corpus_{kind}: {d['records']:,} records to {d['path']} "
        f"({d['exact_duplicates']:,} exact and {d['near_duplicates']:,} near-duplicate questions "
        f"removed, {d['blocked_removed']:,} overlapping the evaluation set removed)"
    )


# the summary of each kind of stage, by the stage name's prefix
SUMMARIES: list[tuple[str, Callable[[dict], str]]] = [
    ("prefer:rule", _prefer_rule),
    ("train-qg", _train_qg),
    ("train-judge", _train_judge),
    ("train-dpo", _train_dpo),
    ("train-cpt", _train_target),
    ("train-sft", _train_target),
    ("export:", _export),
]


class Result(dict):
    """A step's figures (a dict, as the run log keeps them) that knows its stage and prints
    itself the same way wherever it is shown."""

    def __init__(self, stage: str, fields: dict | None = None, **more):
        super().__init__(fields or {}, **more)
        self["stage"] = stage

    @property
    def stage(self) -> str:
        return self["stage"]

    def lines(self) -> list[str]:
        for prefix, fmt in SUMMARIES:
            if self.stage.startswith(prefix):
                return [fmt(self) + _run(self)]
        return [f"{self.stage}: finished{_run(self)}"]
