"""``mlscale bench replicas``: what read routing costs, and what replicas add.

Two parts, each on its own local cluster:

1. **Routing overhead** (gate ``routed_overhead_ratio`` <= 1.10). On an uncapped
   cluster with one replica, one thread reads single rows by primary key from
   that replica in a closed loop: through mlscale's router
   (``cluster.replica().fetch_one``, EVENTUAL) and through a bare psycopg_pool
   pool on the same node (autocommit, ``prepare=True``). The gate is the ratio
   of their median p50 latencies; the difference is also given in µs.
2. **Read scaling** (goal ``read_scaling_ratio`` >= 3). On a cluster whose
   every node is capped at 0.1 CPU, forked client processes load the primary
   alone, then the primary plus 3 replicas (a quarter of the workers on the
   primary, the rest routed to the replicas), with the same number of reads in
   flight per node. The machine's ceiling for the same work is measured on the
   same cluster with pgbench -S: one pgbench on the primary, then one per node,
   4 in parallel.

Variants alternate round by round (A, B, A, B, ...) after a warm-up; every
figure is a median with its range over rounds. The client's CPU is measured
in every round, and rounds where the client itself was busy are labelled.
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
from dataclasses import dataclass, field
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
# Client processes for the scaling part. Each runs one thread per node it loads
# (primary only: 1; primary + replicas: 1 + REPLICAS, thread 0 on the primary, the
# others routed to the replicas), so every node has about PROCESSES reads in
# flight: what pgbench -S needs to saturate one. More backends on a 0.1-CPU node
# only add context switches, which would flatter the ratio by slowing "primary only".
PROCESSES = 4
# Reads each worker makes before the timed window. Every round forks new client
# processes with empty pools; these reads let the pools grow to the process's
# concurrency (a login costs a 0.1-CPU node 100 ms or more) and prepare the
# statement (psycopg prepares it on its 5th execution on a connection).
WARM_READS = 20
# pgbench -S per node: clients and threads.
PGBENCH_CLIENTS = 4
PGBENCH_THREADS = 2
# A round whose client used this share of the machine's CPUs may be client-limited;
# one in which this share of the machine's CPUs was busy (the client, the nodes and
# whatever else runs here) may be limited by the machine.
CLIENT_BUSY_SHARE = 0.75
MACHINE_BUSY_SHARE = 0.9

# Variant names, as shown in progress and charts.
ROUTED = "routed (mlscale)"
RAW = "raw psycopg_pool"
PRIMARY_ONLY = "primary only"
FOUR_NODES = f"primary + {REPLICAS} replicas"
CEILING_PRIMARY = "pgbench -S, primary only"
CEILING_FOUR = f"pgbench -S, {1 + REPLICAS} nodes"
# Full runs also try the replicas picked by fewest reads in flight instead of the
# default round robin: with closed-loop clients, round robin sends every replica
# the same number of reads, so the slowest one sets the pace of all.
ADAPTIVE_POLICY = "least_outstanding"
FOUR_NODES_ADAPTIVE = f"{FOUR_NODES}, {ADAPTIVE_POLICY}"
# ... and as metric name prefixes.
KEYS = {
    ROUTED: "routed",
    RAW: "raw",
    PRIMARY_ONLY: "primary_only",
    FOUR_NODES: "four_nodes",
    CEILING_PRIMARY: "ceiling_primary",
    CEILING_FOUR: "ceiling_4_nodes",
    FOUR_NODES_ADAPTIVE: f"four_nodes_{ADAPTIVE_POLICY}",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """Rounds and their lengths for one run (quick or full)."""

    overhead_rounds: int
    overhead_round_s: float
    scaling_rounds: int
    scaling_round_s: float
    ceiling_round_s: int
    # Full runs warm up with a whole unrecorded scaling round, measure the ceiling
    # in every scaling round (quick runs: once, after them) and add a variant with
    # the adaptive replica policy. Quick runs rely on each worker's WARM_READS.
    full: bool

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(5, 0.4, 5, 0.6, 1, False)
        return cls(7, 3.0, 7, 2.5, 2, True)


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


def routed_op(cluster: Cluster) -> OpFactory:
    """Point reads through the router, on the replicas (EVENTUAL)."""

    def factory(i: int) -> Callable[[], object]:
        fetch = cluster.replica().fetch_one
        key = _keys(i)

        def op() -> object:
            return fetch(POINT_READ, (key(),))

        return op

    return factory


def raw_op(pool: ConnectionPool[Any]) -> OpFactory:
    """The same point reads on a bare psycopg_pool pool, statement prepared."""

    def factory(i: int) -> Callable[[], object]:
        key = _keys(i)

        def op() -> object:
            with pool.connection() as conn:
                return conn.execute(POINT_READ, (key(),), prepare=True).fetchone()

        return op

    return factory


@dataclass
class Overhead:
    """What part 1 measured: rounds per variant, and where the router sent its reads."""

    runs: dict[str, list[Round]]
    replica: str
    routed_reads: dict[str, Any]
    machine_busy_cpus: float


def _overhead(ctx: BenchContext, plan: Plan, progress: Progress) -> Overhead:
    """Routed vs raw point reads from one thread on one uncapped replica."""
    with ExitStack() as stack:
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
        pool: ConnectionPool[Any] = ConnectionPool(
            "",
            kwargs={
                **connect_kwargs(find_node(cluster.nodes, replica), config),
                "autocommit": True,
            },
            min_size=1,
            max_size=1,
            name="bench-raw",
            open=True,
        )
        stack.callback(pool.close)
        pool.wait()

        def one_thread(factory: OpFactory) -> Callable[[], Round]:
            return lambda: run_threads(factory, 1, plan.overhead_round_s)

        busy0, total0 = _machine_ticks()
        runs = ab_rounds(
            {ROUTED: one_thread(routed_op(cluster)), RAW: one_thread(raw_op(pool))},
            rounds=plan.overhead_rounds,
            progress=progress,
            title="routed vs raw point reads",
        )
        busy1, total1 = _machine_ticks()
        reads = cluster.stats().reads
        routed = {
            "reads_by_node": dict(reads.reads_by_node),
            "fallbacks_by_cause": dict(reads.fallbacks_by_cause),
            "retries": reads.retries,
        }
    cpus = os.cpu_count() or 1
    machine = cpus * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    return Overhead(runs, replica, routed, machine)


# -- part 2: read scaling ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCounters:
    """Per node: committed transactions, CFS periods and throttled periods; for the
    whole machine: busy and total CPU time in clock ticks (all cumulative)."""

    xacts: dict[str, int]
    periods: dict[str, int]
    throttled: dict[str, int]
    machine_busy: int = 0
    machine_total: int = 0

    def minus(self, earlier: NodeCounters) -> NodeCounters:
        def d(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
            return {k: a[k] - b.get(k, 0) for k in a}

        return NodeCounters(
            d(self.xacts, earlier.xacts),
            d(self.periods, earlier.periods),
            d(self.throttled, earlier.throttled),
            self.machine_busy - earlier.machine_busy,
            self.machine_total - earlier.machine_total,
        )

    def machine_busy_cpus(self, cpus: int) -> float:
        """How many of the machine's ``cpus`` were busy on average (0 if unknown)."""
        return cpus * self.machine_busy / self.machine_total if self.machine_total else 0.0


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks; (0, 0) if
    /proc/stat is unreadable. Steal time counts as busy: the CPU was not ours."""
    try:
        with open("/proc/stat") as f:
            first = f.readline().split()
    except OSError:
        return 0, 0
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total


def _cpu_stat(cgroups: Cgroups | None, root: Path, node: str) -> dict[str, int]:
    """A node cgroup's ``cpu.stat`` (nr_periods, nr_throttled, ...); empty if unreadable."""
    if cgroups is None:
        return {}
    try:
        text = (cgroups.node_dir(cluster_id(root), node) / "cpu.stat").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


