"""PostgreSQL binary COPY (``COPY ... TO STDOUT (FORMAT binary)``) decoded into numpy.

The stream is a header (signature, flags, extension), then per row an int16 field
count and per field an int32 length (-1 for NULL) and the value in the type's
binary send format (big-endian), then an int16 -1 trailer.

Two paths:

- :func:`decode_packed`: a stream of one row that holds a whole piece of rows, one
  field per column. A fixed-width column comes as ``string_agg(<type>send(col), '')``:
  its values' binary forms end to end in one bytea, read with one ``np.frombuffer``
  (big-endian dtype), no Python per value; NULLs travel as bits of int8 masks beside
  it, or as the key values of the rows where it is NULL (``coalesce(col, zero)`` in
  the column). A variable-width column comes as
  ``array_agg(col)``, read element by element.
  Why one row per piece rather than one COPY message per row: psycopg hands over
  COPY data one message at a time from Python, about 1 us per message, under the
  GIL; with a few groups read by threads at once that per-row cost was most of the
  read. Why ``string_agg`` of send forms rather than ``array_agg``: the server then
  sends one bytea instead of calling a send function and writing a length per
  element (measured on 125k rows of 12 columns, best of 7: 0.20 s vs 0.27 s).
- :func:`decode_rows`: any stream, one row per message (used for columns that are
  themselves arrays, which ``array_agg`` cannot stack when their lengths differ);
  one Python loop per row.

Output dtypes: int2/4/8 -> int16/32/64, float4/8 -> float32/64, bool, date ->
datetime64[D], timestamp/timestamptz -> datetime64[us] (UTC for timestamptz), uuid ->
``S16`` (the 16 raw bytes), text -> object (str), bytea -> object (bytes), json/jsonb
-> object (parsed), numeric arrays -> object (1-D numpy arrays).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseError
from .copykinds import Kind, kind_of_oid

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "MASK_BITS",
    "SIGNATURE",
    "Decoded",
    "Kind",
    "Stream",
    "copies_to_stdout",
    "decode_packed",
    "decode_rows",
    "kind_of_oid",
    "mask_count",
]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
"""The 11 bytes every binary COPY stream starts with."""

# PostgreSQL's epoch for date and timestamp values: 2000-01-01, in days and
# microseconds since the Unix epoch.
_PG_EPOCH_DAYS = 10957
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86400 * 1_000_000

MASK_BITS = 63
"""Masked columns per int8 NULL mask (see :func:`decode_packed`)."""


def copies_to_stdout(statement: str) -> bool:
    """Whether ``statement`` is exactly one ``COPY ... TO STDOUT``. Read from the
    parser's JSON tree, which costs a fraction of a millisecond where building the
    Python tree of a long select list costs tens (a reader sends one per unit)."""
    from pglast.parser import ParseError, parse_sql_json

    try:
        tree = json.loads(parse_sql_json(statement))
    except ParseError:
        return False
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:
        return False
    copy = stmts[0].get("stmt", {}).get("CopyStmt")
    return (
        isinstance(copy, dict)
        and not copy.get("is_from")
        and not copy.get("filename")
        and not copy.get("is_program")
    )


@dataclass(frozen=True, slots=True)
class Decoded:
    """One column of a decoded stream: ``values`` and, for a column that may be NULL,
    ``valid`` (True where not NULL; a NULL's value is 0, the zero date, or None)."""

    values: npt.NDArray[Any]
    valid: npt.NDArray[np.bool_] | None


def _corrupt(why: str) -> DatabaseError:
    return DatabaseError(f"binary COPY stream is malformed: {why}")


Stream = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]
"""A binary COPY stream: its bytes, or the chunks it came in (see :func:`_body`)."""

_TRAILER = b"\xff\xff"


def _body(data: Stream) -> memoryview:
    """The tuples of a binary COPY stream: between the header and the trailer. Chunks
    are joined, except in the common case of a one-row read -- the row in one chunk,
    the trailer alone in the next -- which is read in place (no copy)."""
    if isinstance(data, bytes | bytearray | memoryview):
        view, trailer = memoryview(data).cast("B"), True
    elif len(data) == 2 and bytes(data[1]) == _TRAILER:
        view, trailer = memoryview(data[0]).cast("B"), False
    else:
        view, trailer = memoryview(b"".join(data)), True
    if len(view) < 19 or bytes(view[:11]) != SIGNATURE:
        raise _corrupt("no PGCOPY signature")
    (ext,) = struct.unpack_from(">i", view, 15)
    start = 19 + ext
    if not trailer:
        return view[start:]
    if len(view) < start + 2 or bytes(view[-2:]) != _TRAILER:
        raise _corrupt("no trailer")
    return view[start:-2]


