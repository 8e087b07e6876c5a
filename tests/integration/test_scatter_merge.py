"""The scatter planner's per-group queries on a real PostgreSQL, merged, against the
same query over all the rows.

Two shard groups are simulated in one database: schemas ``g1`` and ``g2`` each hold
part of the rows of table ``t`` and schema ``ref`` holds them all; a query runs under
each ``search_path``. Values cover NULLs, float8 NaN and +/-Infinity, numerics of
several scales (1.0 beside 1.00, NaN, +/-Infinity), text beyond ASCII, booleans, int4,
int8 and real. Ordered aggregates are compared only where their ORDER BY ends in a
unique key or the values are DISTINCT (PostgreSQL leaves other orders unspecified).
"""

from __future__ import annotations

import math
import random
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from mlscale import Cluster
from mlscale.core.scatter import merge_rows, plan_select

QUERIES = [
    "select count(*), count(n), sum(i4), sum(i8), sum(n), avg(i4), avg(i8), avg(n), "
    "min(s), max(s), min(f), max(f), bool_and(b), bool_or(b), bit_and(i4), bit_or(i4) from t",
    "select k, count(*), sum(i4), avg(n), max(f), min(n) from t group by k",
    "select k, s is null, count(*), sum(i8) from t group by k, s is null",
    "select k % 2 as parity, avg(i4) from t group by 1",
    "select k, sum(i4) / count(i8), round(avg(i4), 2), 100.0 * count(n) / count(*) "
    "from t group by k having count(*) > 5",
    "select k, count(*) from t group by k having sum(i4) > 0 and max(s) is not null",
    "select k, count(*) from t group by k order by count(*) desc, k nulls first limit 3 offset 1",
    "select k, avg(n) as m from t group by k order by m desc nulls last",
    "select id, f from t order by f desc, id limit 10 offset 3",
    "select id, f from t order by f nulls first, id limit 12",
    "select id, s from t order by s nulls first, id limit 15",
    "select id, n from t where n is not null order by n, id desc limit 7 offset 2",
    "select * from t order by i8 desc nulls last, id limit 5",
    "select id, i4 from t order by 2, 1 offset 190",
    "select id from t where b",
    "select count(*), sum(n), avg(i4), max(s) from t where id < 0",
    "select k, avg(n) from t where id < 0 group by k",
    "select avg(f), sum(f) from t where f is not null and f = f and abs(f) < 1e300",
    "select k, sum(f), min(f), max(f), avg(f) from t group by k",
    "select b, avg(i8), sum(i8) / count(*), round(avg(n), 3) from t group by b "
    "having avg(i8) is not null order by b nulls first",
    "select s, count(*) from t group by s order by s desc limit 4 offset 1",
    "select k, count(*) filter (where b), bool_or(b), bit_xor(i4) from t group by k",
    # -- stddev / variance: float8 (Youngs-Cramer) and numeric (exact, PostgreSQL's scale) --
    "select stddev(f), variance(f), stddev_pop(f), var_pop(f), stddev_samp(f), var_samp(f) "
    "from t",
    "select stddev(f), variance(f), stddev_pop(f), var_pop(f) from t "
    "where f = f and abs(f) < 1e300",
    "select k, stddev(f), var_pop(f), var_samp(f4), stddev_pop(f4) from t "
    "where f = f and abs(f) < 1e300 group by k",
    "select stddev(i4), variance(i8), stddev_pop(n), var_pop(n), var_samp(n), stddev(v), "
    "var_pop(v) from t",
    "select k, stddev(n), variance(i4), var_pop(i8), stddev_pop(v), var_samp(nx) from t group by k",
    "select k, var_pop(nx), stddev(nx) from t where nx < 'Infinity' and nx > '-Infinity' "
    "group by k",
    "select b, variance(n) filter (where v > 1), stddev(i4) / 2 from t group by b",
    "select stddev(n), var_samp(f), var_pop(i4) from t where id = 7",
    # -- DISTINCT ---------------------------------------------------------------------------
    "select distinct k, b from t",
    "select distinct s from t order by s nulls first limit 4 offset 1",
    "select distinct v, k from t order by v desc, k limit 5",
    "select distinct f from t",
    "select distinct count(*) from t group by k",
    "select distinct k % 2, max(v) from t group by k order by 1, 2",
    # -- gathered: COUNT/SUM/AVG(DISTINCT), ARRAY_AGG, STRING_AGG, percentiles, mode --------
    "select count(distinct s), count(distinct f), count(distinct n), sum(distinct i4), "
    "avg(distinct n), count(distinct v), count(*) from t",
    "select k, count(distinct v), sum(distinct v), avg(distinct i8), sum(distinct f), "
    "avg(distinct v), sum(i4) from t group by k having count(distinct v) > 1 order by k",
    "select k, array_agg(s order by s, id), string_agg(s, ',' order by id desc) from t "
    "group by k order by k",
    "select array_agg(nx order by id), array_agg(f order by id desc), string_agg(s, NULL "
    "order by id) from t where id < 60",
    "select array_agg(distinct v order by v), string_agg(distinct s, '|' order by s) from t",
    "select k, percentile_cont(0.5) within group (order by f), percentile_disc(0.3) within "
    "group (order by n), mode() within group (order by v), avg(n) from t group by k",
    "select percentile_cont(array[0, 0.25, 0.5, 0.9, 1]) within group (order by i4), "
    "percentile_disc(array[0.1, null, 0.9]) within group (order by s desc), "
    "percentile_cont(0.37) within group (order by n) from t",
    "select percentile_cont(0.5) within group (order by f), percentile_disc(0.5) within "
    "group (order by f desc) from t where f = f and abs(f) < 1e300",
    "select mode() within group (order by s), mode() within group (order by v desc), "
    "mode() within group (order by nx) from t",
    # ids 0..199: id % 3 is 0 and 1 67 times each, 2 66 times: a tie, won by the first
    "select mode() within group (order by id % 3), mode() within group (order by id % 3 desc), "
    "mode() within group (order by id % 4 desc) from t",
    "select k, count(*) filter (where b), array_agg(id order by id) filter (where v > 2), "
    "percentile_cont(0.9) within group (order by n) filter (where b), stddev(n) from t "
    "group by k order by k",
    "select stddev(f), count(distinct s), array_agg(id order by id), percentile_cont(0.5) "
    "within group (order by f), mode() within group (order by s), string_agg(s, ',') "
    "from t where id < 0",
    "select k, count(distinct s) from t where id < 0 group by k",
]


