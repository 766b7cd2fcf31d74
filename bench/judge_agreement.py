"""The trained LLM judge against the MeSH rule on held-out document pairs, with 95% intervals.

    python bench/judge_agreement.py --data ../shared/data [--steps 64] [--json out.json]

The lake: the real MeSH 2017 tree and the 1,000 PubMedQA PQA-L articles (every one of them has
MeSH headings). The PubMedQA evaluation blocklist is off (``generate.exclude_eval_articles``),
since nothing here is evaluated on PubMedQA, so all 1,000 articles are sources and retrieval
candidates.

The two agents' questions are written, not generated (SmolLM2 writes about one question a
second on two cores, and each article needs two): the domain question of an article is its own PubMedQA question,
the general question the PubMedQA question of the article before it in the sample's hash order
(another article's topic), as ``tests/written_questions.py`` writes them. Everything
after that is the pipeline's own: MiniLM vectors and dense top-k contexts for every question
(``retrieve``), the rule labels (``prefer --judge rule``, Lin similarity), and the judge
(``train judge``: LoRA SFT of SmolLM2-135M-Instruct on both orders of every training pair; the
held-out share of documents is picked by a hash of the PMID, ``train.holdout``).

Measured, on the held-out pairs: the trained judge's agreement with the rule (the share of
documents where both pick the same question) with a Wilson 95% interval and a bootstrap one,
and Cohen's kappa with a bootstrap 95% interval (percentile, --boot resamples of the pairs,
seeded). The judge's prediction is P(domain question better) >= 0.5, from both orders of the
pair (``pair_probability``). Those probabilities are the ones ``train_judge`` computes for its
own held-out figures (its run ``detail``): its ``pair_probability`` is wrapped to keep them, so
the held-out pairs are scored once per model, not again here. The same intervals are given for
the untrained model, which ``train_judge`` scores on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mkailin.agents.preference import cohen_kappa, pair_probability, prefer  # noqa: E402
from mkailin.agents.retrieval import embed, retrieve  # noqa: E402
from mkailin.config import Config, load  # noqa: E402
from mkailin.ingest.mesh import ingest_mesh  # noqa: E402
from mkailin.ingest.pubmedqa import ingest_pubmedqa  # noqa: E402
from mkailin.lake import Lake  # noqa: E402

from loadmeter import Timer, cpu_and_memory  # noqa: E402  (bench/ is on sys.path)

sys.path.insert(0, str(ROOT / "tests"))
from written_questions import write_questions  # noqa: E402

Z95 = 1.959963984540054


# ------------------------------------------------------------------------------ statistics
def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return (centre - half, centre + half)


def bootstrap(pred: list[bool], gold: list[bool], n_boot: int, seed: int) -> dict:
    """Percentile 95% intervals of agreement and Cohen's kappa over resamples of the pairs."""
    rng = random.Random(seed)
    n = len(pred)
    agree, kappa = [], []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        a, b = [pred[i] for i in idx], [gold[i] for i in idx]
        agree.append(sum(x == y for x, y in zip(a, b)) / n)
        kappa.append(cohen_kappa(a, b))

    def ci(xs: list[float]) -> tuple[float, float]:
        xs = sorted(xs)
        return (xs[int(0.025 * (len(xs) - 1))], xs[int(round(0.975 * (len(xs) - 1)))])

    return {"agreement": ci(agree), "kappa": ci(kappa)}


# ------------------------------------------------------------------------------ the lake
def config(args) -> Config:
    cfg = load(ROOT / "configs" / "demo.toml")
    cfg.generate.articles = args.articles
    cfg.generate.exclude_eval_articles = False
    for agent in ("domain", "general"):
        cfg.agents[agent].adapter = "none"  # the written questions are the base models' label
    cfg.retrieval.k = args.k
    cfg.train.max_steps = args.steps
    cfg.train.batch_size = args.batch
    cfg.train.holdout = args.holdout
    cfg.train.learning_rate = args.lr
    cfg.train.lora_r, cfg.train.lora_alpha = 16, 32
    cfg.preference.judge_document_chars = args.doc_chars
    cfg.preference.judge_context_chars = args.context_chars
    return cfg


def record_scorings() -> list[tuple[str, list[float]]]:
    """Keep every ``pair_probability`` result of ``train_judge`` as (adapter, probabilities):
    the trained judge's and the untrained model's scorings of the held-out pairs."""
    import mkailin.train.judge as tj

    seen: list[tuple[str, list[float]]] = []

    def keep(gen, rows, template_id="judge-v1"):
        probs = pair_probability(gen, rows, template_id)
        seen.append((getattr(gen, "adapter", ""), probs))
        return probs

    tj.pair_probability = keep
    return seen


