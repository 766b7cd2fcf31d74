"""A lake that keeps every row (the issue of that name): a copy that drops or flattens the
`current` symlinks still holds all its data, and `init` and every write after it recover
instead of recreating; an export holds the lock and replaces its set of files whole; glob
characters in the lake path match only that path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from mkailin import export as export_mod
from mkailin import failpoints
from mkailin.cli import cli
from mkailin.config import Config
from mkailin.export import export
from mkailin.lake import Lake, glob_escape

from conftest import ROOT, need

FILES = ["README.md", "contamination.json", "data.jsonl", "data.parquet", "manifest.json"]


# ------------------------------------------------------------------------------ lakes
def _fill(lake: Lake, articles: int = 2002) -> None:
    """Rows in three tables; 2,002 articles in two parts, as in the issue."""
    half = articles // 2
    for start, n in ((0, half), (half, articles - half)):
        lake.write_part(
            "article_records",
            pa.Table.from_pylist(
                [
                    {
                        "pmid": p,
                        "title": f"Study {p} of a protein",
                        "abstract": f"We measured marker {p} in {p % 7 + 2} cohorts.",
                        "source": "pubmed",
                        "ingest_seq": p,
                        "deleted": False,
                    }
                    for p in range(start + 1, start + n + 1)
                ]
            ),
        )
    qs, ctx, ans = [], [], []
    questions = [
        "Does marker one predict relapse in adults?",
        "Which pathway does the protein in study two regulate?",
        "Is the cohort effect in study three explained by age?",
        "How was the dose chosen for the fourth trial of the drug?",
    ]
    for i, q in enumerate(questions, start=1):
        qid = f"final-{i}"
        qs.append({"question_id": qid, "pmid": i, "agent": "final", "model": "m", "question": q})
        ctx += [
            {
                "question_id": qid,
                "rank": r,
                "pmid": 10 + r,
                "score": 1 / r,
                "retriever": "dense:minilm",
            }
            for r in range(1, 5)
        ]
        ans.append({"question_id": qid, "answer": f"Answer {i}.", "model": "m"})
    lake.replace_table("questions", pa.Table.from_pylist(qs))
    lake.write_part("contexts", pa.Table.from_pylist(ctx))
    lake.write_part("answers", pa.Table.from_pylist(ans))


@pytest.fixture
def full_lake(tmp_path) -> Lake:
    lake = Lake.init(tmp_path / "lake")
    _fill(lake)
    return lake


COUNTS = {"article_records": 2002, "questions": 4, "contexts": 16, "answers": 4}


def _counts(lake: Lake) -> dict[str, int]:
    return {t: lake.count(t) for t in COUNTS}


def _init(runner, path: Path):
    r = runner.invoke(cli, ["init", str(path)])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    return r.output


def _after_init_the_lake_is_whole_and_writable(runner, path: Path) -> str:
    out = _init(runner, path)
    lake = Lake.open(path)
    assert _counts(lake) == COUNTS
    for t in COUNTS:
        assert lake._current(t).is_symlink(), t
    # every later write works on the recovered generation, none loses a row
    lake.write_part("article_records", pa.Table.from_pylist([{"pmid": 9999, "ingest_seq": 9999}]))
    assert lake.count("article_records") == 2003
    lake.replace_table("questions", pa.Table.from_pylist([{"question_id": "q", "pmid": 1}]))
    assert lake.count("questions") == 1
    lake.write_part("questions", pa.Table.from_pylist([{"question_id": "q2", "pmid": 2}]))
    assert lake.count("questions") == 2
    assert _init(runner, path).count("recovered") == 0  # whole again: nothing more to say
    assert Lake.open(path).count("article_records") == 2003
    return out


# ------------------------------------------------------------------------------ case 1
def _break(lake: Lake, how: str) -> None:
    """What a copy tool leaves of every table's `current` symlink."""
    for t in lake._table_dirs():
        cur = lake._current(t)
        target = os.readlink(cur)
        if how == "dropped":  # rsync without -l, backup tools that skip symlinks
            cur.unlink()
        elif how == "file":  # zip's stored symlink, extracted where links are not made
            cur.unlink()
            cur.write_text(target)
        elif how == "folder":  # cp -rL, zip without -y and unzip
            cur.unlink()
            shutil.copytree(cur.parent / target, cur)
        elif how == "dangling":  # the link copied, its generation not
            cur.unlink()
            os.symlink("g000099", cur)


