"""The HTTP half of chapter 8: ``mlscale serve`` run as a child process and measured
from outside, the way a model server would call it.

Clients are ``http.client`` keep-alive connections (the cheapest client in CPU, see
:mod:`mlscale.bench.http_lookup`), so on a small machine the figures are more the
service's than the client's. What is measured here is raw (answers, times, counts);
:mod:`.serving` turns it into the chapter's rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from ..bench.workers import Round, run_threads
from ..config import ClusterConfig
from ..engine.cluster_async import AsyncCluster
from ..engine.cluster_sync import Cluster
from ..errors import MlscaleError
from ..serve import TOKEN_HEADER
from ..serve.keys import ApiKeys, NewKey
from ..serve.process import ServiceProcess
from ..stores.features import Entity, Feature, FeatureStore, FeatureView
from .features import NEXT_VERSION

__all__ = [
    "ENTITIES_PER_REQUEST",
    "FEATURES",
    "VIEW",
    "WORKERS",
    "Answer",
    "HttpJson",
    "Sent",
    "TokenReads",
    "feature_requests",
    "load_view",
    "push_then_read",
    "running_service",
    "scrape_counts",
    "watch_answers",
]

VIEW: Final = "demo_serving"
FEATURES: Final = tuple(f"f{i}" for i in range(10))
ENTITIES_PER_REQUEST: Final = 10
WORKERS: Final = 2
ONLINE: Final = "/v1/features/online"


class HttpJson:
    """One keep-alive HTTP/1.1 connection to the service, JSON in and out, with the
    API key in every request (never logged)."""

    def __init__(self, url: str, key: str, timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname or not parts.port:
            raise ValueError(f"need an http://host:port URL, got {url!r}")
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(
        self, method: str, path: str, body: object = None, token: str | None = None
    ) -> tuple[Any, str | None]:
        """The JSON answer and its ``Mlscale-Causal-Token`` header (None if absent);
        ``token`` is sent in that header. MlscaleError unless the status is 200."""
        headers = dict(self.headers)
        if token:
            headers[TOKEN_HEADER] = token
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers=headers)
        answer = self.conn.getresponse()
        text = answer.read()
        if answer.status != 200:
            raise MlscaleError(f"{method} {path}: HTTP {answer.status}: {text[:200]!r}")
        return json.loads(text), answer.getheader(TOKEN_HEADER)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Sent:
    """Requests sent to the service, counted to compare with its ``/metrics``."""

    alias_lookups: int = 0
    feature_reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, lookups: int = 0, reads: int = 0) -> None:
        with self.lock:
            self.alias_lookups += lookups
            self.feature_reads += reads


def load_view(cluster: Cluster, entities: int, seed: int) -> np.ndarray[Any, Any]:
    """Register the chapter's view (10 float features of ``user_id``) and push
    ``entities`` rows (ids 0 .. entities - 1); their values (entity x feature)."""
    store = FeatureStore(cluster)
    # A dropped version's number is not registered again: each run takes the next one.
    with cluster.connection("control") as conn:
        row = conn.execute(NEXT_VERSION, (VIEW,)).fetchone()
    store.register(
        FeatureView(
            VIEW,
            version=int(row[0]) if row else 1,
            entities=(Entity("user_id"),),
            features=tuple(Feature(f) for f in FEATURES),
            ttl_s=None,
        )
    )
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((entities, len(FEATURES)), dtype=np.float32)
    frame = pd.DataFrame(values, columns=list(FEATURES))
    frame.insert(0, "user_id", np.arange(entities, dtype=np.int64))
    frame.insert(1, "event_ts", pd.Timestamp.now(tz="UTC"))
    store.push(VIEW, frame)
    return values


def _make_key(config: ClusterConfig, name: str) -> NewKey:
    async def make() -> NewKey:
        async with AsyncCluster(config) as cluster:
            return await ApiKeys(cluster).create(name, "write")

    return asyncio.run(make())


def _revoke_key(config: ClusterConfig, key: NewKey) -> None:
    async def revoke() -> None:
        async with AsyncCluster(config) as cluster:
            await ApiKeys(cluster).revoke(key.key.key_id)

    asyncio.run(revoke())


@contextmanager
def running_service(
    config: ClusterConfig, key_name: str
) -> Iterator[tuple[ServiceProcess, str, float]]:
    """``mlscale serve`` on ``config``'s cluster with :data:`WORKERS` workers, and a write
    API key called ``key_name`` made in the catalog: (the service, the key, seconds
    until it was ready). On exit the service is stopped (SIGTERM to its PID, through
    :class:`ServiceProcess`) and the key revoked. Its log is a temp file, removed
    after a clean exit, kept and named in a note of any error."""
    if config.source is None:
        raise MlscaleError("mlscale serve needs the cluster's config file")
    fd, log_name = tempfile.mkstemp(prefix="mlscale-demo-serve-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    try:
        with ExitStack() as stack:
            key = _make_key(config, key_name)
            stack.callback(_revoke_key, config, key)
            service = ServiceProcess(config.source, workers=WORKERS, log_path=log_path)
            started = time.perf_counter()
            service.start()
            stack.callback(service.stop)
            yield service, key.secret, time.perf_counter() - started
    except BaseException as exc:
        exc.add_note(f"mlscale serve's log: {log_path}")
        raise
    log_path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class TokenReads:
    """Push-then-read pairs: ``pairs`` each way; reads that did not return the pushed
    value with the push's token (must be 0) and without it; median round trips (ms)."""

    pairs: int
    stale_with_token: int
    stale_without_token: int
    push_ms: float
    read_ms: float


