"""What the merger cannot make exact is refused with a RoutingError naming the
construct and what to do; nothing is sent and no silent union is returned."""

from __future__ import annotations

import pytest

from mlscale.core.scatter import plan_select
from mlscale.errors import RoutingError

REFUSALS = [
    # -- window functions ------------------------------------------------------------------
    ("select a, row_number() over (order by a) from t",
     "window function row_number() OVER (ORDER BY a)"),
    ("select sum(x) over (partition by a) from t", "window function sum(x) OVER"),
    ("select a from t window w as (order by a)", "WINDOW clause"),
    # -- aggregates not merged --------------------------------------------------------------
    ("select corr(x, y) from t", "corr(x, y): corr() is not merged across shard groups yet"),
    ("select json_agg(x) from t", "json_agg() is not merged"),
    ("select rank(1) within group (order by x) from t", "rank() is not merged"),
    ("select var_pop(distinct x) from t", "DISTINCT inside var_pop() is not merged"),
    ("select bit_xor(distinct x) from t", "DISTINCT inside bit_xor()"),
    # -- gathered aggregates whose inputs are not constants the merger can use -----------
    ("select string_agg(s, d) from t", "the string_agg delimiter d is not a string literal"),
    ("select string_agg(s, 1) from t", "delimiter 1 is not a string literal"),
    ("select percentile_cont(f) within group (order by x) from t",
     "the fraction f is not a constant number"),
    ("select percentile_disc($1) within group (order by x) from t",
     "the fraction $1 is not a constant number"),
    ("select percentile_cont(array[0.5, y]) within group (order by x) from t",
     "the fraction y is not a constant number"),
    ("select percentile_disc(1.5) within group (order by x) from t",
     "percentile value 1.5 is not between 0 and 1"),
    ('select array_agg(x order by s collate "en_US") from t', 'COLLATE "en_US"'),
    # -- positions PostgreSQL counts after expanding * ---------------------------------------
    ("select *, k from t order by 2 limit 10", "ORDER BY position 2 after a *"),
    ("select * from t order by 1", "ORDER BY position 1 after a *"),
    # -- a row one server returns over no rows, that no group would carry ----------------
    ("select count(distinct x), 2 + 3 from t", "an expression outside the aggregates next to"),
    # -- DISTINCT, DISTINCT ON, set operations, CTEs ---------------------------------------
    ("select distinct on (a) a, count(*) from t group by a", "DISTINCT ON is not merged"),
    ("select distinct on (a) a, b from t order by a, b", "DISTINCT ON is not merged"),
    ("select distinct a from t order by b", "ORDER BY expressions must appear in select list (b)"),
    ("select distinct k, count(*) from t group by k order by max(x)",
     "must appear in select list (max(x))"),
    ("select count(*) from (select distinct on (a) a, b from t) s",
     "a subquery with DISTINCT ON would keep one row per key on each shard group"),
    ("select a from t union all select a from u", "UNION/INTERSECT/EXCEPT"),
    ("with c as (select 1) select * from c", "WITH (a common table expression)"),
    ("select a, count(*) from t group by rollup (a)", "GROUPING SETS/ROLLUP/CUBE"),
    ("select a from t for update", "FOR UPDATE/SHARE"),
    # -- subqueries ------------------------------------------------------------------------
    ("select * from (select a from t limit 5) s", "LIMIT/OFFSET inside a subquery"),
    ("select a from t where a in (select b from u order by b limit 3)", "inside a subquery"),
    ("select * from (select a, count(*) from t group by a) s",
     "a subquery with aggregates, GROUP BY or DISTINCT"),
    ("select a from t where x > (select avg(x) from t)", "a subquery with aggregates"),
    # -- volatile functions in merged expressions ------------------------------------------
    ("select a from t order by random() limit 3", "volatile function random() in ORDER BY"),
    ("select a, count(*) from t group by a order by random()",
     "volatile function random() in ORDER BY"),
    ("select array_agg(x order by random()) from t",
     "volatile function random() in the select list"),
    ("select count(*) + random() from t", "volatile function random() in the select list"),
    ("select a, sum(x) from t group by a having sum(x) > random()",
     "volatile function random() in HAVING"),
    ("select a, clock_timestamp(), count(*) from t group by a", "clock_timestamp()"),
    # -- expressions over aggregates the merger does not compute ---------------------------
    ("select sqrt(sum(x)) from t", "sqrt(sum(x)) in the select list is computed over merged"),
    ("select sum(x)::float8 from t", "CAST(sum(x) AS float8)"),
    ("select coalesce(sum(x), 0) from t", "COALESCE(sum(x), 0)"),
    ("select a from t group by a having sum(x) between 1 and 2", "BETWEEN"),
    # -- ORDER BY / LIMIT forms ------------------------------------------------------------
    ("select a from t order by a using <", "ORDER BY ... USING"),
    ('select a from t order by a collate "en_US"', 'COLLATE "en_US"'),
    ("select a from t limit $1", "LIMIT $1 is not a non-negative integer literal"),
    ("select a from t offset 1 + 1", "OFFSET 1 + 1"),
    ("select a from t order by a fetch first 2 rows with ties", "WITH TIES"),
    ("select a from t order by 3", "ORDER BY position 3 is not in the select list"),
    # -- GROUP BY forms --------------------------------------------------------------------
    ("select b as a, count(*) from t group by a",
     "GROUP BY a names an output column whose expression differs"),
    ("select *, count(*) from t group by a", "SELECT * with aggregates"),
    # -- not one SELECT --------------------------------------------------------------------
    ("update t set a = 1", "only one SELECT"),
    ("select 1; select 2", "only one SELECT"),
    ("select from where", "does not parse"),
]


@pytest.mark.parametrize(("sql", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused(sql: str, message: str) -> None:
    with pytest.raises(RoutingError) as info:
        plan_select(sql)
    text = str(info.value)
    assert text.startswith("cross-shard read: ")
    assert message in text, text
    if "parse" not in message and "only one SELECT" not in message:
        assert "; " in text, "a refusal says what to do"


ALLOWED = [
    "select a, now() from t order by a",  # now() is stable: one value per statement
    "select a, count(*) from t where x > now() - interval '1 day' group by a",
    "select a from t where a in (select b from u)",
    "select random() from t",  # not merged: each row keeps its own value
    "select a, count(*) from t group by a order by 2 desc limit 10",
    "select distinct a from t",
    "select stddev(x), count(distinct x), mode() within group (order by x) from t",
]


def test_functions_are_the_plain_calls() -> None:
    # A user-defined aggregate looks like a function here: the engine checks these names
    # against pg_proc (prokind 'a') before it sends anything.
    plan = plan_select("select lower(s), myagg(x), count(*) from t where f(x) > 0 "
                       "and y in (select g(z) from u) group by lower(s), myagg(x)")
    assert plan.functions == frozenset({"lower", "myagg", "f", "g"})
    assert plan.to_dict()["functions"] == ["f", "g", "lower", "myagg"]
    assert plan_select("select count(*), max(x) from t").functions == frozenset()


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed(sql: str) -> None:
    plan_select(sql)
