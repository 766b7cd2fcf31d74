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


class _EchoServer:
    """An OpenAI-compatible server on loopback that answers one key and, to any other,
    returns 401 with the Authorization header it received in the body (as some gateways do)."""

    GOOD = "good-key-0123456789"

    def __enter__(self):
        import http.server
        import threading

        good = self.GOOD
        server = self
        self.fail_on = ""  # requests holding this text get a 400 while set

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                sent = self.rfile.read(n).decode()
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {good}":
                    body = {"error": {"message": f"invalid credentials: {auth}"}}
                    code = 401
                elif server.fail_on and server.fail_on in sent:
                    body, code = {"error": {"message": "context too long"}}, 400
                else:
                    body = {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "m",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Yes."},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                    }
                    code = 200
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


def test_a_401_that_echoes_the_key_stops_the_stage_and_leaks_nothing(
    lake, runner, tmp_path, monkeypatch
):
    wrong = "wrong-key-abcdef123456"
    arts = [
        {
            "pmid": p,
            "title": f"T{p}",
            "abstract": f"Abstract {p}.",
            "source": "pubmed",
            "ingest_seq": p,
            "deleted": False,
        }
        for p in range(1, 9)
    ]
    lake.write_part("article_records", pa.Table.from_pylist(arts))
    qs = [
        {"question_id": f"final-{p}", "pmid": p, "agent": "final", "question": f"Q{p}?"}
        for p in range(1, 5)
    ]
    lake.write_part("questions", pa.Table.from_pylist(qs))
    ctx = [
        {
            "question_id": f"final-{p}",
            "rank": r,
            "pmid": 4 + r,
            "score": 1.0,
            "retriever": "dense:minilm",
            "top_k": 4,
        }
        for p in range(1, 5)
        for r in range(1, 5)
    ]
    lake.write_part("contexts", pa.Table.from_pylist(ctx))
    with _EchoServer() as srv:
        cfg = tmp_path / "mkailin.toml"
        cfg.write_text(
            f'[models.served]\nbackend = "openai"\nmodel = "m"\nbase_url = "{srv.url}"\n'
            'api_key_env = "MY_GATEWAY_KEY"\nmax_retries = 0\n\n'
            '[agents.answer]\nmodel = "served"\n\n[answer]\nagents = ["final"]\n'
        )
        monkeypatch.setenv("MY_GATEWAY_KEY", wrong)
        args = ["--lake", str(lake.root), "--config", str(cfg), "answer"]
        r = runner.invoke(cli, args)
        assert r.exit_code != 0, r.output
        assert "HTTP 401 (authentication failed)" in r.output and wrong not in r.output
        assert lake.count("quarantine") == 0 and lake.count("answers") == 0
        for p in lake.root.rglob("*"):
            if p.is_file():
                assert wrong.encode() not in p.read_bytes(), p
        monkeypatch.setenv("MY_GATEWAY_KEY", srv.GOOD)  # the key fixed: the rows run
        srv.fail_on = "Q3?"  # one row's request fails on the server side
        r = runner.invoke(cli, args)
        assert r.exit_code == 0, r.output
        assert lake.count("answers") == 3
        assert lake.query("select record_key, reason from quarantine") == [("final-3", "http_4xx")]
        srv.fail_on = ""
        r = runner.invoke(
            cli,
            [
                "--lake",
                str(lake.root),
                "--config",
                str(cfg),
                "retry",
                "answer",
                "--reason",
                "http_4xx",
            ],
        )
        assert r.exit_code == 0 and "1 quarantined row(s) (http_4xx) given back" in r.output, (
            r.output
        )
        assert lake.count("answers") == 4 and lake.count("quarantine") == 0


def test_a_shared_config_cannot_send_a_key_to_a_host_the_user_did_not_approve(
    monkeypatch, tmp_path
):
    import pytest

    from mkailin.backends.openai_backend import api_key
    from mkailin.config import ModelSpec
    from mkailin.errors import BackendError

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("MKAILIN_APPROVED_HOSTS", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value-123456")
    spec = ModelSpec(
        backend="openai",
        model="m",
        base_url="http://collector.example/v1",
        api_key_env="AWS_SECRET_ACCESS_KEY",
    )
    with pytest.raises(BackendError, match="a host you have not approved") as e:
        api_key(spec)
    assert "aws-secret-value-123456" not in str(e.value) and "nothing was sent" in str(e.value)
    # the user's own settings approve it: the environment, or the file in their config folder
    monkeypatch.setenv("MKAILIN_APPROVED_HOSTS", "AWS_SECRET_ACCESS_KEY@collector.example")
    assert api_key(spec) == "aws-secret-value-123456"
    monkeypatch.delenv("MKAILIN_APPROVED_HOSTS")
    (tmp_path / "mkailin").mkdir()
    (tmp_path / "mkailin" / "approved_hosts").write_text("collector.example\n")
    assert api_key(spec) == "aws-secret-value-123456"
    # the standard variable to its standard host needs no approval
    monkeypatch.setenv("OPENAI_API_KEY", "sk-standard-123456")
    assert api_key(ModelSpec(backend="openai", model="gpt-4o")) == "sk-standard-123456"


def test_quarantine_rows_have_reasons_status_counts_them_and_retry_releases_them(lake, runner):
    lake.quarantine(
        [
            {"source": "answer", "record_key": "q1", "error": "HTTP 503: overloaded"},
            {"source": "answer", "record_key": "q2", "error": "HTTP 503: overloaded"},
            {"source": "answer", "record_key": "q3", "error": "HTTP 400: context too long"},
            {
                "source": "generate-questions:domain",
                "record_key": "7",
                "error": "no usable question",
            },
        ]
    )
    assert lake.query("select record_key, reason from quarantine order by 1") == [
        ("7", "model_output"),
        ("q1", "http_5xx"),
        ("q2", "http_5xx"),
        ("q3", "http_4xx"),
    ]
    r = runner.invoke(cli, ["--lake", str(lake.root), "status"])
    assert "quarantine: answer: 2 http_5xx, 1 http_4xx" in r.output, r.output
    r = runner.invoke(
        cli, ["--lake", str(lake.root), "retry", "answer", "--reason", "http_5xx", "--release-only"]
    )
    assert r.exit_code == 0 and "answer: 2 quarantined row(s) (http_5xx) given back" in r.output
    assert lake.query("select record_key from quarantine order by 1") == [("7",), ("q3",)]
