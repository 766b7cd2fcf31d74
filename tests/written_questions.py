"""Questions written without a model, for tests and benchmarks that need two agents' questions
on real articles quickly: the domain question of each sampled article is its own PubMedQA
question, the general one the previous sampled article's (another topic). Rows are labelled
with the config's models and prompts, as the agents would label them."""

from __future__ import annotations

import pyarrow as pa

from mkailin import schema
from mkailin.agents.question import question_id, sample_sql
from mkailin.config import Config
from mkailin.lake import Lake


def write_questions(lake: Lake, cfg: Config, run_id: str = "test-fixture") -> list[int]:
    """Write both agents' questions for the articles ``cfg`` samples; returns their PMIDs."""
    sql, params = sample_sql(cfg)
    pmids = [p for p, *_ in lake.query(sql, params)]
    text = dict(lake.query("select pmid, question from pubmedqa"))
    rows = []
    for i, pmid in enumerate(pmids):
        for agent, q in (("domain", text[pmid]), ("general", text[pmids[i - 1]])):
            a = cfg.agent(agent)
            rows.append(
                {
                    "question_id": question_id(agent, pmid, a.model, a.prompt),
                    "pmid": pmid,
                    "agent": agent,
                    "model": a.model,
                    "prompt_version": a.prompt,
                    "question": q,
                    "run_id": run_id,
                }
            )
    lake.write_part("questions", schema.conform("questions", pa.Table.from_pylist(rows)))
    lake.sync_catalog()
    return pmids
