"""Differential test of cross-shard reads (issue 12): a 4-group cluster and one
unsharded PostgreSQL database hold the same rows, and hypothesis-generated SELECTs
(scatter_queries.py) run on both must return the same result, or be refused by the
cluster with the documented ``RoutingError("cross-shard read: ...")``.

Results are compared with PostgreSQL's own precision: numerics exactly, scale
included (PostgreSQL prints it); float8 to a relative 1e-12 (NaN equal to NaN);
every value of the same Python type; rows in order only when the query has an ORDER
BY ending in a unique key. A query the reference rejects (division by zero, integer
out of range) must be rejected by the cluster too.

The cluster is read through ``Cluster.fetch_all``. ``MLSCALE_SCATTER_STANDIN=1`` reads
it through :func:`standin_fetch_all` instead: the planner's per-group SQL on each
group's primary and the merger, no fan-out executor (to test the planner and merger
before, or apart from, the executor).
"""

# ruff: noqa: S608 -- the SQL is assembled from fixed pieces here and in scatter_queries.py

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from psycopg import sql

from mlscale import Cluster, LocalCluster, RoutingError
from mlscale.core.scatter import merge_rows, plan_select
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.topology import nodes_of
from mlscale.engine.connect import connect
from mlscale.local.tempdirs import reachable_tempdir
from tests.integration.scatter_queries import (
    COLUMNS,
    CONSTRUCTS,
    DDL,
    TABLE,
    UNORDERED_DELIMITER,
    Query,
    queries,
    table_rows,
)

pytestmark = pytest.mark.integration

GROUPS = ("g0", "g1", "g2", "g3")
FAMILY = "scatter_diff_id"
REFERENCE_DB = "scatter_reference"
REFUSAL_PREFIX = "cross-shard read: "
EXAMPLES = 600
MIN_DISTINCT_QUERIES = 300
MIN_COMPARED = 250
MIN_COMPARED_PER_CONSTRUCT = 3
REL_TOL = 1e-12

Rows = list[tuple[Any, ...]]


def _edge(sql: str, *constructs: str, ordered: bool = False) -> Query:
    return Query(sql, ordered, (), frozenset(constructs))


# Run on every run besides the generated queries: cases where a merger computing in
# Python types parts from PostgreSQL (integer overflow raises, NaN / 0 is NaN, an
# integer literal past int4 is int8, NaN counted once by COUNT(DISTINCT)).
EDGE_CASES = (
    _edge(f"SELECT max(i4) - min(i4) FROM {TABLE}", "agg_expr", "max", "min"),
    _edge(f"SELECT k, -min(i2), max(i2) + max(i2) FROM {TABLE} GROUP BY k ORDER BY k",
          "agg_expr", "min", "max", "group_by", "order_by", ordered=True),
    _edge(f"SELECT sum(i4) * sum(i4) FROM {TABLE}", "agg_expr", "sum"),
    _edge(f"SELECT sum(i2) * 100000000000 FROM {TABLE}", "agg_expr", "sum"),
    _edge(f"SELECT sum(f) / 0 FROM {TABLE}", "agg_expr", "sum"),
    _edge(f"SELECT count(DISTINCT f), count(DISTINCT n) FROM {TABLE}", "count_distinct"),
    _edge(f"SELECT b, stddev(f), var_pop(n), stddev_samp(i8) FROM {TABLE} WHERE f < 1e9 "
          "GROUP BY b", "stddev", "variance", "group_by", "where"),
    _edge(f"SELECT mode() WITHIN GROUP (ORDER BY f), percentile_disc(0.5) WITHIN GROUP "
          f"(ORDER BY f), percentile_cont(0.5) WITHIN GROUP (ORDER BY f) FROM {TABLE}",
          "mode", "percentile_disc", "percentile_cont"),
)


