"""``mlscale bench experiments``: find-by-param latency of the experiment store with
and without a path index.

One local cluster of 2 shard groups (no replicas) holds N run documents (1,000,000;
100,000 with ``--quick``) of 1,000 experiments, each with nested params (a ``seed``
drawn from N/10 values, so a find matches about 10 runs spread over the groups),
metrics, tags and notes, loaded by COPY. ``create_index("params.seed")`` makes the
GIN (``jsonb_path_ops``) index on that path on both groups. Two variants then run
the same finds ``{"params.seed": v}`` across all experiments (fan-out to both groups,
merged in ``_id`` order), one at a time from one client:

- ``path_index``: the store as it is: the filter is written in the index's
  expression and the planner uses the index (the plan is recorded);
- ``no_index``: a store made with ``use_indexes=False``: the whole-document form,
  which no path index serves -- what every find costs before ``create_index``.

At least 5 alternating rounds after a warm-up; each round runs the same values in
both variants and records each find's latency; per variant the p50 and p99 of each
round, reported as median and range over the rounds. Gate: both variants return the
same runs for every find. Goal: the index makes the p50 at least 10x lower.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from ..engine.cluster_sync import Cluster
from ..local.cluster import LocalCluster
from ..stores.experiments.store_sync import ExperimentStore
from .compare import Spread, ab_rounds, chart, ratio_of_medians, spread_metrics
from .histogram import Histogram
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "Plan", "run"]

GROUPS = 2
EXPERIMENTS = 1_000
LOAD_BATCH = 50_000
GOAL_SPEEDUP = 10.0
PATH = "params.seed"


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full)."""

    docs: int
    finds: int  # per variant and round
    rounds: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(docs=100_000, finds=40, rounds=5)
        return cls(docs=1_000_000, finds=100, rounds=5)


@dataclass(frozen=True, slots=True)
class Round:
    """One variant's round: each find's latency (seconds) and the runs it returned."""

    latencies_s: tuple[float, ...]
    found: tuple[tuple[str, ...], ...]

    def percentile_ms(self, q: float) -> float:
        return Histogram.of(self.latencies_s).percentile(q) * 1e3


def _docs(start: int, count: int, seeds: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "experiment": f"exp{i % EXPERIMENTS:04d}",
            "_id": f"run{i:08d}",
            "params": {
                "seed": rng.randrange(seeds),
                "lr": rng.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),
                "optimizer": {"name": rng.choice(["adam", "sgd", "adamw"]), "beta": 0.9},
                "layers": [rng.choice([64, 128, 256]) for _ in range(rng.randint(1, 4))],
            },
            "metrics": {"auc": round(rng.random(), 4), "loss": round(rng.random() * 2, 4)},
            "tags": rng.sample(["baseline", "sweep", "ablation", "prod", "debug"], 2),
            "notes": f"run {i} of a bench sweep",
        }
        for i in range(start, start + count)
    ]