def _rows(seed: int = 12, count: int = 200) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    floats = [math.nan, math.inf, -math.inf, 0.0, -0.0, None]
    texts = ["a", "B", "é", "Z", "zz", "😀", "", None]
    numerics = [None, *map(Decimal, ["1.0", "1.00", "2.5", "-0.001", "NaN", "Infinity",
                                     "-Infinity", "123456789.123456789"])]
    rows = []
    for i in range(count):
        rows.append((
            i,
            rng.choice([0, 1, 2, 3, 4, None]),
            rng.choice([None, rng.randint(-2**31, 2**31 - 1), rng.randint(-5, 5)]),
            rng.choice([None, rng.randint(-2**63, 2**63 - 1)]),
            rng.choice([None, Decimal(rng.randint(-10**6, 10**6)).scaleb(-rng.randint(0, 4))]),
            rng.choice([*floats, rng.uniform(-1e6, 1e6), rng.uniform(-1, 1)]),
            rng.choice(texts),
            rng.choice([True, False, None]),
            rng.choice([1, 2, 2, 3, 3, 4, None]),
            rng.choice(numerics),
            rng.choice([None, 0.5, -1.25, rng.uniform(-100, 100)]),
        ))
    return rows


def _same_value(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple() or (a.is_nan() and b.is_nan())
    return bool(a == b)


def _sort_key(row: tuple[Any, ...]) -> str:
    # 0.0 for -0.0: DISTINCT keeps either (they are equal), which must not reorder rows.
    return repr([("nan" if isinstance(v, float) and math.isnan(v) else
                  v + 0.0 if isinstance(v, float) else v) for v in row])


def check_against_reference(conn: psycopg.Connection[Any]) -> int:
    """Creates the schemas, runs every query both ways, drops them; returns how many
    queries were compared."""
    tag = uuid.uuid4().hex[:8]
    schemas = {name: f"scatter_{name}_{tag}" for name in ("ref", "g1", "g2")}
    rows = _rows()
    try:
        for name, schema in schemas.items():
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(
                f"CREATE TABLE {schema}.t (id int PRIMARY KEY, k int, i4 int4, i8 int8, "
                "n numeric, f float8, s text, b bool, v int4, nx numeric, f4 real)"
            )
            part = [r for r in rows if name == "ref" or (r[0] % 3 == 0) == (name == "g1")]
            with conn.cursor() as cur:
                insert = f"INSERT INTO {schema}.t VALUES ({', '.join(['%s'] * 11)})"  # noqa: S608
                cur.executemany(insert, part)
        for sql in QUERIES:
            plan = plan_select(sql)
            conn.execute(f"SET search_path TO {schemas['ref']}")
            expected = conn.execute(sql).fetchall()
            groups = []
            for name in ("g1", "g2"):
                conn.execute(f"SET search_path TO {schemas[name]}")
                groups.append(conn.execute(plan.group_sql).fetchall())
            merged = merge_rows(plan, groups)
            if plan.merge.order == ():
                expected.sort(key=_sort_key)
                merged.sort(key=_sort_key)
            assert len(merged) == len(expected), sql
            for got, want in zip(merged, expected, strict=True):
                assert len(got) == len(want), sql
                assert all(_same_value(a, b) for a, b in zip(got, want, strict=True)), (
                    f"{sql}\n merged:   {got}\n expected: {want}"
                )
        return len(QUERIES)
    finally:
        conn.execute("RESET search_path")
        for schema in schemas.values():
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.integration
def test_merged_equals_one_server(cluster: Cluster) -> None:
    with cluster.connection(cluster.primary_node()) as conn:
        compared = check_against_reference(conn)
    print(f"compared {compared} queries")
