"""``mlscale bench registry``: "which version of model M is in production?" answered by
mlscale's registry (library, cache L1 + L2 and L2 only; its HTTP service) and by
MLflow's model registry over REST, side by side on one local cluster.

One local cluster (one shard group, no replica, Redis). One model, three versions,
alias ``production`` at version 2, made the same way on both sides. Variants, run in
at least 5 alternating rounds after a warm-up, each reported as median and range:

- ``l1_on``: ``ModelRegistry(cluster, cache=registry_cache(config))`` (L1 kept coherent
  by the broadcast, Redis L2) ``.get_production_model(M)`` in a tight loop on one
  thread of this process (each call timed), the library path an inference server's
  request handler takes;
- ``l1_off``: the same with a cache of L2 only (every call reads Redis);
- ``mlflow``: MLflow's tracking server (its own venv; backend store a PostgreSQL
  database on the cluster's primary; ``--workers`` as many as the machine has cores,
  which is what mlscale's service is given too) answering
  ``GET /api/2.0/mlflow/registered-models/alias?name=M&alias=production`` to N
  concurrent keep-alive clients (:func:`~.http_lookup.measure_lookups`);
- ``service``: mlscale's HTTP service (``mlscale serve``, as many workers as MLflow)
  answering ``GET /v1/models/M/aliases/production`` to the same client.

Then visibility: :func:`~mlscale.stores.registry.visibility.measure_visibility`
promotes the model again and again while other processes (spawned, each with its
own registry cache) look it up in a loop; the time from each promotion's commit to
each process answering the new version.

After the rounds, MLflow's ceiling: the same lookup at several client counts (and, in a
full run, with more workers), the best rate kept. Gates: ``production_lookup_per_s``
>= 10,000 with ``p99_ms`` <= 5 (L1 on, one process), ``visibility_p99_ms`` <= 100 with
no promotion missed and no older version answered after a newer one. Goal:
``vs_mlflow_ratio`` (L1 on / MLflow's REST, medians of the rounds) >= 10, and the same
over MLflow's ceiling.

When MLflow cannot be installed, the result says why and the rest still runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import ClusterConfig
from ..core.topology import find_node, nodes_of, primary_name
from ..engine.cluster_sync import Cluster
from ..errors import MlscaleError
from ..local.cluster import LocalCluster
from ..serve.process import ServiceProcess
from ..stores.registry import ModelRegistry
from ..stores.registry.caching import registry_cache
from ..stores.registry.visibility import VisibilityResult, measure_visibility
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .http_lookup import LookupRun, measure_lookups
from .mlflow_peer import (
    MlflowDatabase,
    MlflowPeerError,
    MlflowServer,
    alias_lookup_url,
    create_database,
    libpq_secret_env,
    mlflow_python,
)
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "LibraryRun", "Plan", "run", "time_calls"]

MODEL = "bench-ranker"
VERSIONS = 3
PRODUCTION_VERSION = 2
ACTOR = "bench"
GATE_RATE = 10_000.0
GATE_P99_MS = 5.0
GOAL_VS_MLFLOW = 10.0
GATE_VISIBILITY_P99_MS = 100.0
# The service's lookup route for a model's production version; its answer is checked
# to carry "version": PRODUCTION_VERSION.
SERVICE_LOOKUP_PATH = "/v1/models/{name}/aliases/production"


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full). Durations in seconds."""

    rounds: int
    library_s: float
    http_s: float
    clients: int
    workers: int
    ceiling_clients: tuple[int, ...]
    ceiling_workers: tuple[int, ...]
    lookers: int = 3  # processes watching for each promotion (visibility)
    transitions: int = 100  # promotions whose visibility is measured

    @classmethod
    def of(cls, quick: bool) -> Plan:
        cores = os.cpu_count() or 1
        if quick:
            return cls(rounds=5, library_s=0.3, http_s=0.6, clients=8, workers=cores,
                       ceiling_clients=(1, 16), ceiling_workers=(), lookers=2,
                       transitions=20)  # fmt: skip
        return cls(rounds=5, library_s=3.0, http_s=5.0, clients=16, workers=cores,
                   ceiling_clients=(1, 4, 16, 32), ceiling_workers=(2 * cores,))  # fmt: skip


@dataclass(frozen=True, slots=True)
class LibraryRun:
    """A tight loop of one library call on one thread: calls made, wall seconds,
    latency percentiles (ms, nearest rank over every call), and the thread's CPU."""

    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float

    @property
    def lookups_per_s(self) -> float:
        """Calls per second of wall time."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_cpu_cores(self) -> float:
        """The calling thread's CPU over wall time (cores; 1.0 = never waited)."""
        return self.cpu_s / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "seconds": self.seconds, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms, "cpu_s": self.cpu_s,
                "lookups_per_s": self.lookups_per_s}  # fmt: skip


