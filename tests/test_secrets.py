"""Secrets stay out of the lake and the output: key values, URL credentials, bearer tokens."""

from __future__ import annotations

import json

import pyarrow as pa

from mkailin.cli import cli
from mkailin.runs import log_event
from mkailin.secrets import MASK, redact, remember


def test_redact_masks_keys_url_credentials_and_bearer_tokens(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "s3cr3t-value-123")
    remember("handed-to-a-client-9876")
    text = (
        "401 from http://svc:hunter22@gw.example/v1: key s3cr3t-value-123 invalid; "
        "Authorization: Bearer abcdef123456; echoed handed-to-a-client-9876"
    )
    out = redact(text)
    for secret in ("s3cr3t-value-123", "hunter22", "abcdef123456", "handed-to-a-client-9876"):
        assert secret not in out
    assert f"http://{MASK}@gw.example/v1" in out and out.count(MASK) == 4
    assert redact(None) is None and redact("nothing here") == "nothing here"


def test_no_secret_reaches_quarantine_runs_or_an_error_line(lake, runner, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijkl")
    echoed = "server said: bad key sk-live-abcdefghijkl for http://u:pw123456@host/v1"
    lake.quarantine([{"source": "answer", "record_key": "q1", "error": echoed}])
    log_event(lake, "r-1", "answer", "started", models={"url": "http://u:pw123456@host/v1"})
    log_event(lake, "r-1", "answer", "failed", error=echoed)
    for table in ("quarantine", "run_events"):
        for row in lake.read_table(table).to_pylist():
            blob = json.dumps(row, default=str)
            assert "sk-live-abcdefghijkl" not in blob and "pw123456" not in blob, (table, blob)
    # no file of the lake holds it either
    for p in lake.root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"sk-live-abcdefghijkl" not in data and b"pw123456" not in data, p
    r = runner.invoke(cli, ["--lake", str(lake.root), "status"])
    assert "pw123456" not in r.output and "sk-live" not in r.output
    lake.write_part("scratch_notes", pa.table({"n": [1]}))
    r = runner.invoke(
        cli, ["--lake", str(lake.root), "sql", "select * from 'http://u:pw123456@host/x.parquet'"]
    )
    assert r.exit_code != 0 and "pw123456" not in r.output and r.output.startswith("Error: ")
