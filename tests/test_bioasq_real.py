"""BioASQ ingest and question-generator SFT on a real-format training file of a few hundred
questions, built at test time from the real PubMedQA abstracts (../shared/data) in the layout
of BioASQ's Task B training sets: ``{"questions": [{"body", "type", "id", "documents",
"snippets", "ideal_answer", "exact_answer"}]}``.

The file carries the quirks of the real releases: every question type, document URLs in the
old ``http://www.ncbi.nlm.nih.gov/pubmed/N`` and the new ``https://pubmed.ncbi.nlm.nih.gov/N/``
forms (one article sometimes listed in both), snippets from the abstract and from the title
with their section offsets, repeated snippets, ideal answers as a list or a string, missing
optional fields, keys of older releases (``concepts``, ``triples``), ids seen twice, and a
handful of malformed entries. :func:`bioasq_from_pubmedqa` returns what it put in, so the
tests compare the ingest with the file's own tally, not with a second parser.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from mkailin.cli import cli
from mkailin.config import Config
from mkailin.ingest.pubmedqa import abstract_from_contexts, ingest_pubmedqa
from mkailin.lake import Lake

from conftest import ROOT, shared

TYPES = ("yesno", "factoid", "list", "summary")
OLD_URL = "http://www.ncbi.nlm.nih.gov/pubmed/{}"
NEW_URL = "https://pubmed.ncbi.nlm.nih.gov/{}/"


def _qid(*parts) -> str:
    """A 24-hex-digit id, the shape of BioASQ's."""
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:24]


def _snippet(pmid: str, text: str, section: str, start: int, url: str) -> dict:
    return {
        "text": text,
        "document": url.format(pmid),
        "offsetInBeginSection": start,
        "offsetInEndSection": start + len(text),
        "beginSection": section,
        "endSection": section,
    }


def _question(i: int, pmid: str, art: dict, others: list[str]) -> tuple[dict, dict]:
    """Well-formed question ``i`` about article ``pmid`` (plus ``others`` as more documents),
    and what a correct ingest makes of it."""
    kind = TYPES[i % 4]
    url = NEW_URL if i % 5 == 0 else OLD_URL
    docs = [url.format(p) for p in (pmid, *others)]
    if i % 7 == 0:  # the same article in both URL forms
        docs.insert(1, (OLD_URL if url == NEW_URL else NEW_URL).format(pmid))
    q = {"body": art["QUESTION"], "id": _qid("q", i, pmid), "documents": docs}
    if i % 13 != 0:  # one in thirteen has no type: it is optional
        q["type"] = kind
    snippets: list[str] = []
    if i % 6 != 5:  # one question in six has no snippets at all
        abstract = abstract_from_contexts(art["CONTEXTS"], art["LABELS"])
        found = []
        for ctx in art["CONTEXTS"][:2]:
            sentence = ctx.split(". ")[0].rstrip(".") + "."
            start = abstract.find(sentence[:-1])
            found.append(_snippet(pmid, sentence, "abstract", max(start, 0), url))
        if i % 4 == 1:  # the PQA-L articles' titles are their questions
            found.append(_snippet(pmid, art["QUESTION"], "title", 0, url))
        if i % 11 == 3:  # the same snippet twice
            found.append(dict(found[0]))
        q["snippets"] = found
        snippets = list(dict.fromkeys(s["text"] for s in found))
    if i % 8 == 1:
        q["ideal_answer"] = art["LONG_ANSWER"]
    elif i % 8 != 0:
        q["ideal_answer"] = [art["LONG_ANSWER"], "A second, shorter ideal answer."]
    meshes = art["MESHES"] or ["Humans"]
    if i % 9 == 4:
        q["exact_answer"] = None
    elif kind == "yesno":
        q["exact_answer"] = "no" if art["final_decision"] == "no" else "yes"
    elif kind == "factoid":
        q["exact_answer"] = [[meshes[0]]]
    elif kind == "list":
        q["exact_answer"] = [[m] for m in meshes[:3]]
    if i % 10 == 2:  # keys of older releases, which the ingest ignores
        q["concepts"] = ["http://www.nlm.nih.gov/cgi/mesh/2017/MB_cgi?field=uid&exact=D009538"]
        q["triples"] = []
    pmids = list(dict.fromkeys(int(p) for p in (pmid, *others)))
    expect = {
        "qa_id": q["id"],
        "question": art["QUESTION"].strip(),
        "type": q.get("type"),
        "pmids": pmids,
        "snippets": snippets,
    }
    return q, expect


