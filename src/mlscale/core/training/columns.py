"""The columns a training read moves, and the select list that reads them.

Each column goes as ``array_agg(col)``: a piece of a unit (thousands of rows) is one
row of arrays, one COPY message, decoded by
:func:`mlscale.core.copydecode.decode_arrays` with one ``np.frombuffer`` per
fixed-width column. Columns that are arrays themselves cannot be stacked by
``array_agg`` when their lengths differ: a read with one goes row by row
(:func:`mlscale.core.copydecode.decode_rows`). A kind without a decoder goes as its
text form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from psycopg import sql

from ..copydecode import Kind

__all__ = ["Column", "aggregated", "select_list"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column read: its ``name`` (in the table or the query's output), how it is
    decoded, and whether it may be NULL."""

    name: str
    kind: Kind
    nullable: bool = True


def aggregated(columns: Sequence[Column]) -> bool:
    """Whether the columns are read as one row of arrays (none is an array itself)."""
    return not any(c.kind.is_array for c in columns)


def select_list(
    columns: Sequence[Column], alias: str, exprs: Mapping[str, sql.Composable] | None = None
) -> sql.Composed:
    """The select list over ``alias.<column>``; ``exprs`` gives the SQL of columns that
    are expressions, not the source's columns."""
    out: list[sql.Composable] = []
    stacked = aggregated(columns)
    for c in columns:
        ref: sql.Composable = (exprs or {}).get(c.name) or sql.Identifier(alias, c.name)
        if c.kind is Kind.OTHER:
            ref = sql.SQL("CAST({} AS text)").format(ref)
        out.append(sql.SQL("array_agg({})").format(ref) if stacked else ref)
    return sql.SQL(", ").join(out)