@pytest.mark.parametrize("how", ["dropped", "file", "folder", "dangling"])
def test_a_lake_whose_current_links_a_copy_broke_keeps_every_row(full_lake, runner, how):
    _break(full_lake, how)
    assert _counts(Lake.open(full_lake.root)) == COUNTS  # it reads its own data before any repair
    out = _after_init_the_lake_is_whole_and_writable(runner, full_lake.root)
    assert "recovered table 'article_records' (2,002 rows): 'current' was " in out, out
    lines = [line for line in out.splitlines() if line.startswith("recovered table")]
    assert len(lines) == len(full_lake._table_dirs())  # one line a table, nothing else


def test_a_write_without_init_recovers_instead_of_recreating_the_table(full_lake):
    full_lake._current("article_records").unlink()
    with full_lake.lock("test"):
        full_lake.ensure_table("article_records")
        full_lake.write_part("article_records", pa.table({"pmid": [5000], "ingest_seq": [5000]}))
    assert full_lake.count("article_records") == 2003
    full_lake._current("contexts").unlink()
    full_lake.delete_parts("contexts", "part-nothing-*")
    assert full_lake.count("contexts") == 16


def test_cp_rl_copy_then_init(full_lake, runner, tmp_path):
    need(shutil.which("cp"), "cp is not on PATH")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-rL", str(full_lake.root), str(copy)], check=True)
    assert (copy / "tables" / "questions" / "current").is_dir()
    assert not (copy / "tables" / "questions" / "current").is_symlink()
    _after_init_the_lake_is_whole_and_writable(runner, copy)


def test_zip_round_trips_then_init(full_lake, runner, tmp_path):
    need(shutil.which("zip") and shutil.which("unzip"), "zip and unzip are not on PATH")
    # zip -y stores the links as links; Python's zipfile extracts them as plain files
    subprocess.run(
        ["zip", "-qry", str(tmp_path / "links.zip"), "lake"], cwd=full_lake.root.parent, check=True
    )
    with zipfile.ZipFile(tmp_path / "links.zip") as z:
        z.extractall(tmp_path / "a")
    assert (tmp_path / "a" / "lake" / "tables" / "questions" / "current").is_file()
    _after_init_the_lake_is_whole_and_writable(runner, tmp_path / "a" / "lake")
    # plain zip follows the links: `current` comes back as a folder copy
    subprocess.run(
        ["zip", "-qr", str(tmp_path / "copies.zip"), "lake"], cwd=full_lake.root.parent, check=True
    )
    subprocess.run(
        ["unzip", "-q", str(tmp_path / "copies.zip"), "-d", str(tmp_path / "b")], check=True
    )
    assert (tmp_path / "b" / "lake" / "tables" / "questions" / "current").is_dir()
    _after_init_the_lake_is_whole_and_writable(runner, tmp_path / "b" / "lake")


def test_init_on_a_whole_lake_changes_nothing(full_lake, runner):
    before = {t: os.readlink(full_lake._current(t)) for t in full_lake._table_dirs()}
    assert "recovered" not in _init(runner, full_lake.root)
    assert {t: os.readlink(full_lake._current(t)) for t in full_lake._table_dirs()} == before
    assert _counts(full_lake) == COUNTS