def bioasq_from_pubmedqa(pqal: dict, n: int = 300) -> tuple[dict, dict]:
    """A BioASQ training file of ``n`` well-formed questions on PubMedQA articles, then the
    quirks and malformed entries; returns the file's JSON and its tally: ``rows`` (qa_id ->
    the seed_qa row a correct ingest writes) and ``quarantine`` ((record_key, action) pairs)."""
    keys = sorted(pqal)
    questions, rows, quarantine = [], {}, []
    for i in range(n):
        pmid = keys[i]
        others = [keys[(i + 17 * k) % len(keys)] for k in range(1, i % 3 + 1)]
        q, expect = _question(i, pmid, pqal[pmid], others)
        questions.append(q)
        rows[q["id"]] = expect
    good = OLD_URL.format(keys[n])
    art = pqal[keys[n]]

    def dropped(key: str, q) -> None:
        questions.append(q)
        quarantine.append((key, "dropped"))

    dropped("nobody", {"id": "nobody", "type": "factoid", "documents": [good]})
    dropped("blank", {"id": "blank", "body": "   ", "type": "yesno", "documents": [good]})
    dropped("docstring", {"id": "docstring", "body": "Is it?", "documents": good})
    snipdict = {"id": "snipdict", "body": "Is it?", "documents": [good], "snippets": {"text": "x"}}
    dropped("snipdict", snipdict)
    dropped("nopmid", {"id": "nopmid", "body": "Is it?", "documents": [OLD_URL.format("")]})
    dropped("nothing", {"id": "nothing", "body": "Is it?", "type": "summary"})
    dropped(f"question {len(questions) + 1}", "a question that is not a JSON object")
    # kept, with one quarantine row each
    pmc = {"id": "pmcdoc", "body": "Which cells does the PMC article study?", "type": "factoid"}
    pmc["documents"] = [good, "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC3160387/"]
    questions.append(pmc)
    quarantine.append(("pmcdoc", "dropped"))
    rows["pmcdoc"] = {**_row(pmc, [int(keys[n])], []), "type": "factoid"}
    badtype = {"id": "badtype", "body": art["QUESTION"], "type": ["list"]}
    badtype["documents"] = [good]
    questions.append(badtype)
    quarantine.append(("badtype", "repaired"))
    rows["badtype"] = {**_row(badtype, [int(keys[n])], []), "type": None}
    # no id: the id is made from the body
    noid = {"body": "Which genes does the noid study name?", "type": "list", "documents": [good]}
    questions.append(noid)
    noid_id = hashlib.sha256(noid["body"].encode()).hexdigest()[:24]
    rows[noid_id] = {**_row(noid, [int(keys[n])], []), "qa_id": noid_id, "type": "list"}
    # ids seen twice in the file: the later one wins
    for first in (questions[3], questions[10]):
        again = {**first, "body": first["body"] + " (revised)"}
        questions.append(again)
        rows[first["id"]] = {**rows[first["id"]], "question": again["body"]}
        quarantine.append((first["id"], "superseded"))
    return {"questions": questions}, {"rows": rows, "quarantine": quarantine}


def _row(q: dict, pmids: list[int], snippets: list[str]) -> dict:
    return {
        "qa_id": q.get("id"),
        "question": q["body"],
        "type": q.get("type"),
        "pmids": pmids,
        "snippets": snippets,
    }


@pytest.fixture(scope="module")
def pqal() -> dict:
    return json.loads(shared("pubmedqa", "ori_pqal.json").read_text())


@pytest.fixture(scope="module")
def training_file(pqal, tmp_path_factory) -> tuple[Path, dict]:
    data, tally = bioasq_from_pubmedqa(pqal)
    path = tmp_path_factory.mktemp("bioasq") / "training12b.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return path, tally


@pytest.fixture
def run(tmp_path, runner):
    """``run("ingest", ...)`` against one lake: the click Result, never a traceback."""
    path = tmp_path / "lake"

    def invoke(*args):
        r = runner.invoke(cli, ["--lake", str(path), *map(str, args)])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
        return r

    invoke.lake = lambda: Lake.open(path)
    invoke.path = path
    return invoke