class NodeProbe:
    """Reads the data nodes' counters on connections held open: a login costs a
    0.1-CPU node 100 ms or more, too much to pay before and after every round."""

    def __init__(
        self,
        config: ClusterConfig,
        nodes: Sequence[Node],
        cgroups: Cgroups | None,
        root: Path,
        stack: ExitStack,
    ) -> None:
        self.conns = {node.name: stack.enter_context(connect(node, config)) for node in nodes}
        self.cgroups = cgroups
        self.root = root

    def read(self) -> NodeCounters:
        xacts, periods, throttled = {}, {}, {}
        for name, conn in self.conns.items():
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                prepare=True,
            ).fetchone()
            xacts[name] = int(row[0]) if row else 0
            stat = _cpu_stat(self.cgroups, self.root, name)
            periods[name] = stat.get("nr_periods", 0)
            throttled[name] = stat.get("nr_throttled", 0)
        return NodeCounters(xacts, periods, throttled, *_machine_ticks())


@dataclass(frozen=True, slots=True)
class Sample:
    """One round of the scaling part, by mlscale or by pgbench.

    ``reads_per_s`` counts successful reads (pgbench: transactions of one read);
    ``client_cpu_per_s`` is the client's CPU per wall second; ``nodes`` what each
    node did meanwhile; ``by_node_per_s`` pgbench's own figure per node.
    """

    reads_per_s: float
    client_cpu_per_s: float
    nodes: NodeCounters
    errors: int = 0
    by_node_per_s: dict[str, float] = field(default_factory=dict)


