"""PubMedQA evaluation: predictions for the 500 test items, scored like the official script,
overall and by year and MeSH slices.

A prediction is the label among yes/no/maybe with the highest log-likelihood as the model's
answer (constrained scoring), so even a tiny model gives a valid label every time. Backends that
cannot score (OpenAI-compatible servers) generate a short answer instead; an answer that is not
a label is recorded as the error it is (a ``quarantine`` row of the stage). Predictions go to
``eval_predictions`` through the stage runner, so an interrupted evaluation resumes.

Scoring follows PubMedQA's ``evaluation.py`` (``tests/data/official``): accuracy and macro-F1
as scikit-learn computes them (F1 per label over the labels seen in the gold or the
predictions, an undefined F1 counted as 0, then the unweighted mean). Every evaluated item is in
the denominator: a prediction that is not yes/no/maybe (unparsed, empty, quarantined) is the
single extra label ``invalid``, as if the official script were given the string "invalid" for
it, so it is wrong and, when present, ``invalid`` is a fourth class with F1 0 in the macro mean.

Settings (PubMedQA's): ``reasoning-required`` (question + the abstract's contexts),
``reasoning-free`` (question + the long answer, i.e. the conclusion) and ``question-only``.
The context is cut at ``eval.context_chars`` (0 = never); reports count the items it cut.

MeSH slices: by default the paper author's six named, overlapping buckets
(:data:`PAPER_MESH_BUCKETS`), an item falling in a bucket when the bucket's name is a
case-insensitive substring of one of its MeSH names; or the N most common MeSH terms of the
test set (exact names).
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
SETTINGS = ("reasoning-required", "reasoning-free", "question-only")
INVALID = "invalid"  # the one label every prediction outside LABELS is scored as
# The MeSH buckets of the paper author's framework. Matched as case-insensitive substrings of an
# item's MeSH names, as that framework does: "Aged" also takes "Middle Aged", "Aged, 80 and
# over", "Homes for the Aged" and "Managed Care Programs"; "Male" also takes "Female";
# "Adult" also takes "Young Adult".
PAPER_MESH_BUCKETS = ("Female", "Male", "Middle Aged", "Aged", "Adult", "Adolescent")


# ------------------------------------------------------------------------------ scoring
def as_label(prediction) -> str:
    """A prediction as scored: yes/no/maybe as is, anything else (None, "", "Yes.") ``invalid``."""
    return prediction if prediction in LABELS else INVALID


def accuracy(gold: list[str], pred: list) -> float:
    """scikit-learn's ``accuracy_score``; a prediction outside yes/no/maybe is wrong."""
    if not gold:
        return float("nan")
    return sum(g == as_label(p) for g, p in zip(gold, pred, strict=True)) / len(gold)


def macro_f1(gold: list[str], pred: list) -> float:
    """scikit-learn's ``f1_score(gold, pred, average='macro')``, every prediction outside
    yes/no/maybe being the one label ``invalid`` (F1 0: it is never gold). Computed as
    scikit-learn computes it (2tp / (gold + predicted) per label, then the mean), so the figures
    agree to the last bit, not only to the official script's 6 printed decimals."""
    if not gold:
        return float("nan")
    pred = [as_label(p) for p in pred]
    f1s = []
    for lab in sorted(set(gold) | set(pred)):
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred, strict=True))
        denom = sum(g == lab for g in gold) + sum(p == lab for p in pred)
        f1s.append(2.0 * tp / denom if denom else 0.0)
    return sum(f1s) / len(f1s)


def score(gold: list[str], pred: list) -> dict:
    """The official figures for one list of items: ``n`` (every item, invalid ones included),
    ``invalid`` (predictions outside yes/no/maybe), ``accuracy`` and ``macro_f1``."""
    return {
        "n": len(gold),
        "invalid": sum(as_label(p) == INVALID for p in pred),
        "accuracy": accuracy(gold, pred) if gold else None,
        "macro_f1": macro_f1(gold, pred) if gold else None,
    }


def year_slice(year: int | None) -> str | None:
    if year is None:
        return None
    for lo, hi in YEAR_SLICES:
        if lo <= year <= hi:
            return f"{lo}-{hi}"
    return None


# ------------------------------------------------------------------------------ prediction
def eval_context(setting: str, contexts: list[str] | None, long_answer: str | None) -> str:
    """The whole context a setting puts in the prompt, before any cap: the abstract's contexts
    (reasoning-required), the long answer (reasoning-free), nothing (question-only)."""
    if setting == "reasoning-required":
        return " ".join(contexts or [])
    if setting == "reasoning-free":
        return long_answer or ""
    return ""


