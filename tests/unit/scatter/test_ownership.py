"""Which statements may fan out over every shard group, and the ownership filter.

Tables: ``ev`` and ``pr`` (family users, key user_id), ``it`` (family items), ``ord``
and ``line`` (family orders, composite key tenant, oid); ``ref`` is not sharded.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from psycopg import sql

from mlscale.core.keyroute import ShardedTable
from mlscale.core.scatter.ownership import check_fanout, owned_rows_sql
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.sqltree import parse_fresh
from mlscale.errors import RoutingError

TABLES = {
    t.name: t
    for t in (
        ShardedTable("ev", ("user_id",), "users"),
        ShardedTable("pr", ("user_id",), "users"),
        ShardedTable("it", ("item_id",), "items"),
        ShardedTable("ord", ("tenant", "oid"), "orders"),
        ShardedTable("line", ("tenant", "oid"), "orders"),
    )
}

# (sql, the (alias, table) references listed)
ACCEPTED = [
    ("select * from ev", [("ev", "ev")]),
    ("select count(*) from public.ev where x > 1", [("ev", "ev")]),
    ('select * from "ev" e', [("e", "ev")]),
    ("select * from ev e join pr p on e.user_id = p.user_id", [("e", "ev"), ("p", "pr")]),
    ("select * from ev e join pr p on p.user_id = e.user_id and e.x < p.x",
     [("e", "ev"), ("p", "pr")]),
    ("select * from ev join pr using (user_id)", [("ev", "ev"), ("pr", "pr")]),
    ("select * from ev natural join pr", [("ev", "ev"), ("pr", "pr")]),
    ("select * from ev e, pr p where e.user_id = p.user_id and e.x > 1",
     [("e", "ev"), ("p", "pr")]),
    ("select * from ev e cross join pr p where p.user_id = e.user_id",
     [("e", "ev"), ("p", "pr")]),
    # self-join, and one table referenced several times
    ("select * from ev a join ev b on a.user_id = b.user_id", [("a", "ev"), ("b", "ev")]),
    ("select * from ev where exists (select 1 from ev e2 where e2.user_id = ev.user_id)",
     [("ev", "ev"), ("e2", "ev")]),
    # composite keys: ON, row equality, USING
    ("select * from ord o join line l on o.tenant = l.tenant and o.oid = l.oid",
     [("o", "ord"), ("l", "line")]),
    ("select * from ord o join line l on (o.tenant, o.oid) = (l.tenant, l.oid)",
     [("o", "ord"), ("l", "line")]),
    ("select * from ord join line using (oid, tenant)", [("ord", "ord"), ("line", "line")]),
    # three tables, tied in a chain; tied through a reference table's column
    ("select * from ev e join pr p on p.user_id = e.user_id join ev f on f.user_id = p.user_id",
     [("e", "ev"), ("p", "pr"), ("f", "ev")]),
    ("select * from ev e join ref r on r.id = e.user_id join pr p on p.user_id = r.id",
     [("e", "ev"), ("p", "pr")]),
    # reference tables: inner joins, the nullable side of an outer join
    ("select * from ev e join ref r on r.id = e.x", [("e", "ev")]),
    ("select * from ev e left join ref r on r.id = e.x", [("e", "ev")]),
    ("select * from ref r right join ev e on r.id = e.x", [("e", "ev")]),
    ("select * from ev e, generate_series(1, 3) g", [("e", "ev")]),
    ("select * from ev e where e.x in (select id from ref)", [("e", "ev")]),
    # outer joins on the key
    ("select * from ev e left join pr p on e.user_id = p.user_id", [("e", "ev"), ("p", "pr")]),
    ("select * from ev e full join pr p using (user_id)", [("e", "ev"), ("p", "pr")]),
    ("select * from ev e left join (pr p join ev f on f.user_id = p.user_id) "
     "on p.user_id = e.user_id", [("e", "ev"), ("p", "pr"), ("f", "ev")]),
    # subqueries correlated on the key, or tied by IN on the key
    ("select * from ev e where exists (select 1 from pr p where p.user_id = e.user_id)",
     [("e", "ev"), ("p", "pr")]),
    ("select * from ev e where not exists (select 1 from pr p where e.user_id = p.user_id "
     "and p.x > 0)", [("e", "ev"), ("p", "pr")]),
    ("select e.*, (select max(p.x) from pr p where p.user_id = e.user_id) from ev e",
     [("e", "ev"), ("p", "pr")]),
    ("select * from ev e where e.user_id in (select user_id from pr)",
     [("e", "ev"), ("pr", "pr")]),
    ("select * from ev e where e.user_id not in (select p.user_id from pr p where p.x > 1)",
     [("e", "ev"), ("p", "pr")]),
    ("select * from ord o where (o.tenant, o.oid) in (select tenant, oid from line)",
     [("o", "ord"), ("line", "line")]),
    ("select * from ev e where e.user_id in (select user_id from pr group by user_id "
     "having count(*) > 2)", [("e", "ev"), ("pr", "pr")]),
    ("select * from ev e where exists (select 1 from pr p where p.user_id = e.user_id "
     "order by p.x limit 1)", [("e", "ev"), ("p", "pr")]),
    # derived tables and LATERAL
    ("select * from (select user_id, count(*) from ev group by user_id) d",
     [("ev", "ev")]),
    ("select * from (select user_id, count(*) as n from ev group by user_id) d "
     "join pr p on p.user_id = d.user_id", [("ev", "ev"), ("p", "pr")]),
    ("select * from (select * from ev where x > 0) d join pr p using (user_id)",
     [("ev", "ev"), ("p", "pr")]),
    ("select * from (select e.user_id as u from ev e) d(uid) join pr p on p.user_id = d.uid",
     [("e", "ev"), ("p", "pr")]),
    ("select * from ev e, lateral (select * from pr p where p.user_id = e.user_id "
     "order by p.x desc limit 3) l", [("e", "ev"), ("p", "pr")]),
    ("select * from ev e left join lateral (select count(*) from pr p "
     "where p.user_id = e.user_id) l on true", [("e", "ev"), ("p", "pr")]),
    # a WITH query over reference tables; FOR UPDATE OF names an alias, not a table
    ("with r as (select * from ref) select * from ev e join r on r.id = e.x", [("e", "ev")]),
]


@pytest.mark.parametrize(("sql_text", "refs"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted(sql_text: str, refs: list[tuple[str, str]]) -> None:
    found = check_fanout(sql_text, TABLES)
    assert [(r.alias, r.table.name) for r in found.refs] == refs
    assert found.family == TABLES[refs[0][1]].family


# (sql, text the message must contain)
REFUSED = [
    ("select * from ev, it", "different key families"),
    ("select * from ev e where e.user_id in (select item_id from it)", "different key families"),
    ("select * from ev e join pr p on e.x = p.x",
     "the join of ev (as e) and pr (as p) is not on their shard key (user_id); join on the "
     "whole shard key (e.user_id = p.user_id)"),
    ("select * from ev e, pr p where e.x = p.user_id", "not on their shard key"),
    ("select * from ev e, pr p", "not on their shard key"),
    ("select * from ev e join pr p on e.user_id = p.user_id or e.x = p.x",
     "not on their shard key"),
    ("select * from ev e join pr p on e.user_id = p.user_id + 0", "not on their shard key"),
    ("select * from ev e join pr p on e.user_id < p.user_id", "not on their shard key"),
    ("select * from ord o join line l on o.tenant = l.tenant",
     "is on only part of their shard key (tenant, oid); join on the whole shard key "
     "(o.tenant = l.tenant AND o.oid = l.oid)"),
    ("select * from ord o join line l on o.tenant = l.oid and o.oid = l.tenant",
     "not on their shard key"),
    ("select * from ord join line using (tenant)", "only part of their shard key"),
    ("select * from ev e left join pr p on e.x = p.x",
     "the LEFT JOIN of ev (as e) and pr (as p) is not on their shard key (user_id); "
     "join on the whole shard key (e.user_id = p.user_id) in its ON clause"),
    ("select * from ev e left join pr p on true where e.user_id = p.user_id",
     "LEFT JOIN of ev (as e) and pr (as p) is not on their shard key"),
    ("select * from ref r left join ev e on e.user_id = r.id",
     "the LEFT JOIN keeps every row of r, which is not a sharded table"),
    ("select * from ev e full join ref r on r.id = e.x", "FULL JOIN keeps every row of r"),
    ("select * from ev e where exists (select 1 from pr p where p.x = e.x)",
     "EXISTS (SELECT ...) over pr is not correlated on its shard key (user_id)"),
    ("select * from ev e where e.x in (select user_id from pr)",
     "IN (SELECT ...) over pr is not correlated on its shard key"),
    ("select * from ev e where e.user_id = all (select user_id from pr)",
     "ALL (SELECT ...) over pr is not correlated"),
    ("select e.*, (select max(x) from pr) from ev e",
     "an aggregate without GROUP BY on the shard key in a subquery over pr"),
    ("select e.*, (select p.x from pr p where p.x = e.x) from ev e",
     "a scalar subquery over pr is not correlated"),
    ("select * from ev e where e.user_id in (select user_id from pr limit 5)",
     "LIMIT/OFFSET in a subquery over pr that is not correlated on the shard key"),
    ("select * from ev e, lateral (select * from pr p where p.x = e.x) l",
     "the join of ev (as e) and the LATERAL subquery l (over pr) is not on their shard key"),
    ("select * from ev e, lateral (select * from pr p where p.x = e.x limit 1) l",
     "LIMIT/OFFSET in a subquery over pr"),
    ("select * from (select x, count(*) from ev group by x) d",
     "GROUP BY without the whole shard key in a subquery over ev"),
    ("select * from (select distinct x from ev) d", "DISTINCT without the whole shard key"),
    ("select * from (select distinct on (x) * from ev) d", "DISTINCT ON in a subquery"),
    ("select * from (select user_id, row_number() over () from ev) d",
     "a window function in a subquery over ev"),
    ("select * from (select x from ev) d join pr p on p.user_id = d.x",
     "the join of the subquery d (over ev) and pr (as p) is not on their shard key"),
    ("select * from (select user_id from ev union select user_id from pr) d",
     "UNION/INTERSECT/EXCEPT over sharded table"),
    ("with w as (select * from ev) select * from w", "the WITH query w reads sharded table ev"),
    ("with ev as (select 1) select * from ev", "a WITH query is named like sharded table ev"),
    ("select * from ev tablesample system (10)", "TABLESAMPLE on sharded table ev"),
    ("select * from ref", "reads no sharded table"),
    # column aliases hide which name is the key: nothing ties through them
    ("select * from ev a(user_id) join pr p on p.user_id = a.user_id", "not on their shard key"),
    ("update ev set x = 1", "only one SELECT"),
    ("select from where", "does not parse"),
]


@pytest.mark.parametrize(("sql_text", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(sql_text: str, message: str) -> None:
    with pytest.raises(RoutingError) as info:
        check_fanout(sql_text, TABLES)
    text = str(info.value)
    assert text.startswith("cross-shard read: ")
    assert message in text, text
    if "parse" not in message and "one SELECT" not in message:
        assert "; " in text, "a refusal says what to do"


def test_schema_other_than_public_is_not_the_sharded_table() -> None:
    with pytest.raises(RoutingError, match="reads no sharded table"):
        check_fanout("select * from other.ev", TABLES)
    with pytest.raises(RoutingError, match="reads no sharded table"):
        check_fanout('select * from "EV"', TABLES)  # quoted: another table than ev


def test_listing_is_typed_and_serializable() -> None:
    found = check_fanout("select * from ev a join ev b using (user_id) join pr using (user_id)",
                         TABLES)
    assert found.tables == ("ev", "pr")
    assert found.to_dict() == {
        "family": "users",
        "refs": [{"alias": "a", "table": "ev"}, {"alias": "b", "table": "ev"},
                 {"alias": "pr", "table": "pr"}],
    }


# -- owned_rows_sql ---------------------------------------------------------------------


def _fake(table: ShardedTable, columns: Sequence[sql.Composable]) -> sql.Composable:
    return sql.SQL("owned_{}({})").format(sql.SQL(table.name), sql.SQL(", ").join(columns))


def _owned(sql_text: str) -> str:
    return owned_rows_sql(sql_text, check_fanout(sql_text, TABLES).refs, _fake)


REWRITES = [
    ("select * from ev",
     'SELECT * FROM (SELECT * FROM ev WHERE owned_ev(user_id)) AS ev'),
    ("select e.x from public.ev e where e.x > 1",
     'SELECT e.x FROM (SELECT * FROM public.ev WHERE owned_ev(user_id)) AS e WHERE e.x > 1'),
    ("select public.ev.x from public.ev",
     'SELECT ev.x FROM (SELECT * FROM public.ev WHERE owned_ev(user_id)) AS ev'),
    ('select x.a from "ev" as x(a, b)',
     'SELECT x.a FROM (SELECT * FROM ev WHERE owned_ev(user_id)) AS x (a, b)'),
    ("select * from only ev",
     'SELECT * FROM (SELECT * FROM ONLY ev WHERE owned_ev(user_id)) AS ev'),
    ("select * from ev a join ev b on a.user_id = b.user_id left join ref r on r.id = a.x",
     'SELECT * FROM (SELECT * FROM ev WHERE owned_ev(user_id)) AS a '
     'INNER JOIN (SELECT * FROM ev WHERE owned_ev(user_id)) AS b ON a.user_id = b.user_id '
     "LEFT JOIN ref AS r ON r.id = a.x"),
    ("select * from ord o where (o.tenant, o.oid) in (select tenant, oid from line)",
     'SELECT * FROM (SELECT * FROM ord WHERE owned_ord(tenant, oid)) AS o '
     "WHERE (o.tenant, o.oid) IN (SELECT tenant, oid FROM "
     '(SELECT * FROM line WHERE owned_line(tenant, oid)) AS line)'),
    ("select * from (select user_id, count(*) from ev group by user_id) d",
     'SELECT * FROM (SELECT user_id, count(*) FROM '
     '(SELECT * FROM ev WHERE owned_ev(user_id)) AS ev GROUP BY user_id) AS d'),
]


@pytest.mark.parametrize(("sql_text", "expected"), REWRITES, ids=[r[0] for r in REWRITES])
def test_rewrite(sql_text: str, expected: str) -> None:
    out = _owned(sql_text)
    assert out == expected
    parse_fresh(out)  # it parses


def test_rewrite_keeps_a_reference_named_like_a_cte_or_another_schema() -> None:
    out = _owned("with r as (select 1 as id) select * from ev join r on r.id = ev.x "
                 "join other.pr o on o.id = ev.x")
    assert "JOIN r ON" in out and "JOIN other.pr AS o" in out
    assert 'FROM (SELECT * FROM ev WHERE owned_ev(user_id)) AS ev' in out


def test_rewrite_refuses_refs_that_do_not_match_the_statement() -> None:
    refs = check_fanout("select * from ev a join ev b using (user_id)", TABLES).refs
    with pytest.raises(RoutingError, match="plan the statement again"):
        owned_rows_sql("select * from ev a", refs, _fake)


def test_rewrite_with_a_real_slot_map_predicate() -> None:
    family = KeyFamily.of("users", "int8")
    slot_map = SlotMap.even(family, ("g1", "g2"), slots=16)

    def owned_by_g2(table: ShardedTable, columns: Sequence[sql.Composable]) -> sql.Composable:
        return slot_map.predicate("g2", columns)

    text = "select count(*) from ev e join pr p using (user_id)"
    out = owned_rows_sql(text, check_fanout(text, TABLES).refs, owned_by_g2)
    assert out.count("hashint8extended(CAST(user_id AS int8), 0) & 15 BETWEEN 8 AND 15") == 2
    parse_fresh(out)