def scaling_ops(cluster: Cluster, spread_over_replicas: bool) -> OpFactory:
    """Point reads on the primary, or (``spread_over_replicas``) thread 0 of each
    process on the primary and the others routed to the replicas."""

    def factory(i: int) -> Callable[[], object]:
        on_primary = not spread_over_replicas or i % (1 + REPLICAS) == 0
        fetch = (cluster.primary() if on_primary else cluster.replica()).fetch_one
        key = _keys(i)
        for _ in range(WARM_READS):
            fetch(POINT_READ, (key(),))

        def op() -> object:
            return fetch(POINT_READ, (key(),))

        return op

    return factory


PGBENCH_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding)", re.MULTILINE)


class Pgbench:
    """pgbench from the cluster's own PostgreSQL, pointed at its nodes by passfile."""

    def __init__(self, config: ClusterConfig) -> None:
        bindir = config.local.pg_bindir if config.local else None
        self.path = find_postgres(bindir).tool("pgbench")
        self.env = dict(os.environ)
        if config.auth.passfile is not None:
            self.env["PGPASSFILE"] = str(config.resolve(config.auth.passfile))

    @property
    def available(self) -> bool:
        return os.access(self.path, os.X_OK)

    def _args(self, node: Node, *extra: str) -> list[str]:
        where = ["-h", node.host, "-p", str(node.port), "-U", node.user, node.dbname]
        return [self.path, *extra, *where]

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

    def select_only(self, nodes: Sequence[Node], seconds: int) -> tuple[dict[str, float], float]:
        """``pgbench -S`` on every node of ``nodes`` at once for ``seconds``:
        (tps per node, pgbench's CPU seconds per wall second)."""
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
        return tps, cpu_s / wall_s if wall_s > 0 else 0.0


@dataclass
class Scaling:
    """What part 2 measured: samples per variant (mlscale and pgbench), node facts."""

    runs: dict[str, list[Sample]]
    caps: dict[str, float | None]
    balance: str
    pgbench_missing: str | None


