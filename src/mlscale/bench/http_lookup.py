"""How fast an HTTP endpoint answers one lookup: N concurrent keep-alive clients for a
fixed time, closed loop (each client sends its next request when the last is answered).

One measurer for every HTTP side of a comparison (MLflow's REST alias lookup,
mlscale's service), so the figures differ by the server alone. Each client is a
thread with one keep-alive HTTP/1.1 connection of its own. The client's CPU is what a
fast server's figure runs into first on a 2-core machine, so the default engine is
the standard library's ``http.client``: against a minimal ASGI app on uvicorn (one
worker) here, a request cost the client ~70 µs of CPU with ``http.client`` in threads,
~390 µs with ``httpx.Client`` in threads and ~700-1,500 µs with ``httpx.AsyncClient``
on one event loop (4 and 16 clients). ``engine="httpx"`` (threads of
``httpx.Client``) is kept to show that difference.

The client's CPU is measured (each client thread's own CPU time, summed): threads of
one Python process run Python code on one core at a time, so a run whose clients used
:data:`CLIENT_LIMIT_CORES` or more was limited by the client, not the server, and
:attr:`LookupRun.client_limited` says so.

A response counts as a lookup when its status is 200 and ``check`` (if given) accepts
its body; anything else (another status, a body ``check`` refuses, a transport error) is
counted in ``errors`` with a few examples, never in the rate or the latencies.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from .histogram import Histogram

__all__ = [
    "CLIENT_LIMIT_CORES",
    "WARMUP_REQUESTS",
    "Engine",
    "LookupRun",
    "StdlibConn",
    "measure_lookups",
]

Engine = Literal["http.client", "httpx"]

# Python threads share one core for Python code: at 0.85 cores of client CPU the
# clients, not the server, set the pace.
CLIENT_LIMIT_CORES = 0.85
# A few requests per client before the clock starts: connections open, servers warm.
WARMUP_REQUESTS = 3
MAX_ERROR_EXAMPLES = 3
_SPAN = {"lowest_s": 1e-6, "highest_s": 60.0}


@dataclass(frozen=True, slots=True)
class LookupRun:
    """One timed run of :func:`measure_lookups`.

    ``seconds``: wall time from the common start to the last client's end;
    ``lookups``: good answers; ``errors``: the rest; latencies (ms) of good answers
    only, nearest-bucket percentiles from a 1 % histogram (NaN when none);
    ``client_cpu_s``: CPU seconds the client threads used during the run."""

    url: str
    clients: int
    engine: str
    seconds: float
    lookups: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float
    error_examples: tuple[str, ...] = ()

    @property
    def lookups_per_s(self) -> float:
        """Good answers per second of wall time."""
        return self.lookups / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_cpu_cores(self) -> float:
        """The client threads' CPU over the run's wall time (cores)."""
        return self.client_cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_limited(self) -> bool:
        """Whether the client, not the server, was the bottleneck."""
        return self.client_cpu_cores >= CLIENT_LIMIT_CORES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a latency that was not measured is None)."""

        def ms(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "url": self.url,
            "clients": self.clients,
            "engine": self.engine,
            "seconds": self.seconds,
            "lookups": self.lookups,
            "errors": self.errors,
            "lookups_per_s": self.lookups_per_s,
            "p50_ms": ms(self.p50_ms),
            "p99_ms": ms(self.p99_ms),
            "max_ms": ms(self.max_ms),
            "client_cpu_s": self.client_cpu_s,
            "client_cpu_cores": self.client_cpu_cores,
            "client_limited": self.client_limited,
            "error_examples": list(self.error_examples),
        }


class _Conn(Protocol):
    def get(self) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


_JSON = {"Content-Type": "application/json"}


class StdlibConn:
    """One keep-alive connection of ``http.client``; reopened after a transport error."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the http.client engine takes http:// URLs, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.target = parts.path or "/"
        if parts.query:
            self.target += "?" + parts.query
        self.headers = dict(headers)
        self.timeout_s = timeout_s
        self.conn = self._open()

    def _open(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def get(self) -> tuple[int, bytes]:
        return self.send("GET", None)

    def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to the connection's URL: (status, answer)."""
        return self.send("POST", body)

    def send(self, method: str, body: bytes | None) -> tuple[int, bytes]:
        headers = self.headers if body is None else {**self.headers, **_JSON}
        try:
            self.conn.request(method, self.target, body=body, headers=headers)
            r = self.conn.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = self._open()
            raise

    def close(self) -> None:
        self.conn.close()


