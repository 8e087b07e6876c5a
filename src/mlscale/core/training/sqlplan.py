"""The SQL that reads one piece of a unit (a group's share of its slots), and the
order its rows are put in.

A table: ``SELECT <columns, packed> FROM t AS q WHERE <slot(q.key) in the piece>``
(one row: see ``columns.py``). A query: every sharded table it reads is kept to the
piece's slots by the fan-out ownership rewrite (:func:`owned_rows_sql`, the rule
cross-shard reads use), so a join of co-located tables on their shard key reads each
joined row once; then ``SELECT <columns, packed> FROM (<query>) AS q``. Both are sent
as ``COPY (...) TO STDOUT (FORMAT binary)``; COPY takes no bind parameters, so the
statement holds only literals the reader made (slot numbers) and the caller's own
query text.

No ORDER BY: the server only scans and filters; each row carries the order columns
(unique among the rows: a table's primary key) and the client sorts the unit by them
(:func:`row_order`; rows that already come in order, as an append-only table's heap
gives them, are not moved). So a unit read in several pieces (its slots on several
groups) has the same order as one read whole, and positions do not depend on
placement, plan or scan order. A server sort
of a unit larger than ``work_mem`` spilled to disk and took most of a unit's time
here; numpy sorts the same rows in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from ..keyroute.results import ShardedTable
from ..scatter.ownership import TableRef, owned_rows_sql
from ..shardmaps import KeyFamily, ShardMap
from ..shardmaps.base import keyed_any_of
from ..slots import composite_slot_sql, slot_sql
from .columns import Column, select_list
from .units import Piece

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "Source",
    "null_key_index",
    "piece_sql",
    "row_order",
    "slot_range_sql",
]

_ALIAS = "q"
# current_schema() is stable and parallel unsafe: true, evaluated once, and it keeps
# the planner from a parallel plan. The reader already runs units on several groups at
# once; a Gather moving every wide row from workers to the leader made a unit's read
# 2-3x slower here (0.34 s vs 0.14 s for 125k rows of 12 columns).
_SERIAL = sql.SQL("current_schema() IS NOT NULL")


@dataclass(frozen=True, slots=True)
class Source:
    """What a reader reads: ``table`` (a sharded table's name) or ``query`` (one SELECT
    over sharded tables of one key family, with ``refs`` its sharded-table references
    as the fan-out check found them). ``key_columns`` are the shard key columns of its
    rows (the table's, or output columns of the query), ``order_by`` columns that are
    unique among its rows, in the order rows of one slot are read."""

    key_columns: tuple[str, ...]
    order_by: tuple[str, ...]
    table: str | None = None
    query: str | None = None
    refs: tuple[TableRef, ...] = ()


def slot_range_sql(
    family: KeyFamily, columns: Sequence[sql.Composable], slots: int, start: int, end: int
) -> sql.Composed:
    """SQL true for rows whose key (``columns``) is in slots ``start`` .. ``end``; false
    or NULL for a NULL key."""
    expr = _slot(family, columns, slots)
    part = sql.SQL("{} BETWEEN {} AND {}").format(expr, sql.Literal(start), sql.Literal(end))
    return keyed_any_of(family, columns, [part], hashed=True)


def _slot(family: KeyFamily, columns: Sequence[sql.Composable], slots: int) -> sql.Composed:
    if family.composite:
        return composite_slot_sql(columns, family.key_types, slots)
    return slot_sql(columns[0], family.key_types[0], slots)


def piece_sql(
    source: Source,
    columns: Sequence[Column],
    piece: Piece,
    shard_map: ShardMap,
    slots: int,
) -> str:
    """The ``COPY ... TO STDOUT (FORMAT binary)`` statement reading ``piece``."""
    family = shard_map.family

    def owned(cols: Sequence[sql.Composable]) -> sql.Composed:
        where = slot_range_sql(family, cols, slots, piece.start, piece.end)
        if piece.by_map:
            where = sql.SQL("({} AND {})").format(where, shard_map.predicate(piece.group, cols))
        return where

    keys = [sql.Identifier(_ALIAS, c) for c in source.key_columns]
    # A table's order columns are its primary key: unique, so they can name NULL rows.
    null_key = _null_key(source, columns)
    chosen = select_list(columns, _ALIAS, None, null_key)
    if source.table is not None:
        body = sql.SQL("SELECT {} FROM {} AS {} WHERE {} AND {}").format(
            chosen, sql.Identifier(source.table), sql.Identifier(_ALIAS), owned(keys), _SERIAL
        )
    else:

        def predicate(table: ShardedTable, cols: Sequence[sql.Composable]) -> sql.Composable:
            return owned(cols)

        inner = owned_rows_sql(source.query or "", source.refs, predicate)
        body = sql.SQL("SELECT {} FROM ({}) AS {} WHERE {}").format(
            chosen, sql.SQL(inner), sql.Identifier(_ALIAS), _SERIAL
        )
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(body).as_string(None)


def _null_key(source: Source, columns: Sequence[Column]) -> str | None:
    if source.table is None or len(source.order_by) != 1:
        return None
    (name,) = source.order_by
    kinds = {c.name: c.kind for c in columns}
    return name if name in kinds and kinds[name].fixed else None


def null_key_index(source: Source, columns: Sequence[Column]) -> int | None:
    """The index in ``columns`` of the column naming NULL rows in a piece (see
    :func:`~mlscale.core.training.columns.select_list`), None when masks do."""
    name = _null_key(source, columns)
    return None if name is None else [c.name for c in columns].index(name)


def row_order(keys: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.int64] | None:
    """The permutation that sorts a unit's rows by ``keys`` (the order columns, first
    one first), or None when they already are in order (no copy needed). Any
    comparable values: text compares by code point, which is UTF-8 byte order (C
    collation)."""
    import numpy as np

    if len(keys) == 1 and keys[0].dtype.kind in "iuMf":
        k = keys[0]
        if k.size < 2 or bool((k[1:] > k[:-1]).all()):
            return None
        out: npt.NDArray[Any] = np.argsort(k, kind="stable")
        return out.astype(np.int64, copy=False)
    ranked = []
    for k in keys:
        if k.dtype.kind == "O":
            _, inverse = np.unique(k, return_inverse=True)
            ranked.append(inverse)
        else:
            ranked.append(k)
    out = np.lexsort(tuple(reversed(ranked)))
    return out.astype(np.int64, copy=False)