def figures(probs: list[float], held: list[dict], n_boot: int, seed: int) -> dict:
    """Agreement with the rule (Wilson and bootstrap 95%) and kappa (bootstrap 95%)."""
    pred = [p >= 0.5 for p in probs]
    gold = [bool(r["domain_wins"]) for r in held]
    n = len(held)
    if not n:
        return {"n": 0}
    k = sum(a == b for a, b in zip(pred, gold))
    boot = bootstrap(pred, gold, n_boot, seed)
    return {
        "n": n,
        "agreement": k / n,
        "agreement_wilson95": wilson(k, n),
        "agreement_boot95": boot["agreement"],
        "kappa": cohen_kappa(pred, gold),
        "kappa_boot95": boot["kappa"],
        "domain_wins_share": sum(pred) / n,
        # (judge, rule) choices: d = the domain question, g = the general one
        "table": {
            f"{'d' if j else 'g'}{'d' if r else 'g'}": sum(
                x == j and y == r for x, y in zip(pred, gold)
            )
            for j in (True, False)
            for r in (True, False)
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--lake", help="lake folder (default: a new temporary one)")
    ap.add_argument("--articles", type=int, default=1000, help="sampled articles (0 = all)")
    ap.add_argument("--k", type=int, default=4, help="contexts per question (retrieval.k)")
    ap.add_argument("--steps", type=int, default=64, help="judge LoRA steps")
    ap.add_argument("--batch", type=int, default=2, help="examples per LoRA step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--holdout", type=float, default=0.2, help="held-out share of documents")
    # short enough that no judge prompt is cut to train.judge_max_length (320 tokens): the
    # judge is trained and scored on the same prompts
    ap.add_argument("--doc-chars", type=int, default=120, help="preference.judge_document_chars")
    ap.add_argument("--context-chars", type=int, default=40, help="judge_context_chars")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=13, help="bootstrap seed")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()

    from mkailin.train.judge import is_holdout, labelled_pairs, train_judge

    data = Path(args.data)
    tmp = None if args.lake else tempfile.TemporaryDirectory(prefix="judge-agreement-")
    lake = Lake.init(Path(args.lake or tmp.name) / "lake")
    cfg = config(args)
    steps: dict[str, float] = {}
    t_all = time.perf_counter()
    with Timer() as whole:
        with Timer() as t:
            ingest_mesh(lake, [data / "mesh" / "MeshTree2017.tsv"])
            ingest_pubmedqa(
                lake,
                data / "pubmedqa" / "ori_pqal.json",
                data / "pubmedqa" / "test_ground_truth.json",
            )
            n_docs = len(write_questions(lake, cfg, "bench-written"))
        steps["ingest + questions"] = t.seconds
        with Timer() as t:
            embed(lake, cfg, progress=False)
            retrieve(lake, cfg, agents=("domain", "general"), progress=False)
        steps["embed + retrieve"] = t.seconds
        with Timer() as t:
            rule = prefer(lake, cfg, "rule")
        steps["rule labels"] = t.seconds
        scorings = record_scorings()
        with Timer() as t:
            d = train_judge(lake, cfg)
        steps["train judge (LoRA, then both models on the held-out pairs)"] = t.seconds
    rows = labelled_pairs(lake, cfg)
    held = [r for r in rows if is_holdout(r["pmid"], cfg.train.holdout)]
    trained = next(p for a, p in scorings if a and a.endswith(d["run_id"]))
    untrained = next(p for a, p in scorings if not a)
    assert len(trained) == len(untrained) == len(held) == d["holdout"]["n"]
    out = {
        "documents": n_docs,
        "rule_pairs": rule["pairs"],
        "train_pairs": d["train_pairs"],
        "holdout_pairs": len(held),
        "rule_domain_wins_share": sum(r["domain_wins"] for r in held) / max(1, len(held)),
        "trained": figures(trained, held, args.boot, args.seed),
        "untrained": figures(untrained, held, args.boot, args.seed),
        "train_judge_detail": {"holdout": d["holdout"], "untrained": d["untrained_holdout"]},
        "steps": d["steps"],
        "loss_first": d["loss_first"],
        "loss_last": d["loss_last"],
        "examples_used": d["examples_used"],
        "prompts_cut": d["prompts_cut"],
        "seconds": {k_: round(v, 1) for k_, v in steps.items()},
        "wall_seconds": round(time.perf_counter() - t_all, 1),
        "other_cores": round(whole.other, 2),
        "machine": {
            **cpu_and_memory(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(out, indent=2, default=str))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
