"""``mlscale bench metrics``: the metric store against InfluxDB 1.6 on the same data --
points ingested per second and a 24-hour downsample query.

One local cluster of 2 shard groups (no replicas) and one local ``influxd`` (Debian's
1.6.7, :mod:`~mlscale.bench.influx_peer`) share the machine. The data
(:mod:`~mlscale.bench.metrics_data`) is made once: R runs, each a ``train`` line (loss,
acc, step) and a ``system`` line (gpu_util, mem_gb) every few seconds over 24 hours,
cut into batches of 5,000 lines of InfluxDB line protocol. Both sides get exactly these
bytes, from the same number of client threads, each thread taking the next batch:

- ``mlscale``: ``MetricStore.write_lines(batch)`` (parse, place by series, binary COPY
  to the groups), the store shared by the threads;
- ``influxdb``: ``POST /write?db=bench&precision=ns`` of the batch, a keep-alive HTTP
  client a thread;
- ``raw_copy``: the machine's ceiling -- the same rows already encoded as binary COPY
  payloads before the clock, each batch one ``COPY`` into one plain table on one
  group's primary, a connection a thread. No parsing, no placing, one table.

Each round starts empty (the store's tables and the ceiling's emptied, InfluxDB's
database dropped and made again; not timed) and ends with the points counted on every
side. At least 5 alternating rounds after a warm-up; points (lines) per second as
median and range.

Then the query: the mean of ``loss`` per 5 minutes over the 24 hours of one run
(288 buckets) -- ``store.downsample(...)`` against InfluxQL ``SELECT mean("loss") ...
GROUP BY time(5m)`` over HTTP. Before any timing, every run's answer is compared
between the two (bucket times equal, values within 1e-9 relative). Then alternating
rounds of sequential queries (one client, the same runs in the same order on both
sides), each round's p50 and p99, reported as median and range.

Last, where mlscale's ingest time goes, in one thread and no competition: the time to
parse the batches alone, the time of ``write_lines`` of the same batches, and a cProfile
of the latter. Gates: equal query answers, equal counts. Goals: ingest >= InfluxDB's
(``ingest_ratio_vs_influx`` >= 1), query p50 <= InfluxDB's (``query_p50_ratio`` <= 1).
"""

from __future__ import annotations

import cProfile
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import numpy as np
from psycopg import sql

from ..core.timeseries.lineproto import parse_lines
from ..core.topology import find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect
from ..local.cluster import LocalCluster
from ..stores.metrics import Measurement, MetricStore
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .histogram import Histogram
from .influx_peer import InfluxHttp, InfluxServer, influxd_version
from .metrics_data import CEILING_COLUMNS, SYSTEM, TRAIN, MetricsData, Shape, run_name
from .profiles import profile_summary
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "Plan", "run"]

GROUPS = 2
DB = "bench"
FIELD = "loss"
EVERY = timedelta(minutes=5)
REL_TOL = 1e-9
CEILING_TABLE = "bench_metrics_ceiling"
INGEST = ("mlscale", "influxdb", "raw_copy")
QUERY = ("mlscale", "influxdb")

