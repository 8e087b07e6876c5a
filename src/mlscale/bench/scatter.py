"""``mlscale bench scatter``: a GROUP BY across shard groups, fanned out in parallel.

One local cluster: 4 shard groups of one primary each (``--replicas 0``), every
node capped at 0.2 CPU (``--node-cpu 0.2``). A sharded table is spread over the
4 groups by slot; the control node, capped at 0.2 CPU too, holds a copy of all
its rows: that is "one node holding all the data" (caps on the data nodes add up
to 5 x 0.2 = 1 CPU). Every node runs one backend per query (parallel query off:
under a cap, workers share the cap and add only their start-up).

The ownership filter (the map's slot predicate in each group's WHERE: a hash of
the key per row) is what keeps a slot copied to a second group from being read
twice. mlscale adds it only while the table's key family has a move open
(``cluster.begin_move``), or on every read with ``policies.ownership_filter =
"always"``; outside a move each row is on one group and the fan-out leaves it out.

In alternating rounds, the same GROUP BY (count, sum, max per country):

- ``fan-out``: ``cluster.fetch_all`` with no move open — mlscale plans it, runs
  it on the 4 groups in parallel (no ownership filter) and merges;
- ``fan-out during a move``: the same through a second ``Cluster`` whose policies
  say ``ownership_filter = "always"``, so each group reads only the slots it owns,
  as every read of the family does while a move is open (no real move is opened:
  it would turn the filter on for the other variants too);
- ``sequential loop``: the tutorials' loop (lecture 05, "Cross-Shard Queries"):
  the same SQL on each group's primary one after another, over connections held
  open (as an SQLAlchemy engine pools them), counts and sums added up in Python;
- ``one node``: the same SQL on the control node, which holds every row;
- ``raw parallel, unfiltered``: each group's query as the fan-out sends it outside
  a move, by raw psycopg from 4 threads at once: the machine's ceiling for the
  fan-out (all of its server work, none of its planning or merging);
- ``raw parallel, filtered``: the same with the ownership filter: the ceiling of
  the fan-out during a move.

Gate ``parallel_vs_sequential_ratio`` (loop time / fan-out time) >= 3; goal
``scatter_vs_single_ratio`` (fan-out time / one-node time) <= 0.5; both are the
fan-out with no move open. The ownership filter's cost: the fan-out during a
move / the fan-out (``ownership_filter_ratio``), and the raw per-group queries
with / without it (``ownership_filter_raw_ratio``). Before the rounds, both
fan-outs' per-group SQL is checked to be filtered (or not) as said, and every
variant's answer equal to the one node's. The client's CPU time is measured per
query in every round.

Then, in a fresh process (:mod:`mlscale.bench.stream_probe`), an ORDER BY over
a second sharded table (2M rows in the full run) is read with
``cluster.stream`` and the client's peak RSS growth measured: gate
``stream_rss_growth_mb`` <= 200. For contrast, the same rows the tutorials'
way (each group's rows fetched whole, extended, sorted) in another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..core.shardmaps import KeyFamily, SlotMap
from ..core.topology import Node, find_node, nodes_of
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect
from ..errors import MlscaleError
from ..local.cgroups import cap_of_process, detect
from ..local.cluster import LocalCluster
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "run"]

GROUPS = 4
NODE_CPU = 0.2
PARALLEL_GATE = 3.0
SINGLE_GOAL = 0.5
STREAM_RSS_GATE_MB = 200.0
# A client using this share of the machine's CPUs may be what limits a round.
CLIENT_BUSY_SHARE = 0.5

FAMILY = "bench_scatter"
TABLE = "bench_scatter_events"
STREAM_TABLE = "bench_scatter_stream"
CREATE = (
    f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, country text NOT NULL, "
    "clicks integer NOT NULL, score double precision NOT NULL)"
)
CREATE_STREAM = f"CREATE TABLE {STREAM_TABLE} (id bigint PRIMARY KEY, payload integer NOT NULL)"
# Rows are a function of their id, so every node that holds an id holds the same row.
ROW_EXPRS = (
    "(ARRAY['de','fr','us','br','in','jp','ng','gb'])[1 + g % 8]",
    "(g % 97)::int",
    "(g % 10007) / 7.0",
)
SELECT_LIST = "country, count(*) AS n, sum(clicks) AS clicks, max(score) AS top"
QUERY = f"SELECT {SELECT_LIST} FROM {TABLE} GROUP BY country ORDER BY country"  # noqa: S608
STREAM_QUERY = f"SELECT id, payload FROM {STREAM_TABLE} ORDER BY id"  # noqa: S608
STREAM_WARM_QUERY = f"SELECT id, payload FROM {STREAM_TABLE} WHERE id <= 5000 ORDER BY id"  # noqa: S608
STREAM_BATCH = 2000

FANOUT = "fan-out (mlscale)"
FANOUT_MOVE = "fan-out during a move (filter on)"
LOOP = "sequential loop (tutorials)"
SINGLE = "one node, all rows"
CEILING = "raw parallel, unfiltered"
CEILING_MOVE = "raw parallel, filtered"
KEYS = {
    FANOUT: "fanout",
    FANOUT_MOVE: "fanout_move",
    LOOP: "sequential",
    SINGLE: "single_node",
    CEILING: "raw_parallel",
    CEILING_MOVE: "raw_parallel_filtered",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full)."""

    rows_per_group: int
    stream_rows_per_group: int
    rounds: int
    reps: int  # queries per variant per round (the round's figure is their mean)

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(rows_per_group=50_000, stream_rows_per_group=25_000, rounds=5, reps=2)
        return cls(rows_per_group=250_000, stream_rows_per_group=500_000, rounds=7, reps=1)


