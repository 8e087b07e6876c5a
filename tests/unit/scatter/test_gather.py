"""Gathered aggregates: COUNT/SUM/AVG(DISTINCT), ARRAY_AGG, STRING_AGG, percentiles and
mode(). Each group returns its distinct (keys, inputs, multiplicity) rows under
``LIMIT gather_limit + 1``; the merger computes the aggregate as PostgreSQL would."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from mlscale.core.scatter import merge_rows, plan_select
from mlscale.errors import RoutingError

from . import Row, run, same

NAN = math.nan

PLANS = [
    ("select count(distinct x) from t", "SELECT x, count(*) FROM t GROUP BY x LIMIT 1000001"),
    ("select k, count(distinct x), count(*) from t group by k",
     "SELECT k, x, count(*), count(*) FROM t GROUP BY k, x LIMIT 1000001"),
    ("select sum(distinct x), avg(distinct x) from t",
     "SELECT x, sum(DISTINCT x), count(*) FROM t GROUP BY x LIMIT 1000001"),
    ("select array_agg(x order by y desc) filter (where b) from t",
     "SELECT x, CAST(x AS text), y, b, count(*) FROM t GROUP BY x, CAST(x AS text), y, b "
     "LIMIT 1000001"),
    ("select string_agg(s, ',' order by s) from t",
     "SELECT s, count(*) FROM t GROUP BY s LIMIT 1000001"),
    ("select percentile_cont(0.5) within group (order by f), mode() within group (order by f) "
     "from t", "SELECT f, count(*) FROM t GROUP BY f LIMIT 1000001"),
    ("select min(distinct x), bool_or(distinct b) from t",
     "SELECT min(DISTINCT x), bool_or(DISTINCT b) FROM t"),
]


@pytest.mark.parametrize(("sql", "group_sql"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(sql: str, group_sql: str) -> None:
    plan = plan_select(sql)
    assert plan.group_sql == group_sql
    assert plan.gathers == ("LIMIT" in group_sql)
    assert plan.to_dict()["gathers"] == plan.gathers


MERGES = [
    ("count distinct skips NULL", "select count(distinct x) from t",
     [[(1, 2), (2, 1), (None, 3)], [(2, 5), (3, 1)]], [(3,)]),
    ("count distinct: NaN = NaN, 0 = -0", "select count(distinct x) from t",
     [[(NAN, 1), (0.0, 1)], [(NAN, 2), (-0.0, 1)]], [(2,)]),
    ("count distinct of no rows", "select count(distinct x) from t", [[], []], [(0,)]),
    ("per key, with count(*) over the finer rows", "select k, count(distinct x), count(*) from t "
     "group by k", [[(1, "a", 2, 2), (1, "b", 1, 1)], [(1, "a", 4, 4), (2, "a", 1, 1)]],
     [(1, 2, 7), (2, 1, 1)]),
    ("sum/avg distinct in PostgreSQL's types", "select sum(distinct x), avg(distinct x) from t",
     [[(1, 1, 3), (2, 2, 1)], [(2, 2, 4), (None, None, 1)]], [(3, D("1.5000000000000000"))]),
    ("sum distinct int8 is numeric", "select sum(distinct x) from t",
     [[(2**62, D(2**62), 1)], [(2**62, D(2**62), 1), (2**62 + 1, D(2**62 + 1), 1)]],
     [(D(2**63 + 1),)]),
    ("array_agg by its ORDER BY, NULLs kept, 1.0 apart from 1.00",
     "select array_agg(x order by y desc) from t",
     [[(D("1.0"), "1.0", 1, 2), (None, None, 3, 1)], [(D("1.00"), "1.00", 2, 1)]],
     [([None, D("1.00"), D("1.0"), D("1.0")],)]),
    ("array_agg ties and no ORDER BY: ascending values", "select array_agg(x) from t",
     [[(3, "3", 1), (None, None, 1)], [(1, "1", 2)]], [([1, 1, 3, None],)]),
    ("array_agg filter", "select array_agg(x order by x) filter (where b) from t",
     [[(1, "1", True, 1), (2, "2", None, 1)], [(3, "3", False, 1), (4, "4", True, 1)]],
     [([1, 4],)]),
    ("array_agg of no rows is NULL", "select array_agg(x) from t", [[], []], [(None,)]),
    ("array_agg distinct", "select array_agg(distinct x order by x desc) from t",
     [[(1, "1", 3), (2, "2", 1)], [(2, "2", 4)]], [([2, 1],)]),
    ("string_agg skips NULL, C order", "select string_agg(s, ',' order by s) from t",
     [[("b", 2), (None, 1)], [("a", 1), ("é", 1), ("B", 1)]], [("B,a,b,b,é",)]),
    ("string_agg NULL delimiter", "select string_agg(s, NULL order by s) from t",
     [[("b", 1)], [("a", 1)]], [("ab",)]),
    ("string_agg bytea", "select string_agg(s, '\\x2c') from t",
     [[(b"b", 1)], [(b"a", 1)]], [(b"a,b",)]),
    ("percentile_cont interpolates", "select percentile_cont(0.5) within group (order by x) "
     "from t", [[(1.0, 1), (3.0, 1)], [(2.0, 1), (10.0, 1), (None, 4)]], [(2.5,)]),
    ("percentile_cont over numeric is float8",
     "select percentile_cont(0.25) within group (order by x desc) from t",
     [[(D("1.5"), 2)], [(D("4"), 1), (D("2"), 1)]], [(2.5,)]),
    ("percentile_disc", "select percentile_disc(0.5) within group (order by x), "
     "percentile_disc(0) within group (order by x) from t",
     [[(D("1.0"), 1), (D("3"), 1)], [(D("2"), 1), (D("10"), 1)]], [(D("2"), D("1.0"))]),
    ("percentile array, NaN last", "select percentile_cont(array[0, 1, null]) within group "
     "(order by x) from t", [[(NAN, 1), (1.0, 1)], [(2.0, 1)]], [([1.0, NAN, None],)]),
    ("percentile of no rows", "select percentile_disc(0.5) within group (order by x) from t",
     [[(None, 2)], []], [(None,)]),
    ("mode: ties to the first in sort order", "select mode() within group (order by x), "
     "mode() within group (order by x desc) from t",
     [[("a", 2), ("b", 1)], [("b", 1), ("c", 2)]], [("a", "c")]),
]


@pytest.mark.parametrize(("sql", "groups", "expected"), [m[1:] for m in MERGES],
                         ids=[m[0] for m in MERGES])
def test_merge(sql: str, groups: list[list[Row]], expected: list[Row]) -> None:
    assert same(run(sql, groups), expected), run(sql, groups)


def test_gather_limit_bounds_each_group_and_the_total() -> None:
    plan = plan_select("select count(distinct x) from t", gather_limit=3)
    assert plan.group_sql.endswith("LIMIT 4")
    assert plan.to_dict()["gather_limit"] == 3
    assert merge_rows(plan, [[(1, 1)], [(2, 1), (3, 1)]]) == [(3,)]
    for groups in ([[(i, 1) for i in range(4)], []], [[(1, 1), (2, 1)], [(3, 1), (4, 1)]]):
        with pytest.raises(RoutingError, match=r"gather_limit=3 .*raise plan_select\(\.\.\., "
                                               r"gather_limit=\)"):
            merge_rows(plan, groups)
