"""INSERT: one key per row of VALUES."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, check, ids, insert_rows, refused, row

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
