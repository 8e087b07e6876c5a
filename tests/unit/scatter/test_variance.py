"""STDDEV and VARIANCE: each group sends (N, sum, float8 sum, float8 Sxx, numeric sum of
squares); float8 arguments merge by Youngs-Cramer, integer and numeric ones exactly at
PostgreSQL's result scale. Expected values are PostgreSQL 15's over the union of the
groups' rows."""

from __future__ import annotations

import math
from decimal import Decimal as D
from fractions import Fraction

import pytest

from mlscale.core.scatter import plan_select

from . import Row, run, same

NAN, INF = math.nan, math.inf
ALL = ("select var_samp(x), var_pop(x), stddev_samp(x), stddev_pop(x), variance(x), "
       "stddev(x) from t")


def test_plan() -> None:
    plan = plan_select("select stddev(x) filter (where y > 0) from t")
    assert plan.group_sql == (
        "SELECT count(x) FILTER (WHERE y > 0), sum(x) FILTER (WHERE y > 0), "
        "sum(CAST(x AS float8)) FILTER (WHERE y > 0), "
        "var_pop(x) FILTER (WHERE y > 0) * count(x) FILTER (WHERE y > 0), "
        "sum(CAST(x AS numeric) * CAST(x AS numeric)) FILTER (WHERE y > 0) FROM t"
    )
    assert not plan.gathers


def _float(values: list[float]) -> Row:
    # A group's float8 partials, its Sxx exact (PostgreSQL's is within a few ulps).
    n = len(values)
    total = sum(values)
    exact = [Fraction(v) for v in values]
    sxx = float(sum((v - sum(exact) / n) ** 2 for v in exact)) if n else None
    return (n, total if n else None, total if n else None, sxx, None)


MERGES = [
    # 1.5, 2.25 | 7 (numeric): PostgreSQL prints these digits.
    ("numeric", ALL,
     [[(2, D("3.75"), 3.75, 0.28125, D("7.3125"))], [(1, D("7"), 7.0, 0.0, D("49"))]],
     [(D("8.8958333333333333"), D("5.9305555555555556"), D("2.9825883613622134"),
       D("2.4352731993670763"), D("8.8958333333333333"), D("2.9825883613622134"))]),
    # int4 1, 2 | 2, 2: numeric at scale 20.
    ("int", "select var_samp(x), stddev(x), var_pop(x) from t",
     [[(2, 3, 3.0, 0.5, D(5))], [(2, 4, 4.0, 0.0, D(8))]],
     [(D("0.25000000000000000000"), D("0.50000000000000000000"), D("0.18750000000000000000"))]),
    ("one row: sample NULL, population 0", "select var_samp(x), var_pop(x), stddev_pop(x) from t",
     [[(1, D("1.50"), 1.5, 0.0, D("2.2500"))], [(0, None, None, None, None)]],
     [(None, D(0), D(0))]),
    ("numeric NaN", "select var_samp(x), var_pop(x) from t",
     [[(1, D("NaN"), NAN, None, D("NaN"))], [(1, D(1), 1.0, 0.0, D(1))]], [(D("NaN"), D("NaN"))]),
    ("numeric infinity", "select var_pop(x) from t",
     [[(1, D("Infinity"), INF, None, D("Infinity"))], [(1, D(1), 1.0, 0.0, D(1))]], [(D("NaN"),)]),
    ("float8 1, 2 | 3, 4", "select var_samp(x), var_pop(x), stddev_pop(x) from t",
     [[(2, 3.0, 3.0, 0.5, D(5))], [(2, 7.0, 7.0, 0.5, D(25))]],
     [(5 / 3, 1.25, math.sqrt(1.25))]),
    ("float8 with an infinity is NaN", "select var_pop(x), stddev(x) from t",
     [[(1, INF, INF, NAN, D("Infinity"))], [(2, 3.0, 3.0, 0.5, D(5))]], [(NAN, NAN)]),
    ("float8 one row", "select var_samp(x), var_pop(x) from t",
     [[_float([2.5])], [_float([])]], [(None, 0.0)]),
    ("no rows", "select var_samp(x), stddev_pop(x) from t",
     [[(0, None, None, None, None)], [(0, None, None, None, None)]], [(None, None)]),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    width = sql.count("(x)")
    groups = [[row * width for row in rows] for rows in groups]
    assert same(run(sql, groups), expected), run(sql, groups)


def test_float8_combine_is_youngs_cramer_over_many_partitions() -> None:
    # A mean of 1e3 over a spread of 1: the naive sum-of-squares formula would lose
    # about six digits here. (Far worse conditioned data, 1e6 + 0.1*i, is off by 5e-11
    # in PostgreSQL itself, one server, sequential: no merge can promise more there.)
    values = [math.sin(i) + 1e3 for i in range(30)]
    parts = [values[:7], values[7:8], values[8:20], values[20:]]
    exact_values = [Fraction(v) for v in values]
    mean = sum(exact_values) / len(values)
    exact = float(sum((v - mean) ** 2 for v in exact_values) / (len(values) - 1))
    merged = run("select var_samp(x) from t", [[_float(p)] for p in parts])[0][0]
    assert math.isclose(merged, exact, rel_tol=1e-12)