def _scaling(ctx: BenchContext, plan: Plan, progress: Progress, cgroups: Cgroups) -> Scaling:
    """Primary alone vs primary + replicas at 0.1 CPU per node, and pgbench's ceiling."""
    title = f"starting a capped cluster ({REPLICAS} replicas, {NODE_CPU} CPU per node)"
    with ExitStack() as stack:
        with progress.phase(title, 1) as phase:
            local = LocalCluster(ctx.workdir / "scaling")
            stack.callback(local.destroy)
            local.up(shards=1, replicas=REPLICAS, redis=False, node_cpu=NODE_CPU)
            config = local.config()
            cluster = stack.enter_context(Cluster(config))
            caps = {
                name: cap_of_process(pids[0])[1] for name, pids in local.processes().items() if pids
            }
            primary = find_node(cluster.nodes, cluster.primary_node())
            _load_table(cluster)
            pgbench = Pgbench(config)
            if pgbench.available:
                pgbench.initialize(primary)
            _wait_replayed(config, cluster)
            phase.step("up")

        nodes = [primary, *(find_node(cluster.nodes, n) for n in cluster.replica_nodes())]
        probe = NodeProbe(config, nodes, cgroups, local.root, stack)

        def mlscale(spread: bool, via: Cluster = cluster) -> Callable[[], Sample]:
            factory = scaling_ops(via, spread)
            threads = 1 + REPLICAS if spread else 1

            def one() -> Sample:
                before = probe.read()
                r = run_processes(factory, PROCESSES, threads, plan.scaling_round_s)
                return Sample(r.rate, r.cpu_per_s, probe.read().minus(before), r.errors)

            return one

        def ceiling(on: Sequence[Node]) -> Callable[[], Sample]:
            def one() -> Sample:
                before = probe.read()
                tps, cpu = pgbench.select_only(on, plan.ceiling_round_s)
                after = probe.read()
                return Sample(sum(tps.values()), cpu, after.minus(before), by_node_per_s=tps)

            return one

        variants = {PRIMARY_ONLY: mlscale(False), FOUR_NODES: mlscale(True)}
        if plan.full and config.policies.balance != ADAPTIVE_POLICY:
            policies = config.policies.model_copy(update={"balance": ADAPTIVE_POLICY})
            adaptive = stack.enter_context(
                Cluster(config.model_copy(update={"policies": policies}))
            )
            variants[FOUR_NODES_ADAPTIVE] = mlscale(True, adaptive)
        ceilings = (
            {CEILING_PRIMARY: ceiling([primary]), CEILING_FOUR: ceiling(nodes)}
            if pgbench.available
            else {}
        )
        if plan.full:
            variants.update(ceilings)
            ceilings = {}
        runs = ab_rounds(
            variants,
            rounds=plan.scaling_rounds,
            warmup=plan.full,
            progress=progress,
            title="primary only vs primary + replicas" + ("" if ceilings else ", pgbench -S"),
        )
        if ceilings:
            once = ab_rounds(
                ceilings, rounds=1, warmup=False, progress=progress, title="pgbench -S ceiling"
            )
            runs.update(once)
    missing = None if pgbench.available else f"no pgbench at {pgbench.path}"
    return Scaling(runs, caps, config.policies.balance, missing)


# -- the benchmark -----------------------------------------------------------------------


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
            "threads_per_process": {PRIMARY_ONLY: 1, FOUR_NODES: 1 + REPLICAS},
            "warm_reads_per_worker": WARM_READS,
            "warmup_round": plan.full,
            "also_adaptive_policy": ADAPTIVE_POLICY if plan.full else None,
        },
        "ceiling": {
            "tool": "pgbench -S -n -M prepared (pgbench -i -s 1: 100,000 rows)",
            "clients_per_node": PGBENCH_CLIENTS,
            "threads_per_node": PGBENCH_THREADS,
            "round_s": plan.ceiling_round_s,
            "rounds": plan.scaling_rounds if plan.full else 1,
            "in_every_scaling_round": plan.full,
        },
        "client_busy_cpus": busy_cpus,
    }
    cgroups, why = detect()
    progress = Progress(quiet=ctx.quiet)
    overhead = _overhead(ctx, plan, progress)
    scaling = _scaling(ctx, plan, progress, cgroups) if cgroups is not None else None

    _report_overhead(result, overhead)
    if scaling is None:
        result.notes.append(
            f"no CPU caps possible here ({why}): the read scaling part was not run; "
            "the goal cannot be met"
        )
        result.goals.append(Verdict("read_scaling_ratio", float("nan"), ">=", SCALING_GOAL, "x"))
        return result
    _report_scaling(result, scaling, cpus, busy_cpus)
    result.machine = {
        "node_cpu_caps": scaling.caps,
        "cgroup_version": cgroups.version if cgroups else None,
    }
    return result


