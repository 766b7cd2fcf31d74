"""PubMedQA evaluation: predictions for the 500 test items, scored like the official script,
overall and by year and MeSH slices.

A prediction is the label among yes/no/maybe with the highest log-likelihood as the model's
answer (constrained scoring), so even a tiny model gives a valid label every time. Backends that
cannot score (OpenAI-compatible servers) generate a short answer instead; an answer that is not
a label is recorded as the error it is. Predictions go to ``eval_predictions`` through the
stage runner, so an interrupted evaluation resumes.

Scoring follows PubMedQA's ``evaluation.py``: accuracy and macro-F1 as scikit-learn computes
them (F1 per label over the labels seen in the gold or the predictions, an undefined precision or
recall counted as 0, then the unweighted mean).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow as pa

from mkailin.agents.prompts import template
from mkailin.config import Config, ModelSpec
from mkailin.errors import InputError
from mkailin.lake import Lake
from mkailin.stage import RunResult, Stage, run_stage

LABELS = ("yes", "no", "maybe")
YEAR_SLICES = (
    (1989, 2000),
    (2001, 2004),
    (2005, 2007),
    (2008, 2009),
    (2010, 2011),
    (2012, 2013),
    (2014, 2015),
    (2016, 2017),
)
SETTINGS = ("reasoning-required", "question-only")


# ------------------------------------------------------------------------------ scoring
def accuracy(gold: list[str], pred: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else float("nan")


def macro_f1(gold: list[str], pred: list[str]) -> float:
    """scikit-learn's ``f1_score(gold, pred, average='macro')``."""
    if not gold:
        return float("nan")
    labels = sorted(set(gold) | set(pred))
    f1s = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(f1s) / len(f1s)


def year_slice(year: int | None) -> str | None:
    if year is None:
        return None
    for lo, hi in YEAR_SLICES:
        if lo <= year <= hi:
            return f"{lo}-{hi}"
    return None


# ------------------------------------------------------------------------------ prediction
def eval_prompt(setting: str, question: str, contexts: list[str], chars: int) -> list[dict]:
    if setting == "question-only":
        return template("pubmedqa-question-only-v1").messages(question=question)
    ctx = " ".join(contexts or [])[:chars]
    return template("pubmedqa-reasoning-required-v1").messages(question=question, contexts=ctx)


_LABEL = re.compile(r"\b(yes|no|maybe)\b", re.I)


class PubMedQAPredictor:
    """Batch function: PubMedQA rows -> eval_predictions rows."""

    def __init__(
        self, label: str, model_name: str, spec: ModelSpec, adapter: str, setting: str, chars: int
    ):
        from mkailin.backends.generation import get_generator

        self.gen = get_generator(spec, model_name, adapter)
        self.label, self.setting, self.chars = label, setting, chars

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        prompts = [
            eval_prompt(self.setting, r["question"], r["contexts"], self.chars) for r in rows
        ]
        errors = [None] * len(rows)
        try:
            scores = self.gen.score_choices(prompts, [" " + lab for lab in LABELS])
            preds = [LABELS[max(range(3), key=lambda i: s[i])] for s in scores]
        except NotImplementedError:
            from mkailin.backends.generation import GenParams

            gens = self.gen.generate(prompts, GenParams(max_new_tokens=4))
            preds = []
            for i, g in enumerate(gens):
                m = _LABEL.search(g.text or "")
                preds.append(m.group(1).lower() if m else None)
                if not m:
                    errors[i] = g.error or f"not a label: {g.text[:80]!r}"
        return pa.Table.from_pylist(
            [
                {
                    "model": self.label,
                    "pmid": r["pmid"],
                    "setting": self.setting,
                    "prediction": p,
                    "gold": r["final_decision"],
                    "_error": e,
                }
                for r, p, e in zip(rows, preds, errors)
            ],
            schema=pa.schema(
                [
                    ("model", pa.string()),
                    ("pmid", pa.int64()),
                    ("setting", pa.string()),
                    ("prediction", pa.string()),
                    ("gold", pa.string()),
                    ("_error", pa.string()),
                ]
            ),
        )


def model_label(model_name: str, adapter: str) -> str:
    return model_name + (f"+{Path(adapter.split('+')[-1]).name}" if adapter else "")


