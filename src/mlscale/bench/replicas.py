"""``mlscale bench replicas``: what read routing costs, and what replicas add.

Two parts, each on its own local cluster:

1. **Routing overhead** (gate ``routed_overhead_ratio`` <= 1.10). On an uncapped
   cluster with one replica, one thread reads single rows by primary key from
   that replica, in a closed loop: through mlscale's router
   (``cluster.replica().fetch_one``, EVENTUAL) and through a bare psycopg_pool
   pool on the same node (autocommit, ``prepare=True``). The gate is the ratio
   of their median p50 latencies; the difference is also given in µs.
2. **Read scaling** (goal ``read_scaling_ratio`` >= 3). On a cluster whose
   every node is capped at 0.1 CPU, forked client processes saturate the
   primary alone, then the primary plus 3 replicas (a quarter of the workers
   read from the primary, the rest from the replicas through the router). The
   same cluster's ceiling for the same work is measured with pgbench -S: one
   pgbench on the primary, then 4 in parallel, one per node.

Variants alternate round by round (A, B, A, B, ...) after a warm-up; every
figure is a median with its range over rounds.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import resource
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from ..config import ClusterConfig
from ..core.topology import Node, find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect, connect_kwargs
from ..errors import MlscaleError
from ..local.binaries import find_postgres
from ..local.cgroups import Cgroups, cap_of_process, cluster_id, detect
from ..local.cluster import LocalCluster
from .compare import (
    Spread,
    ab_rounds,
    chart,
    paired_ratios,
    ratio_of_medians,
    spread_metrics,
    spreads,
)
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict
from .workers import OpFactory, Round, run_processes, run_threads

__all__ = ["BENCHMARK", "run"]

OVERHEAD_GATE = 1.10
SCALING_GOAL = 3.0
NODE_CPU = 0.1
REPLICAS = 3
ROWS = 10_000
POINT_READ = "SELECT id, payload FROM bench_replicas WHERE id = %s"
# Client processes x threads for the scaling part: far more requests in flight
# than 0.1-CPU nodes can serve, so the nodes, not the client, set the pace.
PROCESSES = 4
THREADS_PER_PROCESS = 4
# Of the workers of "primary + 3 replicas", one in this many reads from the primary.
PRIMARY_SHARE = 1 + REPLICAS
# Reads each worker makes before the timed window: every pool has its connections
# (a SCRAM login on a 0.1-CPU node takes tens of ms) and its statements prepared.
WARM_READS = 12
# pgbench -S per node: clients and threads.
PGBENCH_CLIENTS = 4
PGBENCH_THREADS = 2
# A round whose client used this share of the machine's CPUs may be client-limited.
CLIENT_BUSY_SHARE = 0.75

PRIMARY_ONLY = "primary only"
FOUR_NODES = f"primary + {REPLICAS} replicas"
ROUTED = "routed (mlscale)"
RAW = "raw psycopg_pool"


@dataclass(frozen=True, slots=True)
class Plan:
    """Rounds and their lengths for one run (quick or full)."""

    overhead_rounds: int
    overhead_round_s: float
    scaling_rounds: int
    scaling_round_s: float
    ceiling_rounds: int
    ceiling_round_s: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(5, 0.8, 5, 1.2, 1, 2)
        return cls(9, 3.0, 7, 4.0, 3, 3)


# -- data ----------------------------------------------------------------------------


def _load_table(cluster: Cluster) -> None:
    cluster.execute("CREATE TABLE bench_replicas (id int PRIMARY KEY, payload text NOT NULL)")
    cluster.execute(
        "INSERT INTO bench_replicas SELECT g, md5(g::text) FROM generate_series(1, %s) AS g",
        (ROWS,),
    )
    cluster.execute("ANALYZE bench_replicas")


def _wait_replayed(config: ClusterConfig, cluster: Cluster, timeout_s: float = 60.0) -> None:
    """Wait until every replica has replayed the primary's WAL as of now."""
    primary = find_node(cluster.nodes, cluster.primary_node())
    with connect(primary, config) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    lsn = row[0] if row else "0/0"
    deadline = time.monotonic() + timeout_s
    for name in cluster.replica_nodes():
        with connect(find_node(cluster.nodes, name), config) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                ).fetchone()
                if done and done[0]:
                    break
                if time.monotonic() > deadline:
                    raise MlscaleError(f"replica {name} did not replay {lsn} in {timeout_s:.0f} s")
                time.sleep(0.05)


