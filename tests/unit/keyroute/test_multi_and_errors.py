"""Several statements in one string, placeholders psycopg refuses, params that do not fit."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, by_keys, check, ids, refused, row

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
