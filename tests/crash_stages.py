"""The stages the crash/resume tests kill: how to prepare a lake for each, run it, and snapshot
what it wrote. Run as a script it runs one stage, so a test can SIGKILL it:

    python tests/crash_stages.py STAGE LAKE [SERVER_URL]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from mkailin.config import Config, ModelSpec  # noqa: E402
from mkailin.lake import Lake  # noqa: E402

STAGES = ("ingest", "embed", "generate", "retrieve", "prefer", "answer", "export")
N_DOCS = 60


def config(server: str | None) -> Config:
    cfg = Config()
    cfg.runtime.batch_size = 4
    cfg.generate.articles = 10
    cfg.generate.exclude_eval_articles = False
    cfg.encoders["minilm"].batch_size = 8
    cfg.encoders["minilm"].max_length = 64
    cfg.retrieval.retriever = "bm25"
    cfg.answer.agents = ["domain"]
    cfg.answer.context_chars = 120  # short prompts: the answer stage takes seconds, not minutes
    if server:
        cfg.models["served"] = ModelSpec(
            backend="openai", model="smollm2", base_url=f"{server}/v1", max_concurrency=2
        )
        for a in ("domain", "general", "answer"):
            cfg.agents[a].model = "served"
            cfg.agents[a].max_new_tokens = 10
    return cfg


def pubmed_inputs(folder: Path) -> list[Path]:
    """6 PubMed files of 150 records each, made from the fixture record."""
    text = (HERE / "data" / "pubmed_small.xml").read_text()
    head, rest = text.split("<PubmedArticle>", 1)
    rec = "<PubmedArticle>" + rest.split("</PubmedArticle>", 1)[0] + "</PubmedArticle>\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in range(6):
        body = "".join(
            rec.replace("100001", str(700000 + f * 1000 + i)).replace(
                "mild asthma", f"asthma {f}-{i}"
            )
            for i in range(150)
        )
        p = folder / f"pubmed25n{f:04d}.xml"
        p.write_text(
            head.replace("<PubmedArticleSet>", "")
            + "<PubmedArticleSet>\n"
            + body
            + "</PubmedArticleSet>\n"
        )
        out.append(p)
    return out


def prepare(stage: str, lake: Lake, mesh_lake: Lake, server: str | None) -> None:
    """Everything upstream of ``stage``, done without interruption."""
    from conftest import copy_tables

    if stage == "ingest":
        pubmed_inputs(lake.root.parent / "in")
        return
    copy_tables(mesh_lake, lake)
    # keep N_DOCS articles: a small corpus, so each stage takes seconds
    keep = lake.query(
        "select pmid from pubmedqa where split = 'train' order by pmid limit ?", [N_DOCS]
    )
    keep_set = {p for (p,) in keep}
    recs = lake.read_table("article_records").to_pylist()
    lake.replace_table(
        "article_records", pa.Table.from_pylist([r for r in recs if r["pmid"] in keep_set])
    )
    if stage in ("retrieve", "prefer", "answer", "export"):
        qs = lake.query(
            "select pmid, question from pubmedqa where pmid in (select pmid from "
            "articles) order by pmid"
        )
        lake.write_part(
            "questions",
            pa.Table.from_pylist(
                [
                    {
                        "question_id": f"{a}-{p}",
                        "pmid": p,
                        "agent": a,
                        "model": "fixture",
                        "question": q if a == "domain" else f"What did study {p} find?",
                    }
                    for p, q in qs
                    for a in ("domain", "general")
                ]
            ),
        )
    if stage in ("prefer", "answer", "export"):
        run("retrieve", lake, server)
    if stage == "export":
        ans = lake.query("select question_id from questions where agent = 'domain'")
        lake.write_part(
            "answers",
            pa.Table.from_pylist(
                [
                    {"question_id": q, "answer": f"Answer to {q}.", "model": "fixture"}
                    for (q,) in ans
                ]
            ),
        )
    lake.sync_catalog()


def run(stage: str, lake: Lake, server: str | None) -> None:
    cfg = config(server)
    if stage == "ingest":
        from mkailin.ingest.pubmed import ingest_pubmed

        ingest_pubmed(lake, [lake.root.parent / "in"], jobs=1, progress=False, chunk_rows=30)
    elif stage == "embed":
        from mkailin.agents.retrieval import embed

        embed(lake, cfg, progress=False)
    elif stage == "generate":
        from mkailin.agents.question import generate_questions

        generate_questions(lake, cfg, ("domain",), progress=False)
    elif stage == "retrieve":
        from mkailin.agents.retrieval import retrieve_stage, sync_fts
        from mkailin.stage import run_stage

        sync_fts(lake, cfg, progress=False)
        stage_ = retrieve_stage(lake, cfg, "bm25", 4)
        stage_.batch_size = 4
        run_stage(lake, stage_, progress=False)
    elif stage == "prefer":
        from mkailin.agents.preference import prefer_rule

        cfg.preference.scorer = "lin"
        prefer_rule(lake, cfg)
    elif stage == "answer":
        from mkailin.agents.answer import answer

        answer(lake, cfg, progress=False)
    elif stage == "export":
        from mkailin.export import export

        export(lake, cfg, "cpt")
        export(lake, cfg, "sft")


def snapshot(stage: str, lake: Lake) -> object:
    """What the stage wrote, in a form that an uninterrupted run must reproduce exactly."""
    if stage == "ingest":
        return (
            lake.query(
                "select pmid, title, abstract, pub_year, source_file from articles order by pmid"
            ),
            lake.query("select pmid, descriptor_ui, major_topic from article_mesh order by all"),
            lake.query("select count(*) = count(distinct pmid) from article_records"),
        )
    if stage == "embed":
        from mkailin.agents.retrieval import _open, vectors_table
        from mkailin.stage import scan

        t = scan(_open(lake, vectors_table("minilm")), ["pmid", "vector"]).to_pylist()
        return sorted((r["pmid"], tuple(round(x, 4) for x in r["vector"])) for r in t)
    if stage == "generate":
        return lake.query("select question_id, pmid, question from questions order by 1")
    if stage == "retrieve":
        return lake.query("select question_id, rank, pmid, retriever from contexts order by all")
    if stage == "prefer":
        return lake.query(
            "select pmid, chosen_id, rejected_id, round(margin, 9) from preferences order by all"
        )
    if stage == "answer":
        return lake.query("select question_id, answer from answers order by 1")
    if stage == "export":
        folder = lake.root / "exports"
        out = {}
        for k in ("cpt", "sft"):
            rows = [
                json.loads(x)
                for x in (folder / f"corpus_{k}" / "data.jsonl").read_text().splitlines()
            ]
            for r in rows:  # run ids name each lake's own runs; the rest must be equal
                r["lineage"].pop("runs")
            out[k] = rows
        return out
    raise ValueError(stage)


if __name__ == "__main__":
    run(sys.argv[1], Lake.open(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