class _HttpxConn:
    """One ``httpx.Client`` limited to one keep-alive connection."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        self.url = url
        self.http = httpx.Client(
            headers=dict(headers), timeout=timeout_s,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )  # fmt: skip

    def get(self) -> tuple[int, bytes]:
        r = self.http.get(self.url)
        return r.status_code, r.content

    def close(self) -> None:
        self.http.close()


_TRANSPORT_ERRORS = (OSError, http.client.HTTPException, httpx.HTTPError, socket.timeout)


class _Client:
    """One client thread's tallies (each thread writes only its own)."""

    __slots__ = ("cpu_s", "end", "errors", "examples", "hist", "lookups")

    def __init__(self) -> None:
        self.hist = Histogram(**_SPAN)
        self.lookups = 0
        self.errors = 0
        self.examples: list[str] = []
        self.cpu_s = 0.0
        self.end = 0.0

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.examples) < MAX_ERROR_EXAMPLES:
            self.examples.append(what[:200])


def measure_lookups(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    clients: int = 8,
    duration_s: float = 3.0,
    check: Callable[[bytes], bool] | None = None,
    timeout_s: float = 10.0,
    engine: Engine = "http.client",
) -> LookupRun:
    """GET ``url`` (with ``headers``) from ``clients`` concurrent keep-alive clients for
    ``duration_s`` seconds after a short warm-up; the rate, latencies, errors and the
    client's CPU as a :class:`LookupRun`. ``check`` sees each 200 answer's body and
    says whether it is the right one; ``timeout_s`` bounds each request (s)."""
    if clients < 1:
        raise ValueError(f"need at least one client, got {clients}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if engine not in ("http.client", "httpx"):
        raise ValueError(f"engine must be 'http.client' or 'httpx', got {engine!r}")
    make = StdlibConn if engine == "http.client" else _HttpxConn
    tallies = [_Client() for _ in range(clients)]
    begin: list[float] = []
    # The clock starts when the last client is warm: the barrier's action runs once,
    # before any client is released.
    start = threading.Barrier(clients + 1, action=lambda: begin.append(time.perf_counter()))

    def client(t: _Client) -> None:
        conn: _Conn = make(url, headers or {}, timeout_s)
        try:
            for _ in range(WARMUP_REQUESTS):
                # A failure here is counted when it happens on the clock.
                with contextlib.suppress(*_TRANSPORT_ERRORS):
                    conn.get()
            start.wait()
            deadline = begin[0] + duration_s
            cpu0 = time.thread_time()
            clock = time.perf_counter
            record = t.hist.record
            while clock() < deadline:
                t0 = clock()
                try:
                    status, body = conn.get()
                except _TRANSPORT_ERRORS as exc:
                    t.error(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = clock() - t0
                if status != 200:
                    t.error(f"HTTP {status}: {body[:120]!r}")
                elif check is not None and not check(body):
                    t.error(f"unexpected body: {body[:120]!r}")
                else:
                    t.lookups += 1
                    record(elapsed)
            t.end = clock()
            t.cpu_s = time.thread_time() - cpu0
        finally:
            conn.close()

    failures: list[BaseException] = []

    def run(t: _Client) -> None:
        try:
            client(t)
        except threading.BrokenBarrierError:
            pass  # another client failed: its error is the one reported
        except BaseException as exc:  # reported after the join
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(t,), name=f"lookup-{i}", daemon=True)
               for i, t in enumerate(tallies)]  # fmt: skip
    for th in threads:
        th.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    for th in threads:
        th.join()
    if failures:
        raise failures[0]
    hist = Histogram.merged((t.hist for t in tallies), **_SPAN)
    seconds = max(t.end for t in tallies) - begin[0]
    empty = hist.count == 0
    examples = tuple(e for t in tallies for e in t.examples)[:MAX_ERROR_EXAMPLES]
    return LookupRun(
        url=url,
        clients=clients,
        engine=engine,
        seconds=seconds,
        lookups=sum(t.lookups for t in tallies),
        errors=sum(t.errors for t in tallies),
        p50_ms=math.nan if empty else hist.percentile(50) * 1e3,
        p99_ms=math.nan if empty else hist.percentile(99) * 1e3,
        max_ms=math.nan if empty else hist.max_s * 1e3,
        client_cpu_s=sum(t.cpu_s for t in tallies),
        error_examples=examples,
    )