def time_calls(call: Callable[[], object], duration_s: float) -> LibraryRun:
    """Call ``call()`` back to back on this thread for ``duration_s`` seconds, timing
    each call (a ``perf_counter`` pair and an array append: ~0.1 µs a call)."""
    lat = array("d")
    clock = time.perf_counter
    cpu0 = time.thread_time()
    start = clock()
    deadline = start + duration_s
    while True:
        t0 = clock()
        call()
        t1 = clock()
        lat.append(t1 - t0)
        if t1 >= deadline:
            break
    seconds = clock() - start
    cpu_s = time.thread_time() - cpu0
    values = np.frombuffer(lat, dtype=np.float64)
    p50, p99 = np.percentile(values, [50, 99], method="inverted_cdf")
    return LibraryRun(len(values), seconds, float(p50) * 1e3, float(p99) * 1e3,
                      float(values.max()) * 1e3, cpu_s)  # fmt: skip


class Measured(Protocol):
    """What a variant's run gives, library or HTTP."""

    @property
    def lookups_per_s(self) -> float: ...

    @property
    def p50_ms(self) -> float: ...

    @property
    def p99_ms(self) -> float: ...

    @property
    def client_cpu_cores(self) -> float: ...


@dataclass(slots=True)
class Sides:
    """Each variant's one-run callable, and why any variant is not measured."""

    runs: dict[str, Callable[[], Measured]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


# -- mlscale's registry (library) ----------------------------------------------------------


def _library_sides(
    cluster: Cluster, config: ClusterConfig, plan: Plan, sides: Sides, stack: ExitStack
) -> None:
    if config.redis is None:
        sides.missing["l1_on"] = sides.missing["l1_off"] = "the bench cluster has no Redis"
        return
    setup = ModelRegistry(cluster)
    setup.create_model(MODEL, description="bench registry", actor=ACTOR)
    for v in range(1, VERSIONS + 1):
        setup.register_version(MODEL, artifact_uri=f"s3://bench-models/{MODEL}/{v}",
                               metrics={"auc": 0.8 + v / 100}, actor=ACTOR)  # fmt: skip
    setup.transition(MODEL, PRODUCTION_VERSION, "production", actor=ACTOR, reason="bench")
    # The caches a service process uses: L1 kept coherent by the broadcast + Redis L2;
    # and Redis alone.
    namespace = f"bench-registry-{uuid.uuid4().hex[:8]}"
    l1_on = ModelRegistry(cluster, cache=stack.enter_context(registry_cache(config, namespace)))
    l2_only = stack.enter_context(registry_cache(config, namespace, l1=False))
    l1_off = ModelRegistry(cluster, cache=l2_only)
    for name, reg in (("l1_on", l1_on), ("l1_off", l1_off)):
        got = reg.get_production_model(MODEL).version
        if got != PRODUCTION_VERSION:
            raise MlscaleError(f"{name}: production is version {got}, not {PRODUCTION_VERSION}")

        def one(reg: Any = reg) -> Measured:
            return time_calls(lambda: reg.get_production_model(MODEL), plan.library_s)

        sides.runs[name] = one


# -- MLflow ------------------------------------------------------------------------------


def _mlflow_body_ok(body: bytes) -> bool:
    try:
        return bool(json.loads(body)["model_version"]["version"] == str(PRODUCTION_VERSION))
    except (ValueError, KeyError, TypeError):
        return False


@dataclass(slots=True)
class MlflowSide:
    """The running MLflow: its venv's python, its database, its server (replaced when
    the ceiling runs change the worker count)."""

    python: Path
    db: MlflowDatabase
    server: MlflowServer


@dataclass(frozen=True, slots=True)
class CeilingPoint:
    """One run of MLflow's lookup at a worker and client count."""

    workers: int
    run: LookupRun

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, **self.run.to_dict()}


def _mlflow_server(
    side_python: Path, db: MlflowDatabase, ctx: BenchContext, config: ClusterConfig,
    workers: int, stack: ExitStack,
) -> MlflowServer:  # fmt: skip
    return stack.enter_context(
        MlflowServer(side_python, db=db, workdir=ctx.workdir / f"mlflow-w{workers}",
                     workers=workers, secret_env=libpq_secret_env(config))
    )  # fmt: skip