def _keys(seed: int) -> Callable[[], int]:
    """A cheap source of keys: a shuffled cycle over every row, one per worker."""
    keys = list(range(1, ROWS + 1))
    random.Random(seed).shuffle(keys)
    return itertools.cycle(keys).__next__


# -- part 1: routing overhead --------------------------------------------------------------


def _routed_op(cluster: Cluster) -> OpFactory:
    def factory(i: int) -> Callable[[], object]:
        fetch = cluster.replica().fetch_one
        key = _keys(i)

        def op() -> object:
            return fetch(POINT_READ, (key(),))

        return op

    return factory


def _raw_op(pool: ConnectionPool[Any]) -> OpFactory:
    def factory(i: int) -> Callable[[], object]:
        key = _keys(i)

        def op() -> object:
            with pool.connection() as conn:
                return conn.execute(POINT_READ, (key(),), prepare=True).fetchone()

        return op

    return factory


def _overhead(
    ctx: BenchContext, plan: Plan, progress: Progress, stack: ExitStack
) -> tuple[dict[str, list[Round]], dict[str, Any]]:
    """Routed vs raw point reads on one uncapped replica; the runs, and where the
    router sent its reads (node name, reads by node, fallbacks)."""
    with progress.phase("starting an uncapped cluster (1 replica)", 1) as phase:
        local = LocalCluster(ctx.workdir / "overhead")
        stack.callback(local.destroy)
        local.up(shards=1, replicas=1, redis=False, node_cpu=None)
        config = local.config()
        cluster = stack.enter_context(Cluster(config))
        _load_table(cluster)
        _wait_replayed(config, cluster)
        phase.step("up")
    replica = cluster.replica_nodes()[0]
    node = find_node(cluster.nodes, replica)
    pool: ConnectionPool[Any] = ConnectionPool(
        "",
        kwargs={**connect_kwargs(node, config), "autocommit": True},
        min_size=1,
        max_size=1,
        name="bench-raw",
        open=True,
    )
    stack.callback(pool.close)
    pool.wait()

    def one_thread(factory: OpFactory) -> Callable[[], Round]:
        return lambda: run_threads(factory, 1, plan.overhead_round_s)

    runs = ab_rounds(
        {ROUTED: one_thread(_routed_op(cluster)), RAW: one_thread(_raw_op(pool))},
        rounds=plan.overhead_rounds,
        progress=progress,
        title="routed vs raw point reads",
    )
    reads = cluster.stats()["reads"]
    return runs, {
        "replica": replica,
        **{k: reads[k] for k in ("reads_by_node", "fallbacks_by_cause")},
    }


