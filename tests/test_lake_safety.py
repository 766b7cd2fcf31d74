"""A lake that keeps every row: a copied, moved or zipped lake reads its own data (through
mkailin and the stock CLI); a lake written before the commit log, or one that lost it, is
adopted in place; a commit that fails or is killed between its tables leaves nothing; an export
holds the lock and replaces its set of files whole; glob characters in the lake path match
only that path."""

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
    # every later write works, none loses a row
    lake.write_part("article_records", pa.Table.from_pylist([{"pmid": 9999, "ingest_seq": 9999}]))
    assert lake.count("article_records") == 2003
    lake.replace_table("questions", pa.Table.from_pylist([{"question_id": "q", "pmid": 1}]))
    assert lake.count("questions") == 1
    lake.write_part("questions", pa.Table.from_pylist([{"question_id": "q2", "pmid": 2}]))
    assert lake.count("questions") == 2
    assert "adopted" not in _init(runner, path)  # whole: nothing more to say
    assert Lake.open(path).count("article_records") == 2003
    return out


def _stock_cli_count(lake_root: Path, table: str) -> int:
    from conftest import duckdb_cli

    out = subprocess.run(
        [
            duckdb_cli(),
            "-readonly",
            "-json",
            "mkailin.duckdb",
            "-c",
            f"select count(*) as n from {table}",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=lake_root,
    )
    return json.loads(out.stdout)[0]["n"]


# ------------------------------------------------------------------------------ case 1
def _copy(how: str, src: Path, dst: Path) -> None:
    """Copy a lake folder the way a user's tool would."""
    if how in ("cp -a", "cp -rL"):
        need(shutil.which("cp"), "cp is not on PATH")
        subprocess.run(["cp", *how.split()[1:], str(src), str(dst)], check=True)
    elif how == "zip":
        need(shutil.which("zip") and shutil.which("unzip"), "zip and unzip are not on PATH")
        subprocess.run(["zip", "-qr", str(dst) + ".zip", src.name], cwd=src.parent, check=True)
        subprocess.run(["unzip", "-q", str(dst) + ".zip", "-d", str(dst) + ".x"], check=True)
        os.rename(Path(str(dst) + ".x") / src.name, dst)
    elif how == "zipfile":
        shutil.make_archive(str(dst), "zip", src.parent, src.name)
        with zipfile.ZipFile(str(dst) + ".zip") as z:
            z.extractall(str(dst) + ".x")
        os.rename(Path(str(dst) + ".x") / src.name, dst)
    elif how == "move":
        os.rename(src, dst)


@pytest.mark.parametrize("how", ["cp -a", "cp -rL", "zip", "zipfile", "move"])
def test_a_copied_or_moved_lake_reads_its_own_data(full_lake, runner, tmp_path, how):
    full_lake.sync_catalog()
    copy = tmp_path / "copy"
    _copy(how, full_lake.root, copy)
    if how != "move":  # the original goes on; the copy must not see it
        full_lake.write_part("article_records", pa.table({"pmid": [7777], "ingest_seq": [7777]}))
        full_lake.sync_catalog()
        assert full_lake.count("article_records") == 2003
    assert _counts(Lake.open(copy)) == COUNTS
    assert _stock_cli_count(copy, "article_records") == 2002
    out = _after_init_the_lake_is_whole_and_writable(runner, copy)
    assert "adopted" not in out
    assert _stock_cli_count(copy, "article_records") == 2003


def _legacy(lake: Lake) -> None:
    """Rewrite ``lake`` in the layout of lakes written before the log: each table's parts in
    ``tables/<name>/g000001/`` with a ``current`` link, and no ``_log``."""
    for name, parts in lake.snapshot().tables.items():
        gen = lake.tables_dir / name / "g000001"
        gen.mkdir()
        for part in parts:
            os.rename(lake.root / part.path, gen / Path(part.path).name)
        os.symlink("g000001", lake.tables_dir / name / "current")
    for p in lake.tables_dir.glob("*/*.parquet"):  # parts only old snapshots named
        p.unlink()
    shutil.rmtree(lake.log_dir)


def _break(lake: Lake, how: str) -> None:
    """What a copy tool leaves of every table's `current` symlink in a pre-log lake."""
    for cur in lake.tables_dir.glob("*/current"):
        target = os.readlink(cur)
        if how == "dropped":  # rsync without -l, backup tools that skip symlinks
            cur.unlink()
        elif how == "file":  # zip's stored symlink, extracted where links are not made
            cur.unlink()
            cur.write_text(target)
        elif how == "folder":  # cp -rL, zip without -y and unzip
            cur.unlink()
            shutil.copytree(cur.parent / target, cur)
            shutil.rmtree(cur.parent / target)
        elif how == "dangling":  # the link copied, its generation not
            cur.unlink()
            os.symlink("g000099", cur)


@pytest.mark.parametrize("how", ["link", "dropped", "file", "folder", "dangling"])
def test_a_lake_written_before_the_log_is_adopted_in_place(full_lake, runner, how):
    _legacy(full_lake)
    if how != "link":
        _break(full_lake, how)
    assert _counts(Lake.open(full_lake.root)) == COUNTS  # it reads its data before any write
    out = _after_init_the_lake_is_whole_and_writable(runner, full_lake.root)
    lines = [line for line in out.splitlines() if "adopted" in line]
    assert len(lines) == 1 and "as snapshot 1 (nothing moved or deleted)" in lines[0], out
    # the links are gone; a folder copy of a generation holds live parts and stays
    assert not [c for c in full_lake.tables_dir.glob("*/current") if not c.is_dir()]


def test_a_lake_that_lost_its_log_keeps_every_row(full_lake, runner):
    shutil.rmtree(full_lake.log_dir)  # a sync tool that skipped the folder, say
    assert _counts(Lake.open(full_lake.root)) == COUNTS
    out = _after_init_the_lake_is_whole_and_writable(runner, full_lake.root)
    assert "the lake had no commit log: adopted" in out


def test_init_on_a_whole_lake_changes_nothing(full_lake, runner):
    seq = full_lake.snapshot().seq
    assert "adopted" not in _init(runner, full_lake.root)
    assert Lake.open(full_lake.root).snapshot().seq == seq
    assert _counts(full_lake) == COUNTS


def test_a_commit_that_fails_midway_leaves_nothing_and_no_files(full_lake, monkeypatch):
    before = sorted(p.name for p in full_lake.tables_dir.rglob("*.parquet"))
    calls = []

    def die_on_the_third_part(name):
        if name == "parquet-write":
            calls.append(name)
            if len(calls) == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(failpoints, "hit", die_on_the_third_part)
    with pytest.raises(KeyboardInterrupt):
        with full_lake.transaction():
            full_lake.replace_table("questions", pa.table({"question_id": ["x"], "pmid": [1]}))
            full_lake.write_part("answers", pa.table({"question_id": ["x"], "answer": ["y"]}))
            full_lake.write_part("contexts", pa.table({"question_id": ["x"], "rank": [1]}))
    monkeypatch.undo()
    assert _counts(full_lake) == COUNTS
    assert sorted(p.name for p in full_lake.tables_dir.rglob("*.parquet")) == before


_TWO_TABLES = """
import sys
import pyarrow as pa
from mkailin.lake import Lake
lake = Lake.open(sys.argv[1])
with lake.transaction("two tables"):
    lake.replace_table("mesh_descriptors", pa.table({"descriptor_ui": ["D1", "D2"]}))
    lake.replace_table("mesh_tree", pa.table({"descriptor_ui": ["D1"], "tree_number": ["A01"]}))
"""


def test_a_kill_between_the_tables_of_one_commit_leaves_both_old_then_both_new(full_lake):
    """The issue's MeSH case: SIGKILL after the first table's parts and before the commit."""
    env = {**os.environ, "MKAILIN_FAILPOINT": "snapshot-commit:30"}
    p = subprocess.Popen([sys.executable, "-c", _TWO_TABLES, str(full_lake.root)], env=env)
    deadline = time.monotonic() + 60
    while not list(full_lake.log_dir.glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (full_lake.count("mesh_descriptors"), full_lake.count("mesh_tree")) == (0, 0)
    orphans = len(list(full_lake.tables_dir.glob("mesh_*/*.parquet")))
    subprocess.run([sys.executable, "-c", _TWO_TABLES, str(full_lake.root)], check=True)
    assert (full_lake.count("mesh_descriptors"), full_lake.count("mesh_tree")) == (2, 1)
    assert len(list(full_lake.tables_dir.glob("mesh_*/*.parquet"))) <= orphans  # swept


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
        assert r.output.splitlines()[-1].startswith("Error: the lake "), r.output
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
    runs = full_lake.query("select status from runs where stage = 'export:cpt' order by started")
    # every export is a logged run: the two killed ones say so
    assert [r for (r,) in runs] == ["finished", "interrupted", "interrupted", "finished"]


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
    [("lake[1]", "lake1"), ("lake?", "lakeX"), ("lake*", "lakeXY"), ("lake{a}", "lakea")],
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
    assert _stock_cli_count(lake.root, "questions") == 1


def test_a_comma_in_the_lake_path_is_refused_at_init(tmp_path, runner):
    r = runner.invoke(cli, ["init", str(tmp_path / "lake{a,b}")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert r.output.startswith("Error: ") and "cannot hold a comma" in r.output
    assert not (tmp_path / "lake{a,b}").exists()


_MANY_WRITES = """
import sys
import pyarrow as pa
from mkailin.lake import Lake
lake = Lake.open(sys.argv[1])
with lake.lock("writes"):
    for i in range(40):
        lake.write_part("answers", pa.table({"question_id": [f"c{i}"], "answer": ["a"]}))
"""


def test_a_kill_during_compaction_loses_nothing(full_lake):
    """Commits compact a table past compact_parts parts; SIGKILL while the merged part is being
    written leaves every row of every committed part, and the next writer sweeps the rest."""
    env = {**os.environ, "MKAILIN_FAILPOINT": "compact:30", "MKAILIN_COMPACT_PARTS": "32"}
    p = subprocess.Popen([sys.executable, "-c", _MANY_WRITES, str(full_lake.root)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(full_lake.parts("answers")) >= 32 or p.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(1.5)  # the next commit passes 32 parts: it is compacting, in the failpoint
    assert p.poll() is None
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n = full_lake.count("answers")
    assert n == 4 + 31  # the 31 committed writes are there; the killed 32nd is not
    got = [q for (q,) in full_lake.query("select question_id from answers")]
    assert len(got) == len(set(got)) == n
    full_lake.write_part("answers", pa.table({"question_id": ["after"], "answer": ["a"]}))
    assert full_lake.count("answers") == n + 1
    assert len(full_lake.parts("answers")) <= 33