def _mlflow_side(
    ctx: BenchContext, config: ClusterConfig, plan: Plan, sides: Sides, stack: ExitStack
) -> MlflowSide | None:
    """Start MLflow on a new database of the primary, make the model: its variant and
    the running side, or None (and why, in ``sides.missing``) when unavailable."""
    t0 = time.monotonic()
    python, how = mlflow_python()
    sides.facts["mlflow_venv"] = how
    sides.facts["mlflow_venv_s"] = round(time.monotonic() - t0, 1)
    if python is None:
        sides.missing["mlflow"] = f"MLflow could not be installed: {how}"
        return None
    node = find_node(nodes_of(config), primary_name(config.shard_groups[0].name))
    try:
        db = create_database(config, node, f"mlflow_bench_{uuid.uuid4().hex[:8]}")
        server = _mlflow_server(python, db, ctx, config, plan.workers, stack)
        sides.facts["mlflow_start_s"] = round(server.started_s, 1)
        with server.rest() as rest:
            rest.create_model(MODEL, description="bench registry")
            for v in range(1, VERSIONS + 1):
                rest.create_version(MODEL, f"s3://bench-models/{MODEL}/{v}")
            rest.set_alias(MODEL, "production", PRODUCTION_VERSION)
            got = rest.get_by_alias(MODEL, "production").version
    except MlflowPeerError as exc:
        sides.missing["mlflow"] = f"MLflow's server failed: {exc}"
        return None
    if got != PRODUCTION_VERSION:
        sides.missing["mlflow"] = f"MLflow answered version {got}, not {PRODUCTION_VERSION}"
        return None
    side = MlflowSide(python, db, server)

    def one() -> Measured:
        url = alias_lookup_url(side.server.url, MODEL, "production")
        return measure_lookups(url, clients=plan.clients, duration_s=plan.http_s,
                               check=_mlflow_body_ok)  # fmt: skip

    sides.runs["mlflow"] = one
    return side


def _mlflow_ceiling(
    ctx: BenchContext, config: ClusterConfig, plan: Plan, side: MlflowSide,
    stack: ExitStack, progress: Progress,
) -> list[CeilingPoint]:  # fmt: skip
    """MLflow's lookup at each of the plan's client counts on the running server, then
    on a server with each of ``ceiling_workers`` (same database), one run each."""
    points = [(plan.workers, c) for c in plan.ceiling_clients]
    points += [(w, c) for w in plan.ceiling_workers for c in plan.ceiling_clients]
    out: list[CeilingPoint] = []
    with progress.phase("MLflow's ceiling", len(points)) as phase:
        for workers, clients in points:
            phase.step(f"{workers} workers, {clients} clients")
            if workers != side.server.workers:
                side.server.close()  # one MLflow at a time on the machine
                side.server = _mlflow_server(side.python, side.db, ctx, config, workers, stack)
            url = alias_lookup_url(side.server.url, MODEL, "production")
            run = measure_lookups(url, clients=clients, duration_s=plan.http_s,
                                  check=_mlflow_body_ok)  # fmt: skip
            out.append(CeilingPoint(workers, run))
    return out


# -- mlscale's HTTP service ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """Where mlscale's service answers the lookup, and the headers it wants."""

    url: str
    headers: dict[str, str] = field(repr=False)