@dataclass(frozen=True, slots=True)
class Timing:
    """One round of a variant: wall and client CPU seconds per query (means over reps)."""

    wall_s: float
    cpu_s: float


Answer = list[tuple[Any, ...]]


# -- data -------------------------------------------------------------------------------


def _insert_sql(
    table: str,
    columns: Sequence[str],
    exprs: Sequence[str],
    rows: int,
    where: sql.Composable | None,
) -> sql.Composed:
    """``INSERT INTO table SELECT g, exprs FROM generate_series(1, rows) g [WHERE ...]``."""
    query = sql.SQL("INSERT INTO {} ({}) SELECT g, {} FROM generate_series(1, {}) AS g").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.SQL(e) for e in exprs),
        sql.Literal(rows),
    )
    if where is not None:
        query = sql.SQL("{} WHERE {}").format(query, where)
    return query


def _run_on(node: Node, cluster: Cluster, *statements: sql.Composed | str) -> None:
    with connect(node, cluster.config) as conn:
        for statement in statements:
            conn.execute(statement)


def _load(cluster: Cluster, control: Node, shard_map: SlotMap, plan: Plan) -> dict[str, int]:
    """Both sharded tables on the groups, the events table whole on ``control``; every
    node vacuumed and analyzed. Rows each group holds."""
    cluster.create_sharded_table(CREATE, shard_key="id", family=FAMILY)
    cluster.create_sharded_table(CREATE_STREAM, shard_key="id", family=FAMILY)
    total = plan.rows_per_group * GROUPS
    stream_total = plan.stream_rows_per_group * GROUPS
    key = [sql.Identifier("g")]
    columns = ("id", "country", "clicks", "score")

    def load_group(group: str) -> None:
        node = find_node(cluster.nodes, cluster.primary_node(group))
        mine = shard_map.predicate(group, key)
        _run_on(
            node,
            cluster,
            _insert_sql(TABLE, columns, ROW_EXPRS, total, mine),
            _insert_sql(STREAM_TABLE, ("id", "payload"), ("(g % 1000)::int",), stream_total, mine),
            f"VACUUM (FREEZE, ANALYZE) {TABLE}",
            f"VACUUM (FREEZE, ANALYZE) {STREAM_TABLE}",
        )

    def load_control() -> None:
        _run_on(
            control,
            cluster,
            f"DROP TABLE IF EXISTS {TABLE}",
            CREATE,
            _insert_sql(TABLE, columns, ROW_EXPRS, total, None),
            f"VACUUM (FREEZE, ANALYZE) {TABLE}",
        )

    groups = list(shard_map.groups)
    with ThreadPoolExecutor(len(groups) + 1) as pool:
        done = [pool.submit(load_group, g) for g in groups] + [pool.submit(load_control)]
        for future in done:
            future.result()
    held = {}
    for group in groups:
        node = find_node(cluster.nodes, cluster.primary_node(group))
        with connect(node, cluster.config) as conn:
            row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # noqa: S608
            held[group] = int(row[0]) if row else 0
    return held


