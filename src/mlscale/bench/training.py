"""``mlscale bench training-read``: a sharded table's rows into the client for training,
the training-data reader vs ``fetchall()`` into pandas.

One local cluster: 4 shard groups of one primary each (``--replicas 0``), no CPU
caps (both sides read the same 4 servers on the same machine; the client's own CPU
time is reported). A sharded table of an int8 id, 8 float4 and 2 float8 features
(about 1 in 50 NULL) and an int4 label -- 2M rows (200k with ``--quick``) spread
evenly over the groups by slot.

In 5 alternating rounds, each read in its own fresh process
(:mod:`mlscale.bench.training_probe`, so that its peak memory is its own):

- ``reader``: ``TrainingReader(cluster, table)`` -- binary COPY of units of slots,
  ``prefetch`` at a time on different groups, one row of ``array_agg`` columns per
  unit decoded with ``np.frombuffer`` -- batches of numpy arrays consumed and dropped;
- ``fetchall_pandas``: plain psycopg, one connection per group, the 4 groups queried
  at once from 4 threads, ``SELECT * FROM t``, ``fetchall()``, a ``pandas.DataFrame``
  per group, ``pandas.concat``;
- ``ceiling``: the same connections and threads moving the same rows with ``COPY t TO
  STDOUT (FORMAT binary)``, bytes counted and dropped: what the machine can move.

Gate ``vs_fetchall_pandas_ratio`` (median rows/s of the reader / median rows/s of
fetchall into pandas) >= 5. Metrics: rows/s of each, peak client memory of each
(``VmHWM`` after the peak was reset once the process was warm; growth over the
warm resident set too), client CPU seconds. Both reads must return every row and
the same label sum, or the benchmark fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from ..core.shardmaps import KeyFamily, SlotMap
from ..core.topology import find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect
from ..errors import MlscaleError
from ..local.cluster import LocalCluster
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "run"]

GROUPS = 4
FAMILY = "bench_training"
TABLE = "training_rows"
WARM_TABLE = "training_warm"
WARM_ROWS = 20_000
RATIO_GATE = 5.0
BATCH = 65_536
PREFETCH = 4
FEATURES = [f"f{i}" for i in range(8)]
DOUBLES = ["d0", "d1"]
CREATE = (
    "CREATE TABLE {name} (id int8 PRIMARY KEY, "
    + ", ".join(f"{c} float4" for c in FEATURES)
    + ", "
    + ", ".join(f"{c} float8" for c in DOUBLES)
    + ", label int4 NOT NULL)"
)
# ~1 in 50 values NULL, so the reader's NULL handling is on the measured path.
EXPRS = (
    ["CASE WHEN random() < 0.02 THEN NULL ELSE random()::float4 END" for _ in FEATURES]
    + ["random()" for _ in DOUBLES]
    + ["(g % 10)::int4"]
)
VARIANTS = {"reader": "reader", "fetchall_pandas": "fetchall", "ceiling": "ceiling"}


@dataclass(frozen=True, slots=True)
class Plan:
    rows: int
    rounds: int


def _plan(quick: bool) -> Plan:
    return Plan(rows=200_000, rounds=5) if quick else Plan(rows=2_000_000, rounds=5)


def _load(cluster: Cluster, shard_map: SlotMap, rows: int) -> dict[str, int]:
    """Both tables on every group, rows placed by the map; vacuumed and analyzed."""
    columns = ["id", *FEATURES, *DOUBLES, "label"]
    held = {}
    for table, count in ((TABLE, rows), (WARM_TABLE, WARM_ROWS)):
        cluster.create_sharded_table(CREATE.format(name=table), shard_key="id", family=FAMILY)
        for group in shard_map.groups:
            node = find_node(cluster.nodes, cluster.primary_node(group))
            mine = shard_map.predicate(group, [sql.Identifier("g")])
            insert = sql.SQL(
                "INSERT INTO {} ({}) SELECT g, {} FROM generate_series(1, {}) AS g WHERE {}"
            ).format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.SQL(e) for e in EXPRS),
                sql.Literal(count),
                mine,
            )
            with connect(node, cluster.config) as conn:
                conn.execute(insert)
                conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier(table)))
                if table == TABLE:
                    got = conn.execute(
                        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                    ).fetchone()
                    held[group] = int(got[0]) if got else 0
    return held


def _probe(config: Path, how: str) -> dict[str, Any]:
    """Run :mod:`.training_probe` in a fresh interpreter; what it measured."""
    cmd = [
        sys.executable, "-m", "mlscale.bench.training_probe", str(config), TABLE,
        "--warm-table", WARM_TABLE, "--how", how, "--batch-size", str(BATCH),
        "--prefetch", str(PREFETCH),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise MlscaleError(f"the {how} probe failed: {tail}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _prober(config: Path, how: str) -> Callable[[], dict[str, Any]]:
    return lambda: _probe(config, how)


def run(ctx: BenchContext) -> BenchResult:
    plan = _plan(ctx.quick)
    result = BenchResult(name="training-read", title="Training-data reads into the client")
    result.params = {
        "groups": GROUPS,
        "rows": plan.rows,
        "rounds": plan.rounds,
        "batch_size": BATCH,
        "prefetch": PREFETCH,
        "columns": 1 + len(FEATURES) + len(DOUBLES) + 1,
        "memory": "VmHWM after a reset of the peak in a warm fresh process (ru_maxrss "
        "where there is no /proc); growth = that minus VmRSS before the read",
    }
    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        with progress.phase(
            f"starting {GROUPS} shard groups, loading {plan.rows:,} rows", 2
        ) as phase:
            local = LocalCluster(ctx.workdir / "training")
            stack.callback(local.destroy)
            local.up(shards=GROUPS, replicas=0, redis=False)
            cluster = stack.enter_context(Cluster(local.config()))
            phase.step("up")
            groups = [g.name for g in cluster.config.shard_groups]
            shard_map = SlotMap.even(KeyFamily.of(FAMILY, "int8"), groups)
            cluster.create_shard_map(shard_map, reason="mlscale bench training-read")
            held = _load(cluster, shard_map, plan.rows)
            phase.step("loaded")
        config = local.layout.config
        runs = ab_rounds(
            {name: _prober(config, how) for name, how in VARIANTS.items()},
            rounds=plan.rounds,
            progress=progress,
            title="reader vs fetchall into pandas vs raw COPY",
        )
    _check(runs, plan.rows)
    _report(result, runs, held)
    _print_figures(result)
    return result


def _check(runs: Mapping[str, Sequence[Mapping[str, Any]]], rows: int) -> None:
    """Every read returned every row; the reader and fetchall the same label sum."""
    for name, results in runs.items():
        for r in results:
            if r["rows"] != rows:
                raise MlscaleError(f"{name} read {r['rows']} rows, not {rows}")
    sums = {r["label_sum"] for n in ("reader", "fetchall_pandas") for r in runs[n]}
    if len(sums) != 1:
        raise MlscaleError(f"the reader and fetchall disagree on the label sum: {sorted(sums)}")


def _report(
    result: BenchResult, runs: Mapping[str, Sequence[Mapping[str, Any]]], held: Mapping[str, int]
) -> None:
    rate = {n: Spread.of([r["rows"] / r["wall_s"] for r in rs]) for n, rs in runs.items()}
    peak = {n: Spread.of([r["peak_rss_mb"] for r in rs]) for n, rs in runs.items()}
    growth = {n: Spread.of([r["rss_growth_mb"] for r in rs]) for n, rs in runs.items()}
    cpu = {n: Spread.of([r["cpu_s"] for r in rs]) for n, rs in runs.items()}
    ratio = ratio_of_medians(rate["reader"], rate["fetchall_pandas"])
    paired = paired_ratios(
        [r["rows"] / r["wall_s"] for r in runs["reader"]],
        [r["rows"] / r["wall_s"] for r in runs["fetchall_pandas"]],
    )
    result.metrics.update(spread_metrics(rate, "_rows_per_s"))
    result.metrics.update(spread_metrics(peak, "_peak_rss_mb"))
    result.metrics.update(spread_metrics(growth, "_rss_growth_mb"))
    result.metrics.update(spread_metrics(cpu, "_client_cpu_s"))
    result.metrics.update(
        {
            "vs_fetchall_pandas_ratio": ratio,
            "vs_fetchall_pandas_paired": paired.as_dict(),
            "reader_vs_ceiling": ratio_of_medians(rate["reader"], rate["ceiling"]),
            "reader_copy_mb": runs["reader"][0]["bytes"] / 1e6,
            "ceiling_copy_mb": runs["ceiling"][0]["bytes"] / 1e6,
            "peak_reset": all(r["peak_reset"] for rs in runs.values() for r in rs),
            "rows_by_group": dict(held),
        }
    )
    result.gates.append(Verdict("vs_fetchall_pandas_ratio", ratio, ">=", RATIO_GATE, "x"))
    result.charts += [
        chart("Rows into the client per second", "rows/s", {"4 groups": rate}),
        chart("Peak client memory", "MB", {"4 groups": peak}),
    ]
    result.notes.append(
        "reader: TrainingReader into numpy batches (consumed, dropped); fetchall_pandas: "
        "psycopg fetchall() per group from 4 threads at once, a DataFrame per group, "
        "concat; ceiling: binary COPY of the whole table per group, bytes dropped"
    )


def _print_figures(result: BenchResult) -> None:
    m = result.metrics

    def fmt(key: str, unit: str, scale: float = 1.0) -> str:
        s = m[key]
        return (
            f"{s['median'] / scale:,.2f} {unit} ({s['min'] / scale:,.2f}..{s['max'] / scale:,.2f})"
        )

    lines = [
        f"  {name:<16} {fmt(f'{name}_rows_per_s', 'M rows/s', 1e6)}   peak "
        f"{fmt(f'{name}_peak_rss_mb', 'MB')}   client CPU {fmt(f'{name}_client_cpu_s', 's')}"
        for name in VARIANTS
    ]
    lines.append(
        f"  reader / fetchall+pandas {m['vs_fetchall_pandas_ratio']:.2f}x   "
        f"reader / ceiling {m['reader_vs_ceiling']:.2f}"
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="training-read", title="Training-data reads", run=run)