@dataclass
class Env:
    cluster: Cluster
    reference: psycopg.Connection[Any]
    fetch: Callable[[str], Rows]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """A 4-group cluster (no replicas, no Redis) with TABLE sharded on id, and a
    database on its control server with the same rows in one unsharded TABLE."""
    base = reachable_tempdir("mlscale-scatter-diff-")
    local = LocalCluster(base / "cluster")
    try:
        local.up(shards=len(GROUPS), replicas=0, redis=False)
        config = local.config()
        control = nodes_of(config)[0]
        with connect(control, config) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(REFERENCE_DB)))
        rows = table_rows()
        with (
            Cluster.from_file(local.layout.config) as cluster,
            connect(control, config, dbname=REFERENCE_DB) as reference,
        ):
            _load(cluster, reference, rows)
            fetch = standin_fetch_all(cluster) if os.environ.get("MLSCALE_SCATTER_STANDIN") else (
                lambda query: list(cluster.fetch_all(query)))
            yield Env(cluster, reference, fetch)
    finally:
        try:
            local.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _load(cluster: Cluster, reference: psycopg.Connection[Any], rows: Rows) -> None:
    cluster.create_shard_map(SlotMap.even(KeyFamily.of(FAMILY, "int8"), list(GROUPS)),
                             reason="scatter differential test")
    cluster.create_sharded_table(DDL, shard_key="id", family=FAMILY)
    copy = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
    assert cluster.copy(copy, rows) == len(rows)
    reference.execute(DDL)
    with reference.cursor() as cur, cur.copy(copy) as writer:
        for row in rows:
            writer.write_row(row)
    per_group = {}
    for group in GROUPS:
        with cluster.connection(cluster.primary_node(group)) as conn:
            per_group[group] = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
            # date_trunc and timestamptz text depend on the session time zone.
            zone = conn.execute("SHOW TimeZone").fetchall()
            assert zone == reference.execute("SHOW TimeZone").fetchall(), group
    assert sum(per_group.values()) == len(rows), per_group
    assert all(count > len(rows) // 8 for count in per_group.values()), per_group
    assert reference.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (len(rows),)


def standin_fetch_all(cluster: Cluster) -> Callable[[str], Rows]:
    """A stand-in for ``cluster.fetch_all`` of a cross-shard read: the planner's
    per-group SQL run on each group's primary (the groups hold disjoint rows, no slot
    being moved, so no ownership filter is needed), then the merger."""

    def fetch(query: str) -> Rows:
        plan = plan_select(query)
        per_group = []
        types: list[int] = []
        for group in GROUPS:
            with cluster.connection(cluster.primary_node(group)) as conn:
                cur = conn.execute(plan.group_sql)
                per_group.append(cur.fetchall())
                types = [d.type_code for d in cur.description or ()]
        return merge_rows(plan, per_group, column_types=types)

    return fetch


# -- comparison ---------------------------------------------------------------------------

def same_value(got: Any, want: Any) -> bool:
    """Equal as PostgreSQL would show them: same type; numeric with its scale; float8
    to a relative 1e-12 with NaN equal to NaN; arrays element by element."""
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return got == want or math.isclose(got, want, rel_tol=REL_TOL)
    if isinstance(want, Decimal):
        if want.is_nan() or got.is_nan():
            return want.is_nan() and got.is_nan()
        return bool(got.as_tuple() == want.as_tuple())
    if isinstance(want, list):
        return len(got) == len(want) and all(map(same_value, got, want))
    return bool(got == want)


def _canonical(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "float('nan')"
    if isinstance(value, list):
        return "[" + ", ".join(_canonical(v) for v in value) + "]"
    return f"{type(value).__name__}:{value!r}"


def _unordered_inside(rows: Rows, columns: Sequence[tuple[int, str]]) -> Rows:
    """Rows with each aggregate of unspecified element order put in a fixed order."""
    if not columns:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for index, kind in columns:
            value = values[index]
            if value is None:
                continue
            if kind == "array":
                values[index] = sorted(value, key=_canonical)
            else:
                values[index] = UNORDERED_DELIMITER.join(
                    sorted(value.split(UNORDERED_DELIMITER)))
        out.append(tuple(values))
    return out


def _same_row(got: Sequence[Any], want: Sequence[Any]) -> bool:
    return len(got) == len(want) and all(map(same_value, got, want))


def same_rows(query: Query, got: Rows, want: Rows) -> bool:
    got = _unordered_inside(got, query.unordered_values)
    want = _unordered_inside(want, query.unordered_values)
    if len(got) != len(want):
        return False
    if query.ordered:
        return all(map(_same_row, got, want))
    # No ORDER BY: the same rows in any order. Sorted first; the rows a float's last
    # bits could reorder are then matched one by one.
    got = sorted(got, key=lambda r: [_canonical(v) for v in r])
    want = sorted(want, key=lambda r: [_canonical(v) for v in r])
    if all(map(_same_row, got, want)):
        return True
    unmatched = list(got)
    for row in want:
        match = next((i for i, g in enumerate(unmatched) if _same_row(g, row)), None)
        if match is None:
            return False
        unmatched.pop(match)
    return True


# -- the run ------------------------------------------------------------------------------

@dataclass
class Tally:
    """What happened to each distinct generated query."""

    compared: int = 0
    refused: int = 0
    both_errored: int = 0
    seen: set[str] = field(default_factory=set)
    compared_by_construct: Counter[str] = field(default_factory=Counter)
    refused_by_construct: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _reference_rows(reference: psycopg.Connection[Any], query: str) -> Rows | Exception:
    try:
        return reference.execute(query).fetchall()
    except psycopg.Error as exc:
        return exc


def _refusal_reason(message: str) -> str:
    # "cross-shard read: <what>; <todo>": the construct, without the call's own text.
    reason = message.removeprefix(REFUSAL_PREFIX).split(";")[0]
    return reason.split(": ", 1)[-1] if ": " in reason else reason


def check(env: Env, query: Query, tally: Tally) -> None:
    """Run ``query`` on both; record the outcome (a failure is recorded, not raised,
    so that one run reports every difference)."""
    if query.sql in tally.seen:
        return
    tally.seen.add(query.sql)
    want = _reference_rows(env.reference, query.sql)
    try:
        got: Rows | Exception = env.fetch(query.sql)
    except Exception as exc:  # every outcome is classified below
        got = exc
    if isinstance(want, Exception):
        if isinstance(got, Exception):
            tally.both_errored += 1
            tally.errors.append(f"{query.sql}\n  reference: {want!r}\n  cluster: {got!r}")
        else:
            tally.failures.append(f"{query.sql}\n  reference raised: {want!r}\n  cluster: {got!r}")
        return
    if isinstance(got, RoutingError) and str(got).startswith(REFUSAL_PREFIX):
        tally.refused += 1
        tally.refused_by_construct.update(query.constructs)
        tally.refusals[_refusal_reason(str(got))] += 1
        return
    if isinstance(got, Exception):
        tally.failures.append(
            f"{query.sql}\n  cluster raised: {got!r}\n  reference: {_short(want)}")
        return
    if not same_rows(query, got, want):
        tally.failures.append(
            f"{query.sql}\n  cluster:   {_short(got)}\n  reference: {_short(want)}")
        return
    tally.compared += 1
    tally.compared_by_construct.update(query.constructs)


def _short(rows: Rows) -> str:
    text = repr(rows)
    return text if len(text) < 600 else text[:600] + f"... ({len(rows)} rows)"


def test_cross_shard_reads_equal_one_server_or_refuse(env: Env) -> None:
    tally = Tally()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(query=queries())
    def run(query: Query) -> None:
        check(env, query, tally)

    for edge in EDGE_CASES:
        run = example(query=edge)(run)
    run()
    print(f"\ncompared {tally.compared}, refused {tally.refused}, "
          f"both-errored {tally.both_errored}, differing {len(tally.failures)} "
          f"(of {len(tally.seen)} distinct queries)")
    print("compared by construct:", dict(sorted(tally.compared_by_construct.items())))
    print("refused by construct:", dict(sorted(tally.refused_by_construct.items())))
    for reason, count in tally.refusals.most_common():
        print(f"  refused {count}x: {reason}")
    for error in tally.errors:
        print("both errored:", error)
    for failure in tally.failures:
        print("DIFFERS:", failure)

    assert not tally.failures, f"{len(tally.failures)} queries differ:\n" + "\n".join(
        tally.failures[:20])
    assert len(tally.seen) >= MIN_DISTINCT_QUERIES
    assert tally.compared >= MIN_COMPARED, "too few queries compared (the rest refused)"
    thin = {c: tally.compared_by_construct[c] for c in CONSTRUCTS
            if tally.compared_by_construct[c] < MIN_COMPARED_PER_CONSTRUCT}
    assert not thin, f"constructs compared fewer than {MIN_COMPARED_PER_CONSTRUCT} times: {thin}"


def naive_union_fetch_all(cluster: Cluster) -> Callable[[str], Rows]:
    """What sharding layers that lie return: the statement run as written on every
    group, the rows concatenated."""

    def fetch(query: str) -> Rows:
        rows: Rows = []
        for group in GROUPS:
            with cluster.connection(cluster.primary_node(group)) as conn:
                rows.extend(conn.execute(query).fetchall())
        return rows

    return fetch


def test_the_comparison_catches_a_silent_union(env: Env) -> None:
    """The harness itself: a union of per-group rows differs from the reference on
    most generated queries (else the main test could pass without merging)."""
    tally = Tally()
    union = Env(env.cluster, env.reference, naive_union_fetch_all(env.cluster))

    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(query=queries())
    def run(query: Query) -> None:
        check(union, query, tally)

    run()
    print(f"\nsilent union: {len(tally.failures)} differ, {tally.compared} equal "
          f"(of {len(tally.seen)} distinct queries)")
    assert tally.refused == 0
    assert len(tally.failures) >= 2 * tally.compared
