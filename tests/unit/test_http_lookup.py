"""The HTTP lookup measurer's figures against a tiny local HTTP/1.1 server that counts
what it served: every request is counted once (good answers, errors, warm-up), each
client keeps one connection, latencies reflect the server's fixed delay, and errors
(a status, a body the check refuses, no server) are counted, never raised."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlscale.bench.http_lookup import (
    CLIENT_LIMIT_CORES,
    WARMUP_REQUESTS,
    LookupRun,
    measure_lookups,
)

DELAY_S = 0.002
CLIENTS = 3
DURATION_S = 0.4


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.paths: Counter[str] = Counter()
        self.peers: set[tuple[str, int]] = set()
        self.auth: set[str] = set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.paths[self.path] += 1
            srv.peers.add(self.client_address)
            srv.auth.add(self.headers.get("Authorization", ""))
        status, doc = 200, {"version": 2}
        if self.path == "/slow":
            time.sleep(DELAY_S)
        elif self.path == "/fail":
            status, doc = 500, {"error": "boom"}
        elif self.path == "/wrong":
            doc = {"version": 3}
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _is_v2(body: bytes) -> bool:
    return bool(json.loads(body)["version"] == 2)


@pytest.mark.parametrize("engine", ["http.client", "httpx"])
def test_counts_rate_and_latency_match_the_server(server: _Server, engine: str) -> None:
    run = measure_lookups(
        _url(server, "/slow"), headers={"Authorization": "Bearer k"}, clients=CLIENTS,
        duration_s=DURATION_S, check=_is_v2, engine=engine,  # type: ignore[arg-type]
    )  # fmt: skip
    assert run.errors == 0 and run.lookups > 0
    # Every request the server answered is a lookup on the clock or a warm-up one.
    assert server.paths["/slow"] == run.lookups + CLIENTS * WARMUP_REQUESTS
    assert len(server.peers) == CLIENTS  # one keep-alive connection per client
    assert server.auth == {"Bearer k"}
    assert DURATION_S <= run.seconds < DURATION_S + 0.5
    assert run.lookups_per_s == pytest.approx(run.lookups / run.seconds)
    # Each answer waited for the server's delay; percentiles are ordered.
    assert DELAY_S * 1e3 * 0.99 <= run.p50_ms <= run.p99_ms <= run.max_ms * 1.01
    # Closed loop: a client can't do more than duration / delay lookups.
    assert run.lookups <= CLIENTS * DURATION_S / DELAY_S + CLIENTS
    assert run.client_cpu_s > 0 and run.engine == engine
    doc = run.to_dict()
    assert doc["lookups"] == run.lookups and doc["client_limited"] == run.client_limited


def test_error_statuses_are_counted_not_timed(server: _Server) -> None:
    run = measure_lookups(_url(server, "/fail"), clients=2, duration_s=0.2)
    assert run.lookups == 0 and run.errors > 0
    assert server.paths["/fail"] == run.errors + 2 * WARMUP_REQUESTS
    assert math.isnan(run.p50_ms) and math.isnan(run.p99_ms)
    assert run.to_dict()["p99_ms"] is None
    assert run.error_examples and run.error_examples[0].startswith("HTTP 500")


def test_a_body_the_check_refuses_is_an_error(server: _Server) -> None:
    run = measure_lookups(_url(server, "/wrong"), clients=1, duration_s=0.2, check=_is_v2)
    assert run.lookups == 0 and run.errors == server.paths["/wrong"] - WARMUP_REQUESTS
    assert run.error_examples[0].startswith("unexpected body")


def test_no_server_is_counted_as_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    run = measure_lookups(f"http://127.0.0.1:{port}/", clients=1, duration_s=0.1, timeout_s=1)
    assert run.lookups == 0 and run.errors > 0
    assert "Connection" in run.error_examples[0] or "refused" in run.error_examples[0].lower()


def test_client_limited_follows_the_client_cpu() -> None:
    def run(cpu_s: float) -> LookupRun:
        return LookupRun("u", 1, "http.client", 2.0, 10, 0, 1.0, 2.0, 3.0, cpu_s)

    assert run(2.0 * CLIENT_LIMIT_CORES).client_limited
    assert not run(2.0 * CLIENT_LIMIT_CORES - 0.01).client_limited
    assert run(1.0).client_cpu_cores == pytest.approx(0.5)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="client"):
        measure_lookups("http://127.0.0.1:1/", clients=0)
    with pytest.raises(ValueError, match="duration"):
        measure_lookups("http://127.0.0.1:1/", duration_s=0)
    with pytest.raises(ValueError, match="engine"):
        measure_lookups("http://127.0.0.1:1/", engine="curl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http://"):
        measure_lookups("https://example.invalid/", duration_s=0.1)