def eval_stage(
    lake: Lake,
    cfg: Config,
    model_name: str,
    adapter_setting: str = "none",
    setting: str | None = None,
    sample: int = 0,
) -> Stage:
    """``sample`` > 0 evaluates a fixed sample of that many test items (a stable hash order),
    the same items on every call and for every model."""
    from mkailin.artifacts import resolve_adapter

    setting = setting or cfg.eval.setting
    if setting not in SETTINGS:
        raise InputError(f"unknown setting {setting!r} ({', '.join(SETTINGS)})")
    spec = cfg.model(model_name)
    adapter = resolve_adapter(lake, adapter_setting, "train-sft", spec.model)
    label = model_label(model_name, adapter)
    return Stage(
        name=f"eval-pubmedqa:{label}:{setting}",
        input_sql="select pmid, question, contexts, final_decision from pubmedqa "
        "where split = 'test' and final_decision is not null order by hash(pmid)"
        + (f" limit {int(sample)}" if sample else ""),
        output="eval_predictions",
        key=("pmid",),
        order_by="hash(i.pmid)",
        output_filter="model = ? and setting = ?",
        output_params=[label, setting],
        fn=PubMedQAPredictor,
        fn_args=(label, model_name, spec, adapter, setting, cfg.eval.context_chars),
        batch_size=cfg.runtime.batch_size,
        models={"model": model_name, "adapter": adapter},
        config_hash=cfg.hash("eval", "models"),
    )


def predict(
    lake: Lake,
    cfg: Config,
    model_name: str,
    adapter: str = "none",
    setting: str | None = None,
    limit: int = 0,
    executor: str | None = None,
    progress: bool | None = None,
) -> tuple[str, RunResult]:
    stage = eval_stage(lake, cfg, model_name, adapter, setting, limit)
    if lake.query("select count(*) from pubmedqa where split = 'test'")[0][0] == 0:
        raise InputError(
            "no PubMedQA test split: run `mkailin ingest pubmedqa ori_pqal.json "
            "--ground-truth test_ground_truth.json` first"
        )
    r = run_stage(lake, stage, executor or cfg.runtime.executor, cfg.runtime, progress=progress)
    return stage.output_params[0], r


# ------------------------------------------------------------------------------ reports
def slice_report(lake: Lake, labels: list[str], setting: str, mesh_slices: int = 6) -> pa.Table:
    """Accuracy, macro-F1 and counts per model: overall, the 8 year slices and the most common
    MeSH terms of the test set (overlapping slices, as in the paper)."""
    preds = lake.query(
        "select e.model, e.pmid, e.prediction, e.gold, p.year, p.meshes from eval_predictions e "
        "join pubmedqa p using (pmid) where e.setting = ? and e.prediction is not null "
        "qualify row_number() over (partition by e.model, e.pmid order by e.run_id desc) = 1",
        [setting],
    )
    mesh_counts = Counter(
        m
        for (ms,) in lake.query("select meshes from pubmedqa where split = 'test'")
        for m in (ms or [])
    )
    top_mesh = [m for m, _ in mesh_counts.most_common(mesh_slices)]
    out = []
    for label in labels:
        rows = [r for r in preds if r[0] == label]
        groups: dict[tuple[str, str], list] = {("overall", "all"): rows}
        for r in rows:
            groups.setdefault(("year", year_slice(r[4]) or "unknown"), []).append(r)
            for m in r[5] or []:
                if m in top_mesh:
                    groups.setdefault(("mesh", m), []).append(r)
        order = (
            [("overall", "all")]
            + [("year", f"{lo}-{hi}") for lo, hi in YEAR_SLICES]
            + ([("year", "unknown")] if ("year", "unknown") in groups else [])
            + [("mesh", m) for m in top_mesh]
        )
        for key in order:
            g = groups.get(key, [])
            gold, pred = [r[3] for r in g], [r[2] for r in g]
            out.append(
                {
                    "model": label,
                    "slice_kind": key[0],
                    "slice": key[1],
                    "n": len(g),
                    "accuracy": accuracy(gold, pred) if g else None,
                    "macro_f1": macro_f1(gold, pred) if g else None,
                }
            )
    return pa.Table.from_pylist(
        out,
        schema=pa.schema(
            [
                ("model", pa.string()),
                ("slice_kind", pa.string()),
                ("slice", pa.string()),
                ("n", pa.int64()),
                ("accuracy", pa.float64()),
                ("macro_f1", pa.float64()),
            ]
        ),
    )