def _report_overhead(result: BenchResult, overhead: Overhead) -> None:
    runs = overhead.runs
    p50_us = spreads(runs, lambda r: r.latency_ms((50,))["p50"] * 1000)
    rate = spreads(runs, lambda r: r.rate)
    cpu = spreads(runs, lambda r: r.cpu_per_s)
    ratio = ratio_of_medians(p50_us[ROUTED], p50_us[RAW])
    extra_us = p50_us[ROUTED].median - p50_us[RAW].median
    per_round = paired_ratios(p50_us[ROUTED].values, p50_us[RAW].values)

    def named(s: Mapping[str, Spread]) -> dict[str, Spread]:
        return {KEYS[k]: v for k, v in s.items()}

    result.metrics.update(
        {
            **spread_metrics(named(p50_us), "_read_p50_us"),
            **spread_metrics(named(rate), "_reads_per_s"),
            **spread_metrics(named(cpu), "_client_cpu_per_s"),
            "routed_overhead_ratio": ratio,
            "routed_overhead_ratio_per_round": per_round.as_dict(),
            "routed_overhead_us": extra_us,
            "routed_over_raw_throughput": ratio_of_medians(rate[ROUTED], rate[RAW]),
            "overhead_replica": overhead.replica,
            "overhead_routed_reads": overhead.routed_reads,
            "overhead_machine_busy_cpus": overhead.machine_busy_cpus,
        }
    )
    result.gates.append(Verdict("routed_overhead_ratio", ratio, "<=", OVERHEAD_GATE, "x"))
    result.charts += [
        chart(
            "Point read latency, p50 (1 thread, uncapped replica)",
            "µs",
            {"median of rounds": dict(p50_us)},
        ),
        chart(
            "Routed / raw p50 latency",
            "x",
            {"per round": {"routed / raw": per_round}},
            target=OVERHEAD_GATE,
        ),
        chart(
            "Point read throughput (1 thread, uncapped replica)",
            "reads/s",
            {"median of rounds": dict(rate)},
        ),
    ]
    result.notes.append(
        f"routing adds {extra_us:.1f} µs to a point read at p50: "
        f"{p50_us[ROUTED].median:.1f} µs routed vs {p50_us[RAW].median:.1f} µs raw "
        f"(ratio {ratio:.3f}, per round {per_round.low:.3f}..{per_round.high:.3f}); "
        f"throughput routed / raw {ratio_of_medians(rate[ROUTED], rate[RAW]):.3f}; "
        f"client CPU {cpu[ROUTED].median:.2f} (routed), {cpu[RAW].median:.2f} (raw); "
        f"{overhead.machine_busy_cpus:.2f} of the machine's {os.cpu_count() or 1} CPUs busy "
        "meanwhile"
    )


