"""The two corpora m-KAILIN produces, written as Parquet and JSONL with a dataset card.

- **CPT** (continued pretraining): one text per final question, rendered in the template
  below: the document, its top-k retrieved contexts, and the question the document answers.
- **SFT**: chat records: the contexts and the question from the user, the answer from the
  assistant.

Before writing, exact duplicates (same normalised question) and near duplicates (MinHash over
word 3-grams, Jaccard above ``export.near_duplicate_threshold``) are dropped, keeping the first
by question id; the counts removed are reported and recorded. Each export folder holds
``data.parquet``, ``data.jsonl``, ``README.md`` (a Hugging Face dataset card) and
``manifest.json`` (the runs, models, scorer and config hash behind it). No secret is written.

An export holds the lake's write lock from its start, so a second export (or any writer) gets
``Error: the lake … is being written by another process`` before it reads or writes anything.
The four files are written into a staging folder beside the destination
(``.corpus_cpt.staging-<pid>-<hex>``) and swapped in whole: in one atomic exchange of the two
folders on Linux, else by moving the old set aside and the new one in. The old set is then
removed. A reader sees the old set or the new one, never a mix; a kill leaves one of them plus
a leftover folder, which the next export removes.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mkailin import failpoints
from mkailin.config import Config
from mkailin.errors import InputError, MissingDependencyError, MkailinError
from mkailin.lake import Lake, now

CPT_TEMPLATE = """Title: {title}
Abstract: {abstract}

Related literature:
{contexts}

