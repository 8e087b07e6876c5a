"""Plain SELECTs (no aggregates): concatenated, or k-way merged by ORDER BY, with
LIMIT n OFFSET m sent as LIMIT n+m to each group."""

from __future__ import annotations

import math

import pytest

from mlscale.core.scatter import ConcatMerge, plan_select

from . import Row, kind, run, same

NAN, INF = math.nan, math.inf

PLANS = [
    ("SELECT a, b FROM t WHERE k = $1", "SELECT a, b FROM t WHERE k = $1", "concat"),
    ("select * from t limit 5 offset 10", "SELECT * FROM t LIMIT 15", "concat"),
    ("select * from t offset 10", "SELECT * FROM t", "concat"),
    ("select a from t limit all", "SELECT a FROM t", "concat"),
    ("select a, b from t order by b desc limit 3",
     "SELECT a, b, b AS __mlscale_sort_1 FROM t ORDER BY b DESC LIMIT 3", "ordered"),
    ("select a, b as x from t order by x, 1 limit 3 offset 2",
     "SELECT a, b AS x FROM t ORDER BY x, 1 LIMIT 5", "ordered"),
    ("select * from t order by b nulls first",
     "SELECT *, b AS __mlscale_sort_1 FROM t ORDER BY b NULLS FIRST", "ordered"),
    ("select a from t order by a + b desc fetch first 4 rows only",
     "SELECT a, a + b AS __mlscale_sort_1 FROM t ORDER BY a + b DESC LIMIT 4", "ordered"),
    ("select a, now() from t order by a",
     "SELECT a, now(), a AS __mlscale_sort_1 FROM t ORDER BY a", "ordered"),
    ('select a from t order by a collate "C"',
     'SELECT a, a COLLATE "C" AS __mlscale_sort_1 FROM t ORDER BY a COLLATE "C"', "ordered"),
]


@pytest.mark.parametrize(("sql", "group_sql", "merge"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str, merge: str) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert kind(plan) == merge


def test_sort_key_flags() -> None:
    sql = "select a, b from t order by a desc, b nulls first, 1 desc nulls last"
    merge = plan_select(sql).merge
    assert isinstance(merge, ConcatMerge)
    flags = [(k.descending, k.nulls_first) for k in merge.order]
    # PostgreSQL's defaults: NULLS LAST ascending, NULLS FIRST descending.
    assert flags == [(True, True), (False, True), (True, False)]


G1 = [(1, "a"), (4, "d"), (None, "n1")]
G2 = [(2, "b"), (3, "c"), (None, "n2")]

MERGES = [
    ("concat", "select x, y from t", [[(1,), (2,)], [], [(3,)]], [(1,), (2,), (3,)]),
    ("concat limit offset", "select x from t limit 2 offset 1",
     [[(1,), (2,), (3,)], [(4,), (5,), (6,)]], [(2,), (3,)]),
    ("offset past the end", "select x from t order by x limit 2 offset 9",
     [[(1, 1)], [(2, 2)]], []),
    ("asc: nulls last",
     "select x, y from t order by x",
     [[(1, "a", 1), (4, "d", 4), (None, "n1", None)], [(2, "b", 2), (3, "c", 3)]],
     [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (None, "n1")]),
    ("desc: nulls first",
     "select x from t order by x desc",
     [[(None, None), (4, 4), (1, 1)], [(None, None), (3, 3), (2, 2)]],
     [(None,), (None,), (4,), (3,), (2,), (1,)]),
    ("desc nulls last with offset",
     "select x from t order by x desc nulls last limit 3 offset 1",
     [[(4, 4), (1, 1), (None, None)], [(3, 3), (2, 2)]],
     [(3,), (2,), (1,)]),
    ("nan above infinity above numbers (asc)",
     "select x from t order by x",
     [[(-INF, -INF), (0.5, 0.5), (NAN, NAN)], [(-1.0, -1.0), (INF, INF), (None, None)]],
     [(-INF,), (-1.0,), (0.5,), (INF,), (NAN,), (None,)]),
    ("nan first when descending, after nulls",
     "select x from t order by x desc limit 3",
     [[(None, None), (NAN, NAN), (2.0, 2.0)], [(INF, INF), (3.0, 3.0)]],
     [(None,), (NAN,), (INF,)]),
    ("text in the C collation (bytewise UTF-8)",
     "select s from t order by s",
     [[("B", "B"), ("a", "a"), ("é", "é")], [("Z", "Z"), ("b", "b"), ("😀", "😀")]],
     [("B",), ("Z",), ("a",), ("b",), ("é",), ("😀",)]),
    ("two keys, position and alias",
     "select a, b as x from t order by x desc, 1",
     [[(1, 2), (2, 1)], [(0, 2), (5, 1)]],
     [(0, 2), (1, 2), (2, 1), (5, 1)]),
    ("hidden key after *",
     "select * from t order by b limit 2",
     [[("r1", 5, 5), ("r2", 9, 9)], [("r3", 1, 1), ("r4", 7, 7)]],
     [("r3", 1), ("r1", 5)]),
    ("no groups", "select x from t order by x", [], []),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)
