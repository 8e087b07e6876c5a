"""COPY: where each row's key is, or why it cannot be routed."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, by_keys, check, copy_in, ids, no_key, refused, row

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