def short_labels(labels: list[str]) -> list[str]:
    """Column labels for model labels: the model name without its adapter's run id, or
    ``base`` / ``tuned`` when every label is the same model (with and without an adapter)."""
    bases = [lab.split("+", 1)[0] for lab in labels]
    tuned = ["+" in lab for lab in labels]
    if len(set(bases)) == 1 and any(tuned):
        short = ["tuned" if t else "base" for t in tuned]
    else:
        short = [b + ("+tuned" if t else "") for b, t in zip(bases, tuned)]
    seen = Counter(short)
    count: Counter = Counter()
    out = []
    for s in short:
        count[s] += 1
        out.append(f"{s}{count[s]}" if seen[s] > 1 else s)
    return out


def side_by_side(report: pa.Table, labels: list[str]) -> pa.Table:
    """One row per slice, a column pair per model (``acc:<label>``, ``f1:<label>``) under a short
    label; the table's notes (printed under it) map each short label to the full one."""
    from mkailin.output import with_notes

    short = dict(zip(labels, short_labels(labels)))
    rows: dict[tuple, dict] = {}
    for r in report.to_pylist():
        key = (r["slice_kind"], r["slice"])
        row = rows.setdefault(key, {"slice_kind": key[0], "slice": key[1], "n": r["n"]})
        lab = short.get(r["model"], r["model"])
        row[f"acc:{lab}"] = r["accuracy"]
        row[f"f1:{lab}"] = r["macro_f1"]
    cols = [("slice_kind", pa.string()), ("slice", pa.string()), ("n", pa.int64())]
    for lab in labels:
        cols += [(f"acc:{short[lab]}", pa.float64()), (f"f1:{short[lab]}", pa.float64())]
    table = pa.Table.from_pylist(list(rows.values()), schema=pa.schema(cols))
    legend = [
        f"{short[lab]:<8} = {lab.split('+', 1)[0]}"
        + (f" + adapter {lab.split('+', 1)[1]}" if "+" in lab else " (no adapter)")
        for lab in labels
        if short[lab] != lab
    ]
    return with_notes(table, legend) if legend else table


def plot_report(report: pa.Table, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    rows = report.to_pylist()
    models = list(dict.fromkeys(r["model"] for r in rows))
    for kind in ("year", "mesh"):
        slices = list(dict.fromkeys(r["slice"] for r in rows if r["slice_kind"] == kind))
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(slices) + 2), 4))
        width = 0.8 / max(1, len(models))
        for i, m in enumerate(models):
            vals = {
                r["slice"]: r["accuracy"] or 0
                for r in rows
                if r["model"] == m and r["slice_kind"] == kind
            }
            ax.bar(
                [k + i * width for k in range(len(slices))],
                [vals.get(s, 0) for s in slices],
                width,
                label=m,
            )
        ax.set_xticks([k + width * (len(models) - 1) / 2 for k in range(len(slices))])
        ax.set_xticklabels(slices, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("accuracy")
        ax.set_title(f"PubMedQA accuracy by {kind} slice")
        ax.legend(fontsize=7)
        fig.subplots_adjust(bottom=0.3)
        path = out / f"pubmedqa_{kind}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files


def evaluate_pubmedqa(
    lake: Lake,
    cfg: Config,
    models: list[tuple[str, str]],
    setting: str | None = None,
    limit: int = 0,
    out: str | None = None,
    progress: bool | None = None,
) -> dict:
    """Predict with each (model, adapter) and report the slices side by side."""
    setting = setting or cfg.eval.setting
    labels, runs = [], []
    for name, adapter in models:
        label, r = predict(lake, cfg, name, adapter, setting, limit, progress=progress)
        labels.append(label)
        runs.append(r)
    report = slice_report(lake, labels, setting, cfg.eval.mesh_slices)
    result = {
        "labels": labels,
        "runs": runs,
        "report": report,
        "table": side_by_side(report, labels),
        "files": [],
    }
    if out:
        import csv

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "pubmedqa_slices.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(report.column_names)
            for r in report.to_pylist():
                w.writerow(list(r.values()))
        result["files"] = [folder / "pubmedqa_slices.csv", *plot_report(report, folder)]
    return result