def _seed_rows(lake: Lake) -> dict[str, dict]:
    t = lake.query_arrow("select qa_id, question, type, pmids, snippets from seed_qa")
    return {r["qa_id"]: r for r in t.to_pylist()}


# ------------------------------------------------------------------------------ ingest
def test_the_file_has_what_a_training_release_has(training_file):
    path, tally = training_file
    qs = json.loads(path.read_text())["questions"]
    good = [q for q in qs if isinstance(q, dict) and isinstance(q.get("body"), str)]
    assert set(Counter(q.get("type") for q in good[:300])) == {*TYPES, None}
    urls = [d for q in good if isinstance(q.get("documents"), list) for d in q["documents"]]
    assert any(u.startswith("http://www.ncbi") for u in urls)
    assert any(u.startswith("https://pubmed.ncbi") for u in urls)
    sections = {s["beginSection"] for q in good[:300] for s in q.get("snippets") or []}
    assert sections == {"abstract", "title"}
    assert sum("snippets" not in q for q in good) > 40
    assert sum("ideal_answer" not in q for q in good) > 30
    assert len(tally["rows"]) == 303


def test_ingest_counts_rows_and_quarantine_match_the_file(run, training_file):
    path, tally = training_file
    n_in = len(json.loads(path.read_text())["questions"])
    want = tally["rows"]
    dropped = sum(a == "dropped" for _, a in tally["quarantine"])
    r = run("ingest", "bioasq", path)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert (
        lines[0]
        == f"bioasq: {len(want)} questions added, 0 replaced, 0 kept ({len(want)} questions)"
    )
    assert lines[1].startswith(
        f"  1 file(s) ingested, 0 already in the lake; rows read {n_in}, "
        f"written {len(want)}, quarantined {dropped} in "
    )
    lake = run.lake()
    assert _seed_rows(lake) == want
    # each article once, however many URL forms name it; each snippet once
    assert lake.query(
        "select count(*) from seed_qa where len(pmids) <> len(list_distinct(pmids)) "
        "or len(snippets) <> len(list_distinct(snippets))"
    ) == [(0,)]
    got = lake.query("select record_key, action from quarantine where source = 'bioasq'")
    assert Counter(got) == Counter(tally["quarantine"])
    assert lake.query(
        "select error from quarantine where record_key in ('badtype', 'pmcdoc', 'nothing') "
        "order by record_key"
    ) == [
        ("""'type' ["list"] is not a string: stored as null""",),
        ("no snippets and no documents: nothing to generate from",),
        (
            "document 'https://www.ncbi.nlm.nih.gov/pmc/articles/PMC3160387/': bad PMID "
            "'PMC3160387': left out of the question, which is kept",
        ),
    ]
    answers = dict(
        lake.query(
            "select type, count(*) from seed_qa "
            "where exact_answer is not null and type is not null group by type"
        )
    )
    assert set(answers) == {"yesno", "factoid", "list"}  # summary questions have none


def test_reingest_adds_nothing_and_a_cumulative_release_adds_only_the_new(
    run, training_file, pqal, tmp_path
):
    path, tally = training_file
    assert run("ingest", "bioasq", path).exit_code == 0
    lake = run.lake()
    before = (_seed_rows(lake), lake.count("quarantine"))
    r = run("ingest", "bioasq", path)
    n = len(tally["rows"])
    assert r.exit_code == 0 and r.output.splitlines()[0] == (
        f"bioasq: {path.name} is already in the lake: 0 questions added, 0 replaced, "
        f"{n} kept ({n} questions)"
    )
    lake = run.lake()
    assert (_seed_rows(lake), lake.count("quarantine")) == before
    # the next release repeats every question, edits two and adds 25
    data = json.loads(path.read_text())
    data["questions"][0]["body"] += " (13b)"
    data["questions"][1]["ideal_answer"] = ["Edited in 13b."]
    more, _ = bioasq_from_pubmedqa(pqal, 325)
    added = more["questions"][300:325]
    data["questions"] += added
    newer = tmp_path / "training13b.json"
    newer.write_text(json.dumps(data), encoding="utf-8")
    r = run("ingest", "bioasq", newer)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        f"bioasq: 25 questions added, {n} replaced, 0 kept ({n + 25} questions)"
    )
    lake = run.lake()
    rows = _seed_rows(lake)
    assert rows[data["questions"][0]["id"]]["question"].endswith(" (13b)")
    [(ideal,)] = lake.query(
        "select ideal_answer from seed_qa where qa_id = ?", [data["questions"][1]["id"]]
    )
    assert ideal == "Edited in 13b."
    assert set(rows) == set(tally["rows"]) | {q["id"] for q in added}


