"""``mlscale bench node-cap``: does a CPU cap really cap a node?

The same CPU-bound query runs on a node capped at 0.25 CPU and on an uncapped
node, in alternating rounds. If the cap works, the capped query takes about
1 / 0.25 = 4 times as long; the gate asks for at least 3. The uncapped node is
also the machine's ceiling for this query. Later benchmarks lean on this one:
their scaling figures across several capped nodes are only honest if a cap
holds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from ..engine.cluster_sync import Cluster
from ..local.cgroups import cap_of_process, detect
from ..local.cluster import LocalCluster
from .compare import ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics, spreads
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict
from .workers import Round, run_threads

__all__ = ["BENCHMARK", "run"]

CAP_CPUS = 0.25
GATE_RATIO = 3.0
# Client CPU (CPU-seconds per second) above which a round may be client-limited.
CLIENT_BUSY_CPUS = 0.5
# One backend, no parallel workers: the query can use at most one CPU, so the
# cap (a fraction of one CPU) is what limits it.
QUERY = "SELECT sum(g %% 7) FROM generate_series(1, %s) AS g"
QUERY_ROWS = 500_000


def _query_op(cluster: Cluster, rows: int) -> Callable[[int], Callable[[], object]]:
    def factory(_: int) -> Callable[[], object]:
        def op() -> object:
            with cluster.transaction() as tx:
                tx.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                return tx.fetch_value(QUERY, (rows,))

        return op

    return factory


def run(ctx: BenchContext) -> BenchResult:
    """Measure capped vs uncapped query time; gate: capped / uncapped >= 3."""
    result = BenchResult(
        name="node-cap",
        title=f"Node CPU cap: one CPU-bound query on a node capped at {CAP_CPUS} CPU vs uncapped",
    )
    rounds = 5 if ctx.quick else 7
    round_s = 2.5 if ctx.quick else 4.0
    result.params = {
        "cap_cpus": CAP_CPUS,
        "query": QUERY,
        "query_rows": QUERY_ROWS,
        "rounds": rounds,
        "round_s": round_s,
        "threads": 1,
        "period_us": 10_000,
    }
    cgroups, why = detect()
    if cgroups is None:
        result.notes.append(f"no CPU caps possible here: {why}; the gate cannot be met")
        result.gates.append(
            Verdict("capped / uncapped query time", float("nan"), ">=", GATE_RATIO, "x")
        )
        return result

    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        clusters: dict[str, Cluster] = {}
        caps: dict[str, Any] = {}
        with progress.phase("starting 2 one-node clusters", 2) as phase:
            for name, cap in (("capped", CAP_CPUS), ("uncapped", None)):
                local = LocalCluster(ctx.workdir / name)
                stack.callback(local.destroy)
                local.up(shards=1, replicas=0, redis=False, node_cpu=cap)
                cluster = stack.enter_context(Cluster.from_file(local.layout.config))
                clusters[name] = cluster
                pid = local.processes()[cluster.primary_node()][0]
                caps[name] = cap_of_process(pid)[1]
                phase.step(name)

        def variant(cluster: Cluster) -> Callable[[], Round]:
            return lambda: run_threads(_query_op(cluster, QUERY_ROWS), 1, round_s)

        runs = ab_rounds(
            {name: variant(c) for name, c in clusters.items()},
            rounds=rounds,
            progress=progress,
            title="capped vs uncapped",
        )

    p50_ms = spreads(runs, lambda r: r.latency_ms((50,))["p50"])
    cpu = spreads(runs, lambda r: r.cpu_per_s)
    ratio = ratio_of_medians(p50_ms["capped"], p50_ms["uncapped"])
    per_round = paired_ratios(p50_ms["capped"].values, p50_ms["uncapped"].values)
    result.metrics = {
        **spread_metrics(p50_ms, "_query_p50_ms"),
        **spread_metrics(cpu, "_client_cpu_per_s"),
        "capped_over_uncapped": ratio,
        "capped_over_uncapped_per_round": per_round.as_dict(),
        "queries": {name: sum(r.ops for r in rs) for name, rs in runs.items()},
        "expected_ratio": 1 / CAP_CPUS,
    }
    result.machine = {"node_cpu_caps": caps, "cgroup_version": cgroups.version}
    result.gates.append(Verdict("capped / uncapped query time", ratio, ">=", GATE_RATIO, "x"))
    result.charts = [
        chart(
            "Query time (p50 per round)",
            "ms",
            {"median of rounds": {k: v for k, v in p50_ms.items()}},
        ),
        chart(
            "Capped / uncapped query time",
            "x",
            {"ratio per round": {"capped / uncapped": per_round}},
            target=GATE_RATIO,
        ),
    ]
    result.notes.append(
        f"the uncapped node is this machine's ceiling for the query; a cap of {CAP_CPUS} CPU "
        f"should make it about {1 / CAP_CPUS:.0f}x slower"
    )
    busiest = max(cpu["capped"].high, cpu["uncapped"].high)
    verdict = (
        "the client is not what limits these rounds"
        if busiest < CLIENT_BUSY_CPUS
        else "the client itself was busy: these rounds may be limited by the client"
    )
    result.notes.append(
        f"client CPU per wall second: {cpu['capped'].median:.3f} (capped), "
        f"{cpu['uncapped'].median:.3f} (uncapped): {verdict}"
    )
    return result


BENCHMARK = Benchmark(name="node-cap", title="Node CPU cap", run=run)
