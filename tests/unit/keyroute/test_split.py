"""Splitting per shard: the text and params each shard group gets."""

from __future__ import annotations

import pytest
from pglast import parse_sql

from mlscale.core import sqltree
from mlscale.core.keyroute import ByKeys, InsertRows, Params, Refused
from mlscale.core.keyroute import plans as plans_module
from mlscale.core.keyroute import reader as router_module
from mlscale.core.keyroute.placeholders import number_placeholders

from . import ROUTER, bind, same_sql


def _route(sql: str, params: Params) -> ByKeys | InsertRows:
    got = ROUTER.read(sql, params)
    assert isinstance(got, ByKeys | InsertRows), got
    return got


def test_single_key_is_sent_unchanged_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    sql, params = "SELECT * FROM users WHERE id = %s", (5,)
    ROUTER.read(sql, params)  # compiled and cached

    def no_parse(*args: object) -> None:
        raise AssertionError("the hot path parsed the statement")

    # Neither the shared parse cache nor pglast itself is asked.
    monkeypatch.setattr(router_module, "parse", no_parse)
    monkeypatch.setattr(plans_module, "parse_fresh", no_parse)
    monkeypatch.setattr(sqltree, "parse_sql", no_parse)
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
    assert isinstance(ROUTER.read(sql, None), Refused)
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


# -- long key lists: one array parameter --------------------------------------------------------


def _listed(template: str, n: int, item: str = "%s") -> str:
    """``template`` with LIST replaced by ``n`` comma-separated ``item``s."""
    return template.replace("LIST", ", ".join([item] * n))


def test_a_long_in_list_is_sent_as_one_array_even_to_a_group_with_every_key() -> None:
    # 70,000 parameters cannot be sent at all (the protocol's limit is 65,535).
    n = 70_000
    sql = _listed("SELECT * FROM users WHERE name <> %s AND id IN (LIST) AND email = %s", n)
    params = ("n", *range(n), "e")
    got = _route(sql, params)
    (text, values) = got.split({"g": list(range(n))}, key_types=("int8",))["g"]
    assert text == (
        "SELECT * FROM users WHERE name <> %s AND id = ANY(CAST(%s AS int8[])) AND email = %s"
    )
    assert values == ("n", list(range(n)), "e")


def test_a_long_in_list_split_gives_each_group_its_array() -> None:
    n = 150
    sql = _listed("DELETE FROM users WHERE id IN (LIST, '7'::int8) RETURNING id", n - 1)
    got = _route(sql, tuple(range(100, 100 + n - 1)))
    out = got.split({"a": list(range(0, n, 2)), "b": list(range(1, n, 2))}, key_types=("int8",))
    assert out["a"][0] == "DELETE FROM users WHERE id = ANY(CAST(%s AS int8[])) RETURNING id"
    assert out["a"][1] == ([100 + i for i in range(0, n - 1, 2)],)
    # The literal item keeps its cast value; the last index is the constant 7.
    assert out["b"][1] == ([*(100 + i for i in range(1, n - 1, 2)), 7],)


def test_a_long_array_literal_named_and_raw_params_become_one_array() -> None:
    n = 120
    names = ", ".join(f"%(k{i})s" for i in range(n))
    sql = _listed("SELECT * FROM users WHERE id = ANY(ARRAY[LIST]) AND name = %(k3)s", 1, names)
    params = {f"k{i}": f"u{i}" for i in range(n)}
    out = _route(sql, params).split({"a": list(range(n))}, key_types=("text",))
    assert out["a"] == (
        "SELECT * FROM users WHERE id = ANY(CAST(%s AS text[])) AND name = %s",
        ([f"u{i}" for i in range(n)], "u3"),
    )
    raw = ", ".join(f"${i + 1}" for i in range(n))
    sql = _listed("SELECT * FROM users WHERE id IN (LIST) AND name = $3", 1, raw)
    out = _route(sql, tuple(range(n))).split({"a": [5, 1]}, key_types=("int8",))
    assert out["a"] == (
        "SELECT * FROM users WHERE id = ANY(CAST($1 AS int8[])) AND name = $2",
        ([1, 5], 2),
    )


@pytest.mark.parametrize(
    ("sql", "params", "key_types"),
    [
        # Short lists keep the caller's text (and the hot path parses nothing).
        ("SELECT * FROM users WHERE id IN (%s, %s)", (1, 2), ("int8",)),
        # Without the key's type nothing is rewritten.
        (_listed("SELECT * FROM users WHERE id IN (LIST)", 150), tuple(range(150)), ()),
        # Constants only: no parameter limit to meet.
        (_listed("SELECT * FROM users WHERE id IN (LIST)", 150, "7"), None, ("int8",)),
        # A row IN list of a composite key stays a row list.
        (
            _listed("SELECT * FROM events WHERE (tenant, id) IN (LIST)", 150, "(%s, %s)"),
            tuple(x for i in range(150) for x in ("t", i)),
            ("text", "int8"),
        ),
    ],
)
def test_lists_that_stay_as_written(sql: str, params: Params, key_types: tuple[str, ...]) -> None:
    got = _route(sql, params)
    everything = list(range(len(got.keys)))
    out = got.split({"g": everything}, key_types=key_types)
    assert out["g"][0] is sql and out["g"][1] is params