@contextlib.contextmanager
def _service(local: LocalCluster, workers: int, workdir: Path) -> Iterator[ServiceTarget]:
    """``mlscale serve`` on the cluster with ``workers`` processes and a read key made by
    ``mlscale keys create``; stopped by its PID on exit."""
    config = str(local.layout.config)
    made = subprocess.run(
        [sys.executable, "-m", "mlscale", "keys", "create", "--name", "bench-registry",
         "--scope", "read", "--config", config],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise MlscaleError(f"`mlscale keys create` failed: {made.stderr.strip()[-300:]}")
    key = made.stdout.strip().splitlines()[-1]
    workdir.mkdir(parents=True, exist_ok=True)
    with ServiceProcess(config, workers=workers, log_path=workdir / "serve.log") as service:
        url = f"{service.url}{SERVICE_LOOKUP_PATH.format(name=MODEL)}"
        yield ServiceTarget(url, {"Authorization": f"Bearer {key}"})


def _service_body_ok(body: bytes) -> bool:
    try:
        return bool(json.loads(body)["version"] == PRODUCTION_VERSION)
    except (ValueError, KeyError, TypeError):
        return False


def _service_side(target: ServiceTarget, plan: Plan, sides: Sides) -> None:
    def one() -> Measured:
        return measure_lookups(target.url, headers=target.headers, clients=plan.clients,
                               duration_s=plan.http_s, check=_service_body_ok)  # fmt: skip

    sides.runs["service"] = one


# -- the run -------------------------------------------------------------------------------


def run(ctx: BenchContext) -> BenchResult:
    """Gates: L1-on lookups >= 10,000/s with p99 <= 5 ms, promotions seen by every
    process within 100 ms (p99); goal: >= 10x MLflow's REST."""
    plan = Plan.of(ctx.quick)
    result = BenchResult(
        name="registry",
        title=(
            "Production model lookup: mlscale's registry (L1+L2, L2 only, HTTP) vs "
            "MLflow's registry over REST"
        ),
    )
    progress = Progress(quiet=ctx.quiet)
    sides = Sides()
    ceiling: list[CeilingPoint] = []
    with ExitStack() as stack:
        with progress.phase("starting the cluster, the registries", 3) as phase:
            phase.step("cluster")
            local = LocalCluster(ctx.workdir / "registry")
            stack.callback(local.destroy)
            local.up(shards=1, replicas=0, redis=True)
            config = local.config()
            cluster = stack.enter_context(Cluster(config))
            phase.step("mlscale's registry")
            _library_sides(cluster, config, plan, sides, stack)
            phase.step("MLflow (its venv, its server)")
            started = _mlflow_side(ctx, config, plan, sides, stack)
            target = stack.enter_context(_service(local, plan.workers, ctx.workdir / "serve"))
            _service_side(target, plan, sides)
        runs: dict[str, list[Measured]] = {}
        if sides.runs:
            runs = ab_rounds(sides.runs, rounds=plan.rounds, progress=progress,
                             title="L1 on vs L1 off vs MLflow vs service")  # fmt: skip
        if started is not None:
            try:
                ceiling = _mlflow_ceiling(ctx, config, plan, started, stack, progress)
            except MlflowPeerError as exc:
                result.notes.append(f"MLflow's ceiling was not measured: {exc}")
        with progress.phase("how soon other processes see a promotion", 1) as phase:
            phase.step(f"{plan.transitions} promotions, {plan.lookers} looking processes")
            seen = measure_visibility(
                local.layout.config, processes=plan.lookers, transitions=plan.transitions
            )
    _report(result, plan, runs, ceiling, sides, seen)
    _print_figures(result)
    return result


def _report(
    result: BenchResult,
    plan: Plan,
    runs: dict[str, list[Measured]],
    ceiling: list[CeilingPoint],
    sides: Sides,
    seen: VisibilityResult,
) -> None:
    rate = {k: Spread.of([r.lookups_per_s for r in v]) for k, v in runs.items()}
    p50 = {k: Spread.of([r.p50_ms for r in v]) for k, v in runs.items()}
    p99 = {k: Spread.of([r.p99_ms for r in v]) for k, v in runs.items()}
    cpu = {k: Spread.of([r.client_cpu_cores for r in v]) for k, v in runs.items()}
    result.params = {
        "model": MODEL,
        "versions": VERSIONS,
        "production_version": PRODUCTION_VERSION,
        "rounds": plan.rounds,
        "library_run_s": plan.library_s,
        "library_loop": "one thread, back-to-back calls, each timed",
        "http_run_s": plan.http_s,
        "http_clients": plan.clients,
        "http_client": "measure_lookups: threads of http.client, one keep-alive "
        "connection each, closed loop",
        "server_workers": plan.workers,
        "ceiling_clients": list(plan.ceiling_clients),
        "ceiling_workers": [plan.workers, *plan.ceiling_workers],
        "cluster": "1 shard group (primary only) + Redis, loopback, uncapped",
        "visibility_processes": plan.lookers,
        "visibility_promotions": plan.transitions,
    }
    metrics: dict[str, Any] = {
        **spread_metrics(rate, "_lookups_per_s"),
        **spread_metrics(p50, "_p50_ms"),
        **spread_metrics(p99, "_p99_ms"),
        **spread_metrics(cpu, "_client_cpu_cores"),
        "unavailable": dict(sides.missing),
        **sides.facts,
    }
    nan = math.nan
    lib_rate = rate["l1_on"].median if "l1_on" in rate else nan
    lib_p99 = p99["l1_on"].median if "l1_on" in p99 else nan
    metrics["production_lookup_per_s"] = None if math.isnan(lib_rate) else lib_rate
    metrics["p99_ms"] = None if math.isnan(lib_p99) else lib_p99
    vs_mlflow = nan
    if "l1_on" in rate and "mlflow" in rate:
        vs_mlflow = ratio_of_medians(rate["l1_on"], rate["mlflow"])
        metrics["vs_mlflow_ratio_per_round"] = paired_ratios(
            rate["l1_on"].values, rate["mlflow"].values
        ).as_dict()
    metrics["vs_mlflow_ratio"] = None if math.isnan(vs_mlflow) else vs_mlflow
    if "service" in rate and "mlflow" in rate:
        metrics["service_vs_mlflow_ratio"] = ratio_of_medians(rate["service"], rate["mlflow"])
    limited = sorted(k for k, v in runs.items()
                     if any(getattr(r, "client_limited", False) for r in v))  # fmt: skip
    metrics["client_limited_variants"] = limited
    vs_ceiling = nan
    if ceiling:
        best = max(ceiling, key=lambda p: p.run.lookups_per_s)
        metrics["mlflow_ceiling"] = {
            "points": [p.to_dict() for p in ceiling],
            "best_lookups_per_s": best.run.lookups_per_s,
            "best_workers": best.workers,
            "best_clients": best.run.clients,
        }
        top = max([best.run.lookups_per_s, *([rate["mlflow"].median] if "mlflow" in rate else [])])
        if "l1_on" in rate and top > 0:
            vs_ceiling = rate["l1_on"].median / top
    metrics["vs_mlflow_ceiling_ratio"] = None if math.isnan(vs_ceiling) else vs_ceiling
    result.metrics = metrics
    # A promotion never seen, or an older version answered after a newer one, fails
    # the visibility gate whatever the lags of the others.
    visible = seen.p99_ms if not (seen.missed or seen.regressions) else math.inf
    metrics["visibility"] = {**seen.to_dict(), "lags_ms": None}
    metrics["visibility_p99_ms"] = None if math.isinf(visible) else visible
    result.gates = [
        Verdict("production_lookup_per_s", lib_rate, ">=", GATE_RATE, "lookups/s"),
        Verdict("p99_ms", lib_p99, "<=", GATE_P99_MS, "ms"),
        Verdict("visibility_p99_ms", visible, "<=", GATE_VISIBILITY_P99_MS, "ms"),
    ]
    result.goals = [
        Verdict("vs_mlflow_ratio", vs_mlflow, ">=", GOAL_VS_MLFLOW, "x"),
        Verdict("vs_mlflow_ceiling_ratio", vs_ceiling, ">=", GOAL_VS_MLFLOW, "x"),
    ]
    if rate:
        result.charts = [
            chart("Production model lookups per second (median of rounds, min..max)",
                  "lookups/s", {"lookup": rate}, target=GATE_RATE),
            chart("p99 latency of a lookup (ms)", "ms", {"lookup": p99}, target=GATE_P99_MS),
        ]  # fmt: skip
    cpus = os.cpu_count() or 1
    notes = [f"{name}: {why}" for name, why in sides.missing.items()]
    notes += [
        f"client, servers (PostgreSQL, Redis, MLflow's {plan.workers} workers) share one "
        f"{cpus}-CPU machine over loopback, uncapped",
        "l1_on / l1_off: one thread calling get_production_model back to back; p99 is the "
        "median over rounds of each round's p99",
        "HTTP variants: the same client (threads of http.client, keep-alive), closed loop; "
        "its CPU is measured and a variant whose client used >= 0.85 cores is listed in "
        "client_limited_variants (its figure is the client's, not the server's)",
        "MLflow: tracking server (uvicorn) with its job runner off, artifacts not proxied; "
        "backend store a PostgreSQL database on the cluster's primary; lookups by alias",
        "vs_mlflow_ceiling_ratio divides by MLflow's best rate over the rounds and the "
        "ceiling runs (each ceiling point is one run)",
    ]
    result.notes = notes


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    lines = []
    for name in ("l1_on", "l1_off", "mlflow", "service"):
        r = m.get(f"{name}_lookups_per_s")
        if r is None:
            why = m["unavailable"].get(name, "not measured")
            lines.append(f"  {name:<8} {why}")
            continue
        p = m[f"{name}_p99_ms"]
        c = m[f"{name}_client_cpu_cores"]
        lines.append(
            f"  {name:<8} {r['median']:12,.0f} lookups/s ({r['min']:,.0f}..{r['max']:,.0f})"
            f"   p99 {p['median']:.3f} ms   client CPU {c['median']:.2f} cores"
        )
    if m.get("vs_mlflow_ratio") is not None:
        lines.append(f"  L1 on / MLflow {m['vs_mlflow_ratio']:,.0f}x")
    if "mlflow_ceiling" in m:
        ce = m["mlflow_ceiling"]
        lines.append(
            f"  MLflow ceiling {ce['best_lookups_per_s']:,.0f} lookups/s "
            f"({ce['best_workers']} workers, {ce['best_clients']} clients)"
        )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="registry", title="Production model lookups vs MLflow", run=run)
