"""Reading a statement's rows on one connection, with settings for that statement only
(async source).

``rows_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row, tuple_row

__all__ = ["read_rows"]

# Transaction-local settings: names and values as two arrays.
_SET_LOCAL = "SELECT set_config(n, v, true) FROM unnest(%s::text[], %s::text[]) AS s(n, v)"


async def read_rows(
    conn: AsyncConnection[Any],
    text: str,
    values: Sequence[Any] | Mapping[str, Any] | None,
    *,
    as_dict: bool,
    binary: bool,
    one: bool,
    settings: Mapping[str, str] | None,
) -> Any:
    """The rows of ``text`` (the first only, with ``one``; None if there is none), as
    dicts or tuples; ``settings`` (name -> value, e.g. ``hnsw.ef_search``) hold for this
    statement only."""
    cur = conn.cursor(row_factory=dict_row if as_dict else tuple_row, binary=binary)
    if settings:
        # One round trip: no Sync between the two, so they share the implicit
        # transaction that ends with the statement (and takes the settings along).
        async with conn.pipeline():
            await conn.execute(_SET_LOCAL, (list(settings), list(settings.values())))
            await cur.execute(text, values)
            return await (cur.fetchone() if one else cur.fetchall())
    await cur.execute(text, values)
    return await (cur.fetchone() if one else cur.fetchall())
