"""Server faults: the question and answer stages run against the real llama.cpp server behind a
fault-injecting proxy (429 with Retry-After, 500, 503, responses slower than the timeout,
malformed JSON, truncated bodies, dropped connections, in a seeded sequence). Every row lands
exactly once, and usage is counted once per successful call: the totals equal a fault-free run."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mkailin.config import Config, ModelSpec
from mkailin.lake import Lake

from conftest import copy_tables

pytestmark = pytest.mark.server


TIMEOUT = 15.0  # seconds: well above a 12-token reply on a busy 2-core machine
SLOW = TIMEOUT + 2.0  # an injected slow response outlasts the client's timeout


def _cfg(base: str, timeout: float = TIMEOUT) -> Config:
    cfg = Config()
    cfg.models["served"] = ModelSpec(
        backend="openai",
        model="smollm2",
        base_url=f"{base}/v1",
        timeout=timeout,
        max_retries=20,
        max_concurrency=1,
        price_input=1.0,
        price_output=4.0,
    )
    for a in ("domain", "answer"):
        cfg.agents[a].model = "served"
        cfg.agents[a].max_new_tokens = 12
    cfg.generate.articles = 6
    cfg.generate.exclude_eval_articles = False
    cfg.runtime.batch_size = 4
    cfg.answer.agents = ["domain"]
    return cfg


def _lake(mesh_lake, path) -> Lake:
    lake = Lake.init(path)
    copy_tables(mesh_lake, lake)
    return lake


def _run(lake: Lake, cfg: Config) -> dict:
    from mkailin.agents.answer import answer
    from mkailin.agents.question import generate_questions
    from mkailin.backends.generation import OpenAIGenerator

    OpenAIGenerator.backoff_base = 0.05
    (q,) = generate_questions(lake, cfg, ("domain",), progress=False)
    qs = lake.query("select question_id, pmid from questions")
    lake.write_part(
        "contexts",
        pa.Table.from_pylist(
            [
                {
                    "question_id": qid,
                    "rank": 1,
                    "pmid": pmid,
                    "score": 1.0,
                    "retriever": "dense:minilm",
                }
                for qid, pmid in qs
            ]
        ),
    )
    a = answer(lake, cfg, progress=False)
    return {
        "q": q,
        "a": a,
        "questions": lake.query("select question_id, question from questions order by 1"),
        "quarantine": lake.query("select record_key, error from quarantine order by 1"),
        "answers": lake.query(
            "select question_id, answer, prompt_tokens, completion_tokens from answers order by 1"
        ),
    }


@pytest.fixture(scope="module")
def clean(mesh_lake, tmp_path_factory, llama_server_url) -> dict:
    """The fault-free run every faulty run must reproduce."""
    return _run(_lake(mesh_lake, tmp_path_factory.mktemp("clean") / "lake"), _cfg(llama_server_url))


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_stages_survive_a_seeded_fault_sequence(seed, clean, mesh_lake, tmp_path, llama_server_url):
    from servers import FaultProxy

    with FaultProxy(llama_server_url, seed=seed, fault_rate=0.5, slow_seconds=SLOW) as proxy:
        faulty = _run(_lake(mesh_lake, tmp_path / "faulty"), _cfg(proxy.url))
    injected = sum(v for k, v in proxy.counts.items() if k != "ok")
    assert injected >= 3, proxy.counts
    # every row exactly once, the same rows as without faults (greedy decoding)
    assert faulty["questions"] == clean["questions"]
    assert faulty["answers"] == clean["answers"]
    assert len({q for q, _ in faulty["questions"]}) == len(faulty["questions"])
    assert faulty["quarantine"] == clean["quarantine"]
    # usage once per successful call: identical totals
    for stage in ("q", "a"):
        assert (faulty[stage].tokens_in, faulty[stage].tokens_out) == (
            clean[stage].tokens_in,
            clean[stage].tokens_out,
        )
        assert faulty[stage].cost_usd == pytest.approx(clean[stage].cost_usd)


def test_a_server_that_stays_down_fails_the_run_and_the_rerun_resumes(
    mesh_lake, tmp_path, llama_server_url
):
    from mkailin.agents.question import generate_questions
    from mkailin.backends.generation import OpenAIGenerator
    from mkailin.errors import BackendError

    from servers import FaultProxy

    OpenAIGenerator.backoff_base = 0.01
    lake = _lake(mesh_lake, tmp_path / "lake")
    with FaultProxy(llama_server_url, faults=["ok"] * 4 + ["503"] * 200) as proxy:
        cfg = _cfg(proxy.url, timeout=120.0)  # no slow responses here: only the 503s fail
        cfg.models["served"].max_retries = 2
        with pytest.raises(BackendError, match="gave up after 3 attempts"):
            generate_questions(lake, cfg, ("domain",), progress=False)
    done = lake.count("questions") + lake.count("quarantine")
    assert done == 4, proxy.counts  # the first batch landed before the outage
    assert lake.query("select status, error like '%BackendError%' from runs") == [("failed", True)]
    (r,) = generate_questions(
        lake, _cfg(llama_server_url, timeout=120.0), ("domain",), progress=False
    )
    assert r.rows_in == 2 and lake.count("questions") + lake.count("quarantine") == 6