def push_then_read(url: str, key: str, pairs: int, first_entity: int, sent: Sent) -> TokenReads:
    """``2 * pairs`` pushes of a new ``f0`` for one of 10 entities from ``first_entity``
    on (outside the ones :func:`feature_requests` checks), each read back at once,
    alternately with the push's token and without it."""
    client = HttpJson(url, key)
    stale = {True: 0, False: 0}
    push_s: list[float] = []
    read_s: list[float] = []
    start = dt.datetime.now(dt.UTC)
    try:
        for i in range(2 * pairs):
            entity = first_entity + i % 10
            value = float(i) + 0.25  # exact in float4
            row: dict[str, Any] = dict.fromkeys(FEATURES, 0.0)
            # Event times rise with i: the newest event per entity wins.
            row.update(user_id=entity, f0=value,
                       event_ts=(start + dt.timedelta(milliseconds=i)).isoformat())  # fmt: skip
            t0 = time.perf_counter()
            _, token = client.call("POST", f"/v1/features/{VIEW}/push", {"rows": [row]})
            t1 = time.perf_counter()
            with_token = i % 2 == 0
            body, _ = client.call(
                "POST",
                ONLINE,
                {"features": [VIEW], "entity_ids": [entity]},
                token if with_token else None,
            )
            read_s.append(time.perf_counter() - t1)
            push_s.append(t1 - t0)
            sent.add(reads=1)
            if body["features"]["f0"][0] != value:
                stale[with_token] += 1
    finally:
        client.close()
    return TokenReads(
        pairs,
        stale[True],
        stale[False],
        float(np.median(push_s)) * 1e3,
        float(np.median(read_s)) * 1e3,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of a poller: when its request was sent and answered
    (``perf_counter()`` seconds) and the version it named."""

    sent: float
    answered: float
    version: int


def watch_answers(
    url: str, key: str, path: str, act: Callable[[], float], *, pollers: int, window_s: float
) -> tuple[float, list[Answer]]:
    """``pollers`` keep-alive connections ``GET path`` (a JSON answer with a ``version``)
    back to back; once all answer, ``act()`` runs (it returns its commit time,
    ``perf_counter()`` seconds) and the polling goes on ``window_s`` more. The commit
    time and every answer."""
    stop = threading.Event()
    ready = threading.Barrier(pollers + 1)
    seen: list[list[Answer]] = [[] for _ in range(pollers)]
    errors: list[BaseException] = []

    def poll(mine: list[Answer]) -> None:
        client = HttpJson(url, key)
        try:
            client.call("GET", path)  # connected, and answered once before the act
            ready.wait()
            clock = time.perf_counter
            while not stop.is_set():
                t0 = clock()
                body, _ = client.call("GET", path)
                mine.append(Answer(t0, clock(), int(body["version"])))
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # raised by the caller after the join
            errors.append(exc)
            ready.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=poll, args=(s,), daemon=True) for s in seen]
    for t in threads:
        t.start()
    try:
        ready.wait()
        committed = act()
        time.sleep(window_s)
    except threading.BrokenBarrierError:
        committed = 0.0
    finally:
        stop.set()
        ready.abort()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return committed, [a for mine in seen for a in mine]


def feature_requests(
    url: str,
    key: str,
    values: np.ndarray[Any, Any],
    *,
    clients: int,
    duration_s: float,
    seed: int,
    sent: Sent,
) -> tuple[Round, int]:
    """Requests for every feature of 10 random entities (of ``values``' rows), from
    ``clients`` keep-alive connections in a closed loop for ``duration_s``; the round
    and how many answers' ``f0`` differed from ``values`` (every answer is checked)."""
    mismatches = [0] * clients
    counts = [0] * clients
    entities = values.shape[0]

    def make(i: int) -> Callable[[], object]:
        client = HttpJson(url, key)
        rng = np.random.default_rng(seed * 100 + i)
        client.call("POST", ONLINE, {"features": [VIEW], "entity_ids": [0]})  # connected
        counts[i] += 1

        def op() -> None:
            ids = rng.choice(entities, ENTITIES_PER_REQUEST, replace=False).tolist()
            counts[i] += 1
            body, _ = client.call("POST", ONLINE, {"features": [VIEW], "entity_ids": ids})
            if body["features"]["f0"] != values[ids, 0].tolist():
                mismatches[i] += 1

        return op

    done = run_threads(make, clients, duration_s)
    sent.add(reads=sum(counts))
    return done, sum(mismatches)


def scrape_counts(url: str) -> dict[tuple[str, str], float]:
    """``GET /metrics`` once (no key): the ``_count`` of the registry lookup and feature
    read histograms, by (metric, its model or view label)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        answer = conn.getresponse()
        text = answer.read().decode()
        if answer.status != 200:
            raise MlscaleError(f"GET /metrics: HTTP {answer.status}: {text[:200]!r}")
    finally:
        conn.close()
    labels = {"mlscale_registry_lookup_seconds": "model", "mlscale_feature_read_seconds": "view"}
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        label = labels.get(family.name)
        if label is None:
            continue
        for sample in family.samples:
            if sample.name == f"{family.name}_count":
                found[(family.name, sample.labels.get(label, ""))] = sample.value
    return found