Question: {question}"""

SFT_SYSTEM = "You are a biomedical expert. Answer the question using the given literature."
_WS = re.compile(r"\s+")
_NONWORD = re.compile(r"[^a-z0-9 ]+")


def normalise(text: str) -> str:
    return _WS.sub(" ", _NONWORD.sub(" ", (text or "").lower())).strip()


# ------------------------------------------------------------------------------ dedup
def _shingles(text: str, n: int = 3) -> set[str]:
    w = normalise(text).split()
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def minhash_signatures(texts: list[str], permutations: int = 64, seed: int = 1) -> np.ndarray:
    """MinHash signatures (texts x permutations) of word 3-gram sets, by universal hashing."""
    prime = np.uint64((1 << 61) - 1)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, (1 << 61) - 1, permutations, dtype=np.uint64)
    b = rng.integers(0, (1 << 61) - 1, permutations, dtype=np.uint64)
    sig = np.full((len(texts), permutations), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i, t in enumerate(texts):
        sh = _shingles(t)
        if not sh:
            continue
        x = np.array(
            [
                int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") >> 3
                for s in sh
            ],
            dtype=np.uint64,
        )
        h = (np.outer(x, a) + b) % prime  # values < 2**61, products stay in uint64 (wrap ok)
        sig[i] = h.min(axis=0)
    return sig


def dedup(
    ids: list[str], texts: list[str], threshold: float = 0.8, permutations: int = 64
) -> tuple[list[int], dict]:
    """Indices to keep: first of each exact-duplicate group, then no two kept texts whose
    estimated Jaccard similarity is at least ``threshold`` (LSH bands find candidates)."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    seen: set[str] = set()
    exact_kept = []
    for i in order:
        key = hashlib.sha1(normalise(texts[i]).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            exact_kept.append(i)
    n_exact = len(ids) - len(exact_kept)
    sig = minhash_signatures([texts[i] for i in exact_kept], permutations)
    bands = next(b for b in (16, 8, 4, 2, 1) if permutations % b == 0)
    rows = permutations // bands
    buckets: dict[tuple, list[int]] = {}
    kept: list[int] = []
    for j, i in enumerate(exact_kept):
        cands = set()
        keys = [(band, sig[j, band * rows : (band + 1) * rows].tobytes()) for band in range(bands)]
        for k in keys:
            cands.update(buckets.get(k, ()))
        dup = any(float(np.mean(sig[j] == sig[c])) >= threshold for c in cands)
        if not dup:
            kept.append(i)
            for k in keys:
                buckets.setdefault(k, []).append(j)
    return sorted(kept, key=lambda i: ids[i]), {
        "exact_duplicates": n_exact,
        "near_duplicates": len(exact_kept) - len(kept),
    }


# ------------------------------------------------------------------------------ records
def _source_sql(lake: Lake, cfg: Config, with_answers: bool) -> tuple[str, list]:
    from mkailin.labels import contexts_where, questions_where

    chars = int(cfg.export.context_chars)
    where, params = contexts_where(cfg)
    mine, mine_params = questions_where(lake, cfg, tuple(cfg.answer.agents))
    join_answers = "join answers as ans using (question_id)" if with_answers else ""
    answer_col = (
        ", ans.answer, ans.model as answer_model, ans.run_id as answer_run" if with_answers else ""
    )
    sql = f"""
        with ctx as (
            select c.question_id,
                   list(struct_pack(pmid := c.pmid,
                                    rank := c.rank,
                                    text := substr(coalesce(a.title || '. ', '')
                                                   || coalesce(a.abstract, ''), 1, {chars}))
                        order by c.rank) as contexts,
                   any_value(c.run_id) as contexts_run
            from contexts as c join articles as a on a.pmid = c.pmid
            where {where}
            group by c.question_id
        )
        select q.question_id, q.pmid, q.agent, q.model as question_model,
               q.prompt_version as question_prompt, q.run_id as question_run, q.question,
               art.title, art.abstract, ctx.contexts, ctx.contexts_run {answer_col}
        from questions as q
        join ctx using (question_id)
        join articles as art on art.pmid = q.pmid
        {join_answers}
        where {mine} and q.question is not null
        order by q.question_id
    """
    return sql, [*params, *mine_params]


class Lineage:
    """Where each exported row came from: its source PMID, its contexts with their ranks, the
    MeSH score of its question-context pair and the scorer, the generator, judge and answer
    models with their prompt versions, and the run ids of the question, contexts and answer."""

    def __init__(self, lake: Lake, cfg: Config, question_ids: list[str]):
        from mkailin.labels import retriever_label, scorer_label

        self.scorer = scorer_label(cfg)
        self.retriever = retriever_label(cfg)
        self.answer_prompt = cfg.agent("answer").prompt
        self.scores: dict[str, float | None] = {}
        p = cfg.preference
        try:
            rows = lake.query(
                "select question_id, similarity from pair_scores_with(scorer := ?, ic := ?, "
                "aggregate := ?, k := ?, retriever := ?) where question_id in (select unnest(?))",
                [p.scorer, p.ic, p.aggregate, cfg.retrieval.k, self.retriever, question_ids],
            )
            self.scores = {q: s for q, s in rows}
        except MkailinError:  # no MeSH in the lake: the scores stay empty
            pass
        # the DPO runs by the adapter they wrote: a final question's model label ends with it
        # ("smollm2+<adapter folder>"), and the run recorded the judge it trained on
        self.dpo: dict[str, tuple[str | None, str | None]] = {}
        for (detail,) in lake.query(
            "select detail from runs where stage like 'train-dpo%' and status = 'finished' "
            "and detail is not null order by finished"
        ):
            d = json.loads(detail)
            if d.get("adapter"):
                self.dpo[Path(d["adapter"]).name] = (d.get("judge"), d.get("run_id"))

    def of(self, r: dict, kind: str) -> dict:
        judge, dpo_run = None, None
        if r["agent"] == "final":  # a final question the general generator kept has no DPO run
            judge, dpo_run = self.dpo.get(
                (r["question_model"] or "").rpartition("+")[2], (None,) * 2
            )
        out = {
            "source_pmid": r["pmid"],
            "contexts": [{"pmid": c["pmid"], "rank": c["rank"]} for c in r["contexts"]],
            "retriever": self.retriever,
            "mesh_score": self.scores.get(r["question_id"]),
            "scorer": self.scorer,
            "generator": {
                "agent": r["agent"],
                "model": r["question_model"],
                "prompt_version": r["question_prompt"],
            },
            "judge": judge,
            "runs": {
                "question": r["question_run"],
                "contexts": r["contexts_run"],
                "dpo": dpo_run,
            },
        }
        if kind == "sft":
            out["answer"] = {"model": r.get("answer_model"), "prompt_version": self.answer_prompt}
            out["runs"]["answer"] = r.get("answer_run")
        return out


def render_cpt(r: dict) -> str:
    ctx = "\n".join(f"[{i}] {c['text']}" for i, c in enumerate(r["contexts"] or [], start=1))
    return CPT_TEMPLATE.format(
        title=r["title"] or "(untitled)",
        abstract=r["abstract"] or "",
        contexts=ctx,
        question=r["question"],
    )


def render_sft(r: dict) -> list[dict]:
    ctx = "\n".join(f"[{i}] {c['text']}" for i, c in enumerate(r["contexts"] or [], start=1))
    return [
        {"role": "system", "content": SFT_SYSTEM},
        {"role": "user", "content": f"Literature:\n{ctx}\n\nQuestion: {r['question']}"},
        {"role": "assistant", "content": r["answer"]},
    ]


# ------------------------------------------------------------------------------ writing
def export_dir(lake: Lake, cfg: Config, kind: str, out: str | None) -> Path:
    base = Path(out) if out else (Path(cfg.export.out) if cfg.export.out else lake.root / "exports")
    return base / f"corpus_{kind}"


def _card(kind: str, stats: dict, manifest: dict) -> str:
    what = (
        "continued-pretraining texts: a PubMed document, its top-k retrieved contexts and "
        "a question it answers"
        if kind == "cpt"
        else "chat-format SFT records: literature contexts and a question from the user, an "
        "answer from the assistant"
    )
    models = "\n".join(f"- {k}: `{v}`" for k, v in sorted(manifest["models"].items()))
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data.parquet
license: other
task_categories:
- {"text-generation" if kind == "cpt" else "question-answering"}
language:
- en
tags:
- biomedical
- pubmed
- mesh
- m-kailin
---

# corpus_{kind}

{what}, distilled from PubMed by mkailin (the m-KAILIN method: MeSH-guided preferences
between two question agents, DPO of the question generator).

## Counts

- records: {stats["records"]:,}
- candidates before deduplication: {stats["candidates"]:,}
- exact duplicate questions removed: {stats["exact_duplicates"]:,}
- near-duplicate questions removed (MinHash, Jaccard >= {stats["threshold"]}): {stats["near_duplicates"]:,}

## Sources

- PubMed abstracts and MeSH headings (NLM); PubMedQA where ingested (MIT)
- questions from the agents: {", ".join(manifest["agents"])}
- contexts: top-{manifest["k"]} by `{manifest["retriever"]}`

## Models

{models}

## Evaluation agent

- judge: `{manifest["judge"]}`, scorer: `{manifest["scorer"]}`

## Provenance

- config hash: `{manifest["config_hash"]}`
- created: {manifest["created"]}
- runs: see `manifest.json`

Load it with `datasets.load_dataset("parquet", data_files="data.parquet")` or from the JSONL.
"""


def export(lake: Lake, cfg: Config, kind: str, out: str | None = None) -> dict:
    """Write ``corpus_cpt`` or ``corpus_sft`` and return what was written. Holds the lake's
    write lock throughout; the new set of files replaces the old one whole."""
    if kind not in ("cpt", "sft"):
        raise InputError(f"export kind must be cpt or sft, not {kind!r}")
    with lake.lock(f"export {kind}"):
        return _export(lake, cfg, kind, export_dir(lake, cfg, kind, out))


NGRAM = 13  # the lm-eval-harness decontamination convention: word 13-grams


def _ngrams(text: str, n: int = NGRAM) -> dict[int, str]:
    """hash -> text of the word n-grams of normalised ``text``."""
    w = normalise(text).split()
    out = {}
    for i in range(len(w) - n + 1):
        g = " ".join(w[i : i + n])
        out[hash(g)] = g
    return out


def _eval_ngrams(lake: Lake, blocked_q: str | None) -> set[int]:
    """The 13-grams of the evaluation set: the blocked PubMedQA items' questions, contexts and
    long answers, and the blocked articles' titles and abstracts."""
    if not blocked_q:
        return set()
    grams: set[int] = set()
    rows = lake.query(
        f"select question, contexts, long_answer from pubmedqa where pmid in ({blocked_q})"
    )
    for question, contexts, long_answer in rows:
        for t in (question, long_answer, *(contexts or [])):
            grams.update(_ngrams(t or ""))
    for title, abstract in lake.query(
        f"select title, abstract from articles where pmid in ({blocked_q})"
    ):
        grams.update(_ngrams(f"{title or ''} {abstract or ''}"))
    return grams


def _record_texts(r: dict) -> list[str]:
    return [
        r.get("question") or "",
        r.get("answer") or "",
        f"{r.get('title') or ''} {r.get('abstract') or ''}",
        *[c["text"] or "" for c in r["contexts"] or []],
    ]


def decontaminate(lake: Lake, cfg: Config, src: list[dict]) -> tuple[list[dict], dict]:
    """Drop candidate records whose source article or any context is on the eval blocklist
    (mkailin/blocklist.py), or whose text (question, answer, source, contexts) shares a word
    13-gram with the evaluation set, unless ``export.allow_contamination``. Returns the records
    kept and the contamination report (counts and up to 5 examples of each kind)."""
    from mkailin.blocklist import blocked_sql, describe

    q = blocked_sql(cfg)
    blocked = {r[0] for r in lake.query(q)} if q else set()
    by_source = [r for r in src if r["pmid"] in blocked]
    by_context = [
        r
        for r in src
        if r["pmid"] not in blocked and any(c["pmid"] in blocked for c in r["contexts"] or [])
    ]
    grams = _eval_ngrams(lake, q)
    by_ngram: list[tuple[dict, str]] = []
    flagged = {r["question_id"] for r in by_source + by_context}
    if grams:
        for r in src:
            if r["question_id"] in flagged:
                continue
            for t in _record_texts(r):
                shared = [g for h, g in _ngrams(t).items() if h in grams]
                if shared:
                    by_ngram.append((r, shared[0]))
                    break
    allowed = bool(cfg.export.allow_contamination)
    hit = flagged | {r["question_id"] for r, _ in by_ngram}
    report = {
        "blocklist": describe(cfg),
        "blocked_pmids": len(blocked),
        "candidates": len(src),
        "with_blocked_source": len(by_source),
        "with_blocked_context": len(by_context),
        "with_eval_13gram": len(by_ngram),
        "eval_13grams": len(grams),
        "allow_contamination": allowed,
        "removed": 0 if allowed else len(hit),
        "examples": [
            {"question_id": r["question_id"], "pmid": r["pmid"], "why": "source"}
            for r in by_source[:5]
        ]
        + [
            {
                "question_id": r["question_id"],
                "pmid": r["pmid"],
                "why": "context",
                "blocked_context_pmids": [
                    c["pmid"] for c in r["contexts"] or [] if c["pmid"] in blocked
                ],
            }
            for r in by_context[:5]
        ]
        + [
            {"question_id": r["question_id"], "pmid": r["pmid"], "why": "13-gram", "ngram": g}
            for r, g in by_ngram[:5]
        ],
    }
    kept = src if allowed else [r for r in src if r["question_id"] not in hit]
    return kept, report


def _export(lake: Lake, cfg: Config, kind: str, folder: Path) -> dict:
    """One logged run: ``started`` before any work, ``failed`` when it does not finish."""
    from mkailin.runs import logged_run

    with logged_run(lake, f"export:{kind}", config_hash=cfg.hash()) as run:
        r = _export_run(lake, cfg, kind, folder, run["run_id"])
        run.update(
            rows_in=r.pop("rows_in"),
            rows_out=r["records"],
            detail=json.dumps({"path": r["path"], **r.pop("dedup")}),
        )
    from mkailin.results import Result

    return Result(f"export:{kind}", r)


def _export_run(lake: Lake, cfg: Config, kind: str, folder: Path, run_id: str) -> dict:
    from mkailin.labels import scorer_label

    sql, params = _source_sql(lake, cfg, with_answers=(kind == "sft"))
    src = lake.query_arrow(sql, params).to_pylist()
    if not src:
        need = "answers (mkailin answer)" if kind == "sft" else "questions with contexts"
        raise InputError(
            f"nothing to export: the lake has no {need} for agents {', '.join(cfg.answer.agents)}"
        )
    if kind == "sft":
        src = [r for r in src if r.get("answer")]
    src, contamination = decontaminate(lake, cfg, src)
    if not src:
        raise InputError(
            f"nothing to export: every candidate record holds an article of the eval blocklist "
            f"({contamination['blocklist']}) as its source or a context; "
            "`--allow-contamination` keeps them and the manifest says so"
        )
    keep, dd = dedup(
        [r["question_id"] for r in src],
        [r["question"] for r in src],
        cfg.export.near_duplicate_threshold,
        cfg.export.minhash_permutations,
    )
    rows = [src[i] for i in keep]
    lineage = Lineage(lake, cfg, [r["question_id"] for r in rows])
    if kind == "cpt":
        records = [
            {
                "id": r["question_id"],
                "pmid": r["pmid"],
                "text": render_cpt(r),
                "question": r["question"],
                "context_pmids": [c["pmid"] for c in r["contexts"]],
                "lineage": lineage.of(r, kind),
            }
            for r in rows
        ]
    else:
        records = [
            {
                "id": r["question_id"],
                "pmid": r["pmid"],
                "messages": render_sft(r),
                "context_pmids": [c["pmid"] for c in r["contexts"]],
                "lineage": lineage.of(r, kind),
            }
            for r in rows
        ]
    runs = lake.query(
        "select stage, arg_max(run_id, finished) from runs where status = 'finished' "
        "group by stage order by stage"
    )
    manifest = {
        "kind": kind,
        "run_id": run_id,
        "created": now().isoformat(),
        "records": len(records),
        "config_hash": cfg.hash(),
        "config_source": cfg.source or "(defaults)",
        "agents": list(cfg.answer.agents),
        "k": cfg.retrieval.k,
        "retriever": cfg.retrieval.retriever,
        "judge": cfg.preference.judge,
        "scorer": scorer_label(cfg),
        "models": {
            k: v
            for k, v in {
                **{
                    f"question:{a}": cfg.agent("general" if a == "final" else a).model
                    for a in cfg.answer.agents
                    if a in ("domain", "general", "final")
                },
                "answer": cfg.agent("answer").model if kind == "sft" else None,
                "encoder": cfg.encoder(
                    cfg.retrieval.domain_encoder
                    if cfg.retrieval.encoder == "domain"
                    else cfg.retrieval.general_encoder
                ).model,
            }.items()
            if v
        },
        "runs": {stage: run for stage, run in runs},
        "dedup": dd,
        "contamination": contamination,
    }
    stats = {
        "blocked_removed": contamination["removed"],
        "records": len(records),
        "candidates": len(src),
        "threshold": cfg.export.near_duplicate_threshold,
        **dd,
    }
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buf, compression="zstd")
    data = {
        "data.parquet": buf.getvalue(),
        "data.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode(),
        "contamination.json": json.dumps(contamination, indent=2).encode(),
    }
    data["README.md"] = _card(kind, stats, manifest).encode()
    manifest["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in sorted(data.items())}
    manifest["inputs"] = [
        {"source": s, "path": path, "sha256": key, "rows": rows, "status": status}
        for s, path, key, rows, status in lake.query(
            "select source, path, file_key, coalesce(rows, records), status from ingested_files "
            "order by file_seq, path"
        )
    ]
    from mkailin.secrets import redact

    data["manifest.json"] = redact(json.dumps(manifest, indent=2)).encode()
    publish(folder, {n: (lambda p, b=b: p.write_bytes(b)) for n, b in data.items()})
    return {"path": str(folder), "run_id": run_id, **stats, "rows_in": len(src), "dedup": dd}


# ------------------------------------------------------------------------------ publishing
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:staging|old)-(?P<pid>[0-9]+)-[0-9a-f]+$")