def test_a_generation_left_half_written_is_never_taken_for_the_live_one(full_lake, monkeypatch):
    tdir = full_lake.tables_dir / "questions"
    live = full_lake.table_path("questions")
    calls = []

    def die_on_the_second_part(name):
        if name == "parquet-write":
            calls.append(name)
            if len(calls) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(failpoints, "hit", die_on_the_second_part)
    with pytest.raises(KeyboardInterrupt):
        full_lake.replace_table("questions", [pa.table({"question_id": ["x"], "pmid": [1]})] * 3)
    monkeypatch.undo()
    assert sorted(p.name for p in tdir.iterdir()) == ["current", live.name]
    # a killed writer's half generation (SIGKILL: nothing removed it), then the link dropped
    number = int(live.name[1:]) + 1
    half = tdir / f".g{number:06d}-deadbeef.tmp"
    half.mkdir()
    shutil.copy(next(live.glob("*.parquet")), half / f"part-g{number:06d}-000000.parquet")
    full_lake._current("questions").unlink()
    assert full_lake.count("questions") == 4
    with full_lake.lock("test"):  # the lock clears what killed writers left
        assert full_lake.repair_table("questions") == live
    assert not half.exists() and full_lake.count("questions") == 4


# ------------------------------------------------------------------------------ case 2
def _set(folder: Path) -> dict:
    """The export set: its file names, and the run id its manifest names."""
    names = sorted(p.name for p in folder.iterdir())
    assert names == FILES, names
    manifest = json.loads((folder / "manifest.json").read_text())
    lines = (folder / "data.jsonl").read_text().splitlines()
    assert manifest["records"] == len(lines) == 4
    return {"run_id": manifest["run_id"], "bytes": {n: (folder / n).read_bytes() for n in FILES}}


def _leftovers(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.startswith("."))


def test_two_concurrent_exports_the_loser_is_refused_and_a_kill_leaves_a_whole_set(
    full_lake, runner
):
    folder = full_lake.root / "exports" / "corpus_cpt"
    old = _set(Path(export(full_lake, Config(), "cpt")["path"]))
    # the winner holds the lock, stopped in the middle of writing its staging folder
    winner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mkailin.cli import main; main()",
            "--lake",
            str(full_lake.root),
            "export",
            "cpt",
        ],
        cwd=ROOT,
        env={**os.environ, "MKAILIN_FAILPOINT": "export-staging:120"},
    )
    try:
        deadline = time.monotonic() + 90
        staged = []
        while not staged and time.monotonic() < deadline and winner.poll() is None:
            time.sleep(0.1)
            staged = list(folder.parent.glob(".corpus_cpt.staging-*/data.parquet"))
        assert staged, "the winner never reached its failpoint"
        r = runner.invoke(cli, ["--lake", str(full_lake.root), "export", "cpt"])
        assert r.exit_code == 1
        assert r.output.startswith("Error: the lake "), r.output
        assert (
            f"being written by another process (pid {winner.pid}: mkailin export cpt)" in r.output
        )
        assert "Traceback" not in r.output
        assert _set(folder) == old  # the loser touched nothing
        winner.send_signal(signal.SIGKILL)
        winner.wait(30)
    finally:
        if winner.poll() is None:
            winner.kill()
            winner.wait(30)
    assert _set(folder) == old  # killed mid-staging: the old set, whole
    assert len(_leftovers(folder.parent)) == 1  # and its staging folder
    new = _set(Path(export(full_lake, Config(), "cpt")["path"]))
    assert new["run_id"] != old["run_id"]
    assert _leftovers(folder.parent) == []  # the next export cleared it


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_an_export_killed_at_each_step_leaves_the_old_or_the_new_set(
    full_lake, monkeypatch, exchange
):
    if not exchange:
        monkeypatch.setattr(export_mod, "_exchange", lambda a, b: False)
    folder = full_lake.root / "exports" / "corpus_cpt"
    old = _set(Path(export(full_lake, Config(), "cpt")["path"]))

    def die_at(point):
        def hit(name):
            if name == point:
                raise KeyboardInterrupt

        return hit

    monkeypatch.setattr(failpoints, "hit", die_at("export-staging"))
    with pytest.raises(KeyboardInterrupt):
        export(full_lake, Config(), "cpt")
    assert _set(folder) == old and _leftovers(folder.parent) == []
    monkeypatch.setattr(failpoints, "hit", die_at("export-swap"))  # swapped, old set not removed
    with pytest.raises(KeyboardInterrupt):
        export(full_lake, Config(), "cpt")
    swapped = _set(folder)
    assert swapped["run_id"] != old["run_id"] and len(_leftovers(folder.parent)) == 1
    monkeypatch.setattr(failpoints, "hit", lambda name: None)
    new = _set(Path(export(full_lake, Config(), "cpt")["path"]))
    assert new["run_id"] not in (old["run_id"], swapped["run_id"])
    assert _leftovers(folder.parent) == []
    runs = full_lake.query("select status from runs where stage = 'export:cpt'")
    assert runs == [("finished",), ("finished",)]


