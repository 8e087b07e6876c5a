"""Ungrouped aggregates: each group returns one row of partials; the merged row has
PostgreSQL's value and type (sum(int4) bigint, sum(int8) numeric, avg(int) numeric at
numeric_div's scale, all-NULL or no rows -> NULL, count of no rows -> 0)."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from mlscale.core.scatter import AggregateMerge, plan_select

from . import Row, kind, run, same

NAN, INF = math.nan, math.inf

PLANS = [
    ("select count(*) from t", "SELECT count(*) FROM t"),
    ("select count(x), sum(x) from t where k > $1", "SELECT count(x), sum(x) FROM t WHERE k > $1"),
    ("select avg(x) from t", "SELECT sum(x), count(x) FROM t"),
    ("select avg(x), sum(x), count(x) from t", "SELECT sum(x), count(x), sum(x), count(x) FROM t"),
    ("select min(x), max(x) from t", "SELECT min(x), max(x) FROM t"),
    ("select pg_catalog.avg(x) from t", "SELECT sum(x), count(x) FROM t"),
    ("select avg(x) filter (where y > 0) from t",
     "SELECT sum(x) FILTER (WHERE y > 0), count(x) FILTER (WHERE y > 0) FROM t"),
    ("select bool_and(b), bool_or(b), every(b) from t",
     "SELECT bool_and(b), bool_or(b), bool_and(b) FROM t"),
    ("select bit_and(i), bit_or(i), bit_xor(i) from t",
     "SELECT bit_and(i), bit_or(i), bit_xor(i) FROM t"),
    ("select count(*), count(*) from t", "SELECT count(*) FROM t"),
    ("select count(*) from t having count(*) > 1", "SELECT count(*) FROM t"),
    ("select count(*) from t limit 1", "SELECT count(*) FROM t"),
]


@pytest.mark.parametrize(("sql", "group_sql"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert kind(plan) == "aggregate"
    assert isinstance(plan.merge, AggregateMerge) and plan.merge.key_count == 0


MERGES = [
    # -- count -----------------------------------------------------------------------------
    ("count", "select count(*) from t", [[(3,)], [(4,)]], [(7,)]),
    ("count of no rows is 0", "select count(x) from t", [[(0,)], [(0,)]], [(0,)]),
    ("no groups at all: one row", "select count(*), sum(x) from t", [], [(0, None)]),
    # -- sum keeps PostgreSQL's result type ------------------------------------------------
    ("sum(int4) is bigint", "select sum(x) from t", [[(2**31 - 1,)], [(2**31 - 1,)]],
     [(2**32 - 2,)]),
    ("sum(int8) is numeric", "select sum(x) from t", [[(D(2**63 - 1),)], [(D(2**63 - 1),)]],
     [(D(2**64 - 2),)]),
    ("sum(numeric) keeps the largest scale", "select sum(x) from t",
     [[(D("1.50"),)], [(D("2.125"),)]], [(D("3.625"),)]),
    ("sum(numeric) beyond 28 digits stays exact", "select sum(x) from t",
     [[(D("1" + "0" * 40 + ".01"),)], [(D("0.001"),)]], [(D("1" + "0" * 40 + ".011"),)]),
    ("sum(float8)", "select sum(x) from t", [[(0.5,)], [(0.25,)]], [(0.75,)]),
    ("sum: inf + -inf is NaN", "select sum(x) from t", [[(INF,)], [(-INF,)]], [(NAN,)]),
    ("sum(numeric): NaN wins", "select sum(x) from t", [[(D("NaN"),)], [(D(1),)]],
     [(D("NaN"),)]),
    ("sum: NULL groups are skipped", "select sum(x) from t", [[(None,)], [(5,)]], [(5,)]),
    ("sum: all NULL is NULL", "select sum(x) from t", [[(None,)], [(None,)]], [(None,)]),
    # -- avg as sum/count ------------------------------------------------------------------
    ("avg(int) is numeric, scale 16", "select avg(x) from t", [[(1, 1)], [(2, 1)]],
     [(D("1.5000000000000000"),)]),
    ("avg(int) of equal leading digits: scale 20", "select avg(x) from t",
     [[(2, 2)], [(1, 1)]], [(D("1.00000000000000000000"),)]),
    ("avg(int) large quotient: scale 12", "select avg(x) from t",
     [[(10000, 1)], [(20000, 1)]], [(D("15000.000000000000"),)]),
    ("avg rounds half away from zero", "select avg(x) from t",
     [[(-2, 2)], [(0, 1)]], [(D("-0.66666666666666666667"),)]),
    ("avg(numeric) keeps a larger input scale", "select avg(x) from t",
     # scale 21 (the input's), the 22nd digit rounded up: PostgreSQL 15's output
     [[(D("1." + "0" * 20 + "1"), 1)], [(D(0), 1)]], [(D("0.500000000000000000001"),)]),
    ("avg(int8): numeric sums", "select avg(x) from t", [[(D(7), 2)], [(D(0), 1)]],
     [(D("2.3333333333333333"),)]),
    ("avg(float8)", "select avg(x) from t", [[(1.0, 2)], [(2.0, 2)]], [(0.75,)]),
    ("avg of no rows is NULL", "select avg(x) from t", [[(None, 0)], [(None, 0)]], [(None,)]),
    ("avg(numeric) with +inf and -inf is NaN", "select avg(x) from t",
     [[(D("Infinity"), 1)], [(D("-Infinity"), 1)]], [(D("NaN"),)]),
    # -- min / max -------------------------------------------------------------------------
    ("min/max", "select min(x), max(x) from t", [[(3, 9)], [(1, 5)]], [(1, 9)]),
    ("min/max all NULL", "select min(x), max(x) from t", [[(None, None)], [(None, None)]],
     [(None, None)]),
    ("max: NaN above +inf", "select min(x), max(x) from t",
     [[(NAN, NAN)], [(-INF, INF)]], [(-INF, NAN)]),
    ("min/max text in C collation", "select min(s), max(s) from t",
     [[("a", "a")], [("Z", "é")]], [("Z", "é")]),
    # -- bool / bit ------------------------------------------------------------------------
    ("bool_and/bool_or", "select bool_and(b), bool_or(b) from t",
     [[(True, True)], [(False, False)], [(None, None)]], [(False, True)]),
    ("bool all NULL", "select bool_and(b) from t", [[(None,)]], [(None,)]),
    ("bit ints", "select bit_and(i), bit_or(i), bit_xor(i) from t",
     [[(0b1100, 0b1100, 0b1100)], [(0b1010, 0b1010, 0b1010)], [(None, None, None)]],
     [(0b1000, 0b1110, 0b0110)]),
    ("bit strings", "select bit_and(i), bit_or(i) from t",
     [[("1100", "1100")], [("1010", "1010")]], [("1000", "1110")]),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)


def test_sum_of_text_values_is_refused_not_concatenated() -> None:
    # money arrives from psycopg as text: '$1.00' + '$2.00' must not become '$1.00$2.00'.
    with pytest.raises(TypeError, match="sum over str"):
        run("select sum(m) from t", [[("$1.00",)], [("$2.00",)]])