def _native(kind: Kind, wire: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Big-endian wire values as the kind's native numpy array (a new array)."""
    import numpy as np

    if kind is Kind.DATE:
        return (wire.astype(np.int64) + _PG_EPOCH_DAYS).astype("datetime64[D]")
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        return (wire.astype(np.int64) + _PG_EPOCH_US).astype("datetime64[us]")
    if kind is Kind.UUID or kind is Kind.BOOL:
        return wire.copy()
    return wire.astype(wire.dtype.newbyteorder("="))


def mask_count(masked: Sequence[bool]) -> int:
    """How many int8 NULL masks follow the columns (see :func:`decode_packed`)."""
    return -(-sum(masked) // MASK_BITS)


def decode_packed(
    data: Stream,
    kinds: Sequence[Kind],
    masked: Sequence[bool] | None = None,
    key: int | None = None,
) -> list[Decoded]:
    """The columns of a binary COPY stream of at most one row holding a piece of rows:
    per column of a fixed-width ``kinds[i]`` a bytea of the values' binary forms end
    to end, per other column a 1-D array (NULL, or no row: no rows), then where the
    ``masked`` columns are NULL:

    - ``key`` None: int8 masks (bytea too), bit ``j % 63`` of mask ``j // 63`` set
      where the ``j``-th masked column is NULL;
    - ``key`` the index of a fixed-width column unique among the rows: per masked
      column, the key values (bytea) of the rows where it is NULL (``string_agg(...)
      FILTER (WHERE col IS NULL)``; cheaper for the server than a mask per row).

    ``valid`` is None for a column without NULLs. Raises
    :class:`~mlscale.errors.DatabaseError` if the stream is not that shape.
    """
    import numpy as np

    flags = list(masked) if masked is not None else [False] * len(kinds)
    extra = [Kind.INT8] * mask_count(flags) if key is None else [kinds[key]] * sum(flags)
    body = _body(data)
    if not len(body):
        return [Decoded(_empty(k), None) for k in kinds]
    (n,) = struct.unpack_from(">h", body, 0)
    if n != len(kinds) + len(extra):
        raise _corrupt(f"the row has {n} fields, not {len(kinds) + len(extra)}")
    pos = 2
    fields: list[Decoded] = []
    for kind in [*kinds, *extra]:
        (size,) = struct.unpack_from(">i", body, pos)
        pos += 4
        if size < 0:
            fields.append(Decoded(_empty(kind), None))
        elif kind.fixed:
            count, rest = divmod(size, kind.width)
            if rest:
                raise _corrupt(f"{size} bytes of {kind} values are not whole values")
            wire = np.frombuffer(body, dtype=kind.wire, count=count, offset=pos)
            fields.append(Decoded(_native(kind, wire), None))
        else:
            fields.append(_array_column(kind, body[pos : pos + size]))
        pos += max(size, 0)
    if pos != len(body):
        raise _corrupt("more than one row of packed columns")
    out, tail = fields[: len(kinds)], fields[len(kinds) :]
    rows = {len(d.values) for d in out}
    if len(rows) > 1:
        raise _corrupt(f"the columns differ in length: {sorted(rows)}")
    finder = _KeyFinder(out[key].values) if key is not None else None
    j = 0
    for i, flag in enumerate(flags):
        if not flag:
            continue
        if finder is None:
            word = tail[j // MASK_BITS].values
            nulls = (word & np.int64(1 << (j % MASK_BITS))) != 0
        else:
            nulls = finder.marks(tail[j].values, i)
        j += 1
        if nulls.any():
            out[i] = Decoded(out[i].values, ~nulls)
    return out


class _KeyFinder:
    """Rows by their unique key: sorted once (not at all if already in order), then
    each column's NULL keys found by binary search (``np.isin`` per column sorted the
    keys again each time: most of the client's time with NULLs in 10 columns)."""

    def __init__(self, keys: npt.NDArray[Any]) -> None:
        import numpy as np

        self._keys = keys
        self._order: npt.NDArray[Any] | None = None
        self._sorted = keys
        if keys.size > 1 and not bool((keys[1:] > keys[:-1]).all()):
            self._order = np.argsort(keys, kind="stable")
            self._sorted = keys[self._order]

    def marks(self, found: npt.NDArray[Any], column: int) -> npt.NDArray[np.bool_]:
        """True at the rows whose key is in ``found``."""
        import numpy as np

        out = np.zeros(len(self._keys), dtype=bool)
        if not len(found):
            return out
        at = np.searchsorted(self._sorted, found)
        if at.max() >= len(self._sorted) or not (self._sorted[at] == found).all():
            raise _corrupt(f"column {column}'s NULL keys are not keys of the rows read")
        out[at if self._order is None else self._order[at]] = True
        return out


def _empty(kind: Kind) -> npt.NDArray[Any]:
    import numpy as np

    if kind.fixed:
        return _native(kind, np.empty(0, dtype=kind.wire))
    return np.empty(0, dtype=object)


def _array_column(kind: Kind, value: memoryview) -> Decoded:
    """One column from its array's binary form (ndim, has-nulls flag, element type,
    per dimension (size, lower bound), then per element (int32 length, bytes))."""
    import numpy as np

    ndim, has_nulls, _ = struct.unpack_from(">iii", value, 0)
    if ndim == 0:
        return Decoded(_empty(kind), None)
    if ndim != 1:
        raise _corrupt(f"an aggregated column has {ndim} dimensions")
    (count,) = struct.unpack_from(">i", value, 12)
    items = value[20:]
    if kind.fixed and not has_nulls:
        lay = np.dtype([("l", ">i4"), ("v", kind.wire)])
        if len(items) != count * lay.itemsize:
            raise _corrupt(f"a {kind} array of {count} elements has {len(items)} bytes")
        table = np.frombuffer(items, dtype=lay, count=count)
        if count and not (table["l"] == kind.width).all():
            raise _corrupt(f"a {kind} element is not {kind.width} bytes")
        return Decoded(_native(kind, table["v"]), None)
    raw: list[bytes | None] = []
    pos = 0
    unpack_i4 = struct.Struct(">i").unpack_from
    for _ in range(count):
        (size,) = unpack_i4(items, pos)
        pos += 4
        if size < 0:
            raw.append(None)
        else:
            raw.append(bytes(items[pos : pos + size]))
            pos += size
    if pos != len(items):
        raise _corrupt(f"a {kind} array's elements do not fill it")
    valid = np.fromiter((v is not None for v in raw), dtype=bool, count=count)
    return Decoded(_column(kind, raw), None if valid.all() else valid)


def decode_rows(data: Stream, kinds: Sequence[Kind]) -> list[Decoded]:
    """The columns of any binary COPY stream of ``kinds`` (NULLs allowed anywhere), one
    Python loop per row. Every column gets a ``valid`` mask."""
    import numpy as np

    body = _body(data)
    width = len(kinds)
    raw: list[list[Any]] = [[] for _ in kinds]
    valid: list[list[bool]] = [[] for _ in kinds]
    pos, end = 0, len(body)
    unpack_i2, unpack_i4 = struct.Struct(">h").unpack_from, struct.Struct(">i").unpack_from
    while pos < end:
        (n,) = unpack_i2(body, pos)
        if n != width:
            raise _corrupt(f"a row has {n} fields, not {width}")
        pos += 2
        for i in range(width):
            (size,) = unpack_i4(body, pos)
            pos += 4
            if size < 0:
                raw[i].append(None)
                valid[i].append(False)
                continue
            raw[i].append(bytes(body[pos : pos + size]))
            valid[i].append(True)
            pos += size
    if pos != end:
        raise _corrupt("a row runs past the end of the stream")
    out = []
    for kind, values, ok in zip(kinds, raw, valid, strict=True):
        mask = np.array(ok, dtype=bool)
        out.append(Decoded(_column(kind, values), mask))
    return out


def _column(kind: Kind, values: list[bytes | None]) -> npt.NDArray[Any]:
    import numpy as np

    if kind.fixed:
        zero = bytes(kind.width)
        joined = b"".join(zero if v is None else v for v in values)
        return _native(kind, np.frombuffer(joined, dtype=kind.wire, count=len(values)))
    out = np.empty(len(values), dtype=object)
    for j, v in enumerate(values):
        out[j] = None if v is None else _varlen(kind, v)
    return out


def _varlen(kind: Kind, value: bytes) -> Any:
    if kind is Kind.TEXT or kind is Kind.OTHER:
        return value.decode("utf-8")
    if kind is Kind.BYTEA:
        return value
    if kind is Kind.JSON:
        return json.loads(value)
    if kind is Kind.JSONB:
        if value[:1] != b"\x01":
            raise _corrupt(f"jsonb version {value[:1]!r} is not 1")
        return json.loads(value[1:])
    return _array(kind, value)


def _array(kind: Kind, value: bytes) -> Any:
    """A 1-D numeric array's binary form as a numpy array (float NaN for a NULL element
    of a float array; an integer array with a NULL element is refused)."""
    import numpy as np

    ndim, has_nulls, _ = struct.unpack_from(">iii", value, 0)
    element = np.dtype(kind.element)
    if ndim == 0:
        return np.empty(0, dtype=element.newbyteorder("="))
    if ndim != 1:
        raise DatabaseError(f"a {kind} value has {ndim} dimensions; only 1-D arrays are read")
    (count,) = struct.unpack_from(">i", value, 12)
    items = value[20:]
    if not has_nulls:
        lay = np.dtype([("l", ">i4"), ("v", element)])
        return np.frombuffer(items, dtype=lay, count=count)["v"].astype(element.newbyteorder("="))
    if element.kind != "f":
        raise DatabaseError(f"a {kind} value has a NULL element; read it as float or text")
    out = np.full(count, np.nan, dtype=element.newbyteorder("="))
    pos = 0
    for j in range(count):
        (size,) = struct.unpack_from(">i", items, pos)
        pos += 4
        if size >= 0:
            out[j] = np.frombuffer(items, dtype=element, count=1, offset=pos)[0]
            pos += size
    return out
