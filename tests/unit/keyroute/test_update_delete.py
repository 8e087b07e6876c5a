"""UPDATE, DELETE and MERGE."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, by_keys, check, ids, no_key, refused, row

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
