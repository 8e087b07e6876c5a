"""The SQL that reads one piece of a unit (a group's share of its slots).

A table: ``SELECT <columns> FROM t AS q WHERE <slot(q.key) in the piece> ORDER BY
<slot(q.key)>, <order columns>``. A query: every sharded table it reads is kept to the
piece's slots by the fan-out ownership rewrite (:func:`owned_rows_sql`, the rule
cross-shard reads use), so a join of co-located tables on their shard key reads each
joined row once; then ``SELECT <columns> FROM (<query>) AS q ORDER BY <slot(q.key)>,
<order columns>``. The order is by slot first so that a unit read in several pieces
(its slots on several groups) has the same order as one read whole: positions do
not depend on placement. Both are sent as ``COPY (...) TO STDOUT (FORMAT binary)``;
COPY takes no bind parameters, so the statement holds only literals the reader made
(slot numbers) and the caller's own query text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ..keyroute.results import ShardedTable
from ..scatter.ownership import TableRef, owned_rows_sql
from ..shardmaps import KeyFamily, ShardMap
from ..shardmaps.base import keyed_any_of
from ..slots import composite_slot_sql, slot_sql
from .columns import Column, select_list
from .units import Piece, Unit

__all__ = ["ReadPlan", "Source", "piece_sql", "slot_range_sql"]

_ALIAS = "q"


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


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What a reader will read: the source, the columns, ``units`` units of the slot
    space, this reader's ``mine`` (unit indexes, in order), the shard map used and
    whether rows decode on the fast path."""

    source: Source
    columns: tuple[Column, ...]
    units: tuple[Unit, ...]
    mine: tuple[int, ...]
    shard_map: ShardMap
    slots: int
    fast: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.source.table, "query": self.source.query,
            "columns": [{"name": c.name, "kind": c.kind.value, "nullable": c.nullable}
                        for c in self.columns],
            "units": len(self.units), "mine": list(self.mine), "slots": self.slots,
            "map_version": self.shard_map.version, "fast": self.fast,
        }


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
    order = sql.SQL(", ").join(
        [_slot(family, keys, slots)] + [sql.Identifier(_ALIAS, c) for c in source.order_by]
    )
    if source.table is not None:
        body = sql.SQL("SELECT {} FROM {} AS {} WHERE {} ORDER BY {}").format(
            select_list(columns, _ALIAS), sql.Identifier(source.table), sql.Identifier(_ALIAS),
            owned(keys), order,
        )
    else:

        def predicate(table: ShardedTable, cols: Sequence[sql.Composable]) -> sql.Composable:
            return owned(cols)

        inner = owned_rows_sql(source.query or "", source.refs, predicate)
        body = sql.SQL("SELECT {} FROM ({}) AS {} ORDER BY {}").format(
            select_list(columns, _ALIAS), sql.SQL(inner), sql.Identifier(_ALIAS), order
        )
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(body).as_string(None)
