"""Expressions over aggregates in the select list, computed after the merge with
PostgreSQL's typing: bigint / bigint truncates, numeric / anything is numeric_div,
round(numeric, n) rounds half away from zero, round(float8, n) does not exist."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from mlscale.core.scatter import AggregateMerge, plan_select
from mlscale.core.scatter.pgvalues import MergeArithmeticError

from . import Row, run, same

PLANS = [
    ("select sum(a) / count(b) from t", "SELECT sum(a), count(b) FROM t", ["($0 / $1)"]),
    ("select round(avg(x), 2) from t", "SELECT sum(x), count(x) FROM t", ["round($0, 2)"]),
    ("select -sum(x) + 1, max(x) * 2 - min(x) from t", "SELECT sum(x), max(x), min(x) FROM t",
     ["(-$0 + 1)", "(($1 * 2) - $2)"]),
    ("select 100.0 * count(*) / sum(n) from t", "SELECT count(*), sum(n) FROM t",
     ["((Decimal('100.0') * $0) / $1)"]),
    ("select a, sum(x) / $1 from t group by a", "SELECT a, sum(x), $1 FROM t GROUP BY a",
     ["$0", "($1 / $2)"]),
]


@pytest.mark.parametrize(("sql", "group_sql", "outputs"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str, outputs: list[str]) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert isinstance(plan.merge, AggregateMerge)
    assert [str(e) for e in plan.merge.outputs] == outputs


MERGES = [
    ("bigint / bigint truncates toward zero", "select sum(a) / count(b) from t",
     [[(-7, 1)], [(0, 1)]], [(-3,)]),
    ("numeric / bigint is numeric_div", "select sum(a) / count(b) from t",
     [[(D("7.0"), 2)], [(D(0), 1)]], [(D("2.3333333333333333"),)]),
    ("float / bigint", "select sum(a) / count(b) from t", [[(1.0, 2)], [(0.0, 2)]], [(0.25,)]),
    ("round(avg(int), 2)", "select round(avg(x), 2) from t", [[(1, 1)], [(2, 2)]],
     [(D("1.00"),)]),
    ("round half away from zero", "select round(avg(x), 1) from t", [[(-1, 4)]],
     [(D("-0.3"),)]),
    ("round(avg(int)) to 0 places", "select round(avg(x)) from t", [[(5, 2)]], [(D("3"),)]),
    ("round to tens", "select round(sum(x), -1) from t", [[(D(15),)]], [(D(20),)]),
    ("round(float8) half to even", "select round(avg(x)) from t", [[(5.0, 2)]], [(2.0,)]),
    ("NULL propagates", "select sum(x) * 2 from t", [[(None,)]], [(None,)]),
    ("numeric literal makes numeric", "select 100.0 * count(*) / sum(n) from t",
     [[(1, 2)], [(0, 1)]], [(D("33.3333333333333333"),)]),
    ("unary minus and a carried key", "select a, -sum(x) from t group by a",
     [[("p", 4)], [("p", 1)]], [("p", -5)]),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)


def test_division_by_zero_raises_as_postgresql() -> None:
    with pytest.raises(MergeArithmeticError, match="division by zero"):
        run("select sum(a) / count(b) from t", [[(1, 0)]])


def test_round_float8_with_digits_does_not_exist() -> None:
    with pytest.raises(TypeError, match="round\\(double precision, integer\\)"):
        run("select round(avg(x), 2) from t", [[(1.0, 1)]])