def _report_scaling(result: BenchResult, scaling: Scaling, cpus: int, busy_cpus: float) -> None:
    runs = scaling.runs
    tput = spreads(runs, lambda s: s.reads_per_s)
    cpu = spreads(runs, lambda s: s.client_cpu_per_s)
    ratio = ratio_of_medians(tput[FOUR_NODES], tput[PRIMARY_ONLY])
    per_round = paired_ratios(tput[FOUR_NODES].values, tput[PRIMARY_ONLY].values)
    mine = tuple(k for k in (PRIMARY_ONLY, FOUR_NODES, FOUR_NODES_ADAPTIVE) if k in runs)
    busy = {KEYS[k]: _busy_rounds(cpu[k].values, busy_cpus) for k in mine}
    machine = spreads(runs, lambda s: s.nodes.machine_busy_cpus(cpus))
    full = {KEYS[k]: _busy_rounds(v.values, MACHINE_BUSY_SHARE * cpus) for k, v in machine.items()}
    load = {KEYS[k]: _node_load([s.nodes for s in rs]) for k, rs in runs.items()}
    result.metrics.update(
        {
            **spread_metrics({KEYS[k]: tput[k] for k in mine}, "_reads_per_s", with_values=True),
            **spread_metrics(
                {KEYS[k]: v for k, v in cpu.items()}, "_client_cpu_per_s", with_values=True
            ),
            "read_scaling_ratio": ratio,
            "read_scaling_ratio_per_round": per_round.as_dict(),
            "replica_balance": scaling.balance,
            "client_limited_rounds": busy,
            **spread_metrics(
                {KEYS[k]: v for k, v in machine.items()}, "_machine_busy_cpus", with_values=True
            ),
            "machine_limited_rounds": full,
            "node_load": load,
            "errors": {KEYS[k]: sum(s.errors for s in runs[k]) for k in mine},
        }
    )
    result.goals.append(Verdict("read_scaling_ratio", ratio, ">=", SCALING_GOAL, "x"))
    tput_groups = {"mlscale point reads": {k: tput[k] for k in mine}}
    ratio_groups = {"mlscale, per round": {f"{FOUR_NODES} / {PRIMARY_ONLY}": per_round}}
    if FOUR_NODES_ADAPTIVE in runs:
        adaptive = tput[FOUR_NODES_ADAPTIVE]
        adaptive_ratio = ratio_of_medians(adaptive, tput[PRIMARY_ONLY])
        result.metrics[f"read_scaling_ratio_{ADAPTIVE_POLICY}"] = adaptive_ratio
        ratio_groups["mlscale, per round"][f"{FOUR_NODES_ADAPTIVE} / {PRIMARY_ONLY}"] = (
            paired_ratios(adaptive.values, tput[PRIMARY_ONLY].values)
        )
        result.notes.append(
            f"with replicas picked by {ADAPTIVE_POLICY} instead of {scaling.balance}: "
            f"{adaptive.median:.0f} reads/s ({adaptive.low:.0f}..{adaptive.high:.0f}), "
            f"{adaptive_ratio:.2f}x the primary alone (not the goal's figure, which uses the "
            "default policy)"
        )
    if CEILING_PRIMARY in runs:
        one, four = tput[CEILING_PRIMARY], tput[CEILING_FOUR]
        ceiling_ratio = ratio_of_medians(four, one)
        by_node = {
            name: Spread.of([s.by_node_per_s[name] for s in runs[CEILING_FOUR]]).as_dict()
            for name in runs[CEILING_FOUR][0].by_node_per_s
        }
        result.metrics.update(
            {
                "ceiling_primary_tps": one.as_dict(with_values=True),
                "ceiling_4_nodes_tps": four.as_dict(with_values=True),
                "ceiling_ratio": ceiling_ratio,
                "ceiling_4_nodes_tps_by_node": by_node,
                "read_scaling_over_ceiling_ratio": ratio / ceiling_ratio,
                "share_of_ceiling": {
                    KEYS[PRIMARY_ONLY]: tput[PRIMARY_ONLY].median / one.median,
                    **{KEYS[k]: tput[k].median / four.median for k in mine[1:]},
                },
            }
        )
        tput_groups["pgbench -S ceiling"] = {PRIMARY_ONLY: one, FOUR_NODES: four}
        if one.n == four.n == tput[PRIMARY_ONLY].n:
            ratio_groups["pgbench -S ceiling, per round"] = {
                f"{1 + REPLICAS} nodes / primary": paired_ratios(four.values, one.values)
            }
        result.notes.append(
            f"ceiling (pgbench -S -M prepared, {PGBENCH_CLIENTS} clients per node): "
            f"{one.median:.0f} tps on the primary alone, {four.median:.0f} tps on "
            f"{1 + REPLICAS} nodes in parallel (ratio {ceiling_ratio:.2f}); mlscale reached "
            f"{tput[PRIMARY_ONLY].median / one.median:.0%} and "
            f"{tput[FOUR_NODES].median / four.median:.0%} of them"
        )
        primary_among_four = by_node[_ceiling_primary(runs)]["median"]
        if ceiling_ratio > 1.1 * (1 + REPLICAS):
            result.notes.append(
                f"the ceiling ratio exceeds the node count: pgbench got {one.median:.0f} tps from "
                f"the primary alone but {primary_among_four:.0f} tps from the same primary "
                "beside three busy replicas, so on this machine a lone capped node does less "
                "per CPU-second and both ratios are flattered; mlscale's scaling is "
                f"{ratio / ceiling_ratio:.0%} of pgbench's"
            )
    else:
        result.notes.append(f"{scaling.pgbench_missing}: the ceiling was not measured")
    result.charts += [
        chart(f"Read throughput at {NODE_CPU} CPU per node", "reads/s", tput_groups),
        chart(
            f"Read scaling: {FOUR_NODES} / {PRIMARY_ONLY}",
            "x",
            ratio_groups,
            target=SCALING_GOAL,
        ),
        chart("Client CPU in the scaling rounds", "CPUs", {"per wall second": dict(cpu)}),
    ]
    result.notes.append(
        f"this machine has {cpus} CPUs; each of the {1 + REPLICAS} data nodes is capped at "
        f"{NODE_CPU} CPU, {(1 + REPLICAS) * NODE_CPU:.1f} CPU in all (the idle control node is "
        f"capped too); replicas are picked by the default policy ({scaling.balance})"
    )
    each = ", ".join(f"{cpu[k].median:.2f} ({cpu[k].low:.2f}..{cpu[k].high:.2f}) {k}" for k in mine)
    result.notes.append(f"client CPU per wall second: {each}; " + _busy_note(busy, busy_cpus))
    result.notes.append(_machine_note(machine, full, cpus))
    alone = load[KEYS[PRIMARY_ONLY]]
    top = max(alone, key=lambda n: alone[n]["xact_share"])
    result.notes.append(
        f"node saturation (share of CFS periods throttled; near 100%: saturated): "
        f"{PRIMARY_ONLY}: {top} {alone[top]['throttled_share']:.0%}"
    )
    for k in mine[1:]:
        result.notes.append(_load_note(k, load[KEYS[k]]))


