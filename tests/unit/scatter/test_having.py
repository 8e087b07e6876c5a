"""HAVING: removed from the per-group query, applied to the merged aggregates (a
group key passing HAVING on no single group can pass once merged, and the reverse)."""

from __future__ import annotations

import pytest

from mlscale.core.scatter import AggregateMerge, merge_rows, plan_select

from . import Row, run, same

PLANS = [
    ("select a from t group by a having count(*) > 2",
     "SELECT a, count(*) FROM t GROUP BY a", "($1 > 2)"),
    ("select a, sum(x) from t group by a having sum(x) >= 10 and a <> 'z'",
     "SELECT a, sum(x), a <> 'z' FROM t GROUP BY a", "(($1 >= 10) AND $2)"),
    ("select a from t group by a having avg(x) is null or not max(x) < 1.5",
     "SELECT a, sum(x), count(x), max(x) FROM t GROUP BY a",
     "($1 IS NULL OR NOT ($3 < Decimal('1.5')))"),
]


@pytest.mark.parametrize(("sql", "group_sql", "having"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str, having: str) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert isinstance(plan.merge, AggregateMerge)
    assert str(plan.merge.having) == having


MERGES = [
    ("passes only once merged",
     "select a, count(*) from t group by a having count(*) > 2 order by a",
     [[("p", 2), ("q", 1)], [("p", 1), ("q", 1)]], [("p", 3)]),
    ("fails once merged", "select a from t group by a having max(x) < 5 order by a",
     [[("p", 1), ("q", 1)], [("p", 9)]], [("q",)]),
    ("NULL is not true", "select a from t group by a having sum(x) > 0",
     [[("p", None)], [("p", None)]], []),
    ("ungrouped HAVING false: no row", "select count(*) from t having count(*) > 5",
     [[(2,)], [(3,)]], []),
    ("ungrouped HAVING true: one row", "select count(*) from t having count(*) > 4",
     [[(2,)], [(3,)]], [(5,)]),
    ("three-valued OR",
     "select a from t group by a having sum(x) > 0 or count(*) > 1 order by a",
     [[("p", None, 2), ("q", None, 1)]], [("p",)]),
    ("a carried comparison on the key",
     "select a from t group by a having a <> 'z' and count(*) > 0",
     [[("z", 1, False), ("y", 1, True)]], [("y",)]),
    ("comparison with a numeric literal", "select a from t group by a having avg(x) = 2.5",
     [[("p", 5, 2), ("q", 4, 2)]], [("p",)]),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)


def test_and_stops_at_the_deciding_value() -> None:
    # count(x) is 0 for key 2: its AND is false before sum(y) / count(x) is computed.
    plan = plan_select(
        "SELECT k FROM t GROUP BY k HAVING count(x) > 0 AND sum(y) / count(x) > 1 ORDER BY k"
    )
    assert plan.group_sql == "SELECT k, count(x), sum(y) FROM t GROUP BY k"
    groups: list[list[Row]] = [[(1, 4, 10)], [(2, 0, 5)]]  # key 2: 5 / 0 if computed
    assert merge_rows(plan, groups) == [(1,)]
