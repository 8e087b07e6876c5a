"""SELECT DISTINCT: each group keeps its DISTINCT (and LIMIT n+m when ordered); the
merger drops rows another group returned too, with PostgreSQL's equality (NaN = NaN,
0 = -0, 1.0 = 1.00), then sorts, skips and limits. Over aggregates, merged outputs are
deduplicated. DISTINCT ON is refused (see test_refusals)."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from mlscale.core.scatter import plan_select

from . import Row, run, same

NAN = math.nan

PLANS = [
    ("select distinct a, b from t", "SELECT DISTINCT a, b FROM t", "concat"),
    ("select distinct a from t order by a limit 2 offset 1",
     "SELECT DISTINCT a, a AS __mlscale_sort_1 FROM t ORDER BY a LIMIT 3", "ordered"),
    ("select distinct k, count(*) from t group by k", "SELECT k, count(*) FROM t GROUP BY k",
     "aggregate"),
]


@pytest.mark.parametrize(("sql", "group_sql", "merge"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str, merge: str) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert plan.to_dict()["merge"] == merge
    assert plan.to_dict()["distinct"] is True
    assert {"step": "distinct"} in plan.to_dict()["steps"]


MERGES = [
    ("rows on two groups once", "select distinct a, b from t",
     [[(1, "x"), (2, "y")], [(1, "x"), (2, "z")]], [(1, "x"), (2, "y"), (2, "z")]),
    ("NaN, -0, scales, NULL", "select distinct a from t",
     [[(NAN,), (0.0,), (None,), (D("1.0"),)], [(NAN,), (-0.0,), (None,), (D("1.00"),)]],
     [(NAN,), (0.0,), (None,), (D("1.0"),)]),
    ("ordered, then offset and limit", "select distinct a from t order by a limit 2 offset 1",
     [[(1, 1), (3, 3)], [(1, 1), (2, 2), (3, 3)]], [(2,), (3,)]),
    ("over aggregates", "select distinct count(*) from t group by k",
     [[(1, 2), (2, 3)], [(1, 1), (3, 3)]], [(3,)]),
    ("over aggregates, ordered", "select distinct k % 2, max(v) from t group by k order by 1, 2",
     [[(1, 1, 5), (2, 0, 5)], [(3, 1, 5), (4, 0, 7)]], [(0, 5), (0, 7), (1, 5)]),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)


def test_steps_in_the_order_the_merger_runs_them() -> None:
    plan = plan_select("select distinct k, count(distinct x) from t group by k "
                       "having count(*) > 1 order by 2 desc limit 5 offset 1")
    steps = plan.to_dict()["steps"]
    assert [s["step"] for s in steps] == [
        "combine partials per key", "having", "outputs", "distinct", "sort", "offset/limit"]
    assert [(a["sql"], a["gathered"]) for a in steps[0]["aggregates"]] == [
        ("count(DISTINCT x)", True), ("count(*)", False)]
    assert steps[0]["aggregates"][0]["gather"]["kind"] == "count"
    assert steps[-1] == {"step": "offset/limit", "offset": 1, "limit": 5}
    ordered = plan_select("select distinct a from t order by a limit 2").to_dict()["steps"]
    assert [s["step"] for s in ordered] == [
        "k-way merge", "drop sort columns", "distinct", "offset/limit"]