def test_test_batches_phase_b_is_taken_and_phase_a_is_refused(run, training_file, tmp_path):
    path, _ = training_file
    qs = [q for q in json.loads(path.read_text())["questions"][:40] if isinstance(q, dict)]
    answers = ("ideal_answer", "exact_answer", "concepts", "triples")
    phase_b = [{k: v for k, v in q.items() if k not in answers} for q in qs]
    f = tmp_path / "BioASQ-task12bPhaseB-testset1.json"
    f.write_text(json.dumps({"questions": phase_b}))
    r = run("ingest", "bioasq", f)
    assert r.exit_code == 0, r.output
    assert run.lake().query(
        "select count(*), count(ideal_answer), count(exact_answer) from seed_qa"
    ) == [(40, 0, 0)]
    phase_a = [{k: q[k] for k in ("body", "id", "type") if k in q} for q in qs]
    f = tmp_path / "BioASQ-task12bPhaseA-testset1.json"
    f.write_text(json.dumps({"questions": phase_a}))
    r = run("ingest", "bioasq", f)
    assert r.exit_code == 1
    assert r.output == (
        f"Error: {f}: no question has documents or snippets (a BioASQ Phase A test batch?); "
        "seed_qa takes training sets and Phase B test batches\n"
    )


# ------------------------------------------------------------------------------ QG-SFT
@pytest.fixture
def seeded(run, training_file, pqal):
    """A lake with the PubMedQA articles (the BioASQ documents' abstracts) and the file."""
    path, tally = training_file
    lake = Lake.init(run.path)
    ingest_pubmedqa(lake, shared("pubmedqa", "ori_pqal.json"))
    assert run("ingest", "bioasq", path).exit_code == 0
    return run.lake(), tally


def test_seed_pairs_take_snippets_else_each_document_abstract_once_in_order(seeded, pqal):
    from mkailin.train.sft import qg_records

    lake, tally = seeded
    cfg = Config()
    cfg.generate.max_input_chars = 100_000
    records, used = qg_records(lake, cfg, "domain", "bioasq")
    assert used == "bioasq" and len(records) == len(tally["rows"])
    # the records come in qa_id order
    text = {k: r["prompt"].fields["abstract"] for k, r in zip(sorted(tally["rows"]), records)}
    abstracts = {
        int(p): abstract_from_contexts(a["CONTEXTS"], a["LABELS"]) for p, a in pqal.items()
    }
    for row in tally["rows"].values():
        if row["snippets"]:
            want = "\n".join(row["snippets"])
        else:
            want = "\n".join(abstracts[p] for p in row["pmids"])
        assert text[row["qa_id"]] == want, row["qa_id"]


@pytest.mark.slow
def test_qg_sft_trains_on_the_file_and_the_question_agent_loads_the_adapter(
    seeded, run, smollm2_available
):
    from mkailin.agents.question import generate_questions, question_stage
    from mkailin.config import load

    lake, tally = seeded
    demo = ROOT / "configs" / "demo.toml"
    r = run(
        "--config", demo, "train", "qg", "--agent", "domain", "--source", "bioasq", "--steps", "3"
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith("train-qg:domain: 3 steps on ")
    assert f" {len(tally['rows'])} bioasq pairs" in r.output.splitlines()[0]
    lake = run.lake()
    [(detail,)] = lake.query(
        "select detail from runs where stage = 'train-qg:domain' and status = 'finished'"
    )
    d = json.loads(detail)
    assert (d["source"], d["examples"], d["steps"]) == ("bioasq", len(tally["rows"]), 3)
    adapter = lake.resolve(d["adapter"])
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()

    cfg = load(demo)
    cfg.generate.exclude_eval_articles = False  # this lake has no PubMedQA splits to block
    stage = question_stage(lake, cfg, "domain")
    assert stage.models["adapter"] == str(adapter)
    [res] = generate_questions(lake, cfg, ("domain",), limit=2, progress=False)
    assert res.status == "finished" and res.rows_in == 2
    models = lake.query("select distinct model from questions where agent = 'domain'")
    assert models == [(f"smollm2+{d['run_id']}",)]
