"""Subqueries, CTEs and set operations."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, by_keys, check, ids, no_key, row

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
