"""Shard keys read from SQL: tables of statements and what the key router answers.

One table per statement kind; each row is a statement as a psycopg user writes it,
its params, and the expected result (its keys, or a fragment of its reason). The
split tests bind the produced text and params back into literal SQL and compare
what pglast parses with the statement expected for each shard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from pglast import parse_sql
from pglast.parser import scan
from pglast.stream import RawStream

from mlscale.core.keyroute import (
    Broadcast,
    ByKeys,
    CopyIn,
    InsertRows,
    KeyRoute,
    KeyRouter,
    NoKey,
    Params,
    Refused,
    ShardedTable,
    Unsharded,
    route_keys,
)
from mlscale.core.keyroute import plans as plans_module
from mlscale.core.keyroute import router as router_module
from mlscale.core.keyroute.placeholders import number_placeholders

USERS = ShardedTable("users", ("id",), "user")
ORDERS = ShardedTable("orders", ("user_id",), "user")
ITEMS = ShardedTable("order_items", ("user_id",), "user")
EVENTS = ShardedTable("events", ("tenant", "id"), "tenant")
FEATURES = ShardedTable("features", ("entity_id",), "entity")
TABLES = {t.name: t for t in (USERS, ORDERS, ITEMS, EVENTS, FEATURES)}
COLUMNS = {
    "users": ("id", "name", "email"),
    "events": ("tenant", "id", "payload"),
    "features": ("entity_id", "name", "value"),
}
ROUTER = KeyRouter(TABLES, table_columns=COLUMNS)


# -- rows and checks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    kind: type
    table: str | None = None
    keys: tuple[Any, ...] = ()
    reason: str = ""
    unsplittable: str | None = None
    columns: tuple[str, ...] = ()
    key_indexes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Row:
    sql: str
    params: Params
    want: Want
    id: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.id or " ".join(self.sql.split())[:70]


def row(sql: str, params: Params, want: Want, id: str | None = None) -> Row:
    return Row(sql, params, want, id)


def _keys(table: str, keys: tuple[Any, ...]) -> tuple[Any, ...]:
    width = len(TABLES[table].key_columns)
    return tuple((k,) if width == 1 else tuple(k) for k in keys)


def by_keys(table: str, *keys: Any, unsplittable: str | None = None) -> Want:
    return Want(ByKeys, table, _keys(table, keys), unsplittable=unsplittable)


def insert_rows(table: str, *keys: Any) -> Want:
    return Want(InsertRows, table, _keys(table, keys))


def copy_in(table: str, columns: tuple[str, ...], key_indexes: tuple[int, ...]) -> Want:
    return Want(CopyIn, table, columns=columns, key_indexes=key_indexes)


def no_key(reason: str) -> Want:
    return Want(NoKey, reason=reason)


def refused(reason: str) -> Want:
    return Want(Refused, reason=reason)


def broadcast(reason: str) -> Want:
    return Want(Broadcast, reason=reason)


UNSHARDED = Want(Unsharded)


def check(r: Row, router: KeyRouter = ROUTER) -> KeyRoute:
    got = router.route(r.sql, r.params)
    w = r.want
    assert isinstance(got, w.kind), f"{r.sql!r}: {got}"
    if isinstance(got, ByKeys | InsertRows):
        assert got.table.name == w.table, got
        assert got.keys == w.keys, got
        assert got.sql is r.sql and got.params is r.params
    if isinstance(got, ByKeys):
        if w.unsplittable is None:
            assert got.unsplittable is None, got
        else:
            assert got.unsplittable is not None and w.unsplittable in got.unsplittable, got
    if isinstance(got, CopyIn):
        assert (got.table.name, got.columns, got.key_indexes) == (
            w.table,
            w.columns,
            w.key_indexes,
        )
    if isinstance(got, NoKey | Refused | Broadcast):
        assert w.reason in got.reason, f"{r.sql!r}: reason {got.reason!r} lacks {w.reason!r}"
    return got


def ids(r: Row) -> str:
    return str(r)


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple):
        return "ARRAY[" + ", ".join(_literal(x) for x in v) + "]"
    return "'" + str(v).replace("'", "''") + "'"


def bind(sql: str, params: Params) -> str:
    """The statement with its params inlined as literals, as the server would see it."""
    if params is None:
        return sql
    if "%" not in sql and "$" in sql:  # raw-cursor style
        out, cur = [], 0
        for t in scan(sql):
            if t.name == "PARAM":
                out += [sql[cur : t.start], _literal(params[int(sql[t.start + 1 : t.end + 1]) - 1])]
                cur = t.end + 1
        return "".join(out) + sql[cur:]
    position = iter(range(10_000))

    def one(m: re.Match[str]) -> str:
        if m.group() == "%%":
            return "%"
        if m.group(1):
            assert isinstance(params, dict)
            return _literal(params[m.group(1)])
        assert isinstance(params, list | tuple)
        return _literal(params[next(position)])

    return re.sub(r"%%|%\((\w+)\)s|%s", one, sql)


def same_sql(got: str, want: str) -> None:
    """Equal once parsed by pglast and printed back (spacing and casing aside)."""
    assert RawStream()(parse_sql(got)) == RawStream()(parse_sql(want)), got


# -- SELECT: the key forms --------------------------------------------------------------------

SELECT_CASES = [
    row("SELECT * FROM users WHERE id = %s", (5,), by_keys("users", 5)),
    row("SELECT * FROM users WHERE id = %s", [5], by_keys("users", 5), id="params as list"),
    row("SELECT name FROM users WHERE id = %(id)s", {"id": 7}, by_keys("users", 7)),
    row("SELECT * FROM users WHERE id = $1", (9,), by_keys("users", 9), id="raw cursor $1"),
    row("SELECT * FROM users WHERE %s = id", (5,), by_keys("users", 5), id="value = key"),
    row("SELECT * FROM users WHERE id = 42", None, by_keys("users", 42), id="int constant"),
    row("SELECT * FROM users WHERE id = -3", None, by_keys("users", -3), id="negative constant"),
    row(
        "SELECT * FROM users WHERE id = 9999999999",
        None,
        by_keys("users", 9999999999),
        id="bigint constant",
    ),
    row("SELECT * FROM users WHERE id = 'abc'", None, by_keys("users", "abc"), id="string"),
    row("SELECT * FROM users WHERE id = 'x'::text", None, by_keys("users", "x"), id="::text"),
    row("SELECT * FROM users WHERE id = '5'::int8", None, by_keys("users", 5), id="'5'::int8"),
    row("SELECT * FROM users WHERE id = CAST(%s AS bigint)", ("5",), by_keys("users", 5)),
    row("SELECT * FROM users WHERE id = %s::int8", ("12",), by_keys("users", 12)),
    row("SELECT * FROM users WHERE id = %s::text", (12,), by_keys("users", "12")),
    row("SELECT * FROM users WHERE id = %b", (5,), by_keys("users", 5), id="binary %b"),
    row(
        "SELECT '%s' AS quoted, * FROM users WHERE id = %s",
        ("q", 2),
        by_keys("users", 2),
        id="psycopg reads %s inside literals too",
    ),
    row(
        "SELECT * FROM users WHERE id = $1 AND name LIKE 'a%'",
        (3,),
        by_keys("users", 3),
        id="raw cursor text keeps a lone %",
    ),
    row("SELECT * FROM public.users WHERE id = %s", (5,), by_keys("users", 5)),
    row('SELECT * FROM "users" u WHERE u."id" = %s', (5,), by_keys("users", 5), id="quoted"),
    row("SELECT * FROM users AS u WHERE u.id = %s", (5,), by_keys("users", 5)),
    row("SELECT * FROM users WHERE users.id = %s", (5,), by_keys("users", 5)),
    row("SELECT * FROM users WHERE public.users.id = %s", (5,), by_keys("users", 5)),
    row(
        "SELECT * FROM users WHERE id = %s AND name LIKE 'a%%' AND (email IS NULL OR email = %s)",
        (5, "x"),
        by_keys("users", 5),
        id="pin among other conditions",
    ),
    row(
        "SELECT * FROM users WHERE id = %s AND id = %s",
        (5, 6),
        by_keys("users", 5),
        id="two pins: either bounds the rows",
    ),
    row("SELECT * FROM users WHERE id IN (%s, %s, %s)", (1, 2, 3), by_keys("users", 1, 2, 3)),
    row(
        "SELECT * FROM users WHERE id IN (%s, 7, '8'::int8, %s)",
        (1, 2),
        by_keys("users", 1, 7, 8, 2),
        id="IN mixing params, constants, casts",
    ),
    row(
        "SELECT * FROM users WHERE id IN (%(a)s, %(b)s)",
        {"a": 1, "b": 2},
        by_keys("users", 1, 2),
    ),
    row(
        "SELECT * FROM users WHERE id IN (1, 2) AND id = %s",
        (2,),
        by_keys("users", 2),
        id="= preferred over IN",
    ),
    row("SELECT * FROM users WHERE id = ANY(%s)", ([1, 2, 3],), by_keys("users", 1, 2, 3)),
    row("SELECT * FROM users WHERE id = ANY(%s)", ((4, 5),), by_keys("users", 4, 5), id="tuple"),
    row(
        "SELECT * FROM users WHERE id = ANY(%(ids)s::int8[])",
        {"ids": ["1", "2"]},
        by_keys("users", 1, 2),
        id="ANY with int8[] cast",
    ),
    row("SELECT * FROM users WHERE id = ANY(%s)", ([],), by_keys("users"), id="ANY empty list"),
    row("SELECT * FROM users WHERE id = ANY(%s)", (None,), by_keys("users"), id="ANY NULL"),
    row(
        "SELECT * FROM users WHERE id = ANY(ARRAY[%s, 3])",
        (1,),
        by_keys("users", 1, 3),
        id="ANY(ARRAY[...])",
    ),
    row("SELECT * FROM users WHERE id IS NOT DISTINCT FROM %s", (1,), no_key("any shard")),
    row("SELECT count(*) FROM users WHERE id = %s", (1,), by_keys("users", 1)),
    row(
        "SELECT count(*) FROM users WHERE id IN (%s, %s)",
        (1, 2),
        by_keys("users", 1, 2, unsplittable="aggregate"),
    ),
    row(
        "SELECT * FROM users WHERE id IN (1, 2) ORDER BY name",
        None,
        by_keys("users", 1, 2, unsplittable="ORDER BY"),
    ),
    row(
        "SELECT * FROM users WHERE id IN (1, 2) LIMIT 1",
        None,
        by_keys("users", 1, 2, unsplittable="LIMIT"),
    ),
    row(
        "SELECT DISTINCT name FROM users WHERE id IN (1, 2)",
        None,
        by_keys("users", 1, 2, unsplittable="DISTINCT"),
    ),
    row(
        "SELECT id, rank() OVER (ORDER BY name) FROM users WHERE id IN (1, 2)",
        None,
        by_keys("users", 1, 2, unsplittable="window"),
    ),
    row("SELECT * FROM users WHERE id = %s FOR UPDATE", (1,), by_keys("users", 1)),
    row("SELECT * FROM users WHERE id = %s FOR UPDATE OF users", (1,), by_keys("users", 1)),
    row("EXPLAIN SELECT * FROM users WHERE id = %s", (1,), by_keys("users", 1)),
    row("DECLARE c CURSOR FOR SELECT * FROM users WHERE id = 3", None, by_keys("users", 3)),
    # -- unsharded ------------------------------------------------------------------------
    row("SELECT 1", None, UNSHARDED),
    row("SELECT * FROM models WHERE id = %s", (1,), UNSHARDED),
    row("SELECT * FROM analytics.users WHERE id = 1", None, UNSHARDED, id="other schema"),
    row('SELECT * FROM "Users" WHERE id = 1', None, UNSHARDED, id="quoted other case"),
    row("SELECT 'users', 100 %% 7", (), UNSHARDED, id="%% operator"),
    row("", None, UNSHARDED, id="empty"),
    # -- no key ---------------------------------------------------------------------------
    row("SELECT * FROM users", None, no_key("users.id = %s, users.id IN (...)")),
    row("SELECT * FROM users WHERE name = %s", ("a",), no_key("is not pinned")),
    row("SELECT * FROM users WHERE id <> %s", (1,), no_key("compared with '<>'")),
    row("SELECT * FROM users WHERE id > 10", None, no_key("compared with '>'")),
    row("SELECT * FROM users WHERE id = 1 OR id = 2", None, no_key("an OR makes users.id")),
    row("SELECT * FROM users WHERE NOT (id = 1)", None, no_key("under a NOT")),
    row("SELECT * FROM users WHERE id NOT IN (1, 2)", None, no_key("NOT IN")),
    row("SELECT * FROM users WHERE id IS NULL", None, no_key("IS [NOT] NULL")),
    row("SELECT * FROM users WHERE id = lower(%s)", ("A",), no_key("an expression")),
    row("SELECT * FROM users WHERE id = %s + 1", (1,), no_key("an expression")),
    row("SELECT * FROM users WHERE id IN (%s, now())", (1,), no_key("IN list")),
    row("SELECT * FROM users WHERE id = ANY('{1,2}')", None, no_key("= ANY(...) needs")),
    row("SELECT * FROM users WHERE id IN (SELECT 1)", None, no_key("is not pinned")),
]


@pytest.mark.parametrize("r", SELECT_CASES, ids=ids)
def test_select(r: Row) -> None:
    check(r)


# -- composite keys ---------------------------------------------------------------------------

COMPOSITE_CASES = [
    row(
        "SELECT * FROM events WHERE tenant = %s AND id = %s",
        ("acme", 1),
        by_keys("events", ("acme", 1)),
    ),
    row(
        "SELECT * FROM events WHERE id = %s AND tenant = %s",
        (1, "acme"),
        by_keys("events", ("acme", 1)),
        id="columns in any order",
    ),
    row(
        "SELECT * FROM events WHERE (tenant, id) = (%s, 7)",
        ("acme",),
        by_keys("events", ("acme", 7)),
        id="row equality",
    ),
    row(
        "SELECT * FROM events WHERE tenant = %s AND id IN (1, 2)",
        ("acme",),
        by_keys("events", ("acme", 1), ("acme", 2)),
    ),
    row(
        "SELECT * FROM events WHERE tenant = 'a' AND id = ANY(%s)",
        ([3, 4],),
        by_keys("events", ("a", 3), ("a", 4)),
    ),
    row(
        "SELECT * FROM events WHERE (tenant, id) IN (('a', 1), (%s, %s))",
        ("b", 2),
        by_keys("events", ("a", 1), ("b", 2)),
        id="row IN",
    ),
    row(
        "SELECT * FROM events WHERE tenant = %s",
        ("a",),
        no_key("composite shard key is not pinned on events.id"),
    ),
    row(
        "SELECT * FROM events WHERE tenant IN ('a', 'b') AND id IN (1, 2)",
        None,
        no_key("is not pinned"),
        id="two IN lists",
    ),
]


@pytest.mark.parametrize("r", COMPOSITE_CASES, ids=ids)
def test_composite(r: Row) -> None:
    check(r)


# -- joins: co-located tables of one family -----------------------------------------------------

JOIN_CASES = [
    row(
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = %s",
        (5,),
        by_keys("users", 5),
    ),
    row(
        "SELECT * FROM orders a JOIN order_items b USING (user_id) WHERE a.user_id = %s",
        (5,),
        by_keys("orders", 5),
        id="USING",
    ),
    row(
        "SELECT * FROM orders NATURAL JOIN order_items WHERE user_id = %s",
        (5,),
        by_keys("orders", 5),
        id="NATURAL, unqualified merged column",
    ),
    row(
        "SELECT * FROM users u, orders o WHERE o.user_id = u.id AND o.user_id = %s",
        (5,),
        by_keys("orders", 5),
        id="comma join, pinned on the other side",
    ),
    row(
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id "
        "JOIN order_items i ON i.user_id = o.user_id WHERE u.id IN (1, 2)",
        None,
        by_keys("users", 1, 2),
        id="three tables",
    ),
    row(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.id = %s",
        (5,),
        by_keys("users", 5),
        id="LEFT JOIN from the pinned side",
    ),
    row(
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id AND u.id = %s",
        (5,),
        by_keys("users", 5),
        id="pin in an inner ON",
    ),
    row(
        "SELECT * FROM users u JOIN models m ON m.owner = u.id WHERE u.id = %s",
        (5,),
        by_keys("users", 5),
        id="with an unsharded table",
    ),
    row(
        "SELECT * FROM users a JOIN users b ON a.id = b.id WHERE a.id = 1",
        None,
        by_keys("users", 1),
        id="self join on the key",
    ),
    row(
        "SELECT * FROM orders a FULL JOIN order_items b USING (user_id) WHERE user_id = %s",
        (5,),
        by_keys("orders", 5),
        id="FULL JOIN pinned on the merged USING column",
    ),
    row(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id "
        "WHERE o.user_id = 3 AND u.id IN (1, 2, 3)",
        None,
        by_keys("users", 1, 2, 3),
        id="one source covering all beats a better-ranked partial one",
    ),
    row(
        "SELECT * FROM orders a FULL JOIN order_items b USING (user_id) WHERE a.user_id = %s",
        (5,),
        no_key("order_items (as b) is not pinned"),
        id="FULL JOIN pinned on one side",
    ),
    row(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.user_id = %s",
        (5,),
        no_key("sharded table users (as u) is not pinned"),
        id="LEFT JOIN pinned on the nullable side",
    ),
    row(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.user_id = %s",
        (5,),
        no_key("users (as u) is not pinned"),
        id="pin in a LEFT JOIN's ON binds only the nullable side",
    ),
    row(
        "SELECT * FROM users u FULL JOIN orders o ON o.user_id = u.id WHERE u.id = %s",
        (5,),
        no_key("orders (as o) is not pinned"),
    ),
    row(
        "SELECT * FROM users u JOIN orders o ON o.id = u.id WHERE u.id = %s",
        (5,),
        no_key("join it on its shard key (user_id)"),
        id="join not on the key",
    ),
    row("SELECT * FROM users a, users b WHERE a.id = 1", None, no_key("users (as b)")),
    row(
        "SELECT * FROM users u JOIN features f ON f.entity_id = u.id WHERE u.id = %s",
        (5,),
        refused("different co-location families (users: user, features: entity)"),
    ),
]


@pytest.mark.parametrize("r", JOIN_CASES, ids=ids)
def test_join(r: Row) -> None:
    check(r)


# -- subqueries, CTEs, set operations -----------------------------------------------------------

SUBQUERY_CASES = [
    row(
        "SELECT * FROM users u WHERE u.id = %s AND EXISTS "
        "(SELECT 1 FROM orders o WHERE o.user_id = u.id)",
        (5,),
        by_keys("users", 5),
        id="correlated EXISTS",
    ),
    row(
        "SELECT u.*, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) FROM users u "
        "WHERE u.id = %s",
        (5,),
        by_keys("users", 5),
        id="correlated scalar subquery",
    ),
    row(
        "SELECT * FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id) "
        "AND u.id = 3",
        None,
        by_keys("users", 3),
        id="correlated NOT EXISTS",
    ),
    row(
        "SELECT * FROM users u WHERE EXISTS "
        "(SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.user_id = %s)",
        (5,),
        by_keys("orders", 5),
        id="pin inside a positive EXISTS binds the outer table",
    ),
    row(
        "SELECT * FROM users u WHERE EXISTS (SELECT count(*) FROM orders o "
        "WHERE o.user_id = u.id AND o.user_id = %s)",
        (5,),
        no_key("users (as u) is not pinned"),
        id="EXISTS of an aggregate is always true: no pin",
    ),
    row(
        "SELECT * FROM users u WHERE u.id IN (SELECT o.user_id FROM orders o "
        "WHERE o.user_id = u.id AND o.user_id = %s)",
        (5,),
        by_keys("orders", 5),
        id="positive IN subquery",
    ),
    row(
        "SELECT (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.user_id = %s) FROM users u",
        (5,),
        no_key("users (as u) is not pinned"),
        id="pin inside a scalar subquery does not",
    ),
    row(
        "SELECT * FROM users u WHERE u.id = 1 OR EXISTS "
        "(SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.user_id = 1)",
        None,
        no_key("users (as u)"),
        id="EXISTS under OR",
    ),
    row(
        "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 10)",
        None,
        no_key("is not pinned"),
    ),
    row(
        "SELECT * FROM users WHERE id = %s AND id IN (SELECT user_id FROM orders "
        "WHERE user_id = %s)",
        (5, 5),
        by_keys("users", 5),
        id="uncorrelated subquery pinned to the same key",
    ),
    row(
        "SELECT * FROM users WHERE id = %s AND id IN (SELECT user_id FROM orders "
        "WHERE user_id = %s)",
        (5, 6),
        no_key("different shard keys (5 and 6)"),
        id="uncorrelated subquery pinned to another key",
    ),
    row(
        "SELECT * FROM users u WHERE u.id = 1 AND EXISTS (SELECT 1 FROM orders WHERE user_id = 2)",
        None,
        no_key("different shard keys"),
        id="unqualified name inside a subquery is the inner table's",
    ),
    row(
        "WITH mine AS (SELECT * FROM orders WHERE user_id = %s) SELECT * FROM mine",
        (5,),
        by_keys("orders", 5),
    ),
    row(
        "WITH mine AS (SELECT * FROM orders) SELECT * FROM mine WHERE user_id = %s",
        (5,),
        no_key("orders is not pinned"),
        id="pin on the CTE's output",
    ),
    row(
        "WITH users AS (SELECT 1 AS id) SELECT * FROM users WHERE id = 1",
        None,
        UNSHARDED,
        id="a WITH query named like a sharded table hides it",
    ),
    row(
        "WITH users AS (SELECT 1 AS id) SELECT * FROM orders WHERE user_id = 1",
        None,
        no_key("WITH query is named like sharded table users"),
    ),
    row(
        "SELECT id FROM users WHERE id IN (1, 2) UNION ALL SELECT user_id FROM orders "
        "WHERE user_id IN (1, 2)",
        None,
        no_key("different shard keys"),
        id="two lists in two arms",
    ),
    row(
        "SELECT * FROM (SELECT * FROM orders WHERE user_id = 4) x",
        None,
        by_keys("orders", 4),
        id="FROM subquery",
    ),
    row(
        "SELECT * FROM users u, LATERAL (SELECT * FROM orders o WHERE o.user_id = u.id "
        "ORDER BY o.id LIMIT 3) x WHERE u.id = %s",
        (5,),
        by_keys("users", 5),
        id="LATERAL top-n",
    ),
    row(
        "SELECT id FROM users WHERE id = %s UNION ALL SELECT user_id FROM orders "
        "WHERE user_id = %s",
        (5, 5),
        by_keys("users", 5),
    ),
    row(
        "SELECT id FROM users WHERE id = 1 UNION SELECT user_id FROM orders",
        None,
        no_key("orders is not pinned"),
    ),
    row(
        "SELECT * FROM users WHERE id = (SELECT max(user_id) FROM orders)",
        None,
        no_key("is not pinned"),
    ),
    row(
        "SELECT * FROM generate_series(1, 3) g WHERE EXISTS (SELECT 1 FROM users WHERE id = g)",
        None,
        no_key("users.id is compared with a column"),
    ),
]


@pytest.mark.parametrize("r", SUBQUERY_CASES, ids=ids)
def test_subquery(r: Row) -> None:
    check(r)


# -- UPDATE, DELETE, MERGE ---------------------------------------------------------------------

WRITE_CASES = [
    row("UPDATE users SET name = %s WHERE id = %s", ("a", 5), by_keys("users", 5)),
    row(
        "UPDATE users SET name = %(n)s WHERE id = %(id)s RETURNING *",
        {"n": "a", "id": 5},
        by_keys("users", 5),
    ),
    row("DELETE FROM users WHERE id IN (1, 2)", None, by_keys("users", 1, 2)),
    row("DELETE FROM users WHERE id = ANY(%s)", ([1, 2],), by_keys("users", 1, 2)),
    row(
        "UPDATE orders o SET total = 0 FROM users u WHERE u.id = o.user_id AND u.id = %s",
        (5,),
        by_keys("users", 5),
        id="UPDATE ... FROM co-located",
    ),
    row(
        "DELETE FROM orders o USING users u WHERE u.id = o.user_id AND o.user_id = 3",
        None,
        by_keys("orders", 3),
    ),
    row(
        "WITH gone AS (DELETE FROM orders WHERE user_id = %s RETURNING *) SELECT count(*) "
        "FROM gone",
        (5,),
        by_keys("orders", 5),
        id="writable CTE",
    ),
    row("DELETE FROM users", None, no_key("users.id = %s")),
    row("UPDATE users SET name = 'x' WHERE name = 'y'", None, no_key("is not pinned")),
    row(
        "UPDATE users SET id = %s WHERE id = %s",
        (6, 5),
        refused(
            "UPDATE of a shard key column is refused: the row would move to another shard "
            "(users.id); delete and insert it instead"
        ),
    ),
    row(
        "UPDATE events SET (payload, id) = (%s, %s) WHERE tenant = 'a' AND id = 1",
        ("p", 2),
        refused("UPDATE of a shard key column is refused"),
        id="multi-column SET",
    ),
    row(
        "WITH x AS (INSERT INTO users (id) VALUES (1) RETURNING id) SELECT * FROM x",
        None,
        refused("INSERT into sharded table users inside WITH"),
    ),
    row(
        "MERGE INTO users u USING staging s ON u.id = s.id WHEN MATCHED THEN UPDATE SET "
        "name = s.name",
        None,
        refused("MERGE into sharded table users"),
    ),
    row(
        "MERGE INTO report r USING users u ON r.id = u.id WHEN MATCHED THEN DELETE",
        None,
        no_key("MERGE reads sharded table users"),
    ),
    row("UPDATE models SET name = %s WHERE id = %s", ("a", 1), UNSHARDED),
]


@pytest.mark.parametrize("r", WRITE_CASES, ids=ids)
def test_write(r: Row) -> None:
    check(r)


# -- INSERT ------------------------------------------------------------------------------------

INSERT_CASES = [
    row("INSERT INTO users (id, name) VALUES (%s, %s)", (1, "a"), insert_rows("users", 1)),
    row(
        "INSERT INTO users (name, id) VALUES (%(name)s, %(id)s)",
        {"name": "a", "id": 4},
        insert_rows("users", 4),
    ),
    row(
        "INSERT INTO users (id, name) VALUES (%s, %s), (%s, %s), (3, 'c')",
        (1, "a", 2, "b"),
        insert_rows("users", 1, 2, 3),
    ),
    row(
        "INSERT INTO users (id, name) VALUES (%s::int8, %s) ON CONFLICT (id) DO UPDATE "
        "SET name = EXCLUDED.name RETURNING id",
        ("7", "a"),
        insert_rows("users", 7),
    ),
    row("INSERT INTO users VALUES (%s, %s, %s)", (1, "a", "e"), insert_rows("users", 1)),
    row("INSERT INTO public.users (id) VALUES ($1)", (8,), insert_rows("users", 8)),
    row(
        "INSERT INTO events (payload, tenant, id) VALUES ('{}', %s, %s), ('{}', %s, %s)",
        ("a", 1, "b", 2),
        insert_rows("events", ("a", 1), ("b", 2)),
    ),
    row(
        "INSERT INTO orders VALUES (1, 2)",
        None,
        refused("without a column list"),
        id="no column list, no catalog",
    ),
    row(
        "INSERT INTO users (name) VALUES ('a')",
        None,
        refused("does not set shard key column id"),
    ),
    row(
        "INSERT INTO users (id, name) VALUES (DEFAULT, 'a')",
        None,
        refused("row 1 of INSERT INTO users sets shard key column id to DEFAULT"),
    ),
    row(
        "INSERT INTO users (id, name) VALUES (1, 'a'), (nextval('s'), 'b')",
        None,
        refused("row 2 of INSERT INTO users sets shard key column id with an expression"),
    ),
    row("INSERT INTO users (name, email) VALUES ('a', 'b')", None, refused("shard key column id")),
    row(
        "INSERT INTO events (tenant, id) VALUES ('a')",
        None,
        refused("row 1 of INSERT INTO events has no value for shard key column id"),
    ),
    row(
        "INSERT INTO users (id, name) SELECT id, name FROM staging",
        None,
        refused("INSERT ... SELECT into sharded table users cannot be split"),
    ),
    row("INSERT INTO users DEFAULT VALUES", None, refused("DEFAULT VALUES")),
    row(
        "INSERT INTO users (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET id = 2",
        None,
        refused("UPDATE of a shard key column is refused"),
    ),
    row(
        "INSERT INTO users (id, name) VALUES (1, (SELECT name FROM orders LIMIT 1))",
        None,
        refused("also reads sharded table orders"),
    ),
    row(
        "INSERT INTO report SELECT * FROM users WHERE id = 1",
        None,
        refused("cannot read sharded table users"),
    ),
    row("INSERT INTO models (id) VALUES (%s)", (1,), UNSHARDED),
    row(
        "EXPLAIN ANALYZE INSERT INTO users (id) VALUES (1), (2)",
        None,
        insert_rows("users", 1, 2),
    ),
]


@pytest.mark.parametrize("r", INSERT_CASES, ids=ids)
def test_insert(r: Row) -> None:
    check(r)


# -- COPY -------------------------------------------------------------------------------------

COPY_CASES = [
    row(
        "COPY users (name, id) FROM STDIN",
        None,
        copy_in("users", ("name", "id"), (1,)),
    ),
    row(
        "COPY events FROM STDIN (FORMAT binary)",
        None,
        copy_in("events", ("tenant", "id", "payload"), (0, 1)),
        id="columns from the catalog",
    ),
    row(
        "COPY events (payload, id, tenant) FROM STDIN",
        None,
        copy_in("events", ("payload", "id", "tenant"), (2, 1)),
    ),
    row("COPY orders FROM STDIN", None, refused("COPY orders without a column list")),
    row("COPY users (name) FROM STDIN", None, refused("does not load shard key column id")),
    row("COPY users FROM '/tmp/u.csv'", None, refused("server file or program")),
    row("COPY users TO STDOUT", None, no_key("COPY users TO reads every shard")),
    row(
        "COPY (SELECT * FROM users WHERE id = 5) TO STDOUT",
        None,
        by_keys("users", 5),
    ),
    row("COPY models FROM STDIN", None, UNSHARDED),
]


@pytest.mark.parametrize("r", COPY_CASES, ids=ids)
def test_copy(r: Row) -> None:
    check(r)


# -- DDL and other utility statements --------------------------------------------------------

DDL_CASES = [
    row("CREATE INDEX ON users (email)", None, broadcast("CREATE INDEX on sharded table(s) users")),
    row("ALTER TABLE users ADD COLUMN age int", None, broadcast("ALTER TABLE")),
    row("DROP TABLE users", None, broadcast("DROP TABLE")),
    row("DROP TABLE IF EXISTS public.orders, order_items", None, broadcast("orders, order_items")),
    row("DROP TABLE users, models", None, refused("names sharded (users) and other tables")),
    row("TRUNCATE users", None, broadcast("TRUNCATE")),
    row("TRUNCATE users, models", None, refused("run it separately")),
    row("CREATE TABLE users (id bigint PRIMARY KEY)", None, broadcast("CREATE TABLE")),
    row(
        "CREATE TABLE audit (user_id bigint REFERENCES users (id))",
        None,
        broadcast("users applies to every shard group"),
        id="foreign key to a sharded table",
    ),
    row("GRANT SELECT ON users TO reader", None, broadcast("GRANT")),
    row("VACUUM ANALYZE users", None, broadcast("VACUUM")),
    row("ALTER TABLE users RENAME COLUMN name TO full_name", None, broadcast("RENAME")),
    row(
        "ALTER TABLE users ALTER COLUMN id TYPE text",
        None,
        refused("changing the type of shard key column users.id"),
    ),
    row("ALTER TABLE users DROP COLUMN id", None, refused("dropping shard key column users.id")),
    row("ALTER TABLE users RENAME TO people", None, refused("renaming sharded table users")),
    row(
        "ALTER TABLE users RENAME COLUMN id TO uid",
        None,
        refused("renaming shard key column users.id"),
    ),
    row(
        "CREATE TABLE copy AS SELECT * FROM users WHERE id = 1",
        None,
        refused("CREATE TABLE AS / SELECT INTO"),
    ),
    row("SELECT * INTO copy FROM users WHERE id = 1", None, refused("SELECT INTO")),
    row(
        "PREPARE q AS SELECT * FROM users WHERE id = $1",
        None,
        refused("let psycopg prepare it"),
    ),
    row("CREATE INDEX ON models (name)", None, UNSHARDED),
    row("SET statement_timeout = 1000", None, UNSHARDED),
    row("BEGIN", None, UNSHARDED),
    row(
        "BEGIN; ALTER TABLE users ADD COLUMN a int; CREATE INDEX ON orders (total); COMMIT",
        None,
        broadcast("a script of 4 statements"),
    ),
]


@pytest.mark.parametrize("r", DDL_CASES, ids=ids)
def test_ddl(r: Row) -> None:
    check(r)


# -- several statements, placeholders, params --------------------------------------------------

ERROR_CASES = [
    row("SELECT 1; SELECT 2", None, UNSHARDED),
    row(
        "SELECT * FROM users WHERE id = 1; SELECT 2",
        None,
        refused("the string holds 2 statements"),
    ),
    row(
        "UPDATE users SET name = 'a' WHERE id = 1; DELETE FROM orders WHERE user_id = 1",
        None,
        refused("send each statement on a sharded table on its own"),
    ),
    row(
        "INSERT INTO models VALUES (1); CREATE INDEX ON users (name)",
        None,
        refused("2 statements"),
    ),
    row("SELECT * FROM users WHERE id = %s", None, refused("names sharded table users")),
    row("SELEC * FROM users", None, refused("does not parse")),
    row("SELEC * FROM models", None, UNSHARDED, id="unparseable, no sharded table"),
    row("SELECT * FROM users WHERE id = %d", (1,), refused("psycopg would refuse")),
    row("SELECT * FROM users WHERE id = 5 % 3", (), refused("double it")),
    row("SELECT * FROM users WHERE id = %s AND name = %(n)s", (1,), refused("cannot be mixed")),
    row(
        "SELECT * FROM users WHERE id = %s AND name = %s",
        (1,),
        by_keys("users", 1),
        id="psycopg checks the param count; the key is there",
    ),
    row("SELECT * FROM users WHERE name = %s AND id = %s", (1,), refused("more placeholders")),
    row("SELECT * FROM users WHERE id = %(id)s", (1,), refused("pass params as a mapping")),
    row("SELECT * FROM users WHERE id = %(id)s", {"x": 1}, refused("no value for placeholder")),
    row("SELECT * FROM users WHERE id = %s", {"x": 1}, refused("pass params as a sequence")),
    row("SELECT * FROM users WHERE id = $1", None, refused("none were passed")),
    row("SELECT * FROM users WHERE id = ANY(%s)", ("1,2",), refused("list or tuple")),
]


@pytest.mark.parametrize("r", ERROR_CASES, ids=ids)
def test_errors(r: Row) -> None:
    check(r)


def test_tables_are_counted() -> None:
    tables = [
        SELECT_CASES,
        COMPOSITE_CASES,
        JOIN_CASES,
        SUBQUERY_CASES,
        WRITE_CASES,
        INSERT_CASES,
        COPY_CASES,
        DDL_CASES,
        ERROR_CASES,
    ]
    rows = [r for t in tables for r in t]
    assert len(rows) >= 180
    assert len({(r.sql, repr(r.params)) for r in rows}) == len(rows), "a row is repeated"


# -- splitting per shard ---------------------------------------------------------------------


def _route(sql: str, params: Params) -> ByKeys | InsertRows:
    got = ROUTER.route(sql, params)
    assert isinstance(got, ByKeys | InsertRows), got
    return got


def test_single_key_is_sent_unchanged_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    sql, params = "SELECT * FROM users WHERE id = %s", (5,)
    ROUTER.route(sql, params)  # compiled and cached

    def no_parse(*args: object) -> None:
        raise AssertionError("the hot path parsed the statement")

    monkeypatch.setattr(router_module, "parse_sql", no_parse)
    monkeypatch.setattr(plans_module, "parse_sql", no_parse)
    got = _route(sql, (6,))
    assert got.keys == ((6,),)
    assert got.split({"g1": [0]}) == {"g1": (sql, (6,))}


def test_a_group_with_every_key_gets_the_text_unchanged() -> None:
    sql, params = "SELECT * FROM users WHERE id IN (%s, %s)", (1, 2)
    got = _route(sql, params)
    out = got.split({"g": [1, 0]})
    assert out["g"][0] is sql and out["g"][1] is params


def test_in_list_split_renumbers_params() -> None:
    sql = "SELECT * FROM users WHERE name <> %s AND id IN (%s, 7, %s, '9'::int8) AND email = %s"
    params = ("n", 1, 2, "e")
    got = _route(sql, params)
    assert got.keys == ((1,), (7,), (2,), (9,))
    out = got.split({"a": [0, 2], "b": [1, 3]})
    assert out["a"][1] == ("n", 1, 2, "e")
    assert out["b"][1] == ("n", "e")
    same_sql(
        bind(*out["a"]), "SELECT * FROM users WHERE name <> 'n' AND id IN (1, 2) AND email = 'e'"
    )
    same_sql(
        bind(*out["b"]),
        "SELECT * FROM users WHERE name <> 'n' AND id IN (7, '9'::int8) AND email = 'e'",
    )


def test_named_params_come_back_positional() -> None:
    sql = "SELECT * FROM users WHERE id IN (%(a)s, %(b)s) AND name = %(n)s AND email <> %(n)s"
    got = _route(sql, {"a": 1, "b": 2, "n": "x"})
    out = got.split({"a": [0], "b": [1]})
    assert out["b"] == (
        "SELECT * FROM users WHERE id IN (%s) AND name = %s AND email <> %s",
        (2, "x", "x"),
    )


def test_percent_in_literals_stays_escaped_for_psycopg() -> None:
    sql = "SELECT * FROM users WHERE id IN (%s, %s) AND name LIKE '50%%' AND 7 %% 2 = 1"
    got = _route(sql, (1, 2))
    out = got.split({"a": [0], "b": [1]})
    assert out["a"][0] == "SELECT * FROM users WHERE id IN (%s) AND name LIKE '50%%' AND 7 %% 2 = 1"
    same_sql(
        bind(*out["a"]), "SELECT * FROM users WHERE id IN (1) AND name LIKE '50%' AND 7 % 2 = 1"
    )


def test_constants_without_params_are_not_escaped() -> None:
    sql = "SELECT * FROM users WHERE id IN (1, 2) AND name LIKE '50%'"
    out = _route(sql, None).split({"a": [0], "b": [1]})
    assert out["b"] == ("SELECT * FROM users WHERE id IN (2) AND name LIKE '50%'", None)


def test_raw_cursor_dollar_params_are_renumbered() -> None:
    sql = "SELECT * FROM users WHERE id IN ($1, $2, $3) AND name = $4 AND email = $4"
    out = _route(sql, (1, 2, 3, "n")).split({"a": [0, 2], "b": [1]})
    assert out["b"] == (
        "SELECT * FROM users WHERE id IN ($1) AND name = $2 AND email = $2",
        (2, "n"),
    )
    same_sql(
        bind(*out["a"]), "SELECT * FROM users WHERE id IN (1, 3) AND name = 'n' AND email = 'n'"
    )


def test_any_param_gets_the_sub_list() -> None:
    sql = "SELECT * FROM users WHERE id = ANY(%s) AND name = %s"
    got = _route(sql, ([1, 2, 3], "n"))
    out = got.split({"a": [0, 2], "b": [1]})
    assert out == {"a": (sql, ([1, 3], "n")), "b": (sql, ([2], "n"))}
    named = _route("SELECT * FROM users WHERE id = ANY(%(ids)s)", {"ids": (1, 2), "x": 0})
    assert named.split({"a": [1]}) == {
        "a": ("SELECT * FROM users WHERE id = ANY(%(ids)s)", {"ids": (2,), "x": 0})
    }


def test_any_param_used_twice_gets_its_own_param() -> None:
    sql = "SELECT %(ids)s AS asked, * FROM users WHERE id = ANY(%(ids)s)"
    out = _route(sql, {"ids": [1, 2]}).split({"a": [0], "b": [1]})
    assert out["a"] == ("SELECT %s AS asked, * FROM users WHERE id = ANY(%s)", ([1, 2], [1]))


def test_array_literal_split() -> None:
    out = _route("SELECT * FROM users WHERE id = ANY(ARRAY[%s, 3])", (1,)).split(
        {"a": [0], "b": [1]}
    )
    assert out["a"] == ("SELECT * FROM users WHERE id = ANY(ARRAY[%s])", (1,))
    assert out["b"] == ("SELECT * FROM users WHERE id = ANY(ARRAY[3])", ())


def test_composite_row_in_split() -> None:
    sql = "SELECT * FROM events WHERE (tenant, id) IN ((%s, %s), ('b', 2), (%s, %s))"
    out = _route(sql, ("a", 1, "c", 3)).split({"x": [0, 2], "y": [1]})
    same_sql(bind(*out["x"]), "SELECT * FROM events WHERE (tenant, id) IN (('a', 1), ('c', 3))")
    assert out["y"] == ("SELECT * FROM events WHERE (tenant, id) IN (('b', 2))", ())


def test_co_located_join_split_keeps_the_join() -> None:
    sql = (
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id JOIN order_items i "
        "ON i.user_id = u.id WHERE u.id IN (%s, %s) AND o.total > %s"
    )
    got = _route(sql, (1, 2, 10))
    out = got.split({"a": [1]})
    same_sql(
        bind(*out["a"]),
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id JOIN order_items i "
        "ON i.user_id = u.id WHERE u.id IN (2) AND o.total > 10",
    )


def test_multi_row_insert_split_into_two_groups() -> None:
    sql = (
        "INSERT INTO users (id, name) VALUES (%s, %s), (%s, %s), (%s, 'x''%%') "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING id, name"
    )
    params = (1, "a", 2, "b", 3)
    got = _route(sql, params)
    assert isinstance(got, InsertRows) and got.keys == ((1,), (2,), (3,))
    out = got.split({"g1": [2, 0], "g2": [1]})
    assert out["g1"][1] == (1, "a", 3)
    assert out["g2"][1] == (2, "b")
    head = "INSERT INTO users (id, name) VALUES "
    tail = " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING id, name"
    same_sql(bind(*out["g1"]), f"{head}(1, 'a'), (3, 'x''%'){tail}")
    same_sql(bind(*out["g2"]), f"{head}(2, 'b'){tail}")
    for text, _ in out.values():
        (raw,) = parse_sql(number_placeholders(text, with_params=True).text)
        assert raw.stmt.onConflictClause is not None
        assert raw.stmt.returningClause is not None


def test_named_insert_split() -> None:
    sql = (
        "INSERT INTO events (tenant, id, payload) "
        "VALUES (%(t)s, %(a)s, %(p)s), (%(t)s, %(b)s, %(p)s)"
    )
    got = _route(sql, {"t": "acme", "a": 1, "b": 2, "p": "{}"})
    assert got.keys == (("acme", 1), ("acme", 2))
    out = got.split({"x": [1]})
    assert out["x"] == (
        "INSERT INTO events (tenant, id, payload) VALUES (%s, %s, %s)",
        ("acme", 2, "{}"),
    )


def test_insert_with_cte_and_explain_split() -> None:
    sql = (
        "WITH v AS (SELECT 1 AS one) INSERT INTO users (id, name) "
        "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS x"
    )
    assert isinstance(ROUTER.route(sql, None), Refused)
    explain = "EXPLAIN INSERT INTO users (id) VALUES (%s), (%s)"
    out = _route(explain, (1, 2)).split({"a": [0], "b": [1]})
    assert out["b"] == ("EXPLAIN INSERT INTO users (id) VALUES (%s)", (2,))


def test_split_argument_errors() -> None:
    got = _route("SELECT * FROM users WHERE id IN (1, 2)", None)
    with pytest.raises(ValueError, match="no key indexes"):
        got.split({"a": []})
    with pytest.raises(IndexError):
        got.split({"a": [2]})
    single = _route("SELECT * FROM users WHERE id = 1", None)
    with pytest.raises(ValueError, match="one key"):
        single.split({"a": [0], "b": [0]})


# -- the router itself -------------------------------------------------------------------------


def test_plans_are_cached_by_text(monkeypatch: pytest.MonkeyPatch) -> None:
    router = KeyRouter(TABLES, cache_size=2)
    calls = []
    real = router_module.parse_sql

    def counting(sql: str) -> Any:
        calls.append(sql)
        return real(sql)

    monkeypatch.setattr(router_module, "parse_sql", counting)
    sql = "SELECT * FROM users WHERE id = %s"
    assert router.route(sql, (1,)) != router.route(sql, (2,))
    assert len(calls) == 1
    router.route(sql, None)  # without params psycopg reads no placeholders: another plan
    assert len(calls) == 2
    router.route("SELECT 1", ())
    router.route("SELECT 2", ())
    router.route(sql, (3,))  # evicted by the two above (cache_size=2)
    assert len(calls) == 5


def test_long_generated_texts_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    router = KeyRouter(TABLES)
    calls = []
    real = router_module.parse_sql

    def counting(sql: str) -> Any:
        calls.append(sql)
        return real(sql)

    monkeypatch.setattr(router_module, "parse_sql", counting)
    sql = " ".join(["INSERT INTO users (id) VALUES", ", ".join(["(%s)"] * 1000)])
    params = tuple(range(1000))
    for _ in range(2):
        got = router.route(sql, params)
        assert isinstance(got, InsertRows) and len(got.keys) == 1000
    assert len(calls) == 2


def test_route_keys_without_a_router() -> None:
    got = route_keys("SELECT * FROM orders WHERE user_id = %s", (3,), TABLES)
    assert isinstance(got, ByKeys) and got.keys == ((3,),) and got.table is ORDERS


def test_no_sharded_tables_is_always_unsharded() -> None:
    assert KeyRouter({}).route("SELECT * FROM users WHERE id = 1") == Unsharded()


def test_sharded_table_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ShardedTable("t", (), "f")
    with pytest.raises(ValueError, match="repeats"):
        ShardedTable("t", ("a", "a"), "f")
