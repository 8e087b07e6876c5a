"""The columns a training read moves, and the select list that makes them fast.

When every column is of a fixed-width kind (ints, floats, bool, date, timestamps,
uuid) the select list makes every row the same width: a column that may be NULL
goes out as ``coalesce(col, <zero>)`` and ``col IS NULL``, so the client decodes the
whole stream with one ``np.frombuffer`` (:func:`mlscale.core.copydecode.decode_fixed`).
Otherwise columns go as they are (a kind without a decoder as its text form) and the
per-row decoder reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from ..copydecode import Kind

__all__ = ["Column", "fast_path", "select_list"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column read: its ``name`` (in the table or the query's output), how it is
    decoded, and whether it may be NULL."""

    name: str
    kind: Kind
    nullable: bool = True


def fast_path(columns: Sequence[Column]) -> bool:
    """Whether every column is fixed-width, so rows decode without a Python loop."""
    return all(c.kind.fixed for c in columns)


def select_list(columns: Sequence[Column], alias: str) -> sql.Composed:
    """The select list over ``alias.<column>`` for the stream :mod:`copydecode` reads."""
    out: list[sql.Composable] = []
    fast = fast_path(columns)
    for c in columns:
        ref = sql.Identifier(alias, c.name)
        if fast and c.nullable:
            out.append(sql.SQL("coalesce({}, {})").format(ref, sql.SQL(c.kind.zero)))
            out.append(sql.SQL("({} IS NULL)").format(ref))
        elif c.kind is Kind.OTHER:
            out.append(sql.SQL("CAST({} AS text)").format(ref))
        else:
            out.append(ref)
    return sql.SQL(", ").join(out)
