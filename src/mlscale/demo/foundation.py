"""Chapter 1, foundation: one primary, two streaming replicas, an ML-shaped data set.

Workloads, each measured on the cluster it is given:

- load user features (id, click-through rate, sessions, country, embedding)
  with COPY;
- how soon a prediction committed on the primary is visible on a replica;
- point reads of user features with a new connection per read vs through the
  pool, then on the replicas vs on the primary, in alternating rounds;
- prediction logging: single-row inserts through the pool.

The tables live in their own schema, ``mlscale_demo``, dropped and recreated
on every run, so a user's cluster keeps its own tables untouched.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ..bench.compare import ab_rounds, spread
from ..bench.histogram import Histogram
from ..bench.workers import OpFactory, Round, run_threads
from ..core.topology import find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect
from ..engine.scopes_sync import Scope
from ..errors import MlscaleError

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["ChapterResult", "Params", "Row", "compare_rates", "needs", "run_foundation"]

log = logging.getLogger(__name__)

DROP_SCHEMA: Final = "DROP SCHEMA IF EXISTS mlscale_demo CASCADE"
CREATE: Final = (
    "CREATE SCHEMA mlscale_demo",
    "CREATE TABLE mlscale_demo.user_features ("
    " user_id bigint PRIMARY KEY, ctr real, sessions_7d int, country text,"
    " embedding real[], updated_at timestamptz DEFAULT now())",
    "CREATE TABLE mlscale_demo.predictions ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint, model text,"
    " score real, created_at timestamptz DEFAULT now())",
)
COPY_USERS: Final = (
    "COPY mlscale_demo.user_features (user_id, ctr, sessions_7d, country, embedding) FROM STDIN"
)
READ_USER: Final = (
    "SELECT ctr, sessions_7d, country, embedding FROM mlscale_demo.user_features WHERE user_id = %s"
)
INSERT_PREDICTION: Final = (
    "INSERT INTO mlscale_demo.predictions (user_id, model, score) VALUES (%s, %s, %s) RETURNING id"
)
SEEN_PREDICTION: Final = "SELECT 1 FROM mlscale_demo.predictions WHERE id = %s"
# A client busy on at least this share of the machine's CPUs leaves the servers so
# little that its rates are labelled as partly limited by the client.
CLIENT_HEAVY: Final = 0.5
COUNTRIES: Final = ("de", "fr", "us", "br", "in", "jp", "ng", "gb")
MODELS: Final = ("ctr-v1", "ctr-v2")


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes and durations of one run: counts, seconds, threads."""

    users: int
    embedding_dim: int
    visibility_samples: int
    rounds: int
    round_s: float
    warmup_s: float
    threads: int
    write_s: float
    replication_timeout_s: float
    seed: int

    @classmethod
    def for_run(cls, *, quick: bool) -> Params:
        """The quick (test-sized) or full parameters."""
        return cls(
            users=5_000 if quick else 50_000,
            embedding_dim=16,
            visibility_samples=50 if quick else 300,
            rounds=5,
            round_s=0.5 if quick else 2.0,
            warmup_s=0.25 if quick else 0.5,
            threads=4,
            write_s=1.0 if quick else 3.0,
            replication_timeout_s=60.0,
            seed=7,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the printed table: what, how much, in what unit, measured how."""

    figure: str
    value: str
    unit: str
    how: str


@dataclass
class ChapterResult:
    """Figures of a chapter: numbers for JSON, raw rounds, table rows, notes for the reader."""

    metrics: dict[str, Any] = field(default_factory=dict)
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Echo = Callable[[str], None]


# -- data set -------------------------------------------------------------------


def create_tables(cluster: Cluster) -> None:
    """(Re)create the demo schema and its two tables on the first primary."""
    cluster.execute(DROP_SCHEMA)
    for statement in CREATE:
        cluster.execute(statement)


def drop_tables(cluster: Cluster) -> None:
    """Remove the demo schema from the first primary."""
    cluster.execute(DROP_SCHEMA)


def user_rows(params: Params) -> list[tuple[int, float, int, str, list[float]]]:
    """``params.users`` synthetic user-feature rows, the same for the same seed."""
    rng = random.Random(params.seed)
    return [
        (
            user_id,
            round(rng.betavariate(2, 30), 4),
            rng.randint(0, 60),
            rng.choice(COUNTRIES),
            [round(rng.gauss(0.0, 1.0), 4) for _ in range(params.embedding_dim)],
        )
        for user_id in range(1, params.users + 1)
    ]


def load_users(cluster: Cluster, params: Params) -> float:
    """COPY the user features into the primary; seconds from first row to commit."""
    rows = user_rows(params)
    t0 = time.perf_counter()
    cluster.copy(COPY_USERS, rows)
    seconds = time.perf_counter() - t0
    cluster.execute("ANALYZE mlscale_demo.user_features")
    return seconds


def wait_replicas_caught_up(cluster: Cluster, timeout_s: float) -> float:
    """Wait until every replica has replayed the primary's current WAL; seconds waited."""
    t0 = time.perf_counter()
    target = cluster.primary().fetch_value("SELECT pg_current_wal_lsn()::text")
    if target is None:
        raise MlscaleError("the primary returned no WAL position")
    for name in cluster.replica_nodes():
        while True:
            with cluster.connection(name) as conn:
                seen = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
            if seen and seen[0]:
                break
            if time.perf_counter() - t0 > timeout_s:
                raise MlscaleError(
                    f"replica {name} has not replayed WAL position {target} after "
                    f"{timeout_s:.0f} s; check its postgres.log"
                )
            time.sleep(0.005)
    return time.perf_counter() - t0


# -- replication visibility -------------------------------------------------------


def replica_visibility(cluster: Cluster, params: Params) -> list[float]:
    """Seconds from a commit returning on the primary until a replica shows the row.

    Dedicated autocommit connections (not pooled: they are the instrument, not
    the thing measured); the replicas take turns, each polled back to back.
    """
    rng = random.Random(params.seed + 1)
    nodes = [
        find_node(cluster.nodes, n) for n in (cluster.primary_node(), *cluster.replica_nodes())
    ]
    delays: list[float] = []
    with ExitStack() as stack:
        writer, *readers = (stack.enter_context(connect(n, cluster.config)) for n in nodes)
        for i in range(params.visibility_samples):
            reader = readers[i % len(readers)]
            row = writer.execute(
                INSERT_PREDICTION, (rng.randint(1, params.users), MODELS[0], rng.random())
            ).fetchone()
            t0 = time.perf_counter()
            if row is None:
                raise MlscaleError("INSERT ... RETURNING returned no row")
            while reader.execute(SEEN_PREDICTION, (row[0],)).fetchone() is None:
                if time.perf_counter() - t0 > params.replication_timeout_s:
                    raise MlscaleError(
                        f"prediction {row[0]} is not visible on a replica after "
                        f"{params.replication_timeout_s:.0f} s; is replication running?"
                    )
            delays.append(time.perf_counter() - t0)
    return delays


# -- operations repeated by the timed rounds ----------------------------------------


def _check_found(row: object, user_id: int, node: str) -> None:
    if row is None:
        raise MlscaleError(f"user {user_id} is missing on node {node}")


def pooled_reads(scope: Scope, where: str, params: Params) -> OpFactory:
    """Point reads of random users through ``scope`` (the primary or the replicas, in turn)."""

    def make(index: int) -> Callable[[], object]:
        rng = random.Random(params.seed * 1000 + index)

        def op() -> None:
            user_id = rng.randint(1, params.users)
            _check_found(scope.fetch_one(READ_USER, (user_id,)), user_id, where)

        return op

    return make


def unpooled_reads(cluster: Cluster, node_name: str, params: Params) -> OpFactory:
    """Point reads of random users, each on a new connection (scram auth) closed after."""
    node = find_node(cluster.nodes, node_name)

    def make(index: int) -> Callable[[], object]:
        rng = random.Random(params.seed * 1000 + index)

        def op() -> None:
            user_id = rng.randint(1, params.users)
            with connect(node, cluster.config) as conn:
                _check_found(conn.execute(READ_USER, (user_id,)).fetchone(), user_id, node_name)

        return op

    return make


def prediction_writes(cluster: Cluster, params: Params) -> OpFactory:
    """One prediction per transaction, inserted through the primary's pool."""

    def make(index: int) -> Callable[[], object]:
        rng = random.Random(params.seed * 2000 + index)

        def op() -> None:
            cluster.execute(
                INSERT_PREDICTION,
                (rng.randint(1, params.users), rng.choice(MODELS), rng.random()),
            )

        return op

    return make


# -- the chapter: each step measures, then adds its figures and table rows ---------


def _fmt(x: float) -> str:
    """A figure for the table: whole numbers from 100 up, else three significant digits."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _round_dict(r: Round) -> dict[str, Any]:
    """A thread round as the demo's JSON has always shown it."""
    return {
        "threads": r.workers,
        "ops": r.ops,
        "wall_s": r.wall_s,
        "per_s": r.rate,
        "client_cpu_s": r.cpu_s,
        "client_cpu_per_s": r.cpu_per_s,
        "latency_ms": r.latency_ms(),
    }


def _step_load(cluster: Cluster, params: Params, result: ChapterResult) -> None:
    m = result.metrics
    create_tables(cluster)
    m["load_s"] = load_users(cluster, params)
    m["load_rows_per_s"] = params.users / m["load_s"]
    log.info("loaded %d users in %.3f s", params.users, m["load_s"])
    result.rows.append(
        Row(
            "user features loaded",
            _fmt(m["load_rows_per_s"]),
            "rows/s",
            f"COPY of {params.users:,} rows ({params.embedding_dim}-dim embeddings), one commit",
        )
    )
    m["replica_catchup_s"] = wait_replicas_caught_up(cluster, params.replication_timeout_s)
    result.rows.append(
        Row(
            "replicas caught up after load",
            _fmt(m["replica_catchup_s"] * 1000),
            "ms",
            f"until {len(cluster.replica_nodes())} replicas replayed the primary's WAL position",
        )
    )


def _step_visibility(cluster: Cluster, params: Params, result: ChapterResult) -> None:
    vis = Histogram.of(replica_visibility(cluster, params)).summary_ms((50, 95))
    result.metrics["replica_visibility_ms"] = {**vis, "samples": params.visibility_samples}
    result.rows.append(
        Row(
            "commit visible on a replica",
            f"p50 {_fmt(vis['p50'])}, p95 {_fmt(vis['p95'])}, max {_fmt(vis['max'])}",
            "ms",
            f"{params.visibility_samples} inserts; commit returned -> replica poll sees the row",
        )
    )


def compare_rates(
    result: ChapterResult,
    params: Params,
    ratio: tuple[str, str, str],
    variants: dict[str, tuple[str, OpFactory]],
    *,
    threads: int | None = None,
    unit: str = "reads/s",
) -> None:
    """Two variants in alternating rounds: rates, their ratio, the client's CPU use.

    ``ratio`` is (metric key, table label, how measured); the ratio is the
    first variant's median over the second's. ``threads`` defaults to
    ``params.threads``; ``unit`` names what the rates count.
    """
    threads = params.threads if threads is None else threads
    runs = {
        name: partial(run_threads, make, threads=threads, duration_s=params.round_s)
        for name, (_, make) in variants.items()
    }
    for _, make in variants.values():  # fill the pools, warm the caches; not counted
        run_threads(make, threads=threads, duration_s=params.warmup_s)
    rounds = ab_rounds(runs, rounds=params.rounds, warmup=False)
    how = f"median (min..max) of {params.rounds} alternating rounds of {params.round_s:g} s, "
    how += f"{threads} thread{'s' if threads != 1 else ''}"
    medians, cpus = [], []
    machine_cpus = os.cpu_count() or 1
    for name, (label, _) in variants.items():
        rates = spread([r.rate for r in rounds[name]])
        cpu = spread([r.cpu_per_s for r in rounds[name]])
        result.metrics[f"{name}_per_s"] = rates.as_dict()
        result.metrics[f"{name}_client_cpu_per_s"] = cpu.as_dict()
        result.rounds[name] = [_round_dict(r) for r in rounds[name]]
        value = f"{_fmt(rates.median)} ({_fmt(rates.low)}..{_fmt(rates.high)})"
        result.rows.append(Row(label, value, unit, how))
        medians.append(rates.median)
        cpus.append(f"{cpu.median:.2f}")
        if cpu.median >= CLIENT_HEAVY * machine_cpus:
            result.notes.append(
                f"'{label}': this client used {cpu.median:.2f} of the machine's {machine_cpus} "
                "CPUs, so that rate is partly limited by the client, not only by the servers."
            )
    key, label, ratio_how = ratio
    result.metrics[key] = medians[0] / medians[1]
    result.rows.append(Row(label, f"{result.metrics[key]:.2f}", "x", ratio_how))
    result.rows.append(
        Row(
            "  client CPU in those rounds",
            " | ".join(cpus),
            "CPU-s/s",
            "median process_time / wall time of this client (all threads), same order",
        )
    )


def _step_writes(cluster: Cluster, params: Params, result: ChapterResult) -> None:
    writes = run_threads(
        prediction_writes(cluster, params), threads=params.threads, duration_s=params.write_s
    )
    lat = writes.latency_ms((50, 99))
    result.metrics["prediction_writes_per_s"] = writes.rate
    result.metrics["prediction_write_latency_ms"] = lat
    result.rounds["prediction_writes"] = [_round_dict(writes)]
    result.rows.append(
        Row(
            "prediction inserts",
            _fmt(writes.rate),
            "writes/s",
            f"{params.threads} threads for {params.write_s:g} s, one row per commit, pooled",
        )
    )
    result.rows.append(
        Row(
            "prediction insert latency",
            f"p50 {_fmt(lat['p50'])}, p99 {_fmt(lat['p99'])}",
            "ms",
            "same run; each insert including its commit",
        )
    )


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if not config.shard_groups[0].replicas:
        return (
            f"the foundation chapter needs a replica in shard group {config.shard_groups[0].name}"
        )
    return None


def run_foundation(cluster: Cluster, params: Params, echo: Echo) -> ChapterResult:
    """Load the data set and run every workload of the chapter on ``cluster``."""
    replicas, primary = cluster.replica_nodes(), cluster.primary_node()
    if not replicas:
        raise MlscaleError("the demo needs a cluster with at least one replica")
    result = ChapterResult()

    echo(f"loading {params.users:,} users into {primary} ...")
    _step_load(cluster, params, result)

    echo(f"replica visibility: {params.visibility_samples} commits ...")
    _step_visibility(cluster, params, result)

    echo("point reads: a new connection per read vs the pool ...")
    compare_rates(
        result,
        params,
        ("pooled_over_unpooled", "pooled / new-connection reads", "ratio of medians, same run"),
        {
            "reads_pooled": (
                "point reads, pooled",
                pooled_reads(cluster.primary(), primary, params),
            ),
            "reads_unpooled": (
                "point reads, new connection each",
                unpooled_reads(cluster, primary, params),
            ),
        },
    )

    echo(f"point reads: {len(replicas)} replicas vs the primary ...")
    compare_rates(
        result,
        params,
        (
            "replicas_over_primary",
            "replicas / primary reads",
            "ratio of medians, same run; all nodes share this machine's CPUs",
        ),
        {
            "reads_replicas": (
                f"point reads, {len(replicas)} replicas",
                pooled_reads(cluster.replica(), "a replica", params),
            ),
            "reads_primary": (
                "point reads, primary only",
                pooled_reads(cluster.primary(), primary, params),
            ),
        },
    )

    echo("prediction logging writes ...")
    _step_writes(cluster, params, result)

    result.notes.insert(
        0,
        f"all nodes and this client share this machine's {os.cpu_count()} CPUs (no CPU caps yet): "
        "replicas bring no CPU of their own here, so they are not expected to multiply "
        "reads; and CPU the client uses (rows 'client CPU') is CPU the servers cannot.",
    )
    return result