def _busy_rounds(values: Sequence[float], limit: float) -> list[int]:
    """1-based numbers of the rounds whose client CPU reached ``limit``."""
    return [i + 1 for i, v in enumerate(values) if v >= limit]


def _node_load(counters: Sequence[NodeCounters]) -> dict[str, dict[str, float]]:
    """Per node over all rounds: its share of the transactions, and the share of
    its CFS periods in which it was throttled (near 1: the node was saturated)."""
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


def _machine_note(machine: Mapping[str, Spread], full: Mapping[str, list[int]], cpus: int) -> str:
    each = ", ".join(f"{v.median:.2f} ({v.low:.2f}..{v.high:.2f}) {k}" for k, v in machine.items())
    note = f"busy CPUs of the whole machine (of {cpus}): {each}"
    labelled = {k: v for k, v in full.items() if v}
    if not labelled:
        return note
    parts = "; ".join(f"{k} rounds {', '.join(map(str, v))}" for k, v in labelled.items())
    return (
        f"{note}; MACHINE-LIMITED (>= {MACHINE_BUSY_SHARE * cpus:.1f} CPUs busy, other work "
        f"competing with the nodes and the client): {parts}"
    )


def _busy_note(busy: Mapping[str, list[int]], limit: float) -> str:
    labelled = {k: v for k, v in busy.items() if v}
    if not labelled:
        return f"no round reached {limit:.1f} CPUs: the client's CPU was not the bottleneck"
    parts = "; ".join(f"{k} rounds {', '.join(map(str, v))}" for k, v in labelled.items())
    return f"CLIENT-LIMITED (client CPU >= {limit:.1f}): {parts}"


def _load_note(variant: str, load: Mapping[str, Mapping[str, float]]) -> str:
    parts = ", ".join(
        f"{name} served {v['xact_share']:.0%} of reads, throttled {v['throttled_share']:.0%}"
        for name, v in load.items()
    )
    return f"{variant}: {parts}"


def _ceiling_primary(runs: Mapping[str, Sequence[Sample]]) -> str:
    """The primary's node name: the one node of the primary-only ceiling rounds."""
    (name,) = runs[CEILING_PRIMARY][0].by_node_per_s
    return name


BENCHMARK = Benchmark(name="replicas", title="Replica reads", run=run)