# -- part 2: read scaling ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCounters:
    """Per node: committed transactions, CFS periods and throttled periods (cumulative)."""

    xacts: dict[str, int]
    periods: dict[str, int]
    throttled: dict[str, int]

    def minus(self, earlier: NodeCounters) -> NodeCounters:
        def d(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
            return {k: a[k] - b.get(k, 0) for k in a}

        return NodeCounters(
            d(self.xacts, earlier.xacts),
            d(self.periods, earlier.periods),
            d(self.throttled, earlier.throttled),
        )


@dataclass(frozen=True, slots=True)
class ScaleRound:
    """One timed round of the scaling part, with what each node did meanwhile."""

    round: Round
    nodes: NodeCounters


def _cpu_stat(cgroups: Cgroups | None, root: Path, node: str) -> dict[str, int]:
    if cgroups is None:
        return {}
    path = cgroups.node_dir(cluster_id(root), node) / "cpu.stat"
    try:
        text = path.read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _counters(
    config: ClusterConfig, nodes: Sequence[Node], cgroups: Cgroups | None, root: Path
) -> NodeCounters:
    xacts, periods, throttled = {}, {}, {}
    for node in nodes:
        with connect(node, config) as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        xacts[node.name] = int(row[0]) if row else 0
        stat = _cpu_stat(cgroups, root, node.name)
        periods[node.name] = stat.get("nr_periods", 0)
        throttled[node.name] = stat.get("nr_throttled", 0)
    return NodeCounters(xacts, periods, throttled)


def _scaling_ops(cluster: Cluster, spread_over_replicas: bool) -> OpFactory:
    """Point reads from the primary, or (``spread_over_replicas``) one worker in
    ``PRIMARY_SHARE`` on the primary and the rest routed to the replicas."""

    def factory(i: int) -> Callable[[], object]:
        on_primary = not spread_over_replicas or i % PRIMARY_SHARE == 0
        scope = cluster.primary() if on_primary else cluster.replica()
        fetch = scope.fetch_one
        key = _keys(i)
        for _ in range(WARM_READS):
            fetch(POINT_READ, (key(),))

        def op() -> object:
            return fetch(POINT_READ, (key(),))

        return op

    return factory


PGBENCH_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Ceiling:
    """One pgbench -S round: transactions per second per node, pgbench's own CPU."""

    tps: dict[str, float]
    wall_s: float
    cpu_s: float

    @property
    def total(self) -> float:
        return sum(self.tps.values())

    @property
    def cpu_per_s(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Pgbench:
    """pgbench from the cluster's own PostgreSQL, pointed at its nodes by passfile."""

    def __init__(self, config: ClusterConfig) -> None:
        bindir = config.local.pg_bindir if config.local else None
        self.path = find_postgres(bindir).tool("pgbench")
        self.config = config
        passfile = config.auth.passfile
        self.env = dict(os.environ)
        if passfile is not None:
            self.env["PGPASSFILE"] = str(config.resolve(passfile))

    @property
    def available(self) -> bool:
        return os.access(self.path, os.X_OK)

    def _args(self, node: Node, *extra: str) -> list[str]:
        return [
            self.path,
            *extra,
            "-h",
            node.host,
            "-p",
            str(node.port),
            "-U",
            node.user,
            node.dbname,
        ]

    def initialize(self, primary: Node) -> None:
        """``pgbench -i -s 1`` on the primary (replicas get the tables by replication)."""
        done = subprocess.run(
            self._args(primary, "-i", "-s", "1", "-q"),
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-2:])
            raise MlscaleError(f"pgbench -i failed on {primary.name}: {tail}")

    def select_only(self, nodes: Sequence[Node], seconds: int) -> Ceiling:
        """``pgbench -S`` against every node of ``nodes`` at once, for ``seconds``."""
        extra = (
            "-S", "-n", "-M", "prepared",
            "-c", str(PGBENCH_CLIENTS), "-j", str(PGBENCH_THREADS), "-T", str(seconds),
        )  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        procs = {
            node.name: subprocess.Popen(
                self._args(node, *extra),
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            for node in nodes
        }
        outputs = {name: p.communicate() for name, p in procs.items()}
        wall_s = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        tps = {}
        for name, (out, err) in outputs.items():
            match = PGBENCH_TPS.search(out)
            if procs[name].returncode != 0 or match is None:
                tail = " ".join((err or out).strip().splitlines()[-2:])
                raise MlscaleError(f"pgbench -S failed on {name}: {tail}")
            tps[name] = float(match.group(1))
        return Ceiling(tps, wall_s, cpu_s)


def _scaling(
    ctx: BenchContext, plan: Plan, progress: Progress, stack: ExitStack, cgroups: Cgroups | None
) -> tuple[dict[str, list[ScaleRound]], dict[str, list[Ceiling]] | None, dict[str, Any], str]:
    """Primary alone vs primary + replicas at 0.1 CPU per node, and pgbench's ceiling.

    (scaling runs, ceiling runs or None without pgbench, node caps, a note on pgbench)
    """
    with progress.phase(f"starting a capped cluster ({REPLICAS} replicas, {NODE_CPU} CPU)", 1) as p:
        local = LocalCluster(ctx.workdir / "scaling")
        stack.callback(local.destroy)
        local.up(shards=1, replicas=REPLICAS, redis=False, node_cpu=NODE_CPU)
        config = local.config()
        cluster = stack.enter_context(Cluster(config))
        pids = local.processes()
        caps = {name: cap_of_process(procs[0])[1] for name, procs in pids.items() if procs}
        _load_table(cluster)
        pgbench = Pgbench(config)
        pgbench_note = ""
        if pgbench.available:
            pgbench.initialize(find_node(cluster.nodes, cluster.primary_node()))
        else:
            pgbench_note = f"no pgbench at {pgbench.path}: the ceiling was not measured"
        _wait_replayed(config, cluster)
        p.step("up")

    primary = find_node(cluster.nodes, cluster.primary_node())
    data_nodes = [primary, *(find_node(cluster.nodes, n) for n in cluster.replica_nodes())]
    root = local.root

    def variant(spread: bool) -> Callable[[], ScaleRound]:
        factory = _scaling_ops(cluster, spread)

        def one() -> ScaleRound:
            before = _counters(config, data_nodes, cgroups, root)
            r = run_processes(factory, PROCESSES, THREADS_PER_PROCESS, plan.scaling_round_s)
            after = _counters(config, data_nodes, cgroups, root)
            return ScaleRound(r, after.minus(before))

        return one

    runs = ab_rounds(
        {PRIMARY_ONLY: variant(False), FOUR_NODES: variant(True)},
        rounds=plan.scaling_rounds,
        progress=progress,
        title="primary only vs primary + replicas",
    )
    ceilings = None
    if pgbench.available:
        ceilings = ab_rounds(
            {
                PRIMARY_ONLY: lambda: pgbench.select_only([primary], plan.ceiling_round_s),
                FOUR_NODES: lambda: pgbench.select_only(data_nodes, plan.ceiling_round_s),
            },
            rounds=plan.ceiling_rounds,
            warmup=not ctx.quick,
            progress=progress,
            title="pgbench -S ceiling",
        )
    return runs, ceilings, caps, pgbench_note


# -- the benchmark -----------------------------------------------------------------------


def _busy_rounds(values: Sequence[float], limit: float) -> list[int]:
    """1-based numbers of the rounds whose client CPU reached ``limit``."""
    return [i + 1 for i, v in enumerate(values) if v >= limit]


def run(ctx: BenchContext) -> BenchResult:
    """Gate: routed / raw p50 <= 1.10. Goal: 4 nodes / primary-only reads per s >= 3."""
    result = BenchResult(
        name="replicas",
        title=(
            "Replica reads: routing overhead vs raw psycopg_pool, and read throughput of "
            f"a primary + {REPLICAS} replicas vs the primary alone at {NODE_CPU} CPU per node"
        ),
    )
    plan = Plan.of(ctx.quick)
    cpus = os.cpu_count() or 1
    busy_cpus = CLIENT_BUSY_SHARE * cpus
    result.params = {
        "query": POINT_READ,
        "rows": ROWS,
        "overhead": {
            "rounds": plan.overhead_rounds,
            "round_s": plan.overhead_round_s,
            "threads": 1,
            "node_cpu": None,
            "routed": "cluster.replica().fetch_one (EVENTUAL)",
            "raw": "psycopg_pool.ConnectionPool, autocommit, execute(prepare=True)",
        },
        "scaling": {
            "rounds": plan.scaling_rounds,
            "round_s": plan.scaling_round_s,
            "node_cpu": NODE_CPU,
            "replicas": REPLICAS,
            "processes": PROCESSES,
            "threads_per_process": THREADS_PER_PROCESS,
            "primary_share_of_workers": 1 / PRIMARY_SHARE,
        },
        "ceiling": {
            "tool": "pgbench -S -n -M prepared",
            "scale": 1,
            "clients_per_node": PGBENCH_CLIENTS,
            "threads_per_node": PGBENCH_THREADS,
            "rounds": plan.ceiling_rounds,
            "round_s": plan.ceiling_round_s,
        },
        "client_busy_cpus": busy_cpus,
    }
    cgroups, why = detect()
    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        overhead_runs, routing = _overhead(ctx, plan, progress, stack)
    scaling = None
    if cgroups is not None:
        with ExitStack() as stack:
            scaling = _scaling(ctx, plan, progress, stack, cgroups)

    # -- part 1 figures
    p50_us = spreads(overhead_runs, lambda r: r.latency_ms((50,))["p50"] * 1000)
    rate = spreads(overhead_runs, lambda r: r.rate)
    cpu1 = spreads(overhead_runs, lambda r: r.cpu_per_s)
    overhead_ratio = ratio_of_medians(p50_us[ROUTED], p50_us[RAW])
    overhead_us = p50_us[ROUTED].median - p50_us[RAW].median
    per_round = paired_ratios(p50_us[ROUTED].values, p50_us[RAW].values)
    names1 = {ROUTED: "routed", RAW: "raw"}
    result.metrics = {
        **spread_metrics({names1[k]: v for k, v in p50_us.items()}, "_read_p50_us"),
        **spread_metrics({names1[k]: v for k, v in rate.items()}, "_reads_per_s"),
        **spread_metrics({names1[k]: v for k, v in cpu1.items()}, "_client_cpu_per_s"),
        "routed_overhead_ratio": overhead_ratio,
        "routed_overhead_ratio_per_round": per_round.as_dict(),
        "routed_overhead_us": overhead_us,
        "routed_over_raw_throughput": ratio_of_medians(rate[ROUTED], rate[RAW]),
        "overhead_routing": routing,
    }
    result.gates.append(Verdict("routed_overhead_ratio", overhead_ratio, "<=", OVERHEAD_GATE, "x"))
    result.charts = [
        chart(
            "Point read latency, p50 (1 thread, uncapped replica)",
            "µs",
            {"median of rounds": {k: v for k, v in p50_us.items()}},
        ),
        chart(
            "Routed / raw p50 latency",
            "x",
            {"ratio per round": {"routed / raw": per_round}},
            target=OVERHEAD_GATE,
        ),
        chart(
            "Point read throughput (1 thread, uncapped replica)",
            "reads/s",
            {"median of rounds": {k: v for k, v in rate.items()}},
        ),
    ]
    result.notes.append(
        f"routing costs {overhead_us:.1f} µs per point read at p50 "
        f"({p50_us[ROUTED].median:.1f} µs routed vs {p50_us[RAW].median:.1f} µs raw, "
        f"ratio {overhead_ratio:.3f}; gate <= {OVERHEAD_GATE})"
    )

    # -- part 2 figures
    if scaling is None:
        result.notes.append(
            f"no CPU caps possible here ({why}): the read scaling part was not run; "
            "the goal cannot be met"
        )
        result.goals.append(Verdict("read_scaling_ratio", float("nan"), ">=", SCALING_GOAL, "x"))
        return result
    runs, ceilings, caps, pgbench_note = scaling
    names2 = {PRIMARY_ONLY: "primary_only", FOUR_NODES: "four_nodes"}
    tput = spreads(runs, lambda s: s.round.rate)
    cpu2 = spreads(runs, lambda s: s.round.cpu_per_s)
    scaling_ratio = ratio_of_medians(tput[FOUR_NODES], tput[PRIMARY_ONLY])
    scaling_per_round = paired_ratios(tput[FOUR_NODES].values, tput[PRIMARY_ONLY].values)
    busy = {names2[k]: _busy_rounds(v.values, busy_cpus) for k, v in cpu2.items()}
    share = {names2[k]: _node_share([s.nodes for s in rs]) for k, rs in runs.items()}
    result.metrics.update(
        {
            **spread_metrics({names2[k]: v for k, v in tput.items()}, "_reads_per_s"),
            **spread_metrics(
                {names2[k]: v for k, v in cpu2.items()}, "_client_cpu_per_s", with_values=True
            ),
            "read_scaling_ratio": scaling_ratio,
            "read_scaling_ratio_per_round": scaling_per_round.as_dict(),
            "client_limited_rounds": busy,
            "node_load": share,
            "errors": {names2[k]: sum(s.round.errors for s in rs) for k, rs in runs.items()},
        }
    )
    result.goals.append(Verdict("read_scaling_ratio", scaling_ratio, ">=", SCALING_GOAL, "x"))
    tput_groups: dict[str, dict[str, Spread]] = {"mlscale point reads": dict(tput)}
    ratio_groups: dict[str, dict[str, Spread]] = {
        "mlscale, per round": {f"{FOUR_NODES} / {PRIMARY_ONLY}": scaling_per_round}
    }
    if ceilings is not None:
        ctps = spreads(ceilings, lambda c: c.total)
        ccpu = spreads(ceilings, lambda c: c.cpu_per_s)
        cratio = ratio_of_medians(ctps[FOUR_NODES], ctps[PRIMARY_ONLY])
        cper_round = paired_ratios(ctps[FOUR_NODES].values, ctps[PRIMARY_ONLY].values)
        result.metrics.update(
            {
                "ceiling_primary_tps": ctps[PRIMARY_ONLY].as_dict(),
                "ceiling_4_nodes_tps": ctps[FOUR_NODES].as_dict(),
                "ceiling_ratio": cratio,
                "ceiling_4_nodes_tps_by_node": {
                    name: Spread.of([c.tps[name] for c in ceilings[FOUR_NODES]]).as_dict()
                    for name in ceilings[FOUR_NODES][0].tps
                },
                "ceiling_pgbench_cpu_per_s": spread_metrics(
                    {names2[k]: v for k, v in ccpu.items()}
                ),
                "mlscale_share_of_ceiling": {
                    names2[k]: tput[k].median / ctps[k].median for k in (PRIMARY_ONLY, FOUR_NODES)
                },
            }
        )
        tput_groups["pgbench -S ceiling"] = dict(ctps)
        ratio_groups["pgbench -S ceiling, per round"] = {
            f"{FOUR_NODES} / {PRIMARY_ONLY}": cper_round
        }
        result.notes.append(
            f"ceiling (pgbench -S -M prepared, {PGBENCH_CLIENTS} clients per node): "
            f"{ctps[PRIMARY_ONLY].median:.0f} tps on the primary alone, "
            f"{ctps[FOUR_NODES].median:.0f} tps on 4 nodes in parallel (ratio {cratio:.2f}); "
            f"mlscale reached {tput[PRIMARY_ONLY].median / ctps[PRIMARY_ONLY].median:.0%} and "
            f"{tput[FOUR_NODES].median / ctps[FOUR_NODES].median:.0%} of them"
        )
    else:
        result.notes.append(pgbench_note)
    result.charts += [
        chart(f"Read throughput at {NODE_CPU} CPU per node", "reads/s", tput_groups),
        chart(
            f"Read scaling: {FOUR_NODES} / {PRIMARY_ONLY}",
            "x",
            ratio_groups,
            target=SCALING_GOAL,
        ),
        chart(
            "Client CPU in the scaling rounds",
            "CPUs",
            {"client CPU per wall second": dict(cpu2)},
        ),
    ]
    result.machine = {"node_cpu_caps": caps, "cgroup_version": cgroups.version if cgroups else None}
    result.notes.append(
        f"this machine has {cpus} CPUs; each of the {1 + REPLICAS} data nodes is capped at "
        f"{NODE_CPU} CPU ({(1 + REPLICAS) * NODE_CPU:.1f} CPU in all, the idle control node "
        f"capped too), so the client has the rest"
    )
    result.notes.append(
        f"client CPU per wall second: {cpu2[PRIMARY_ONLY].median:.2f} "
        f"({cpu2[PRIMARY_ONLY].low:.2f}..{cpu2[PRIMARY_ONLY].high:.2f}) primary only, "
        f"{cpu2[FOUR_NODES].median:.2f} ({cpu2[FOUR_NODES].low:.2f}..{cpu2[FOUR_NODES].high:.2f}) "
        f"4 nodes; " + _busy_note(busy, busy_cpus)
    )
    result.notes.append(_saturation_note(share))
    return result


def _node_share(counters: Sequence[NodeCounters]) -> dict[str, dict[str, float]]:
    """Per node over all rounds: share of the transactions, share of CFS periods throttled."""
    xacts: dict[str, int] = {}
    periods: dict[str, int] = {}
    throttled: dict[str, int] = {}
    for c in counters:
        for name in c.xacts:
            xacts[name] = xacts.get(name, 0) + c.xacts[name]
            periods[name] = periods.get(name, 0) + c.periods.get(name, 0)
            throttled[name] = throttled.get(name, 0) + c.throttled.get(name, 0)
    total = sum(xacts.values()) or 1
    return {
        name: {
            "xact_share": xacts[name] / total,
            "throttled_share": throttled[name] / periods[name] if periods[name] else 0.0,
        }
        for name in xacts
    }


def _busy_note(busy: Mapping[str, list[int]], limit: float) -> str:
    labelled = {k: v for k, v in busy.items() if v}
    if not labelled:
        return f"no round reached {limit:.1f} CPUs: the client did not limit these rounds"
    parts = "; ".join(f"{k} rounds {', '.join(map(str, v))}" for k, v in labelled.items())
    return f"client-limited (client CPU >= {limit:.1f}): {parts}"


def _saturation_note(share: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    four = share.get("four_nodes", {})
    parts = ", ".join(
        f"{name} {v['xact_share']:.0%} of reads, throttled in {v['throttled_share']:.0%} "
        "of its CPU periods"
        for name, v in four.items()
    )
    return f"{FOUR_NODES}: {parts}"


BENCHMARK = Benchmark(name="replicas", title="Replica reads", run=run)