def _no_parallel_query(nodes: Sequence[Node], cluster: Cluster) -> None:
    """One backend per query on every node (and its sessions from now on)."""
    for node in nodes:
        _run_on(
            node,
            cluster,
            "ALTER SYSTEM SET max_parallel_workers_per_gather = 0",
            "SELECT pg_reload_conf()",
        )


# -- the variants -----------------------------------------------------------------------


def combine(per_group: Sequence[Sequence[Sequence[Any]]]) -> Answer:
    """The tutorials' way of adding up: per country, counts and sums added, maxima kept."""
    totals: dict[str, list[Any]] = {}
    for rows in per_group:
        for country, n, clicks, top in rows:
            seen = totals.get(country)
            if seen is None:
                totals[country] = [n, clicks, top]
            else:
                seen[0] += n
                seen[1] += clicks
                seen[2] = max(seen[2], top)
    return [(c, *totals[c]) for c in sorted(totals)]


def _fetch(conn: psycopg.Connection[Any], query: sql.Composed) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()


def _group_query(predicate: sql.Composable | None) -> sql.Composed:
    """The per-group query, with the ownership filter (``predicate``) or without."""
    where = sql.SQL("") if predicate is None else sql.SQL(" WHERE {}").format(predicate)
    return sql.SQL("SELECT {} FROM {}{} GROUP BY country").format(
        sql.SQL(SELECT_LIST), sql.Identifier(TABLE), where
    )


def _timed(query: Callable[[], Answer], reps: int) -> Callable[[], Timing]:
    def one() -> Timing:
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(reps):
            query()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return Timing(wall / reps, cpu / reps)

    return one


@dataclass
class Variants:
    """The six ways to answer the GROUP BY, each returning its answer."""

    cluster: Cluster  # no move open: the fan-out leaves the ownership filter out
    filtering: Cluster  # policies.ownership_filter = "always": as during a move
    groups: dict[str, psycopg.Connection[Any]]  # group -> connection to its primary
    control: psycopg.Connection[Any]
    pool: ThreadPoolExecutor
    filtered: dict[str, sql.Composed]
    unfiltered: sql.Composed

    def fanout(self) -> Answer:
        return [tuple(r) for r in self.cluster.fetch_all(QUERY, consistency="strong")]

    def fanout_move(self) -> Answer:
        return [tuple(r) for r in self.filtering.fetch_all(QUERY, consistency="strong")]

    def loop(self) -> Answer:
        return combine([conn.execute(QUERY).fetchall() for conn in self.groups.values()])

    def single(self) -> Answer:
        return [tuple(r) for r in self.control.execute(QUERY).fetchall()]

    def _parallel(self, queries: Mapping[str, sql.Composed]) -> Answer:
        futures = [self.pool.submit(_fetch, conn, queries[g]) for g, conn in self.groups.items()]
        return combine([f.result() for f in futures])

    def raw(self) -> Answer:
        return self._parallel(dict.fromkeys(self.groups, self.unfiltered))

    def raw_filtered(self) -> Answer:
        return self._parallel(self.filtered)

    def named(self) -> dict[str, Callable[[], Answer]]:
        return {
            FANOUT: self.fanout,
            FANOUT_MOVE: self.fanout_move,
            LOOP: self.loop,
            SINGLE: self.single,
            CEILING: self.raw,
            CEILING_MOVE: self.raw_filtered,
        }

    def check_filters(self) -> dict[str, str]:
        """The first group's SQL as each fan-out sends it. Raises unless the fan-out
        sends every group the same unfiltered query and the move variant sends each
        group its own slot predicate: the figures would mean something else otherwise
        (a move left open, a policy not applied)."""
        plain = self.cluster.explain_route(QUERY, consistency="strong").fanout
        owned = self.filtering.explain_route(QUERY, consistency="strong").fanout
        if plain is None or owned is None:
            raise MlscaleError(f"the bench query is not a cross-shard read: {QUERY}")
        plain_sql = {q.sql for q in plain.queries}
        owned_sql = [q.sql for q in owned.queries]
        per_group = len(set(owned_sql)) == len(owned_sql)  # each its own slot predicate
        if len(plain_sql) != 1 or not per_group or plain_sql & set(owned_sql):
            raise MlscaleError(
                "expected the fan-out unfiltered (no move open) and the move variant filtered "
                f"per group; the fan-out sends {sorted(plain_sql)!r}, the move variant "
                f"{owned_sql!r}"
            )
        return {"fanout": plain.queries[0].sql, "fanout_move": owned_sql[0]}


