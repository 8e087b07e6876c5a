"""Joins: co-located tables of one family, and what breaks co-location."""

from __future__ import annotations

import pytest

from . import Row, by_keys, check, ids, no_key, refused, row

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