Points = list[tuple[int, float]]  # (bucket start in ns since the epoch, value)


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full)."""

    runs: int
    interval_s: int
    clients: int
    queries: int  # per side and round
    rounds: int
    batch_lines: int = 5_000
    hours: int = 24

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:  # 34,560 lines in 7 batches
            return cls(runs=12, interval_s=60, clients=4, queries=25, rounds=5)
        # 864,000 lines in 173 batches
        return cls(runs=100, interval_s=20, clients=4, queries=200, rounds=5)

    def shape(self, end: datetime) -> Shape:
        return Shape(self.runs, self.interval_s, self.hours, self.batch_lines, end)


@dataclass(frozen=True, slots=True)
class IngestRun:
    """One timed ingest: lines written, wall seconds, client CPU seconds, whether
    every side counted what was sent."""

    lines: int
    seconds: float
    cpu_s: float
    counted: bool

    @property
    def points_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        return self.cpu_s / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class QueryRound:
    """One side's round of queries: each one's latency (seconds)."""

    latencies_s: tuple[float, ...]

    def percentile_ms(self, q: float) -> float:
        return Histogram.of(self.latencies_s).percentile(q) * 1e3


@dataclass(frozen=True, slots=True)
class Agreement:
    """The downsample answers of both sides compared, one run at a time."""

    series: int  # runs compared
    buckets: int  # buckets a run's answer has (the first run's)
    equal: bool
    max_rel_diff: float
    first_difference: str  # "" when equal

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "buckets": self.buckets,
            "equal": self.equal,
            "max_rel_diff": self.max_rel_diff,
            "first_difference": self.first_difference,
        }


class Target(Protocol):
    """Where an ingest round writes: emptied before it, a writer per client thread,
    counted after it."""

    def reset(self) -> None: ...

    def writer(self, stack: ExitStack) -> Callable[[int], None]:
        """A function writing batch ``i``, for one thread; its resources on ``stack``."""
        ...

    def counts(self) -> tuple[int, int]:
        """(train lines, system lines) stored."""
        ...


# -- the three ingest targets ------------------------------------------------------------------


class InfluxTarget:
    def __init__(self, server: InfluxServer, data: MetricsData) -> None:
        self.server = server
        self.data = data
        self.admin = server.http()

    def reset(self) -> None:
        self.admin.recreate_database(DB)

    def writer(self, stack: ExitStack) -> Callable[[int], None]:
        http = stack.enter_context(self.server.http())
        batches = self.data.batches

        def write(i: int) -> None:
            http.write(DB, batches[i], precision="ns")

        return write

    def counts(self) -> tuple[int, int]:
        def one(measurement: str) -> int:
            got = self.admin.query(INFLUX_COUNTS[measurement], db=DB)
            return int(got[0].values[0][1]) if got else 0

        return one(TRAIN), one(SYSTEM)


class CeilingTarget:
    def __init__(self, cluster: Cluster, data: MetricsData, group: str) -> None:
        self.node = find_node(cluster.nodes, cluster.primary_node(group))
        self.config = cluster.config
        self.data = data
        self.admin = connect(self.node, self.config)
        self.admin.autocommit = True
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(t.value))
            for name, t in CEILING_COLUMNS
        )
        table = sql.Identifier(CEILING_TABLE)
        self.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        self.admin.execute(sql.SQL("CREATE TABLE {} ({})").format(table, cols))
        self.copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            table, sql.SQL(", ").join(sql.Identifier(n) for n, _ in CEILING_COLUMNS)
        )

    def reset(self) -> None:
        self.admin.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(CEILING_TABLE)))

    def writer(self, stack: ExitStack) -> Callable[[int], None]:
        conn = stack.enter_context(connect(self.node, self.config))
        payloads = self.data.payloads

        def write(i: int) -> None:
            with conn.transaction(), conn.cursor() as cur, cur.copy(self.copy_sql) as copy:
                copy.write(payloads[i])

        return write

    def counts(self) -> tuple[int, int]:
        rows = self.admin.execute(
            sql.SQL("SELECT measurement, count(*) FROM {} GROUP BY 1").format(
                sql.Identifier(CEILING_TABLE)
            )
        ).fetchall()
        got = {str(m): int(n) for m, n in rows}
        return got.get(TRAIN, 0), got.get(SYSTEM, 0)

    def close(self) -> None:
        self.admin.close()


class MlscaleSide:
    """The metric store: an ingest target, the downsample query, and where its ingest
    time goes."""

    def __init__(self, cluster: Cluster, data: MetricsData) -> None:
        self.cluster = cluster
        self.data = data
        self.store = MetricStore(cluster)

    def reset(self) -> None:
        """Both measurements dropped and made again with the defaults (their tables and
        day partitions exist before the clock, as InfluxDB's database does)."""
        have = {m.name for m in self.store.measurements()}
        for name in (TRAIN, SYSTEM):
            if name in have:
                self.store.drop(name)
            self.store.create(Measurement(name))

    def writer(self, stack: ExitStack) -> Callable[[int], None]:
        batches, write_lines = self.data.batches, self.store.write_lines

        def write(i: int) -> None:
            write_lines(batches[i], precision="ns")

        return write

    def counts(self) -> tuple[int, int]:
        def one(measurement: str, field: str) -> int:
            shape = self.data.shape
            got = self.store.downsample(
                measurement, field, shape.start, shape.end, timedelta(days=1), agg="count"
            )
            return int(got.counts.sum())

        return one(TRAIN, "loss"), one(SYSTEM, "gpu_util")

    def downsample(self, run: str, start: datetime, end: datetime) -> Points:
        """The store's answer: mean of ``loss`` per 5 minutes of run ``run``."""
        got = self.store.downsample(TRAIN, FIELD, start, end, EVERY, "mean", where={"run": run})
        ns = got.times.astype("datetime64[ns]").astype(np.int64).tolist()
        return list(zip(ns, got.values.tolist(), strict=True))

    def profile(self) -> dict[str, Any]:
        """Where ``write_lines``' time goes, in one thread, the batches in order, into
        tables made anew: the first half of the batches timed, µs a line of the calling
        thread's CPU to parse alone and in ``write_lines`` (parse, place by series,
        encode), and of waiting for the groups (the rest of its wall time: the COPY on
        the servers, series and dirty-minute rows, the commit); the second half (other
        points: nothing written twice) under cProfile."""
        batches = self.data.batches
        half = max(len(batches) // 2, 1)
        first, second = batches[:half], batches[half:] or batches[:half]
        lines = [sum(text.count("\n") for text in part) for part in (first, second)]
        cpu0 = time.thread_time()
        for text in first:
            parse_lines(text, precision="ns")
        parse_s = time.thread_time() - cpu0
        self.reset()
        cpu0, t0 = time.thread_time(), time.perf_counter()
        for text in first:
            self.store.write_lines(text, precision="ns")
        write_s, cpu_s = time.perf_counter() - t0, time.thread_time() - cpu0
        prof = cProfile.Profile()
        prof.enable()
        for text in second:
            self.store.write_lines(text, precision="ns")
        prof.disable()
        n = lines[0]
        us = {
            "parse": parse_s / n * 1e6,
            "place_and_encode": max(cpu_s - parse_s, 0.0) / n * 1e6,
            "wait_for_groups": max(write_s - cpu_s, 0.0) / n * 1e6,
            "write_lines": write_s / n * 1e6,
        }
        return {
            "lines_timed": n,
            "us_per_line": us,
            "parse_share": parse_s / write_s if write_s > 0 else 0.0,
            "profile": profile_summary(prof, lines[1], "line"),
        }


def _ingest(target: Target, data: MetricsData, clients: int) -> IngestRun:
    """Empty ``target``, then write every batch from ``clients`` threads, each taking
    the next batch; the clock runs from all threads ready to the last batch written."""
    target.reset()
    with ExitStack() as stack:
        writers = [target.writer(stack) for _ in range(clients)]
        # next() of an itertools.count is atomic under the GIL: each batch goes once.
        order = itertools.count()
        n = len(data.batches)
        ready = threading.Barrier(clients + 1)
        errors: list[BaseException] = []

        def work(write: Callable[[int], None]) -> None:
            ready.wait()
            try:
                while (i := next(order)) < n:
                    write(i)
            except BaseException as exc:  # re-raised after the join
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in writers]
        for t in threads:
            t.start()
        cpu0 = time.process_time()
        ready.wait()
        wall0 = time.perf_counter()
        for t in threads:
            t.join()
        seconds, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    if errors:
        raise errors[0]
    want = (data.lines // 2, data.lines // 2)
    return IngestRun(data.lines, seconds, cpu_s, target.counts() == want)


# -- queries ------------------------------------------------------------------------------------


# InfluxQL binds values only (``$name``), so the identifiers are written in: FIELD, TRAIN.
INFLUX_DOWNSAMPLE = (
    'SELECT mean("loss") FROM "train" WHERE "run" = $run AND time >= $start AND time < $end '
    "GROUP BY time(5m) fill(none)"
)
INFLUX_COUNTS = {TRAIN: 'SELECT count("loss") FROM "train"',
                 SYSTEM: 'SELECT count("gpu_util") FROM "system"'}  # fmt: skip


def influx_downsample(http: InfluxHttp, run: str, start: datetime, end: datetime) -> Points:
    """InfluxDB's answer: mean of ``loss`` per 5 minutes of run ``run`` in [start, end)."""
    series = http.query(INFLUX_DOWNSAMPLE, db=DB, epoch="ns",
                        params={"run": run, "start": _ns(start), "end": _ns(end)})  # fmt: skip
    return [(int(t), float(v)) for s in series for t, v in s.values]


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1_000


def compare(a: Sequence[Points], b: Sequence[Points], runs: Sequence[str]) -> Agreement:
    """Both sides' answers for ``runs``, equal in bucket times and values (``REL_TOL``)."""
    worst, first = 0.0, ""
    for run, xs, ys in zip(runs, a, b, strict=True):
        if [t for t, _ in xs] != [t for t, _ in ys]:
            first = first or f"{run}: buckets differ ({len(xs)} vs {len(ys)})"
            continue
        for (t, x), (_, y) in zip(xs, ys, strict=True):
            rel = abs(x - y) / max(abs(x), abs(y), 1e-300)
            worst = max(worst, rel)
            if rel > REL_TOL and not first:
                first = f"{run} at {t} ns: {x!r} vs {y!r}"
    return Agreement(len(runs), len(a[0]) if a else 0, not first, worst, first)


def _timed_queries(query: Callable[[str], Points], runs: Sequence[str]) -> QueryRound:
    latencies = []
    for run in runs:
        t0 = time.perf_counter()
        query(run)
        latencies.append(time.perf_counter() - t0)
    return QueryRound(tuple(latencies))


# -- the run ------------------------------------------------------------------------------------


def run(ctx: BenchContext) -> BenchResult:
    """Gates: equal query answers and counts; goals: ingest and query p50 vs InfluxDB."""
    plan = Plan.of(ctx.quick)
    # The 24 hours before today's midnight (UTC): whole days, so whole partitions.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    shape = plan.shape(end)
    result = BenchResult(
        name="metrics",
        title=(
            f"Metric store vs InfluxDB 1.6: {shape.lines:,} points of {plan.runs} runs over "
            f"{plan.hours} h ingested, and a {plan.hours} h downsample query"
        ),
    )
    progress = Progress(quiet=ctx.quiet)
    runs = [run_name(r) for r in range(plan.runs)]
    with ExitStack() as stack:
        with progress.phase("starting the cluster and influxd, making the data", 3) as phase:
            phase.step("data")
            data = MetricsData.make(shape)
            phase.step("cluster")
            local = LocalCluster(ctx.workdir / "metrics")
            stack.callback(local.destroy)
            local.up(shards=GROUPS, replicas=0, redis=False)
            cluster = stack.enter_context(Cluster(local.config()))
            phase.step("influxd")
            server = stack.enter_context(InfluxServer(ctx.workdir / "influxd"))
        side = MlscaleSide(cluster, data)
        influx = InfluxTarget(server, data)
        stack.callback(influx.admin.close)
        ceiling = CeilingTarget(cluster, data, cluster.config.shard_groups[0].name)
        stack.callback(ceiling.close)
        targets: dict[str, Target] = {"mlscale": side, "influxdb": influx, "raw_copy": ceiling}
        ingest = ab_rounds(
            {name: partial(_ingest, t, data, plan.clients) for name, t in targets.items()},
            rounds=plan.rounds, progress=progress, title="ingest: mlscale vs InfluxDB vs raw COPY",
        )  # fmt: skip
        # The last round left the data in both: queries read it.
        http = stack.enter_context(server.http())
        with progress.phase("downsample answers compared", 1) as phase:
            phase.step(f"{len(runs)} runs")
            agreement = compare(
                [side.downsample(r, shape.start, shape.end) for r in runs],
                [influx_downsample(http, r, shape.start, shape.end) for r in runs],
                runs,
            )
        picks = random.Random(7)
        chosen: list[list[str]] = []

        def queries(name: str) -> Callable[[], QueryRound]:
            def one_round() -> QueryRound:
                if name == QUERY[0]:  # each round's runs, shared by both sides
                    chosen.append([picks.choice(runs) for _ in range(plan.queries)])
                if name == "mlscale":
                    return _timed_queries(
                        lambda r: side.downsample(r, shape.start, shape.end), chosen[-1]
                    )
                return _timed_queries(
                    lambda r: influx_downsample(http, r, shape.start, shape.end), chosen[-1]
                )

            return one_round

        query = ab_rounds(
            {name: queries(name) for name in QUERY}, rounds=plan.rounds, progress=progress,
            title="24 h downsample: mlscale vs InfluxDB",
        )  # fmt: skip
        with progress.phase("where mlscale's ingest time goes", 1) as phase:
            phase.step("parse, write_lines, profile")
            profile = side.profile()
        facts = {
            "influxd": {"version": influxd_version(server.binary), "pid": server.pid,
                        "start_s": round(server.started_s, 3)},
            "postgresql_server": _server_version(cluster),
        }  # fmt: skip
    _report(result, plan, data, ingest, query, agreement, profile, facts)
    _print_figures(result)
    return result


def _server_version(cluster: Cluster) -> str:
    with connect(find_node(cluster.nodes, cluster.primary_node()), cluster.config) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else ""


def _report(
    result: BenchResult,
    plan: Plan,
    data: MetricsData,
    ingest: dict[str, list[IngestRun]],
    query: dict[str, list[QueryRound]],
    agreement: Agreement,
    profile: dict[str, Any],
    facts: dict[str, Any],
) -> None:
    rate = {k: Spread.of([r.points_per_s for r in v]) for k, v in ingest.items()}
    cpu = {k: Spread.of([r.cpu_cores for r in v]) for k, v in ingest.items()}
    p50 = {k: Spread.of([r.percentile_ms(50) for r in v]) for k, v in query.items()}
    p99 = {k: Spread.of([r.percentile_ms(99) for r in v]) for k, v in query.items()}
    counted = all(r.counted for v in ingest.values() for r in v)
    ingest_ratio = ratio_of_medians(rate["mlscale"], rate["influxdb"])
    p50_ratio = ratio_of_medians(p50["mlscale"], p50["influxdb"])
    result.params = {
        "groups": GROUPS,
        "replicas_per_group": 0,
        "runs": plan.runs,
        "series": 2 * plan.runs,
        "hours": plan.hours,
        "interval_s": plan.interval_s,
        "lines": data.lines,
        "field_values": data.field_values,
        "mlscale_rows_per_line": 1.0,  # a row per series and time, a column per field
        "batch_lines": plan.batch_lines,
        "batches": len(data.batches),
        "line_protocol_bytes": data.bytes_total,
        "precision": "ns",
        "client_threads": plan.clients,
        "queries_per_round": plan.queries,
        "query": f"mean({FIELD}) of one run per {int(EVERY.total_seconds()) // 60} min over "
        f"{plan.hours} h ({TRAIN} measurement, tag run)",
        "rounds": plan.rounds,
    }
    result.metrics = {
        **spread_metrics(rate, "_points_per_s"),
        **spread_metrics(cpu, "_client_cpu_cores"),
        "ingest_ratio_vs_influx": ingest_ratio,
        "ingest_ratio_per_round": paired_ratios(
            rate["mlscale"].values, rate["influxdb"].values
        ).as_dict(),
        "mlscale_vs_raw_copy_ratio": ratio_of_medians(rate["mlscale"], rate["raw_copy"]),
        "influxdb_vs_raw_copy_ratio": ratio_of_medians(rate["influxdb"], rate["raw_copy"]),
        **{f"{k}_query_p50_ms": v.as_dict() for k, v in p50.items()},
        **{f"{k}_query_p99_ms": v.as_dict() for k, v in p99.items()},
        "query_p50_ratio": p50_ratio,
        "query_p99_ratio": ratio_of_medians(p99["mlscale"], p99["influxdb"]),
        "query_agreement": agreement.to_dict(),
        "query_results_equal": agreement.equal,
        "counts_checked": counted,
        "counts_checked_by_side": {k: all(r.counted for r in v) for k, v in ingest.items()},
        "ingest_profile": profile,
        **facts,
    }
    result.gates = [
        Verdict("query_results_equal", 1.0 if agreement.equal else 0.0, ">=", 1.0),
        Verdict("counts_equal", 1.0 if counted else 0.0, ">=", 1.0),
    ]
    result.goals = [
        Verdict("ingest_ratio_vs_influx", ingest_ratio, ">=", 1.0, "x"),
        Verdict("query_p50_ratio", p50_ratio, "<=", 1.0, "x"),
    ]
    result.charts = [
        chart("Points ingested per second (median of rounds, min..max)", "points/s",
              {f"{plan.clients} client threads": rate}),
        chart("24 h downsample query latency (median of rounds, min..max)", "ms",
              {"p50": p50, "p99": p99}),
    ]  # fmt: skip
    cpus = os.cpu_count() or 1
    stages = profile["us_per_line"]
    result.notes = [
        f"client, {GROUPS} PostgreSQL primaries and influxd share one {cpus}-CPU machine over "
        "loopback, uncapped; both servers keep their default durability (PostgreSQL fsync "
        "and synchronous_commit on, InfluxDB's WAL fsynced a write)",
        "mlscale parses line protocol in the client (Python, under the GIL of the bench's "
        "process); InfluxDB parses in its server (Go, every core): the client CPU figures "
        "show the difference",
        "the profile's parse and place_and_encode are the calling thread's CPU time, "
        "wait_for_groups the rest of write_lines' wall time: on a loaded machine it also "
        "holds time the thread waited for a CPU",
        "raw_copy is the ceiling: the same points pre-encoded as binary COPY before the "
        "clock, a row a line into one plain table (no index, no partitions) on one primary; "
        "the store writes a row a line too (a column a field), into day partitions with "
        "a primary key on (series, time) and a BRIN index on time, over the groups",
        f"influxd runs with InfluxDB's defaults but logs off and the _internal monitor off; "
        f"{facts['influxd']['version']}",
        f"query answers compared for all {agreement.series} runs before timing: "
        + ("equal" if agreement.equal else f"DIFFERENT ({agreement.first_difference})")
        + f", max relative difference {agreement.max_rel_diff:.1e}",
        "mlscale ingest in one thread (us a line): "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()),
    ]
    if not counted:
        result.notes.append("A COUNT AFTER AN INGEST ROUND DID NOT MATCH the lines sent")


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    lines = []
    for name in INGEST:
        r, c = m[f"{name}_points_per_s"], m[f"{name}_client_cpu_cores"]
        lines.append(
            f"  ingest {name:<9} {r['median']:12,.0f} points/s ({r['min']:,.0f}..{r['max']:,.0f})"
            f"   client CPU {c['median']:.2f} cores"
        )
    for name in QUERY:
        a, b = m[f"{name}_query_p50_ms"], m[f"{name}_query_p99_ms"]
        lines.append(
            f"  query  {name:<9} p50 {a['median']:8.2f} ms ({a['min']:.2f}..{a['max']:.2f})   "
            f"p99 {b['median']:8.2f} ms ({b['min']:.2f}..{b['max']:.2f})"
        )
    stages = m["ingest_profile"]["us_per_line"]
    lines.append(
        f"  ingest mlscale / InfluxDB {m['ingest_ratio_vs_influx']:.2f}   mlscale / raw COPY "
        f"{m['mlscale_vs_raw_copy_ratio']:.2f}   query p50 mlscale / InfluxDB "
        f"{m['query_p50_ratio']:.2f}   answers equal {m['query_results_equal']}   "
        f"mlscale us/line: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="metrics", title="Metric store vs InfluxDB 1.6", run=run)
