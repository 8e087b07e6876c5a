"""COPY data over one connection, in the FORMAT its statement asks for (async source).

Text rows go through the driver's own row writer and reader. Binary rows too, once
the driver knows each column's type: PostgreSQL applies no cast to binary data, so
an ``int`` the driver would send as int2 must go as the column's int8, and so on.
The types are read on the same connection before the COPY starts (a ``LIMIT 0``
select of the copied columns or query: no row is read). CSV rows are encoded and
parsed by :mod:`mlscale.core.copyformat` over the driver's raw COPY stream.

``copydata_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection, AsyncCopy, sql
from psycopg.adapt import PyFormat, Transformer

from ..core.copyformat import CopyFormat, CopyLayout, csv_line, parse_csv
from ..errors import RoutingError

__all__ = ["Payload", "copy_data"]

Payload = bytes | bytearray | memoryview
"""COPY data already encoded in the statement's format, sent as it is."""

# Rows are sent in chunks of about this many bytes (the driver's own COPY buffer).
_CHUNK_BYTES = 128 * 1024


async def copy_data(
    conn: AsyncConnection[Any],
    statement: str,
    layout: CopyLayout | None,
    rows: Iterable[Sequence[Any]] | Payload | None,
) -> Any:
    """Run COPY ``statement`` on ``conn``: write ``rows`` (COPY FROM STDIN) and return
    how many, or return the rows it produced (COPY TO STDOUT). ``layout`` is the
    statement's, read by :func:`~mlscale.core.copyformat.read_copy` (None: the driver's
    text format). Text and CSV rows come back as strings (None for NULL), binary rows
    as Python values of the columns' types."""
    if isinstance(rows, Payload):
        pay = conn.cursor()
        async with pay.copy(statement) as copy:
            await copy.write(rows)
        return pay.rowcount
    fmt = layout.format if layout is not None else CopyFormat.TEXT
    types = (
        await _binary_types(conn, layout)
        if layout is not None and fmt is CopyFormat.BINARY
        else None
    )
    cur = conn.cursor()
    async with cur.copy(statement) as copy:
        if types is not None:
            copy.set_types(types)
        if rows is not None:
            if layout is not None and fmt is CopyFormat.CSV:
                return await _write_csv(conn, copy, rows, layout)
            count = 0
            for row in rows:
                await copy.write_row(row)
                count += 1
            return count
        if layout is not None and fmt is CopyFormat.CSV:
            data = bytearray()
            async for chunk in copy:
                data += chunk
            return parse_csv(data.decode(conn.info.encoding), layout)
        return [row async for row in copy.rows()]


async def _write_csv(
    conn: AsyncConnection[Any], copy: AsyncCopy, rows: Iterable[Sequence[Any]], layout: CopyLayout
) -> int:
    """``rows`` as CSV lines: each value in PostgreSQL's text form, as the driver
    would send it as a text parameter."""
    dumper = Transformer(conn)
    null = layout.null.encode(conn.info.encoding)
    formats: list[PyFormat] = []
    buffer = bytearray()
    count = 0
    for row in rows:
        if len(formats) != len(row):
            formats = [PyFormat.TEXT] * len(row)
        values = dumper.dump_sequence(row, formats)
        buffer += csv_line([None if v is None else bytes(v) for v in values], layout, null)
        count += 1
        if len(buffer) >= _CHUNK_BYTES:
            await copy.write(buffer)
            buffer = bytearray()
    if buffer:
        await copy.write(buffer)
    return count


async def _binary_types(conn: AsyncConnection[Any], layout: CopyLayout) -> list[int]:
    """The type OIDs of the columns a binary COPY moves, read without reading a row.
    Refuses a column of a type the driver has no adapter for (an enum, say)."""
    if layout.table is None:
        query = sql.SQL("SELECT * FROM ({}) AS copied LIMIT 0").format(sql.SQL(layout.query or ""))
    else:
        table = sql.Identifier(*(n for n in (layout.schema, layout.table) if n))
        columns = list(layout.columns) or await _copied_columns(conn, table)
        query = sql.SQL("SELECT {} FROM {} LIMIT 0").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), table
        )
    cur = await conn.execute(query)
    description = cur.description or []
    for column in description:
        if conn.adapters.types.get(column.type_code) is None:
            name = await _type_name(conn, column.type_code)
            raise RoutingError(
                f"binary COPY of column {column.name} of type {name}: the driver cannot "
                "read or write that type in binary; use FORMAT csv or text"
            )
    return [column.type_code for column in description]


async def _copied_columns(conn: AsyncConnection[Any], table: sql.Identifier) -> list[str]:
    """The columns ``COPY table`` moves without a column list: every one but the
    generated ones, in table order."""
    cur = await conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        (table.as_string(conn),),
    )
    return [name for (name,) in await cur.fetchall()]


async def _type_name(conn: AsyncConnection[Any], oid: int) -> str:
    cur = await conn.execute("SELECT %s::regtype::text", (oid,))
    row = await cur.fetchone()
    return str(row[0]) if row is not None else str(oid)