def context_cut(setting: str, contexts: list[str] | None, long_answer, chars: int) -> bool:
    """Whether ``chars`` (0 = no cap) cuts the context of this item in this setting."""
    return chars > 0 and len(eval_context(setting, contexts, long_answer)) > chars


def eval_prompt(
    setting: str,
    question: str,
    contexts: list[str] | None,
    chars: int,
    long_answer: str | None = None,
) -> list[dict]:
    """The prompt of one item; its context cut at ``chars`` characters (0 = never cut)."""
    if setting == "question-only":
        return template("pubmedqa-question-only-v1").messages(question=question)
    ctx = eval_context(setting, contexts, long_answer)
    ctx = ctx[:chars] if chars > 0 else ctx
    if setting == "reasoning-free":
        return template("pubmedqa-reasoning-free-v1").messages(question=question, long_answer=ctx)
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
            eval_prompt(
                self.setting, r["question"], r["contexts"], self.chars, r.get("long_answer")
            )
            for r in rows
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
        input_sql="select pmid, question, contexts, long_answer, final_decision from pubmedqa "
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
def mesh_buckets(mesh_slices: str | int, test_meshes: list[list[str] | None]) -> list[str]:
    """The MeSH slices: ``"paper"`` the six named buckets, an integer N the N most common MeSH
    terms of ``test_meshes`` (the test set's MeSH name lists)."""
    if mesh_slices == "paper":
        return list(PAPER_MESH_BUCKETS)
    if isinstance(mesh_slices, int) and not isinstance(mesh_slices, bool) and mesh_slices >= 0:
        counts = Counter(m for ms in test_meshes for m in (ms or []))
        return [m for m, _ in counts.most_common(mesh_slices)]
    raise InputError(f"eval.mesh_slices: {mesh_slices!r} is not 'paper' or a number of terms")


def in_mesh_slice(mesh_slices: str | int, bucket: str, meshes: list[str] | None) -> bool:
    """Whether an item with these MeSH names is in the slice: the framework's case-insensitive
    substring rule for the paper's buckets, the exact name for a top-N term."""
    if mesh_slices == "paper":
        b = bucket.lower()
        return any(b in m.lower() for m in meshes or [])
    return bucket in (meshes or [])


def evaluated_items(lake: Lake, labels: list[str], setting: str) -> list[tuple]:
    """(model, pmid, prediction, gold, year, meshes, contexts, long_answer) for every item a model
    was evaluated on in ``setting``: its latest prediction, or None (invalid) for an item whose
    answer was not a label (quarantined by the stage)."""
    if not labels:
        return []
    sources = {f"eval-pubmedqa:{lab}:{setting}": lab for lab in labels}
    marks = ", ".join("?" for _ in labels)
    return lake.query(
        "with preds as (select model, pmid, prediction from eval_predictions "
        f"where setting = ? and model in ({marks}) "
        "qualify row_number() over (partition by model, pmid order by run_id desc) = 1), "
        "bad as (select distinct source, try_cast(record_key as bigint) as pmid from quarantine "
        f"where source in ({', '.join('?' for _ in sources)})), "
        "items as (select model, pmid, prediction from preds union all "
        "select m.label, b.pmid, null from bad b "
        f"join (values {', '.join('(?, ?)' for _ in sources)}) m(source, label) using (source) "
        "where not exists (select 1 from preds e where e.model = m.label and e.pmid = b.pmid)) "
        "select i.model, i.pmid, i.prediction, p.final_decision, p.year, p.meshes, p.contexts, "
        "p.long_answer from items i join pubmedqa p using (pmid) "
        "where p.split = 'test' and p.final_decision is not null order by i.model, i.pmid",
        [setting, *labels, *sources, *(x for kv in sources.items() for x in kv)],
    )


REPORT_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("slice_kind", pa.string()),
        ("slice", pa.string()),
        ("n", pa.int64()),
        ("invalid", pa.int64()),
        ("context_cut", pa.int64()),
        ("accuracy", pa.float64()),
        ("macro_f1", pa.float64()),
    ]
)


