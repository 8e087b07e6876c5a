"""GROUP BY on columns, expressions and positions: each group returns its keys and
partials, the merger combines by key (NULL with NULL, NaN with NaN); ORDER BY, OFFSET
and LIMIT apply after the merge, so no group gets a LIMIT."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from mlscale.core.scatter import AggregateMerge, plan_select

from . import Row, run, same

NAN = math.nan

PLANS = [
    ("select a, count(*) from t group by a", "SELECT a, count(*) FROM t GROUP BY a", 1),
    ("select a, b, sum(x) from t group by a, b",
     "SELECT a, b, sum(x) FROM t GROUP BY a, b", 2),
    ("select count(*) from t group by a", "SELECT a, count(*) FROM t GROUP BY a", 1),
    ("select a + 1 as k, count(*) from t group by 1",
     "SELECT a + 1, count(*) FROM t GROUP BY a + 1", 1),
    ("select lower(s), avg(x) from t group by lower(s)",
     "SELECT lower(s), sum(x), count(x) FROM t GROUP BY lower(s)", 1),
    ("select a * 2, count(*) from t group by a",
     "SELECT a, a * 2, count(*) FROM t GROUP BY a", 1),
    ("select a, count(*) from t group by a order by count(*) desc limit 3 offset 1",
     "SELECT a, count(*) FROM t GROUP BY a", 1),
    ("select a as a, count(*) from t group by a", "SELECT a, count(*) FROM t GROUP BY a", 1),
]


@pytest.mark.parametrize(("sql", "group_sql", "keys"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str, keys: int) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert isinstance(plan.merge, AggregateMerge) and plan.merge.key_count == keys


MERGES = [
    ("combine by key", "select a, count(*), sum(x) from t group by a",
     [[("p", 2, 5), ("q", 1, 1)], [("q", 3, 3), ("r", 1, None)]],
     {("p", 2, 5), ("q", 4, 4), ("r", 1, "None")}),
    ("NULL and NaN keys group together", "select a, count(*) from t group by a",
     [[(None, 1), (NAN, 2), (1.0, 1)], [(None, 2), (NAN, 1), (-0.0, 1), (0.0, 1)]],
     {("None", 3), ("nan", 3), ("1.0", 1), ("0", 2)}),
    ("numeric keys equal across scales", "select a, count(*) from t group by a",
     [[(D("1.0"), 1)], [(D("1.00"), 2)]], {(D("1.0"), 3)}),
    ("no rows: no groups", "select a, count(*) from t group by a", [[], []], set()),
    ("two keys", "select a, b, max(x) from t group by a, b",
     [[(1, "x", 3), (1, "y", 4)], [(1, "x", 9)]], {(1, "x", 9), (1, "y", 4)}),
    ("an expression over the key, carried", "select a * 2, count(*) from t group by a",
     [[(1, 2, 1), (2, 4, 1)], [(1, 2, 5)]], {(2, 6), (4, 1)}),
]


def _loose(rows: list[Row]) -> set[tuple[object, ...]]:
    # Unordered results: compared as sets; NaN, NULL and signed zeros by their text.
    return {tuple(str(v) if isinstance(v, float) or v is None else v for v in r) for r in rows}


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: set[tuple[object, ...]]) -> None:
    result = run(sql, groups)
    assert len(result) == len(expected)
    loose = _loose(result)
    if ("0", 2) in expected:  # -0.0 and 0.0 are one group; either spelling is PostgreSQL's
        loose = {("0", n) if k in ("0.0", "-0.0") else (k, n) for k, n in loose}
    assert loose == {tuple(v for v in r) for r in expected}


ORDERED = [
    ("order by an aggregate, desc, with offset and limit",
     "select a, count(*) from t group by a order by count(*) desc, a limit 2 offset 1",
     [[("p", 2), ("q", 1), ("s", 7)], [("q", 3), ("r", 1)]],
     [("q", 4), ("p", 2)]),
    ("order by position and alias",
     "select a, sum(x) as total from t group by a order by total desc nulls last, 1",
     [[("p", 2), ("q", None)], [("r", 2), ("s", 5)]],
     [("s", 5), ("p", 2), ("r", 2), ("q", None)]),
    ("order by a key, nulls first by default when descending",
     "select a, count(*) from t group by a order by a desc",
     [[(None, 1), (1, 1)], [(3, 1), (None, 1)]],
     [(None, 2), (3, 1), (1, 1)]),
    ("order by an aggregate not selected",
     "select a from t group by a order by max(x) limit 2",
     [[("p", 9), ("q", 1)], [("r", 5), ("p", 2)]],
     [("q",), ("r",)]),
    ("ungrouped count with limit 0", "select count(*) from t limit 0", [[(1,)]], []),
    ("ungrouped count with offset 1", "select count(*) from t offset 1", [[(1,)]], []),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in ORDERED],
                         ids=[m[0] for m in ORDERED])
def test_ordered_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)
