"""The columns a training read moves, and the select list that reads them.

Each column goes as ``array_agg(col)``: a piece of a unit (thousands of rows) is one
row of arrays, one COPY message, decoded by
:func:`mlscale.core.copydecode.decode_arrays` with one ``np.frombuffer`` per
fixed-width column. A fixed-width column that may be NULL goes as
``array_agg(coalesce(col, zero))`` and its NULLs as bits of an int8 mask array (one
per 63 such columns): an array with NULL elements needs a Python step per element
(measured, 200k rows with 2% NULLs in 8 float4 columns: 0.9 s of client CPU that
way). Columns that are arrays themselves cannot be stacked by ``array_agg`` when
their lengths differ: a read with one goes row by row
(:func:`mlscale.core.copydecode.decode_rows`). A kind without a decoder goes as its
text form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from psycopg import sql

from ..copydecode import MASK_BITS, Kind

__all__ = ["Column", "aggregated", "masked", "select_list"]


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


def masked(columns: Sequence[Column]) -> list[bool]:
    """Per column, whether its NULLs travel in the mask arrays (aggregated reads of a
    fixed-width column that may be NULL): its values then never hold a NULL, so they
    decode with one ``np.frombuffer`` whatever the NULLs."""
    stacked = aggregated(columns)
    return [stacked and c.nullable and c.kind.fixed for c in columns]


def select_list(
    columns: Sequence[Column], alias: str, exprs: Mapping[str, sql.Composable] | None = None
) -> sql.Composed:
    """The select list over ``alias.<column>``; ``exprs`` gives the SQL of columns that
    are expressions, not the source's columns."""
    out: list[sql.Composable] = []
    bits: list[sql.Composable] = []
    stacked = aggregated(columns)
    for c, flag in zip(columns, masked(columns), strict=True):
        ref: sql.Composable = (exprs or {}).get(c.name) or sql.Identifier(alias, c.name)
        if c.kind is Kind.OTHER:
            ref = sql.SQL("CAST({} AS text)").format(ref)
        if flag:
            bit = sql.Literal(len(bits) % MASK_BITS)
            bits.append(sql.SQL("(CAST({} IS NULL AS int4)::int8 << {})").format(ref, bit))
            ref = sql.SQL("coalesce({}, {})").format(ref, sql.SQL(c.kind.zero))
        out.append(sql.SQL("array_agg({})").format(ref) if stacked else ref)
    for start in range(0, len(bits), MASK_BITS):
        word = sql.SQL(" | ").join(bits[start:start + MASK_BITS])
        out.append(sql.SQL("array_agg({})").format(word))
    return sql.SQL(", ").join(out)