def publish(folder: Path, files: dict) -> None:
    """Make ``folder`` hold exactly ``files`` (name -> function writing that file at a path),
    replacing what it held whole. Call with the lake's write lock held."""
    base = folder.parent
    if folder.is_file() or (folder.is_symlink() and not folder.is_dir()):
        raise InputError(f"{folder} exists and is not a folder")
    base.mkdir(parents=True, exist_ok=True)
    clean_leftovers(base, folder.name)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = base / f".{folder.name}.staging-{tag}"
    staging.mkdir()
    try:
        for i, (name, write) in enumerate(files.items()):
            write(staging / name)
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
            if i == 0:
                failpoints.hit("export-staging")
        old = _swap_in(staging, folder, base / f".{folder.name}.old-{tag}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    failpoints.hit("export-swap")
    if old is not None:
        _remove(old)


def clean_leftovers(base: Path, name: str) -> int:
    """Remove the staging and set-aside folders of ``base/name`` that earlier exports left
    (killed ones); a folder whose process still runs (another lake's export into the same
    folder) is kept. Returns how many were removed."""
    n = 0
    if not base.is_dir():
        return 0
    for p in base.iterdir():
        m = _LEFTOVER.match(p.name)
        if m and m["name"] == name and not _running(int(m["pid"])):
            _remove(p)
            n += 1
    return n


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    else:
        shutil.rmtree(p, ignore_errors=True)


def _running(pid: int) -> bool:
    from mkailin.runs import pid_alive

    # this process holds the lock: its own leftovers are stale
    return pid != os.getpid() and pid_alive(pid)


def _swap_in(new: Path, dest: Path, aside: Path) -> Path | None:
    """Put folder ``new`` at ``dest``; return where the old set now is (``None`` if none)."""
    if not dest.exists() and not dest.is_symlink():
        os.rename(new, dest)
        return None
    if _exchange(new, dest):
        return new
    os.rename(dest, aside)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(aside, dest)  # the old set back in place
        raise
    return aside


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``). False where
    the system or the file system cannot, and the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def push_to_hub(
    folder: str | Path, repo_id: str, dry_run: bool = False, private: bool = True
) -> list[tuple[str, int]]:
    """Upload an export folder as a Hugging Face dataset; ``dry_run`` only lists the files."""
    folder = Path(folder)
    files = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
    )
    if dry_run:
        return files
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise MissingDependencyError("huggingface_hub", None, "--push-to-hub") from None
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="dataset",
        allow_patterns=[name for name, _ in files],
    )
    return files


