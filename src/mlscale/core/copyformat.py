"""How a ``COPY ... FROM STDIN`` / ``TO STDOUT`` lays out its data, and CSV both ways.

Pure: :func:`read_copy` reads the statement once, before anything is sent, and
answers a :class:`CopyLayout` (the FORMAT and the options that change how rows are
written or read), or refuses what mlscale cannot honour, saying why. The
driver writes and reads rows in PostgreSQL's text and binary formats itself (binary
once it knows the columns' types); CSV rows are encoded and parsed here:

- :func:`csv_line` quotes every value that is not NULL, so a value can never be
  taken for the NULL string or for the end-of-data marker ``\\.``, and writes NULL
  as the NULL string, unquoted;
- :func:`parse_csv` reads what the server writes: a quoted field is a value (never
  NULL), an unquoted one equal to the NULL string is NULL.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.parser import ParseError
from pglast.stream import RawStream

from ..errors import RoutingError
from .sqltree import parse, parse_fresh

__all__ = ["CopyFormat", "CopyLayout", "csv_line", "parse_csv", "read_copy"]


class CopyFormat(enum.StrEnum):
    """The ``FORMAT`` of a COPY."""

    TEXT = "text"
    CSV = "csv"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class CopyLayout:
    """What the data of one COPY statement looks like.

    ``schema``/``table`` and ``columns`` (empty: every column) name what is copied;
    for ``COPY (query) TO``, ``table`` is None and ``query`` is the query's text when
    it is a SELECT (the types of a binary copy are read by describing it).
    """

    is_from: bool
    format: CopyFormat
    schema: str | None = None
    table: str | None = None
    columns: tuple[str, ...] = ()
    query: str | None = None
    delimiter: str = "\t"
    null: str = "\\N"
    quote: str = '"'
    escape: str = '"'


_TEXT_DEFAULTS = {"delimiter": "\t", "null": "\\N"}
_CSV_DEFAULTS = {"delimiter": ",", "null": "", "quote": '"'}


def _option(elem: ast.DefElem) -> Any:
    """An option's value: a string, number, boolean, or None when written bare."""
    arg = elem.arg
    if arg is None:
        return None
    if isinstance(arg, ast.String):
        return arg.sval
    if isinstance(arg, ast.Integer):
        return arg.ival
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    return arg  # FORCE_QUOTE * and column lists: the server's business


def _truthy(value: Any) -> bool:
    """PostgreSQL's reading of a boolean option (HEADER written bare is true)."""
    if value is None:
        return True
    if isinstance(value, bool | int):
        return bool(value)
    return str(value).lower() not in ("false", "off", "no", "0", "f", "n")


