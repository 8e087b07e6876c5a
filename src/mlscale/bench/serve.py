"""``mlscale bench serve``: online features over HTTP, open loop at fixed arrival rates.

One local cluster: 2 shard groups of a primary and a replica each. A feature view of
10 float features over ``ENTITIES`` int8 entities (fewer with ``--quick``), loaded by
``FeatureStore.push``. ``mlscale serve --workers W`` runs as users run it (a child
process, uvicorn, a read API key made in the catalog).

The client is a pool of threads, each with one keep-alive ``http.client`` connection
(about 0.1 ms of client CPU a request, a tenth of httpx's, so the client is not what
is measured): each request asks for every feature of 10 random entities
(``POST /v1/features/online``), sent at a fixed arrival rate
(:mod:`mlscale.bench.openloop`: latency counted from each request's scheduled time,
so a stall is not hidden), for each rate of a ladder. Per rate: requests/s answered,
p50/p99/max latency (ms), late and dropped requests, errors, and the client's own CPU
(cores): a run whose client is near a whole core measures the client too, and is
labelled so. Answers are checked: every value of a sample of requests must equal
what was loaded. Headline figures are those of the highest rate the run kept up with
(no request dropped, none failed).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.cluster_async import AsyncCluster
from ..engine.cluster_sync import Cluster
from ..errors import MlscaleError
from ..local.cluster import LocalCluster
from ..serve.keys import ApiKeys
from ..serve.process import ServiceProcess
from ..stores.features import Entity, Feature, FeatureStore, FeatureView
from .http_lookup import StdlibConn
from .openloop import OpenLoopResult, run_open_loop
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult

__all__ = ["BENCHMARK", "run"]

VIEW = "bench_serve"
FEATURES = [f"f{i}" for i in range(10)]
ENTITIES_PER_REQUEST = 10
CLIENT_LIMITED_CORES = 0.8  # a client above this many cores is (part of) what is measured
CHECKED = 50  # requests of each rate whose answers are compared with the loaded values


@dataclass(frozen=True, slots=True)
class Plan:
    entities: int
    workers: int
    rates: tuple[float, ...]
    duration_s: float
    warmup: int
    tasks: int  # client threads: requests in flight at most


def _plan(quick: bool) -> Plan:
    if quick:
        return Plan(20_000, 2, (100.0, 300.0), 4.0, 100, 32)
    return Plan(200_000, 2, (200.0, 300.0, 400.0, 500.0, 700.0, 1_000.0), 15.0, 500, 64)


def _load(cluster: Cluster, entities: int) -> np.ndarray[Any, Any]:
    """Register the view and push ``entities`` rows; the values (entity x feature)."""
    import pandas as pd

    store = FeatureStore(cluster)
    store.register(
        FeatureView(
            VIEW,
            entities=(Entity("user_id"),),
            features=tuple(Feature(f) for f in FEATURES),
            ttl_s=None,
        )
    )
    rng = np.random.default_rng(16)
    values = rng.standard_normal((entities, len(FEATURES)), dtype=np.float32)
    now = pd.Timestamp.now(tz="UTC")
    batch = 50_000
    for start in range(0, entities, batch):
        ids = np.arange(start, min(entities, start + batch), dtype=np.int64)
        frame = pd.DataFrame(values[ids], columns=FEATURES)
        frame.insert(0, "user_id", ids)
        frame.insert(1, "event_ts", now)
        store.push(VIEW, frame)
    return values


async def _read_key(config: Any) -> str:
    async with AsyncCluster(config) as cluster:
        made = await ApiKeys(cluster).create("mlscale bench serve", "read")
    return made.secret


class _Client:
    """The open-loop client: thread ``i`` of the pool owns one keep-alive connection."""

    def __init__(self, url: str, key: str, entities: int, values: np.ndarray[Any, Any]) -> None:
        self.url = f"{url}/v1/features/online"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.entities = entities
        self.values = values
        self.checked = 0
        self.mismatches = 0
        self._lock = threading.Lock()
        self._sent = 0

    def _connection(self) -> StdlibConn:
        return StdlibConn(self.url, self.headers, timeout_s=30.0)

    def request(self, conn: StdlibConn, rng: random.Random) -> None:
        ids = rng.sample(range(self.entities), ENTITIES_PER_REQUEST)
        body = json.dumps({"features": [VIEW], "entity_ids": ids}).encode()
        status, answer = conn.post(body)
        if status != 200:
            raise MlscaleError(f"the service answered {status}: {answer[:200]!r}")
        with self._lock:
            self._sent += 1
            check = self._sent <= CHECKED
        if check:
            got = json.loads(answer)["features"]
            answered = np.array([got[f] for f in FEATURES], dtype=np.float32).T
            same = np.array_equal(answered, self.values[ids])
            with self._lock:
                self.checked += 1
                self.mismatches += not same

    def level(self, rate: float, duration_s: float, threads: int) -> OpenLoopResult:
        conns: list[StdlibConn] = []

        def factory(i: int) -> Any:
            conn, rng = self._connection(), random.Random(16 + i)
            conns.append(conn)
            self.request(conn, rng)  # the connection opened before the clock starts
            return lambda: self.request(conn, rng)

        with self._lock:
            self._sent = 0
        try:
            return run_open_loop(
                factory,
                rate_per_s=rate,
                duration_s=duration_s,
                workers=threads,
                late_after_s=0.005,
                tolerate_errors=True,
            )
        finally:
            for conn in conns:
                conn.close()

    def warm(self, n: int) -> None:
        conn, rng = self._connection(), random.Random(15)
        try:
            for _ in range(n):
                self.request(conn, rng)
        finally:
            conn.close()


def run(ctx: BenchContext) -> BenchResult:
    plan = _plan(ctx.quick)
    result = BenchResult(name="serve", title="Online features over HTTP (mlscale serve)")
    result.params = {
        "groups": 2,
        "replicas_per_group": 1,
        "entities": plan.entities,
        "features": len(FEATURES),
        "entities_per_request": ENTITIES_PER_REQUEST,
        "workers": plan.workers,
        "rates_per_s": list(plan.rates),
        "duration_s_per_rate": plan.duration_s,
        "client": f"{plan.tasks} threads, one keep-alive http.client connection each, "
        "open loop (constant arrivals)",
    }
    progress = Progress(quiet=ctx.quiet)
    levels: list[OpenLoopResult] = []
    client: _Client | None = None
    with ExitStack() as stack:
        with progress.phase(
            f"starting 2 shard groups, loading {plan.entities:,} entities", 3
        ) as phase:
            local = LocalCluster(ctx.workdir / "serve")
            stack.callback(local.destroy)
            local.up(shards=2, replicas=1, redis=False)
            with Cluster(local.config()) as cluster:
                values = _load(cluster, plan.entities)
            phase.step("loaded")
            key = asyncio.run(_read_key(local.config()))
            service = ServiceProcess(
                local.layout.config,
                workers=plan.workers,
                log_path=ctx.workdir / "serve.log",
            )
            stack.callback(service.stop)
            service.start()
            phase.step("service up")
            client = _Client(service.url, key, plan.entities, values)
            client.warm(plan.warmup)
            phase.step("warm")
        with progress.phase("open-loop rates", len(plan.rates)) as phase:
            for rate in plan.rates:
                levels.append(client.level(rate, plan.duration_s, plan.tasks))
                phase.step(f"{rate:g}/s")
    assert client is not None
    if client.mismatches:
        raise MlscaleError(
            f"{client.mismatches} of {client.checked} checked answers differ from the loaded values"
        )
    _report(result, levels, client)
    _print_figures(result)
    return result


def _level_dict(r: OpenLoopResult) -> dict[str, Any]:
    lat = r.histogram.summary_ms()
    return {
        "target_per_s": r.target_per_s,
        "requests_per_s": r.rate,
        "achieved_per_s": r.achieved_per_s,
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "max_ms": lat.get("max"),
        "service_p50_ms": r.service.summary_ms().get("p50"),
        "ops": r.ops,
        "errors": r.errors,
        "late": r.late,
        "dropped": r.dropped,
        "client_cpu_cores": r.cpu_per_s,
        "client_limited": r.cpu_per_s >= CLIENT_LIMITED_CORES,
        "first_error": r.first_error,
    }


def _report(result: BenchResult, levels: list[OpenLoopResult], client: _Client) -> None:
    rows = [_level_dict(r) for r in levels]
    kept = [row for row in rows if row["dropped"] == 0 and row["errors"] == 0]
    head = kept[-1] if kept else rows[0]
    result.metrics.update(
        {
            "levels": rows,
            "requests_per_s": head["requests_per_s"],
            "target_per_s": head["target_per_s"],
            "p50_ms": head["p50_ms"],
            "p99_ms": head["p99_ms"],
            "late": head["late"],
            "dropped": head["dropped"],
            "client_cpu_cores": head["client_cpu_cores"],
            "client_limited": head["client_limited"],
            "kept_up_with_every_rate": len(kept) == len(rows),
            "answers_checked": client.checked,
        }
    )
    result.notes.append(
        "Latency runs from each request's scheduled send time to its answer (open loop). "
        "Headline figures: the highest rate with no request dropped and none failed. "
        f"client_limited: the client used >= {CLIENT_LIMITED_CORES} of a core, so it is "
        "part of what was measured (the service, the cluster and the client share the "
        "machine's cores)."
    )


def _print_figures(result: BenchResult) -> None:
    lines = []
    for row in result.metrics["levels"]:
        mark = "  (client-limited)" if row["client_limited"] else ""
        lines.append(
            f"  target {row['target_per_s']:>7,.0f}/s: {row['requests_per_s']:>7,.0f} req/s  "
            f"p50 {row['p50_ms'] or 0:6.2f} ms  p99 {row['p99_ms'] or 0:7.2f} ms  "
            f"late {row['late']}  dropped {row['dropped']}  errors {row['errors']}  "
            f"client CPU {row['client_cpu_cores']:.2f} cores{mark}"
        )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="serve", title="Online features over HTTP", run=run)