def test_a_reader_during_exports_sees_one_whole_set_never_a_mix(full_lake):
    """A reader that opens the folder and then its files sees one set: the card and the
    manifest of the same export and all four files, or (the old set, removed under it) files
    missing, to retry on; the folder itself is always there where the swap is one exchange."""
    folder = full_lake.root / "exports" / "corpus_cpt"
    export(full_lake, Config(), "cpt")
    seen, stop = {"whole": 0, "gone": 0, "retry": 0, "bad": []}, threading.Event()

    def read():
        while not stop.is_set():
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                seen["gone"] += 1
                continue
            try:
                names = sorted(os.listdir(fd))
                with open(os.open("manifest.json", os.O_RDONLY, dir_fd=fd)) as f:
                    created = json.load(f)["created"]
                with open(os.open("README.md", os.O_RDONLY, dir_fd=fd)) as f:
                    card = f.read()
                if f"- created: {created}" not in card or not set(names) <= set(FILES):
                    seen["bad"].append(names)  # a card and a manifest of different exports
                elif names == FILES:
                    seen["whole"] += 1
                else:
                    seen["retry"] += 1  # the old set, being removed after the swap
            except (FileNotFoundError, json.JSONDecodeError):
                seen["retry"] += 1  # the old set, being removed after the swap
            finally:
                os.close(fd)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(8):
            export(full_lake, Config(), "cpt")
    finally:
        stop.set()
        reader.join()
    probe = full_lake.root / "probe"
    (probe / "a").mkdir(parents=True)
    (probe / "b").mkdir()
    atomic = export_mod._exchange(probe / "a", probe / "b")
    assert seen["whole"] and not seen["bad"], seen
    assert not (atomic and seen["gone"]), seen


# ------------------------------------------------------------------------------ case 3
def test_glob_escape():
    assert glob_escape("/x/lake[1]/a?b*c{d}") == "/x/lake[[]1]/a[?]b[*]c{d}"


@pytest.mark.parametrize(
    ("name", "neighbour"),
    [("lake[1]", "lake1"), ("lake?", "lakeX"), ("lake*", "lakeXY"), ("lake{a,b}", "lakea")],
)
def test_glob_characters_in_the_lake_path_match_only_that_lake(tmp_path, runner, name, neighbour):
    other = Lake.init(tmp_path / neighbour)
    other.write_part("questions", pa.table({"question_id": ["n1", "n2", "n3"], "pmid": [1, 2, 3]}))
    out = _init(runner, tmp_path / name)
    assert "lake ready at" in out
    lake = Lake.open(tmp_path / name)
    assert lake.count("questions") == 0
    lake.write_part("questions", pa.table({"question_id": ["q1"], "pmid": [1]}))
    lake.replace_table("contexts", pa.table({"question_id": ["q1"], "rank": [1], "pmid": [2]}))
    assert (lake.count("questions"), lake.count("contexts"), other.count("questions")) == (1, 1, 3)
    r = runner.invoke(cli, ["--lake", str(lake.root), "sql", "select count(*) as n from questions"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    # the catalog a stock duckdb opens reads the same
    lake.sync_catalog()
    con = duckdb.connect(str(lake.catalog_path), read_only=True)
    try:
        assert con.execute("select count(*) from questions").fetchone() == (1,)
    finally:
        con.close()