def slice_report(
    lake: Lake,
    labels: list[str],
    setting: str,
    mesh_slices: str | int = "paper",
    context_chars: int | None = None,
) -> pa.Table:
    """Accuracy, macro-F1 and counts per model: overall, the 8 year slices and the MeSH slices
    (overlapping, as in the paper; see :func:`mesh_buckets`).

    ``n`` counts every evaluated item, ``invalid`` those whose prediction is not yes/no/maybe
    (scored as wrong, see :func:`macro_f1`), ``context_cut`` those whose context the prompt cut
    at ``context_chars`` characters (None when ``context_chars`` is not given)."""
    items = evaluated_items(lake, labels, setting)
    top_mesh = mesh_buckets(
        mesh_slices,
        [ms for (ms,) in lake.query("select meshes from pubmedqa where split = 'test'")]
        if mesh_slices != "paper"
        else [],
    )
    out = []
    for label in labels:
        rows = [r for r in items if r[0] == label]
        groups: dict[tuple[str, str], list] = {("overall", "all"): rows}
        for r in rows:
            groups.setdefault(("year", year_slice(r[4]) or "unknown"), []).append(r)
            for m in top_mesh:
                if in_mesh_slice(mesh_slices, m, r[5]):
                    groups.setdefault(("mesh", m), []).append(r)
        order = (
            [("overall", "all")]
            + [("year", f"{lo}-{hi}") for lo, hi in YEAR_SLICES]
            + ([("year", "unknown")] if ("year", "unknown") in groups else [])
            + [("mesh", m) for m in top_mesh]
        )
        for key in order:
            g = groups.get(key, [])
            out.append(
                {
                    "model": label,
                    "slice_kind": key[0],
                    "slice": key[1],
                    **score([r[3] for r in g], [r[2] for r in g]),
                    "context_cut": None
                    if context_chars is None
                    else sum(context_cut(setting, r[6], r[7], context_chars) for r in g),
                }
            )
    return pa.Table.from_pylist(out, schema=REPORT_SCHEMA)


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


def side_by_side(report: pa.Table, labels: list[str], context_chars: int | None = None) -> pa.Table:
    """One row per slice, a column pair per model (``acc:<label>``, ``f1:<label>``) under a short
    label, and a column of invalid predictions per model (``inv:<label>``) when a model has
    any. The table's notes (printed under it) say how many predictions were invalid and how many
    contexts the prompt cut (``context_chars``: the cap, for the wording), then map each short
    label to the full one."""
    from mkailin.output import with_notes

    short = dict(zip(labels, short_labels(labels)))
    records = report.to_pylist()
    with_invalid = any(r.get("invalid") for r in records)
    rows: dict[tuple, dict] = {}
    for r in records:
        key = (r["slice_kind"], r["slice"])
        row = rows.setdefault(key, {"slice_kind": key[0], "slice": key[1], "n": r["n"]})
        lab = short.get(r["model"], r["model"])
        row[f"acc:{lab}"] = r["accuracy"]
        row[f"f1:{lab}"] = r["macro_f1"]
        if with_invalid:
            row[f"inv:{lab}"] = r.get("invalid")
    cols = [("slice_kind", pa.string()), ("slice", pa.string()), ("n", pa.int64())]
    for lab in labels:
        cols += [(f"acc:{short[lab]}", pa.float64()), (f"f1:{short[lab]}", pa.float64())]
        if with_invalid:
            cols.append((f"inv:{short[lab]}", pa.int64()))
    table = pa.Table.from_pylist(list(rows.values()), schema=pa.schema(cols))
    overall = {r["model"]: r for r in records if r["slice_kind"] == "overall"}
    notes = []
    if with_invalid:
        notes.append(
            "invalid predictions (not yes/no/maybe, scored as wrong): "
            + ", ".join(
                f"{short[lab]} {overall[lab]['invalid'] or 0} of {overall[lab]['n']}"
                for lab in labels
                if lab in overall
            )
        )
    cuts = {
        (r["context_cut"], r["n"]) for r in overall.values() if r.get("context_cut") is not None
    }
    if cuts:
        cap = f" at {context_chars:,} characters" if context_chars else ""
        notes.append(
            f"contexts cut{cap}: "
            + (
                "{} of {} items".format(*next(iter(cuts)))
                if len(cuts) == 1
                else ", ".join(
                    f"{short[lab]} {overall[lab]['context_cut']} of {overall[lab]['n']}"
                    for lab in labels
                    if lab in overall
                )
            )
        )
    notes += [
        f"{short[lab]:<8} = {lab.split('+', 1)[0]}"
        + (f" + adapter {lab.split('+', 1)[1]}" if "+" in lab else " (no adapter)")
        for lab in labels
        if short[lab] != lab
    ]
    return with_notes(table, notes) if notes else table


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
    chars = cfg.eval.context_chars
    report = slice_report(lake, labels, setting, cfg.eval.mesh_slices, chars)
    overall = [r for r in report.to_pylist() if r["slice_kind"] == "overall"]
    result = {
        "labels": labels,
        "runs": runs,
        "report": report,
        "table": side_by_side(report, labels, chars),
        # per model: items scored, invalid predictions, contexts cut at context_chars
        "detail": {r["model"]: {k: r[k] for k in ("n", "invalid", "context_cut")} for r in overall},
        "context_chars": chars,
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