def run(ctx: BenchContext) -> BenchResult:
    """Gate: the same runs with and without the index; goal: p50 10x lower with it."""
    plan = Plan.of(ctx.quick)
    seeds = max(plan.docs // 10, 1)
    result = BenchResult(
        name="experiments",
        title=(
            f"Experiment store: find by a param over {plan.docs:,} run documents on "
            f"{GROUPS} groups, with and without a path index"
        ),
    )
    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        batches = (plan.docs + LOAD_BATCH - 1) // LOAD_BATCH
        with progress.phase("starting the cluster, loading documents", batches + 2) as phase:
            local = LocalCluster(ctx.workdir / "experiments")
            stack.callback(local.destroy)
            local.up(shards=GROUPS, replicas=0, redis=False)
            cluster = stack.enter_context(Cluster(local.config()))
            indexed = ExperimentStore(cluster)
            plain = ExperimentStore(cluster, use_indexes=False)
            rng = random.Random(20261207)
            started = time.perf_counter()
            for b in range(batches):
                phase.step(f"documents {b * LOAD_BATCH:,}+")
                count = min(LOAD_BATCH, plan.docs - b * LOAD_BATCH)
                indexed.insert_runs(_docs(b * LOAD_BATCH, count, seeds, rng))
            load_s = time.perf_counter() - started
            phase.step("analyze")
            for group in (g.name for g in cluster.config.shard_groups):
                cluster.as_written(group).execute("VACUUM ANALYZE mlscale_runs")
            phase.step("create_index")
            started = time.perf_counter()
            indexed.create_index(PATH)
            index_s = time.perf_counter() - started
        plans = {
            "path_index": indexed.explain({PATH: 1}),
            "no_index": plain.explain({PATH: 1}),
        }
        values = random.Random(7)
        chosen: list[list[int]] = []

        def finder(store: ExperimentStore, name: str) -> Any:
            def one_round() -> Round:
                if name == "path_index":  # each round's values, shared by both variants
                    chosen.append([values.randrange(seeds) for _ in range(plan.finds)])
                todo = chosen[-1]
                latencies: list[float] = []
                found: list[tuple[str, ...]] = []
                for v in todo:
                    t0 = time.perf_counter()
                    docs = store.find({PATH: v}, {"_id": 1})
                    latencies.append(time.perf_counter() - t0)
                    found.append(tuple(d["_id"] for d in docs))
                return Round(tuple(latencies), tuple(found))

            return one_round

        cpu0, wall0 = time.process_time(), time.perf_counter()
        runs = ab_rounds(
            {"path_index": finder(indexed, "path_index"), "no_index": finder(plain, "no_index")},
            rounds=plan.rounds, progress=progress, title="finds with and without the index",
        )  # fmt: skip
        client_cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    _report(result, plan, runs, plans, load_s, index_s, client_cores)
    _print_figures(result)
    return result


def _report(
    result: BenchResult,
    plan: Plan,
    runs: dict[str, list[Round]],
    plans: dict[str, str],
    load_s: float,
    index_s: float,
    client_cores: float,
) -> None:
    p50 = {k: Spread.of([r.percentile_ms(50) for r in v]) for k, v in runs.items()}
    p99 = {k: Spread.of([r.percentile_ms(99) for r in v]) for k, v in runs.items()}
    same = all(
        a.found == b.found for a, b in zip(runs["path_index"], runs["no_index"], strict=True)
    )
    matched = [len(f) for r in runs["path_index"] for f in r.found]
    speedup = ratio_of_medians(p50["no_index"], p50["path_index"])
    uses = {k: ("Bitmap Index Scan" in v) for k, v in plans.items()}
    result.params = {
        "groups": GROUPS,
        "replicas_per_group": 0,
        "documents": plan.docs,
        "experiments": EXPERIMENTS,
        "finds_per_round": plan.finds,
        "rounds": plan.rounds,
        "filter": f'{{"{PATH}": v}}, v uniform over {max(plan.docs // 10, 1):,} values',
        "index": f'create_index("{PATH}"): GIN jsonb_path_ops on the path\'s values',
    }
    result.metrics = {
        **spread_metrics(p50, "_p50_ms"),
        **spread_metrics(p99, "_p99_ms"),
        "p50_speedup": speedup,
        "p99_speedup": ratio_of_medians(p99["no_index"], p99["path_index"]),
        "same_results": same,
        "runs_per_find_mean": sum(matched) / max(len(matched), 1),
        "plan_uses_index": uses,
        "plans": plans,
        "load_s": load_s,
        "load_docs_per_s": plan.docs / load_s if load_s > 0 else 0.0,
        "create_index_s": index_s,
        "client_cpu_cores": client_cores,
    }
    result.gates = [Verdict("same_results", 1.0 if same else 0.0, ">=", 1.0)]
    result.goals = [Verdict("p50_speedup", speedup, ">=", GOAL_SPEEDUP, "x")]
    result.charts = [
        chart("Find by param, p50 (median of rounds, min..max)", "ms", {"p50": p50}),
        chart("Find by param, p99 (median of rounds, min..max)", "ms", {"p99": p99}),
    ]
    cpus = os.cpu_count() or 1
    result.notes = [
        f"client and {GROUPS} PostgreSQL primaries share one {cpus}-CPU machine over "
        "loopback, uncapped; finds run one at a time from one client (closed loop)",
        "each find goes to both groups at once (no experiment named) and is merged in "
        "_id order; a projection of _id keeps the rows sent small",
        "no_index runs on the same table as path_index: its filter is written in the "
        "whole-document form (use_indexes=False), which the path index cannot serve -- "
        "the plans recorded show which scan each variant got",
        f"p50 and p99 are of each round's {plan.finds} finds; few samples make a round's "
        "p99 close to its maximum",
    ]


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    lines = []
    for name in ("path_index", "no_index"):
        a, b = m[f"{name}_p50_ms"], m[f"{name}_p99_ms"]
        lines.append(
            f"  {name:<11} p50 {a['median']:8.2f} ms ({a['min']:.2f}..{a['max']:.2f})   "
            f"p99 {b['median']:8.2f} ms ({b['min']:.2f}..{b['max']:.2f})"
        )
    lines.append(
        f"  p50 speedup {m['p50_speedup']:.1f}x   p99 speedup {m['p99_speedup']:.1f}x   "
        f"same results {m['same_results']}   index used {m['plan_uses_index']}"
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="experiments", title="Experiment store find by param", run=run)
