"""``mlscale bench predictions``: the prediction log writer against raw binary COPY,
``executemany`` and the tutorials' row-by-row INSERT.

One local cluster of 4 shard groups (no replicas). Every variant writes the same
pre-generated rows (an int8 entity, a uuid id, a time today, a score, a model and
one of two versions; no predicted class, no extra) into the same partitioned
predictions table, with its primary key, emptied (TRUNCATE) before each run:

- ``writer``: :class:`~mlscale.stores.predictions.PredictionWriter`, ``log_many`` of
  DataFrame chunks then ``flush`` (the whole client path: checks, placement,
  encoding, sending, a background thread per group);
- ``raw_copy``: the ceiling -- psycopg's binary ``COPY`` with ``set_types`` and
  ``write_row``, rows already split by group and already Python tuples (the writer
  pays for both), one connection per group, groups in parallel threads;
- ``executemany``: per group ``cursor.executemany`` of a parameterized INSERT in
  batches of 10,000 rows, a commit per batch, groups in parallel (a sample of the
  rows: it is slow);
- ``rowwise``: the tutorials' loop -- one INSERT and one commit per row, on one
  connection per group, one thread (a small sample).

At least 5 alternating rounds after a warm-up; each variant's rows/s as median and
range, and the client's CPU (the process's CPU time over the run's wall time, in
cores). Gate: writer / raw_copy >= 0.7. After the rounds a profile of the writer's
client path (check, place, encode; one thread) says where its time goes.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import os
import pstats
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ..core.predictions.layout import PredictionLayout
from ..core.predictions.rows import to_predictions
from ..core.predictions.spec import PredictionLog
from ..core.topology import find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect
from ..local.cluster import LocalCluster
from ..stores.predictions.flush_sync import group_index, split_encode
from ..stores.predictions.tables_sync import PredictionTables
from ..stores.predictions.writer_sync import PredictionWriter
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "Plan", "run"]

GROUPS = 4
LOG = PredictionLog(name="bench_predictions")
GATE_RAW = 0.7
EXECUTEMANY_BATCH = 10_000
WRITER_BATCH_ROWS = 50_000
PROFILE_TOP = 12


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full)."""

    rows: int
    chunk_rows: int
    executemany_rows: int
    rowwise_rows: int
    rounds: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(rows=300_000, chunk_rows=50_000, executemany_rows=40_000,
                       rowwise_rows=400, rounds=5)  # fmt: skip
        return cls(rows=2_000_000, chunk_rows=100_000, executemany_rows=200_000,
                   rowwise_rows=2_000, rounds=5)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run: rows written, wall seconds, client CPU seconds."""

    rows: int
    seconds: float
    cpu_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        return self.cpu_s / self.seconds if self.seconds > 0 else 0.0


def _timed(work: Callable[[], int]) -> Run:
    cpu, wall = time.process_time(), time.perf_counter()
    rows = work()
    return Run(rows, time.perf_counter() - wall, time.process_time() - cpu)


@dataclass(slots=True)
class Data:
    """The rows every variant writes: DataFrame chunks for the writer, tuples split by
    group for the raw driver."""

    frames: list[Any]
    by_group: dict[str, list[tuple[Any, ...]]]
    sample: list[tuple[str, tuple[Any, ...]]]  # (group, row), in the data's order

    @classmethod
    def make(cls, plan: Plan, cluster: Cluster) -> Data:
        import pandas as pd

        rng = np.random.default_rng(20261207)
        n = plan.rows
        entity = rng.integers(0, 10_000_000, n, dtype=np.int64)
        ids = [uuid.UUID(int=int(v)) for v in rng.integers(0, 2**62, n, dtype=np.int64)]
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        ts_us = int(today.timestamp() * 1e6) + np.arange(n, dtype=np.int64) * 10
        score = rng.random(n)
        version = np.where(rng.random(n) < 0.5, "v1", "v2").astype(object)
        frame = pd.DataFrame(
            {
                LOG.entity: entity,
                "prediction_id": ids,
                "ts": pd.to_datetime(ts_us, unit="us", utc=True),
                "score": score,
                "model": "ctr",
                "model_version": version,
            }
        )
        frames = [frame.iloc[i : i + plan.chunk_rows] for i in range(0, n, plan.chunk_rows)]
        shard_map = cluster.shards().map_of(LOG.family)
        where = group_index(shard_map, LOG, to_predictions(LOG, frame).entity)
        times = [today + dt.timedelta(microseconds=10 * i) for i in range(n)]
        rows = list(
            zip(entity.tolist(), ids, times, score.tolist(), ["ctr"] * n, version.tolist(),
                [None] * n, [None] * n, strict=True)
        )  # fmt: skip
        groups = shard_map.groups
        by_group = {g: [rows[i] for i in np.flatnonzero(where == gi).tolist()]
                    for gi, g in enumerate(groups)}  # fmt: skip
        sample_n = max(plan.executemany_rows, plan.rowwise_rows)
        sample = [(groups[int(where[i])], rows[i]) for i in range(sample_n)]
        return cls(frames, by_group, sample)


class Variants:
    """The four ways to write, each one callable per round."""

    def __init__(
        self, plan: Plan, cluster: Cluster, tables: PredictionTables, data: Data,
        conns: dict[str, psycopg.Connection[Any]],
    ) -> None:  # fmt: skip
        self.plan = plan
        self.cluster = cluster
        self.tables = tables
        self.data = data
        self.conns = conns
        self.layout = PredictionLayout(LOG)
        self.types = ["int8", "uuid", "timestamptz", "float8", "text", "text", "text", "jsonb"]
        cols = sql.SQL(", ").join(map(sql.Identifier, self.layout.copy_columns))
        self.insert = (
            sql.SQL("INSERT INTO {} ({}) VALUES ({})")
            .format(
                sql.Identifier(LOG.name),
                cols,
                sql.SQL(", ").join(sql.Placeholder() * len(self.layout.copy_columns)),
            )
            .as_string(None)
        )
        self.counts_ok = True

    def _truncate(self) -> None:
        for conn in self.conns.values():
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(LOG.name)))

    def _count(self) -> int:
        total = 0
        for conn in self.conns.values():
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(LOG.name))
            ).fetchone()
            total += int(row[0]) if row else 0
        return total

    def _checked(self, work: Callable[[], int]) -> Callable[[], Run]:
        def one() -> Run:
            self._truncate()
            run = _timed(work)
            if self._count() != run.rows:
                self.counts_ok = False
            return run

        return one

    def writer(self) -> int:
        with PredictionWriter(self.cluster, self.tables, LOG, batch_rows=WRITER_BATCH_ROWS) as w:
            for frame in self.data.frames:
                w.log_many(frame)
            done = w.flush()
        return done.rows

    def _per_group(self, work: Callable[[str, psycopg.Connection[Any]], int]) -> int:
        counts: dict[str, int] = {}
        errors: list[BaseException] = []

        def target(group: str) -> None:
            try:
                counts[group] = work(group, self.conns[group])
            except BaseException as exc:  # reported after the join
                errors.append(exc)

        threads = [threading.Thread(target=target, args=(g,)) for g in self.conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return sum(counts.values())

    def raw_copy(self) -> int:
        def work(group: str, conn: psycopg.Connection[Any]) -> int:
            rows = self.data.by_group[group]
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(self.layout.copy_sql()) as copy,
            ):
                copy.set_types(self.types)
                for row in rows:
                    copy.write_row(row)
            return len(rows)

        return self._per_group(work)

    def executemany(self) -> int:
        sample = self.data.sample[: self.plan.executemany_rows]

        def work(group: str, conn: psycopg.Connection[Any]) -> int:
            rows = [r for g, r in sample if g == group]
            for i in range(0, len(rows), EXECUTEMANY_BATCH):
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(self.insert, rows[i : i + EXECUTEMANY_BATCH])
            return len(rows)

        return self._per_group(work)

    def rowwise(self) -> int:
        sample = self.data.sample[: self.plan.rowwise_rows]
        for group, row in sample:
            conn = self.conns[group]
            with conn.transaction():
                conn.execute(self.insert, row)
        return len(sample)

    def named(self) -> dict[str, Callable[[], Run]]:
        return {
            "writer": self._checked(self.writer),
            "raw_copy": self._checked(self.raw_copy),
            "executemany": self._checked(self.executemany),
            "rowwise": self._checked(self.rowwise),
        }

    def client_path(self) -> tuple[dict[str, float], dict[str, Any]]:
        """The writer's client work on the run's rows in one thread, no server: µs a
        row to check, and to place and encode; and a profile of both."""
        stages = {"check": 0.0, "place_encode": 0.0}
        shard_map = self.cluster.shards().map_of(LOG.family)
        prof = cProfile.Profile()
        for profiled in (False, True):
            if profiled:
                prof.enable()
            for frame in self.data.frames:
                t0 = time.perf_counter()
                batch = to_predictions(LOG, frame)
                t1 = time.perf_counter()
                split_encode(shard_map, LOG, batch)
                t2 = time.perf_counter()
                if not profiled:
                    stages["check"] += t1 - t0
                    stages["place_encode"] += t2 - t1
            if profiled:
                prof.disable()
        n = self.plan.rows
        us = {k: v / n * 1e6 for k, v in stages.items()}
        us["total"] = sum(us.values())
        return us, _profile_top(prof, n)


def _profile_top(prof: cProfile.Profile, rows: int) -> dict[str, Any]:
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    entries = [
        {"function": f"{_short(file)}:{line}({fn})", "calls": int(nc),
         "own_us_per_row": tt / rows * 1e6, "cumulative_us_per_row": ct / rows * 1e6}
        for (file, line, fn), (_cc, nc, tt, ct, _callers) in raw.items()
    ]  # fmt: skip
    top = sorted(entries, key=lambda e: -float(e["own_us_per_row"]))[:PROFILE_TOP]
    return {"rows": rows, "top_by_own_time": top}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def run(ctx: BenchContext) -> BenchResult:
    """Gate: the writer's rows/s over raw binary COPY's >= 0.7."""
    plan = Plan.of(ctx.quick)
    result = BenchResult(
        name="predictions",
        title=(
            f"Prediction log writes, {plan.rows:,} rows into {GROUPS} groups: the writer "
            "vs raw binary COPY, executemany and row-by-row INSERT"
        ),
    )
    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        with progress.phase("starting the cluster, making the rows", 3) as phase:
            local = LocalCluster(ctx.workdir / "predictions")
            stack.callback(local.destroy)
            local.up(shards=GROUPS, replicas=0, redis=False)
            cluster = stack.enter_context(Cluster(local.config()))
            phase.step("tables")
            tables = PredictionTables(cluster)
            tables.create(LOG)
            phase.step("rows")
            data = Data.make(plan, cluster)
            conns = {
                g: stack.enter_context(
                    connect(find_node(cluster.nodes, cluster.primary_node(g)), cluster.config)
                )
                for g in tables.groups
            }
        variants = Variants(plan, cluster, tables, data, conns)
        runs = ab_rounds(variants.named(), rounds=plan.rounds, progress=progress,
                         title="writer vs raw COPY vs executemany vs row-by-row")  # fmt: skip
        with progress.phase("client path profile", 1) as phase:
            phase.step("check, place, encode")
            stage_us, profile = variants.client_path()
    _report(result, plan, runs, stage_us, profile, variants.counts_ok)
    _print_figures(result)
    return result


def _report(
    result: BenchResult,
    plan: Plan,
    runs: dict[str, list[Run]],
    stage_us: dict[str, float],
    profile: dict[str, Any],
    counts_ok: bool,
) -> None:
    rate = {k: Spread.of([r.rows_per_s for r in v]) for k, v in runs.items()}
    cpu = {k: Spread.of([r.cpu_cores for r in v]) for k, v in runs.items()}
    vs_raw = ratio_of_medians(rate["writer"], rate["raw_copy"])
    vs_many = ratio_of_medians(rate["writer"], rate["executemany"])
    result.params = {
        "groups": GROUPS,
        "replicas_per_group": 0,
        "rows": plan.rows,
        "chunk_rows": plan.chunk_rows,
        "writer_batch_rows": WRITER_BATCH_ROWS,
        "executemany_rows": plan.executemany_rows,
        "executemany_batch": EXECUTEMANY_BATCH,
        "rowwise_rows": plan.rowwise_rows,
        "rounds": plan.rounds,
        "columns": "int8 entity, uuid id, timestamptz, float8 score, model, version; "
        "predicted and extra NULL",
    }
    result.metrics = {
        **spread_metrics(rate, "_rows_per_s"),
        **spread_metrics(cpu, "_client_cpu_cores"),
        "vs_raw_copy_ratio": vs_raw,
        "vs_raw_copy_ratio_per_round": paired_ratios(
            rate["writer"].values, rate["raw_copy"].values
        ).as_dict(),
        "vs_executemany_ratio": vs_many,
        "rowwise_insert_rows_per_s": rate["rowwise"].median,
        "client_path_us_per_row": stage_us,
        "client_path_profile": profile,
        "counts_checked": counts_ok,
    }
    result.gates = [Verdict("vs_raw_copy_ratio", vs_raw, ">=", GATE_RAW)]
    result.charts = [
        chart("Rows per second (median of rounds, min..max)", "rows/s",
              {"4 groups": rate}),
        chart("Client CPU while writing (cores)", "cores", {"4 groups": cpu}),
    ]  # fmt: skip
    cpus = os.cpu_count() or 1
    result.notes = [
        f"client and {GROUPS} PostgreSQL primaries share one {cpus}-CPU machine over "
        "loopback, uncapped: the server's and the client's CPU compete",
        "raw_copy's rows are Python tuples already split by group before the clock "
        "starts; the writer checks a DataFrame, places and encodes its rows inside it",
        f"executemany wrote the first {plan.executemany_rows:,} rows, rowwise the first "
        f"{plan.rowwise_rows:,}; every run's rows were counted on the servers"
        + ("" if counts_ok else " and A COUNT DID NOT MATCH"),
        "client CPU: the whole process's CPU time over the run's wall time (all threads)",
        "writer client path, one thread, no server (us a row): "
        + ", ".join(f"{k} {v:.3f}" for k, v in stage_us.items()),
    ]


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    lines = []
    for name in ("writer", "raw_copy", "executemany", "rowwise"):
        r = m[f"{name}_rows_per_s"]
        c = m[f"{name}_client_cpu_cores"]
        lines.append(
            f"  {name:<12} {r['median']:12,.0f} rows/s ({r['min']:,.0f}..{r['max']:,.0f})"
            f"   client CPU {c['median']:.2f} cores"
        )
    lines.append(
        f"  writer / raw COPY {m['vs_raw_copy_ratio']:.2f}   writer / executemany "
        f"{m['vs_executemany_ratio']:.1f}   client path "
        f"{m['client_path_us_per_row']['total']:.3f} us/row"
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="predictions", title="Prediction log writes", run=run)