def read_copy(statement: str, *, with_rows: bool) -> CopyLayout | None:
    """The layout of ``statement`` if it is one COPY from STDIN or to STDOUT, else None
    (the server judges anything else). ``with_rows``: the caller passes rows to write.

    Raises :class:`RoutingError` for what cannot be honoured, before anything is sent:
    rows for a COPY TO; HEADER with rows (whether the first row is a header or data
    would be a guess); ENCODING (rows are written in the connection's encoding); a
    text-format DELIMITER or NULL other than the default (the driver writes and
    reads only the default text format); a binary COPY of a query that is not a
    SELECT (its column types cannot be read without running it).
    """
    try:
        raws = parse(statement)
    except ParseError:
        return None
    if len(raws) != 1 or not isinstance(raws[0].stmt, ast.CopyStmt):
        return None
    stmt = raws[0].stmt
    if stmt.filename is not None or stmt.is_program:
        return None  # a server-side file or program: no data crosses the connection
    options = {(o.defname or "").lower(): _option(o) for o in stmt.options or ()}
    fmt = _format(options.get("format"))
    direction = "FROM STDIN" if stmt.is_from else "TO STDOUT"
    if with_rows and not stmt.is_from:
        raise RoutingError("COPY ... TO STDOUT produces rows; call copy() without rows")
    if "encoding" in options:
        raise RoutingError(
            f"COPY {direction} with ENCODING: mlscale reads and writes rows in the "
            "connection's encoding; leave ENCODING out"
        )
    if with_rows and _truthy(options.get("header", False)):
        raise RoutingError(
            "COPY FROM STDIN with HEADER and rows: mlscale writes the rows it is given, "
            "with no header line; leave HEADER out (and any header row out of the rows)"
        )
    if fmt is CopyFormat.TEXT:
        changed = [
            name.upper()
            for name, default in _TEXT_DEFAULTS.items()
            if name in options and options[name] != default
        ]
        if changed:
            raise RoutingError(
                f"COPY {direction} in text format with {' and '.join(changed)}: rows are "
                "written and read in the default text format; use FORMAT csv, which "
                "honours DELIMITER, NULL, QUOTE and ESCAPE"
            )
    schema = table = query = None
    if stmt.relation is not None:
        schema, table = stmt.relation.schemaname, stmt.relation.relname
    elif fmt is CopyFormat.BINARY:
        if not isinstance(stmt.query, ast.SelectStmt):
            raise RoutingError(
                "binary COPY of an INSERT, UPDATE or DELETE: its column types are not "
                "known without running it; use FORMAT csv or text"
            )
        # RawStream writes into the tree it prints: print a copy of our own.
        (fresh,) = parse_fresh(statement)
        copied = getattr(fresh.stmt, "query", None)
        if not isinstance(copied, ast.SelectStmt):  # pragma: no cover - parsed above
            raise RuntimeError("the statement no longer parses as a COPY of a SELECT")
        query = RawStream()(copied)
    quote = _char(options, "quote", _CSV_DEFAULTS["quote"])
    defaults = _CSV_DEFAULTS if fmt is CopyFormat.CSV else _TEXT_DEFAULTS
    return CopyLayout(
        is_from=bool(stmt.is_from),
        format=fmt,
        schema=schema,
        table=table,
        columns=tuple(getattr(c, "sval", "") for c in stmt.attlist or ()),
        query=query,
        delimiter=_char(options, "delimiter", defaults["delimiter"]),
        null=str(options.get("null", defaults["null"])),
        quote=quote,
        escape=_char(options, "escape", quote),
    )


def _format(value: Any) -> CopyFormat:
    if value is None:
        return CopyFormat.TEXT
    try:
        return CopyFormat(str(value).lower())
    except ValueError:
        raise RoutingError(f"COPY format {value!r} is not one of text, csv, binary") from None


def _char(options: dict[str, Any], name: str, default: str) -> str:
    value = options.get(name, default)
    if not isinstance(value, str) or len(value.encode()) != 1:
        raise RoutingError(f"COPY {name.upper()} must be a single one-byte character")
    return value


def csv_line(values: Sequence[bytes | None], layout: CopyLayout, null: bytes) -> bytes:
    """One CSV line of ``values`` (each already in PostgreSQL's text form, None for
    NULL); ``null`` is the layout's NULL string in the connection's encoding."""
    quote, escape = layout.quote.encode(), layout.escape.encode()
    fields = []
    for value in values:
        if value is None:
            fields.append(null)
            continue
        if escape != quote:
            value = value.replace(escape, escape + escape)
        fields.append(quote + value.replace(quote, escape + quote) + quote)
    return layout.delimiter.encode().join(fields) + b"\n"


def parse_csv(text: str, layout: CopyLayout) -> list[tuple[str | None, ...]]:
    """The rows of CSV ``text`` as the server writes it: values as text, NULL as None."""
    delimiter, quote, escape = layout.delimiter, layout.quote, layout.escape
    rows: list[tuple[str | None, ...]] = []
    row: list[str | None] = []
    i, end = 0, len(text)
    while i < end:
        value: list[str] = []
        quoted = False
        while i < end and text[i] not in (delimiter, "\n"):
            if text[i] != quote:
                value.append(text[i])
                i += 1
                continue
            quoted = True
            i += 1
            while True:
                if i >= end:
                    raise ValueError("unterminated quoted field in CSV from the server")
                c = text[i]
                if c == escape and i + 1 < end and text[i + 1] in (quote, escape):
                    value.append(text[i + 1])  # "" when ESCAPE is QUOTE (the default)
                    i += 2
                elif c == quote:
                    break
                else:
                    value.append(c)
                    i += 1
            i += 1  # past the closing quote
        field = "".join(value)
        row.append(None if not quoted and field == layout.null else field)
        if i < end and text[i] == delimiter:
            i += 1
            if i == end:  # a trailing delimiter: one more, empty, field
                row.append(None if layout.null == "" else "")
            continue
        rows.append(tuple(row))
        row = []
        i += 1  # past the newline
    if row:
        rows.append(tuple(row))
    return rows
