"""The end of the pipeline: answers (runner and Batch API), exports with dedup, downstream
training, the PubMedQA scorer and slices, and plan."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mkailin.config import Config, ModelSpec
from mkailin.evaluate import accuracy, macro_f1, side_by_side, slice_report, year_slice
from mkailin.export import dedup, export, minhash_signatures, normalise, push_to_hub

from conftest import copy_tables, has_module, need


# ---------------------------------------------------------------------------- the scorer
def test_accuracy_and_macro_f1_by_hand():
    gold = ["yes", "yes", "no", "maybe", "no", "yes"]
    pred = ["yes", "no", "no", "yes", "no", "yes"]
    # yes: tp 2, fp 1, fn 1 -> p 2/3, r 2/3, f1 2/3
    # no:  tp 2, fp 1, fn 0 -> p 2/3, r 1,   f1 0.8
    # maybe: tp 0, fp 0, fn 1 -> p 0, r 0, f1 0
    assert accuracy(gold, pred) == pytest.approx(4 / 6)
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    # a label only predicted (never gold) counts too, as scikit-learn does
    assert macro_f1(["yes", "yes"], ["yes", "maybe"]) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(["no"], ["no"]) == 1.0


def test_year_slices():
    assert [year_slice(y) for y in (1989, 2000, 2001, 2007, 2009, 2011, 2013, 2015, 2017)] == [
        "1989-2000",
        "1989-2000",
        "2001-2004",
        "2005-2007",
        "2008-2009",
        "2010-2011",
        "2012-2013",
        "2014-2015",
        "2016-2017",
    ]
    assert year_slice(1988) is None and year_slice(None) is None


def test_slice_report_on_real_test_split(mesh_lake, tmp_path):
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake)
    test = lake.query(
        "select pmid, final_decision from pubmedqa where split = 'test' order by pmid"
    )
    assert len(test) == 500
    # model A is always right; model B always says yes
    rows = [
        {
            "model": m,
            "pmid": p,
            "setting": "reasoning-required",
            "prediction": g if m == "A" else "yes",
            "gold": g,
            "run_id": "r",
        }
        for p, g in test
        for m in ("A", "B")
    ]
    lake.write_part("eval_predictions", pa.Table.from_pylist(rows))
    rep = slice_report(lake, ["A", "B"], "reasoning-required", mesh_slices=6).to_pylist()
    overall = {r["model"]: r for r in rep if r["slice_kind"] == "overall"}
    assert (
        overall["A"]["n"] == 500
        and overall["A"]["accuracy"] == 1.0
        and overall["A"]["macro_f1"] == 1.0
    )
    yes_share = sum(g == "yes" for _, g in test) / 500
    assert overall["B"]["accuracy"] == pytest.approx(yes_share)
    years = [r for r in rep if r["model"] == "A" and r["slice_kind"] == "year"]
    assert [r["slice"] for r in years] == [
        "1989-2000",
        "2001-2004",
        "2005-2007",
        "2008-2009",
        "2010-2011",
        "2012-2013",
        "2014-2015",
        "2016-2017",
        "unknown",
    ]  # 22 test items carry no YEAR
    assert sum(r["n"] for r in years) == 500 and years[-1]["n"] == 22
    mesh = [r for r in rep if r["model"] == "A" and r["slice_kind"] == "mesh"]
    assert len(mesh) == 6 and mesh[0]["slice"] == "Humans"
    assert all(r["n"] > 100 for r in mesh)  # overlapping slices of the common terms
    table = side_by_side(slice_report(lake, ["A", "B"], "reasoning-required"), ["A", "B"])
    assert table.column_names == ["slice_kind", "slice", "n", "acc:A", "f1:A", "acc:B", "f1:B"]


def test_eval_pubmedqa_with_a_real_model(mesh_lake, tmp_path, smollm2_available):
    from mkailin.evaluate import evaluate_pubmedqa
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake)
    res = evaluate_pubmedqa(
        lake, Config(), [("smollm2", "none")], "question-only", limit=12, out=str(tmp_path / "out")
    )
    preds = lake.query("select prediction, gold, setting from eval_predictions")
    assert len(preds) == 12 and all(p in ("yes", "no", "maybe") for p, _, _ in preds)
    assert res["labels"] == ["smollm2"]
    assert (tmp_path / "out" / "pubmedqa_year.png").exists()
    # resumable: a second call predicts nothing new
    again = evaluate_pubmedqa(lake, Config(), [("smollm2", "none")], "question-only", limit=12)
    assert again["runs"][0].status == "skipped"


# ---------------------------------------------------------------------------- dedup
def test_dedup_exact_and_near_duplicates():
    ids = ["a", "b", "c", "d", "e"]
    texts = [
        "Does aspirin reduce the risk of stroke in older adults with atrial fibrillation?",
        "does aspirin reduce the risk of stroke in older adults with atrial fibrillation",  # exact
        "Does aspirin reduce the risk of stroke in older adults with atrial fibrillation today?",
        "What is the role of BRCA1 in ovarian cancer?",
        "Which genes drive pancreatic cancer progression?",
    ]
    keep, stats = dedup(ids, texts, threshold=0.7, permutations=128)
    assert stats == {"exact_duplicates": 1, "near_duplicates": 1}
    assert [ids[i] for i in keep] == ["a", "d", "e"]


def test_minhash_estimates_jaccard():
    a = " ".join(f"w{i}" for i in range(100))
    b = " ".join(f"w{i}" for i in range(50, 150))  # 3-grams: 48 shared of 98+98-48 = 148
    sig = minhash_signatures([a, b], permutations=256)
    est = float((sig[0] == sig[1]).mean())
    assert est == pytest.approx(48 / 148, abs=0.08)


# ---------------------------------------------------------------------------- exports
def _corpus_lake(mesh_lake, tmp_path, n: int = 6):
    from mkailin.lake import Lake

    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake)
    docs = lake.query(
        "select pmid, question from pubmedqa where split = 'train' order by pmid limit ?", [n + 4]
    )
    qs, ctx, ans = [], [], []
    for i, (pmid, q) in enumerate(docs[:n]):
        qid = f"final-{pmid}"
        text = q if i != 1 else docs[0][1].upper()  # an exact duplicate of the first question
        qs.append(
            {
                "question_id": qid,
                "pmid": pmid,
                "agent": "final",
                "model": "smollm2",
                "question": text,
            }
        )
        for r in range(1, 5):
            ctx.append(
                {
                    "question_id": qid,
                    "rank": r,
                    "pmid": docs[n - 1 + r][0],
                    "score": 1.0 / r,
                    "retriever": "dense:minilm",
                }
            )
        ans.append({"question_id": qid, "answer": f"Answer {i}.", "model": "smollm2"})
    lake.write_part("questions", pa.Table.from_pylist(qs))
    lake.write_part("contexts", pa.Table.from_pylist(ctx))
    lake.write_part("answers", pa.Table.from_pylist(ans))
    return lake


def test_exports_load_with_datasets(mesh_lake, tmp_path, monkeypatch):
    need(has_module("datasets"), "the datasets package (the train extra) is not installed")
    import datasets

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-should-not-leak")
    lake = _corpus_lake(mesh_lake, tmp_path)
    cfg = Config()
    cpt = export(lake, cfg, "cpt")
    sft = export(lake, cfg, "sft")
    assert (cpt["records"], cpt["exact_duplicates"]) == (5, 1)
    assert sft["records"] == 5
    for r in (cpt, sft):
        from pathlib import Path

        folder = Path(r["path"])
        for name in ("data.parquet", "data.jsonl", "README.md", "manifest.json"):
            assert (folder / name).exists()
            assert "sk-test-secret" not in (folder / name).read_bytes().decode("utf-8", "replace")
        pq = datasets.load_dataset(
            "parquet", data_files=str(folder / "data.parquet"), split="train"
        )
        js = datasets.load_dataset("json", data_files=str(folder / "data.jsonl"), split="train")
        assert len(pq) == len(js) == 5
    card = (tmp_path / "lake" / "exports" / "corpus_sft" / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "exact duplicate questions removed: 1" in card
    rec = json.loads(
        (tmp_path / "lake" / "exports" / "corpus_cpt" / "data.jsonl").read_text().splitlines()[0]
    )
    assert rec["text"].startswith("Title: ") and "\nRelated literature:\n[1] " in rec["text"]
    assert "\nQuestion: " in rec["text"] and len(rec["context_pmids"]) == 4
    s = json.loads(
        (tmp_path / "lake" / "exports" / "corpus_sft" / "data.jsonl").read_text().splitlines()[0]
    )
    assert [m["role"] for m in s["messages"]] == ["system", "user", "assistant"]
    manifest = json.loads(
        (tmp_path / "lake" / "exports" / "corpus_sft" / "manifest.json").read_text()
    )
    assert manifest["records"] == 5 and manifest["dedup"]["exact_duplicates"] == 1
    assert lake.query("select status from runs where stage = 'export:sft'") == [("finished",)]


def test_export_rows_carry_lineage_and_verify_export_checks_the_manifest(
    mesh_lake, tmp_path, runner
):
    from pathlib import Path

    from mkailin.cli import cli

    lake = _corpus_lake(mesh_lake, tmp_path)
    r = export(lake, Config(), "sft")
    folder = Path(r["path"])
    row = json.loads((folder / "data.jsonl").read_text().splitlines()[0])
    lin = row["lineage"]
    assert lin["source_pmid"] == row["pmid"]
    assert [c["rank"] for c in lin["contexts"]] == [1, 2, 3, 4]
    assert [c["pmid"] for c in lin["contexts"]] == row["context_pmids"]
    assert lin["scorer"] == "lin/corpus/mean/top4" and lin["retriever"] == "dense:minilm"
    assert isinstance(lin["mesh_score"], float)  # the real MeSH tree scores the pair
    assert lin["generator"]["model"] == "smollm2" and lin["answer"]["model"] == "smollm2"
    assert set(lin["runs"]) == {"question", "contexts", "dpo", "answer"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "README.md",
        "contamination.json",
        "data.jsonl",
        "data.parquet",
    }
    assert {i["source"] for i in manifest["inputs"]} >= {"mesh", "pubmedqa"}
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    ok = runner.invoke(cli, ["verify-export", str(folder)])
    assert ok.exit_code == 0 and ok.output.endswith("matches its manifest\n"), ok.output
    (folder / "data.jsonl").write_text(
        "\n".join((folder / "data.jsonl").read_text().splitlines()[:-1]) + "\n"
    )
    bad = runner.invoke(cli, ["verify-export", str(folder)])
    assert (
        bad.exit_code == 1 and "problem: data.jsonl: sha256 differs from the manifest" in bad.output
    )
    assert "problem: data.jsonl: 4 records, manifest 5" in bad.output
    assert bad.output.splitlines()[-1].startswith("Error: ")


def test_exports_leave_out_eval_blocklist_articles_unless_allowed(mesh_lake, tmp_path):
    """A record whose source or any context is a PubMedQA test article (the default blocklist)
    or in a user's PMID file is dropped from both corpora, and the manifest and
    contamination.json say how many and which; --allow-contamination keeps them and says so."""
    lake = _corpus_lake(mesh_lake, tmp_path)
    test_pmid = lake.query("select min(pmid) from pubmedqa where split = 'test'")[0][0]
    # the third question's first context becomes a test article
    third = lake.query("select question_id from questions order by question_id")[2][0]
    lake.write_part(
        "contexts",
        pa.Table.from_pylist(
            [
                {
                    "question_id": third,
                    "rank": 5,
                    "pmid": test_pmid,
                    "score": 0.1,
                    "retriever": "dense:minilm",
                }
            ]
        ),
    )
    # a question that copies a test item's conclusion (a near-copy under another source)
    (long_answer,) = lake.query("select long_answer from pubmedqa where pmid = ?", [test_pmid])[0]
    first, src_pmid = lake.query("select question_id, pmid from questions order by 1 limit 1")[0]
    ctx = [
        {**c, "question_id": "copy"}
        for c in lake.query_arrow(
            "select * from contexts where question_id = ?", [first]
        ).to_pylist()
    ]
    lake.write_part(
        "questions",
        pa.Table.from_pylist([{"question_id": "copy", "pmid": src_pmid, "agent": "final",
                               "question": "Is it so that " + long_answer}]),
    )  # fmt: skip
    lake.write_part("contexts", pa.Table.from_pylist(ctx))
    lake.write_part("answers", pa.Table.from_pylist([{"question_id": "copy", "answer": "Yes."}]))
    cfg = Config()
    cfg.retrieval.k = 5
    r = export(lake, cfg, "cpt")
    assert r["blocked_removed"] == 2 and r["records"] == 4
    folder = tmp_path / "lake" / "exports" / "corpus_cpt"
    rep = json.loads((folder / "contamination.json").read_text())
    assert rep == json.loads((folder / "manifest.json").read_text())["contamination"]
    assert rep["blocklist"] == "pubmedqa-test" and rep["blocked_pmids"] == 500
    assert rep["eval_13grams"] > 10_000
    assert (rep["with_blocked_source"], rep["with_blocked_context"]) == (0, 1)
    assert (rep["with_eval_13gram"], rep["removed"]) == (1, 2)
    ctx_ex, gram_ex = rep["examples"]
    assert ctx_ex == {"question_id": third, "pmid": ctx_ex["pmid"], "why": "context",
                      "blocked_context_pmids": [test_pmid]}  # fmt: skip
    assert gram_ex["question_id"] == "copy" and gram_ex["why"] == "13-gram"
    assert len(gram_ex["ngram"].split()) == 13 and gram_ex["ngram"] in normalise(long_answer)
    ids = [json.loads(x)["id"] for x in (folder / "data.jsonl").read_text().splitlines()]
    assert third not in ids and "copy" not in ids

    # a user's PMID file blocks a source article too
    first_pmid = lake.query("select pmid from questions order by question_id")[0][0]
    extra = tmp_path / "bioasq-test-pmids.txt"
    extra.write_text(f"# BioASQ test\n{first_pmid}\n\n")
    cfg.eval.blocklist_files = [str(extra)]
    r = export(lake, cfg, "sft")
    rep = json.loads((tmp_path / "lake/exports/corpus_sft/contamination.json").read_text())
    # the first question and its copy share the blocked source
    assert (rep["with_blocked_source"], rep["with_blocked_context"]) == (2, 1)
    assert rep["blocklist"].endswith("bioasq-test-pmids.txt") and r["blocked_removed"] == 3

    cfg.export.allow_contamination = True
    r = export(lake, cfg, "cpt")
    rep = json.loads((folder / "manifest.json").read_text())["contamination"]
    assert r["blocked_removed"] == 0 and rep["allow_contamination"] is True
    assert third in [json.loads(x)["id"] for x in (folder / "data.jsonl").read_text().splitlines()]


def test_blocklist_files_and_settings_are_checked(tmp_path):
    from mkailin.blocklist import blocked_sql, read_pmid_file
    from mkailin.errors import ConfigError, InputError

    good = tmp_path / "ok.txt"
    good.write_text("\ufeff12345\n  678 # a comment\n\n")
    assert read_pmid_file(str(good)) == [12345, 678]
    bad = tmp_path / "bad.txt"
    bad.write_text("123\nPMID456\n")
    with pytest.raises(InputError, match=r"bad.txt:2: 'PMID456' is not a PMID"):
        read_pmid_file(str(bad))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("12\n\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.txt: not UTF-8"):
        read_pmid_file(str(latin))
    with pytest.raises(InputError, match="does not exist"):
        read_pmid_file(str(tmp_path / "missing.txt"))
    cfg = Config()
    assert "split = 'test'" in blocked_sql(cfg)
    cfg.eval.blocklist = "pqa-l"
    assert blocked_sql(cfg) == "select pmid from (select pmid from pubmedqa) where pmid is not null"
    cfg.eval.blocklist = "none"
    assert blocked_sql(cfg) is None
    cfg.eval.blocklist_files = [str(good)]
    assert "12345, 678" in blocked_sql(cfg)
    cfg.generate.exclude_eval_articles = False
    assert blocked_sql(cfg) is None
    with pytest.raises(ConfigError, match="eval.blocklist"):
        from mkailin.config import EvalConfig

        EvalConfig(blocklist="everything")


def test_push_to_hub_dry_run_and_upload_calls(mesh_lake, tmp_path, monkeypatch):
    lake = _corpus_lake(mesh_lake, tmp_path)
    r = export(lake, Config(), "cpt")
    files = push_to_hub(r["path"], "me/corpus", dry_run=True)
    names = ["README.md", "contamination.json", "data.jsonl", "data.parquet", "manifest.json"]
    assert [f for f, _ in files] == names
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw["repo_type"]))

        def upload_folder(self, **kw):
            calls.append(
                ("upload_folder", kw["repo_id"], kw["repo_type"], sorted(kw["allow_patterns"]))
            )

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    push_to_hub(r["path"], "me/corpus")
    assert calls == [
        ("create_repo", "me/corpus", "dataset"),
        (
            "upload_folder",
            "me/corpus",
            "dataset",
            names,
        ),
    ]


def test_export_with_nothing_to_export_is_an_error(lake):
    from mkailin.errors import InputError

    with pytest.raises(InputError, match="nothing to export: the lake has no answers"):
        export(lake, Config(), "sft")


# ---------------------------------------------------------------------------- answers
def _served(cfg: Config, url: str, **kw) -> Config:
    cfg.models["served"] = ModelSpec(
        backend="openai",
        model="smollm2",
        base_url=f"{url}/v1",
        price_input=2.5,
        price_output=10.0,
        **kw,
    )
    cfg.agents["answer"].model = "served"
    cfg.agents["answer"].max_new_tokens = 24
    return cfg


@pytest.mark.server
def test_answer_stage_counts_usage_and_cost(mesh_lake, tmp_path, llama_server_url):
    from mkailin.agents.answer import answer

    lake = _corpus_lake(mesh_lake, tmp_path, n=3)
    lake.replace_table("answers", lake.read_table("answers").slice(0, 0))
    cfg = _served(Config(), llama_server_url)
    r = answer(lake, cfg, progress=False)
    assert r.rows_out == 3 and r.tokens_in > 0 and r.tokens_out > 0
    rows = lake.query(
        "select sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) from answers"
    )
    pt, ct, cost = rows[0]
    assert (pt, ct) == (r.tokens_in, r.tokens_out)
    assert cost == pytest.approx((pt * 2.5 + ct * 10.0) / 1e6)
    assert lake.query("select tokens_in, cost_usd > 0 from runs where stage = 'answer'") == [
        (pt, True)
    ]


@pytest.mark.server
def test_batch_api_submit_poll_collect_and_resume(mesh_lake, tmp_path, llama_server_url):
    from mkailin.agents.answer import batch_answer

    from servers import BatchAPIServer

    lake = _corpus_lake(mesh_lake, tmp_path, n=4)
    lake.replace_table("answers", lake.read_table("answers").slice(0, 0))
    bad_qid = lake.query("select question_id from questions order by question_id limit 1")[0][0]
    with BatchAPIServer(llama_server_url, fail_custom_ids={bad_qid}) as api:
        cfg = _served(Config(), api.url)
        first = batch_answer(lake, cfg, wait=False)  # submit, then stop (as if interrupted)
        assert (
            first["submitted"] == 4 and first["pending"] + first["collected"] + first["failed"] == 4
        )
        second = batch_answer(lake, cfg, poll_seconds=0.2)  # resumes: polls, collects
        assert second["submitted"] == 0  # nothing is submitted twice
        assert api.created == 1
        assert first["collected"] + second["collected"] == 3
        assert first["failed"] + second["failed"] == 1
        third = batch_answer(lake, cfg, poll_seconds=0.2)
        assert third["submitted"] == 1 and api.created == 2  # the failed one is tried again
    n, cost = lake.query("select count(*), sum(cost_usd) from answers")[0]
    assert n == 3
    pt, ct = lake.query("select sum(prompt_tokens), sum(completion_tokens) from answers")[0]
    assert cost == pytest.approx((pt * 2.5 + ct * 10.0) / 1e6 * 0.5)  # the Batch API discount
    assert lake.query("select count(*) from quarantine where source = 'answer-batch'")[0][0] >= 1


# ---------------------------------------------------------------------------- downstream
@pytest.mark.slow
def test_cpt_then_sft_losses_fall_and_eval_uses_the_adapter(mesh_lake, tmp_path, smollm2_available):
    from mkailin.evaluate import eval_stage
    from mkailin.train.downstream import train_cpt, train_sft

    lake = _corpus_lake(mesh_lake, tmp_path)
    cfg = Config()
    export(lake, cfg, "cpt")
    export(lake, cfg, "sft")
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.max_length = 8, 2, 128
    cfg.downstream.max_length = 192  # CPT and SFT records are cut to this (default 1024)
    cfg.train.learning_rate = 1e-3
    cpt = train_cpt(lake, cfg)
    assert cpt["steps"] == 8 and sum(cpt["losses"][-3:]) < sum(cpt["losses"][:3]), cpt["losses"]
    sft = train_sft(lake, cfg, mix_pubmedqa=4)
    assert sft["examples"] == 9 and sft["base_adapters"] == [cpt["adapter"]]
    assert sum(sft["losses"][-3:]) < sum(sft["losses"][:3]), sft["losses"]
    stage = eval_stage(lake, cfg, "smollm2", "auto", "question-only")
    assert stage.models["adapter"] == f"{cpt['adapter']}+{sft['adapter']}"


# ---------------------------------------------------------------------------- plan
def test_plan_for_all_of_pubmed():
    from mkailin.plan import plan

    cfg = Config()
    cfg.models["gpt4o"] = ModelSpec(
        backend="openai", model="gpt-4o", price_input=2.5, price_output=10.0
    )
    cfg.agents["answer"].model = "gpt4o"
    t = plan(cfg, 37_000_000).to_pylist()
    by = {r["stage"]: r for r in t}
    assert by["generate-questions:domain"]["rows"] == 37_000_000
    assert by["answer"]["cost_usd"] > 50_000  # 37M answers at GPT-4o prices
    assert by["generate-questions:domain"]["gpu_hours"] > 0
    assert by["total"]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in t[:-1]))
    assert all(r["basis"].startswith("assumed: ") for r in t[:-1])
    batch = {r["stage"]: r for r in plan(cfg, 37_000_000, batch_api=True).to_pylist()}
    assert batch["answer"]["cost_usd"] == pytest.approx(by["answer"]["cost_usd"] * 0.5)