def _same(a: Answer, b: Answer) -> bool:
    """Equal rows; max(score) compared to a relative 1e-12 (float8 either way)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[:3] != y[:3] or abs(float(x[3]) - float(y[3])) > 1e-12 * max(1.0, abs(float(y[3]))):
            return False
    return True


@contextmanager
def _variants(cluster: Cluster, control: Node, shard_map: SlotMap) -> Iterator[Variants]:
    config = cluster.config
    always = config.model_copy(
        update={"policies": config.policies.model_copy(update={"ownership_filter": "always"})}
    )
    with ExitStack() as stack:
        groups = {
            g: stack.enter_context(
                connect(find_node(cluster.nodes, cluster.primary_node(g)), cluster.config)
            )
            for g in shard_map.groups
        }
        pool = stack.enter_context(ThreadPoolExecutor(len(groups)))
        key = [sql.Identifier("id")]
        yield Variants(
            cluster=cluster,
            filtering=stack.enter_context(Cluster(always)),
            groups=groups,
            control=stack.enter_context(connect(control, cluster.config)),
            pool=pool,
            filtered={g: _group_query(shard_map.predicate(g, key)) for g in groups},
            unfiltered=_group_query(None),
        )


# -- streaming ---------------------------------------------------------------------------


def _probe(config: Path, how: str) -> dict[str, Any]:
    """Run :mod:`.stream_probe` in a fresh interpreter; what it measured."""
    cmd = [
        sys.executable, "-m", "mlscale.bench.stream_probe", str(config), STREAM_QUERY,
        "--warm-sql", STREAM_WARM_QUERY, "--how", how, "--batch-size", str(STREAM_BATCH),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise MlscaleError(f"the {how} memory probe failed: {tail}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# -- the benchmark -----------------------------------------------------------------------


def run(ctx: BenchContext) -> BenchResult:
    """Gates: loop / fan-out >= 3, stream RSS growth <= 200 MB. Goal: fan-out / one node <= 0.5."""
    result = BenchResult(
        name="scatter",
        title=(
            f"Cross-shard GROUP BY over {GROUPS} groups at {NODE_CPU} CPU each: parallel fan-out "
            "vs the tutorials' sequential loop and vs one node holding all rows; the ownership "
            "filter's cost during a move"
        ),
    )
    plan = Plan.of(ctx.quick)
    result.params = {
        "groups": GROUPS,
        "replicas": 0,
        "node_cpu": NODE_CPU,
        "rows_per_group": plan.rows_per_group,
        "rows": plan.rows_per_group * GROUPS,
        "query": QUERY,
        "rounds": plan.rounds,
        "queries_per_variant_per_round": plan.reps,
        "one_node": "the control node (same cap, same settings) holding every row",
        "parallel_query": "off on every node (max_parallel_workers_per_gather = 0)",
        "loop": "raw psycopg, one held-open connection per group primary, one group after "
        "another, combined in Python",
        "fanout": "cluster.fetch_all, no move open: per-group queries without the ownership filter",
        "fanout_move": "cluster.fetch_all through a Cluster with policies.ownership_filter = "
        "'always': per-group queries with the ownership filter, as during a move (none opened)",
        "raw_parallel": "raw psycopg, the per-group query without the ownership filter, 4 "
        "threads: the ceiling of fanout",
        "raw_parallel_filtered": "raw psycopg, the per-group query with the ownership filter, "
        "4 threads: the ceiling of fanout_move",
        "stream_query": STREAM_QUERY,
        "stream_rows": plan.stream_rows_per_group * GROUPS,
        "stream_batch_size": STREAM_BATCH,
    }
    cgroups, why = detect()
    if cgroups is None:
        result.notes.append(f"no CPU caps possible here: {why}; nothing was measured")
        nan = float("nan")
        result.gates += [
            Verdict("parallel_vs_sequential_ratio", nan, ">=", PARALLEL_GATE, "x"),
            Verdict("stream_rss_growth_mb", nan, "<=", STREAM_RSS_GATE_MB, "MB"),
        ]
        result.goals.append(Verdict("scatter_vs_single_ratio", nan, "<=", SINGLE_GOAL, "x"))
        return result

    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        title = f"starting {GROUPS} shard groups at {NODE_CPU} CPU per node, loading"
        with progress.phase(title, 2) as phase:
            local = LocalCluster(ctx.workdir / "scatter")
            stack.callback(local.destroy)
            local.up(shards=GROUPS, replicas=0, redis=False, node_cpu=NODE_CPU)
            config = local.config()
            cluster = stack.enter_context(Cluster(config))
            caps = {
                name: cap_of_process(pids[0])[1] for name, pids in local.processes().items() if pids
            }
            control = nodes_of(config)[0]
            _no_parallel_query([control, *cluster.nodes], cluster)
            phase.step("up")
            groups = [g.name for g in config.shard_groups]
            shard_map = SlotMap.even(KeyFamily.of(FAMILY, "int8"), groups)
            cluster.create_shard_map(shard_map, reason="mlscale bench scatter")
            t0 = time.perf_counter()
            held = _load(cluster, control, shard_map, plan)
            load_s = time.perf_counter() - t0
            phase.step("loaded")

        variants = stack.enter_context(_variants(cluster, control, shard_map))
        sent = variants.check_filters()
        answers = {name: query() for name, query in variants.named().items()}
        reference = answers[SINGLE]
        wrong = [name for name, answer in answers.items() if not _same(answer, reference)]
        if wrong:
            raise MlscaleError(
                f"these variants answered differently from the one node: {', '.join(wrong)}; "
                f"one node: {reference!r}, "
                + "; ".join(f"{name}: {answers[name]!r}" for name in wrong)
            )
        runs = ab_rounds(
            {name: _timed(query, plan.reps) for name, query in variants.named().items()},
            rounds=plan.rounds,
            progress=progress,
            title="fan-out (with and without the filter) vs loop vs one node vs raw",
        )
        with progress.phase("streaming ORDER BY, client memory", 2) as phase:
            stream = _probe(local.layout.config, "stream")
            phase.step("stream")
            fetchall = _probe(local.layout.config, "fetchall")
            phase.step("fetchall")

    _report(result, runs, stream, fetchall, plan)
    result.metrics.update(
        {
            "rows_by_group": held,
            "load_s": load_s,
            "answers_equal": True,
            "answer_rows": len(reference),
            "group_sql_sent": sent,
        }
    )
    result.machine = {"node_cpu_caps": caps, "cgroup_version": cgroups.version}
    _print_figures(result)
    return result


def _report(
    result: BenchResult,
    runs: Mapping[str, Sequence[Timing]],
    stream: Mapping[str, Any],
    fetchall: Mapping[str, Any],
    plan: Plan,
) -> None:
    ms = {KEYS[k]: Spread.of([t.wall_s * 1000 for t in v]) for k, v in runs.items()}
    cpu_ms = {KEYS[k]: Spread.of([t.cpu_s * 1000 for t in v]) for k, v in runs.items()}
    cpu_per_s = {
        KEYS[k]: Spread.of([t.cpu_s / t.wall_s for t in v if t.wall_s > 0]) for k, v in runs.items()
    }
    fan, loop, one = ms["fanout"], ms["sequential"], ms["single_node"]
    fan_move = ms["fanout_move"]
    # Each fan-out's ceiling: the same per-group queries it sends, from raw threads.
    ceiling, ceiling_move = ms["raw_parallel"], ms["raw_parallel_filtered"]
    speedup = ratio_of_medians(loop, fan)
    vs_single = ratio_of_medians(fan, one)
    filter_ratio = ratio_of_medians(fan_move, fan)
    raw_filter_ratio = ratio_of_medians(ceiling_move, ceiling)
    per_round = {
        "parallel_vs_sequential_ratio": paired_ratios(loop.values, fan.values),
        "scatter_vs_single_ratio": paired_ratios(fan.values, one.values),
        "ownership_filter_ratio": paired_ratios(fan_move.values, fan.values),
        "ownership_filter_raw_ratio": paired_ratios(ceiling_move.values, ceiling.values),
        "ceiling_vs_sequential_ratio": paired_ratios(loop.values, ceiling.values),
        "fanout_over_ceiling": paired_ratios(fan.values, ceiling.values),
        "fanout_move_over_ceiling": paired_ratios(fan_move.values, ceiling_move.values),
    }
    growth = float(stream["rss_growth_mb"])
    result.metrics.update(
        {
            **spread_metrics(ms, "_query_ms", with_values=True),
            **spread_metrics(cpu_ms, "_client_cpu_ms_per_query", with_values=True),
            **spread_metrics(cpu_per_s, "_client_cpu_per_s"),
            "parallel_vs_sequential_ratio": speedup,
            "scatter_vs_single_ratio": vs_single,
            "ownership_filter_ratio": filter_ratio,
            "ownership_filter_extra_ms": fan_move.median - fan.median,
            "ownership_filter_raw_ratio": raw_filter_ratio,
            "ownership_filter_raw_extra_ms": ceiling_move.median - ceiling.median,
            "ceiling_vs_sequential_ratio": ratio_of_medians(loop, ceiling),
            "ceiling_vs_single_ratio": ratio_of_medians(ceiling, one),
            "fanout_over_ceiling": ratio_of_medians(fan, ceiling),
            "fanout_move_over_ceiling": ratio_of_medians(fan_move, ceiling_move),
            **{f"{k}_per_round": v.as_dict() for k, v in per_round.items()},
            "stream_rss_growth_mb": growth,
            "stream": dict(stream),
            "fetchall_rss_growth_mb": float(fetchall["rss_growth_mb"]),
            "fetchall": dict(fetchall),
        }
    )
    result.gates += [
        Verdict("parallel_vs_sequential_ratio", speedup, ">=", PARALLEL_GATE, "x"),
        Verdict("stream_rss_growth_mb", growth, "<=", STREAM_RSS_GATE_MB, "MB"),
    ]
    result.goals.append(Verdict("scatter_vs_single_ratio", vs_single, "<=", SINGLE_GOAL, "x"))
    result.charts += [
        chart(
            f"GROUP BY time, {GROUPS} groups at {NODE_CPU} CPU vs one node at {NODE_CPU} CPU",
            "ms",
            {"median of rounds": {name: ms[KEYS[name]] for name in runs}},
        ),
        chart(
            "Sequential loop / fan-out time",
            "x",
            {
                "per round": {
                    "loop / fan-out": per_round["parallel_vs_sequential_ratio"],
                    "loop / raw parallel, unfiltered (ceiling)": per_round[
                        "ceiling_vs_sequential_ratio"
                    ],
                }
            },
            target=PARALLEL_GATE,
        ),
        chart(
            "Fan-out / one node time",
            "x",
            {"per round": {"fan-out / one node": per_round["scatter_vs_single_ratio"]}},
            target=SINGLE_GOAL,
        ),
        chart(
            "Ownership filter: time with / without, same query",
            "x",
            {
                "per round": {
                    "fan-out during a move / fan-out": per_round["ownership_filter_ratio"],
                    "raw parallel filtered / unfiltered": per_round["ownership_filter_raw_ratio"],
                }
            },
        ),
        chart(
            "Client CPU per query",
            "ms",
            {"median of rounds": {name: cpu_ms[KEYS[name]] for name in runs}},
        ),
    ]
    if not stream["ordered"] or stream["rows"] != fetchall["rows"]:
        result.notes.append(
            f"the stream returned {stream['rows']} rows (ordered: {stream['ordered']}), the "
            f"loop {fetchall['rows']}: a bug"
        )
    cpus = os.cpu_count() or 1
    busy = [KEYS[k] for k in runs if cpu_per_s[KEYS[k]].median >= CLIENT_BUSY_SHARE * cpus]
    result.notes += [
        f"the gate and the goal are the fan-out with no move open, which sends each group the "
        f"query without the ownership filter; its ceiling is those per-group queries from 4 raw "
        f"threads ({CEILING!r}): {ceiling.median:.1f} ms, so loop / ceiling is "
        f"{ratio_of_medians(loop, ceiling):.2f}x, about the most the fan-out could reach here; "
        f"the fan-out takes {ratio_of_medians(fan, ceiling):.2f}x its ceiling's time",
        f"during a move (filter on; measured with policies.ownership_filter = 'always', no move "
        f"opened) the fan-out's ceiling is {CEILING_MOVE!r}: {ceiling_move.median:.1f} ms; "
        f"the fan-out during a move takes {fan_move.median:.1f} ms, "
        f"{ratio_of_medians(fan_move, ceiling_move):.2f}x that ceiling's time",
        f"ownership filter's cost: the fan-out takes {fan_move.median:.1f} ms with it (during a "
        f"move) vs {fan.median:.1f} ms without (x{filter_ratio:.3f}); the raw per-group queries "
        f"{ceiling_move.median:.1f} vs {ceiling.median:.1f} ms (x{raw_filter_ratio:.3f}); same "
        "query, same run",
        f"client CPU per query: fan-out {cpu_ms['fanout'].median:.2f} ms (during a move "
        f"{cpu_ms['fanout_move'].median:.2f} ms), loop "
        f"{cpu_ms['sequential'].median:.2f} ms, one node {cpu_ms['single_node'].median:.2f} ms; "
        + (
            f"CLIENT-LIMITED (client >= {CLIENT_BUSY_SHARE * cpus:.1f} CPUs): {', '.join(busy)}"
            if busy
            else "the client is not what limits these rounds"
        ),
        f"stream: {stream['rows']:,} rows in {stream['wall_s']:.1f} s "
        f"({stream['cpu_s']:.1f} CPU-s in the client), peak RSS {stream['rss_before_mb']:.0f} -> "
        f"{stream['rss_after_mb']:.0f} MB; the tutorials' fetch-everything loop over the same "
        f"rows grew it by {fetchall['rss_growth_mb']:.0f} MB",
        f"caps: {GROUPS} groups x {NODE_CPU} CPU + the control node (one node) {NODE_CPU} CPU = "
        f"{(GROUPS + 1) * NODE_CPU:.1f} CPU on a {cpus}-CPU machine",
    ]
    if plan.reps > 1:
        result.notes.append(f"each round's figure is the mean of {plan.reps} back-to-back queries")


def _print_figures(result: BenchResult) -> None:
    m = result.metrics

    def fmt(key: str) -> str:
        s = m[f"{key}_query_ms"]
        return f"{s['median']:.1f} ms ({s['min']:.1f}..{s['max']:.1f})"

    lines = [f"  {name:<34} {fmt(key)}" for name, key in KEYS.items()]
    lines.append(
        f"  loop / fan-out {m['parallel_vs_sequential_ratio']:.2f}x   "
        f"fan-out / one node {m['scatter_vs_single_ratio']:.2f}x   "
        f"filter: fan-out x{m['ownership_filter_ratio']:.3f}, "
        f"raw x{m['ownership_filter_raw_ratio']:.3f}   "
        f"stream RSS +{m['stream_rss_growth_mb']:.1f} MB ({m['stream']['rows']:,} rows)"
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="scatter", title="Cross-shard reads", run=run)