# ------------------------------------------------------------------------------ verification
def verify_export(folder: str | Path) -> tuple[list[str], list[str]]:
    """Check an export folder against its manifest: every file's sha256, the record counts of
    data.parquet and data.jsonl, unique ids, the same rows in both, the contamination report's
    count, and each row's lineage (its source and contexts). Returns (what was checked,
    problems)."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{mpath}: not a readable manifest ({e})") from None
    ok: list[str] = []
    bad: list[str] = []
    files = manifest.get("files") or {}
    if not files:
        bad.append("the manifest lists no file checksums (an export from an older mkailin)")
    for name, digest in sorted(files.items()):
        p = folder / name
        if not p.is_file():
            bad.append(f"{name}: missing")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            bad.append(f"{name}: sha256 differs from the manifest")
        else:
            ok.append(f"{name}: sha256 matches")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in files and p != mpath)
    if extra:
        bad.append(f"files the manifest does not list: {', '.join(extra)}")
    try:
        table = pq.read_table(folder / "data.parquet").to_pylist()
        lines = [json.loads(x) for x in (folder / "data.jsonl").read_text().splitlines() if x]
    except (OSError, ValueError, pa.ArrowException) as e:
        bad.append(f"the data files cannot be read ({e})")
        return ok, bad
    n = manifest.get("records")
    for name, rows in (("data.parquet", table), ("data.jsonl", lines)):
        (ok if len(rows) == n else bad).append(f"{name}: {len(rows):,} records, manifest {n:,}")
    ids = [r["id"] for r in table]
    if len(set(ids)) != len(ids):
        bad.append(f"data.parquet: {len(ids) - len(set(ids)):,} duplicate ids")
    if ids != [r["id"] for r in lines]:
        bad.append("data.parquet and data.jsonl hold different records")
    try:
        report = json.loads((folder / "contamination.json").read_text())
        said = (manifest.get("contamination") or {}).get("removed")
        (ok if report.get("removed") == said else bad).append(
            f"contamination.json: {report.get('removed')} removed, manifest {said}"
        )
    except (OSError, ValueError) as e:
        bad.append(f"contamination.json cannot be read ({e})")
    no_lineage = [
        r["id"]
        for r in table
        if not r.get("lineage")
        or r["lineage"]["source_pmid"] != r["pmid"]
        or [c["pmid"] for c in r["lineage"]["contexts"]] != r["context_pmids"]
    ]
    if no_lineage:
        bad.append(
            f"{len(no_lineage):,} rows without a lineage that matches them: {no_lineage[:3]}"
        )
    else:
        ok.append(f"lineage: all {len(table):,} rows name their source and contexts")
    return ok, bad
