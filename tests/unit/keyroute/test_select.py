"""SELECT: the key forms, one-column and composite keys."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, by_keys, check, ids, no_key, row

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
