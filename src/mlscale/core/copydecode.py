"""PostgreSQL binary COPY (``COPY ... TO STDOUT (FORMAT binary)``) decoded into numpy.

The stream is a header (signature, flags, extension), then per row an int16 field
count and per field an int32 length (-1 for NULL) and the value in the type's
binary send format (big-endian), then an int16 -1 trailer.

Two paths:

- :func:`decode_fixed`: every row has the same width, which the caller makes true
  by selecting only fixed-width types and no NULLs (``coalesce(col, zero)`` plus a
  ``col IS NULL`` bool column, see ``mlscale.core.training.columns``). The body is then one numpy
  structured array over the bytes (``np.frombuffer``, big-endian fields): no
  Python per row. The lengths and field counts are checked, vectorised, so a stream
  that is not what the caller said fails loudly instead of decoding garbage.
- :func:`decode_rows`: anything (text, bytea, json/jsonb, 1-D numeric arrays, NULLs
  anywhere); one Python loop per row, correct and slower.

Output dtypes: int2/4/8 -> int16/32/64, float4/8 -> float32/64, bool, date ->
datetime64[D], timestamp/timestamptz -> datetime64[us] (UTC for timestamptz), uuid ->
``S16`` (the 16 raw bytes), text -> object (str), bytea -> object (bytes), json/jsonb
-> object (parsed), numeric arrays -> object (1-D numpy arrays).
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "SIGNATURE",
    "Decoded",
    "Kind",
    "decode_fixed",
    "decode_rows",
    "fixed_dtype",
    "kind_of_oid",
]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
"""The 11 bytes every binary COPY stream starts with."""

# PostgreSQL's epoch for date and timestamp values: 2000-01-01, in days and
# microseconds since the Unix epoch.
_PG_EPOCH_DAYS = 10957
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86400 * 1_000_000


class Kind(enum.StrEnum):
    """How a column is moved and decoded; the value is the SQL type it is read as."""

    BOOL = "bool"
    INT2 = "int2"
    INT4 = "int4"
    INT8 = "int8"
    FLOAT4 = "float4"
    FLOAT8 = "float8"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    UUID = "uuid"
    TEXT = "text"
    BYTEA = "bytea"
    JSON = "json"
    JSONB = "jsonb"
    INT2_ARRAY = "int2[]"
    INT4_ARRAY = "int4[]"
    INT8_ARRAY = "int8[]"
    FLOAT4_ARRAY = "float4[]"
    FLOAT8_ARRAY = "float8[]"
    OTHER = "other"  # read as its text form (``col::text``)

    @property
    def fixed(self) -> bool:
        """Whether every value has the same width (the fast path can take it)."""
        return self in _WIDTH

    @property
    def width(self) -> int:
        """Bytes of one value of a fixed-width kind."""
        return _WIDTH[self]

    @property
    def zero(self) -> str:
        """A SQL literal of this kind standing in for NULL on the fast path."""
        return _ZERO[self]


_WIDTH = {
    Kind.BOOL: 1, Kind.INT2: 2, Kind.INT4: 4, Kind.INT8: 8, Kind.FLOAT4: 4, Kind.FLOAT8: 8,
    Kind.DATE: 4, Kind.TIMESTAMP: 8, Kind.TIMESTAMPTZ: 8, Kind.UUID: 16,
}
_WIRE = {  # big-endian numpy dtype of the value as sent
    Kind.BOOL: "?", Kind.INT2: ">i2", Kind.INT4: ">i4", Kind.INT8: ">i8", Kind.FLOAT4: ">f4",
    Kind.FLOAT8: ">f8", Kind.DATE: ">i4", Kind.TIMESTAMP: ">i8", Kind.TIMESTAMPTZ: ">i8",
    Kind.UUID: "S16",
}
_ZERO = {
    Kind.BOOL: "false", Kind.INT2: "0::int2", Kind.INT4: "0::int4", Kind.INT8: "0::int8",
    Kind.FLOAT4: "0::float4", Kind.FLOAT8: "0::float8", Kind.DATE: "'2000-01-01'::date",
    Kind.TIMESTAMP: "'2000-01-01'::timestamp",
    Kind.TIMESTAMPTZ: "'2000-01-01 00:00:00+00'::timestamptz",
    Kind.UUID: "'00000000-0000-0000-0000-000000000000'::uuid",
}
_ELEMENT = {
    Kind.INT2_ARRAY: ">i2", Kind.INT4_ARRAY: ">i4", Kind.INT8_ARRAY: ">i8",
    Kind.FLOAT4_ARRAY: ">f4", Kind.FLOAT8_ARRAY: ">f8",
}
_OIDS = {
    16: Kind.BOOL, 21: Kind.INT2, 23: Kind.INT4, 20: Kind.INT8, 700: Kind.FLOAT4,
    701: Kind.FLOAT8, 1082: Kind.DATE, 1114: Kind.TIMESTAMP, 1184: Kind.TIMESTAMPTZ,
    2950: Kind.UUID, 25: Kind.TEXT, 1043: Kind.TEXT, 1042: Kind.TEXT, 19: Kind.TEXT,
    17: Kind.BYTEA, 114: Kind.JSON, 3802: Kind.JSONB, 1005: Kind.INT2_ARRAY,
    1007: Kind.INT4_ARRAY, 1016: Kind.INT8_ARRAY, 1021: Kind.FLOAT4_ARRAY,
    1022: Kind.FLOAT8_ARRAY,
}


def kind_of_oid(oid: int) -> Kind:
    """The kind a column of type ``oid`` is read as; :attr:`Kind.OTHER` (its text form)
    for types without a decoder here (numeric, interval, enums, ...)."""
    return _OIDS.get(oid, Kind.OTHER)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One column of a decoded stream: ``values`` and, for a column that may be NULL,
    ``valid`` (True where not NULL; a NULL's value is 0, the zero date, or None)."""

    values: npt.NDArray[Any]
    valid: npt.NDArray[np.bool_] | None


def _corrupt(why: str) -> DatabaseError:
    return DatabaseError(f"binary COPY stream is malformed: {why}")


def _body(data: bytes | bytearray | memoryview) -> memoryview:
    """The tuples of a binary COPY stream: between the header and the trailer."""
    view = memoryview(data).cast("B")
    if len(view) < 21 or bytes(view[:11]) != SIGNATURE:
        raise _corrupt("no PGCOPY signature")
    (ext,) = struct.unpack_from(">i", view, 15)
    start = 19 + ext
    if len(view) < start + 2 or bytes(view[-2:]) != b"\xff\xff":
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


def fixed_dtype(kinds: Sequence[Kind], nullable: Sequence[bool]) -> np.dtype[Any]:
    """The numpy dtype of one row of a fast-path stream: the field count,
    then per column (length, value) and for a nullable column (length, is-null)."""
    import numpy as np

    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, (kind, may_be_null) in enumerate(zip(kinds, nullable, strict=True)):
        if not kind.fixed:
            raise ValueError(f"column {i} is {kind}, not fixed-width")
        fields += [(f"l{i}", ">i4"), (f"v{i}", _WIRE[kind])]
        if may_be_null:
            fields += [(f"m{i}", ">i4"), (f"z{i}", "?")]
    return np.dtype(fields)


def decode_fixed(
    data: bytes | bytearray | memoryview, kinds: Sequence[Kind], nullable: Sequence[bool]
) -> list[Decoded]:
    """The columns of a binary COPY stream whose rows are, per column, a value of
    ``kinds[i]`` never NULL, followed for ``nullable[i]`` columns by a bool "is NULL".

    Raises :class:`~mlscale.errors.DatabaseError` if the stream's rows are not that shape.
    """
    import numpy as np

    dtype = fixed_dtype(kinds, nullable)
    body = _body(data)
    rows, rest = divmod(len(body), dtype.itemsize)
    if rest:
        raise _corrupt(f"{len(body)} bytes of rows are not a whole number of "
                       f"{dtype.itemsize}-byte rows")
    table = np.frombuffer(body, dtype=dtype, count=rows)
    fields = len(kinds) + sum(nullable)
    if rows and not (table["n"] == fields).all():
        raise _corrupt(f"a row does not have {fields} fields")
    out: list[Decoded] = []
    for i, (kind, may_be_null) in enumerate(zip(kinds, nullable, strict=True)):
        if rows and not (table[f"l{i}"] == kind.width).all():
            raise _corrupt(f"column {i} ({kind}) has a NULL or a value of another width")
        valid = None
        if may_be_null:
            if rows and not (table[f"m{i}"] == 1).all():
                raise _corrupt(f"column {i}'s NULL flag is not a bool")
            valid = ~table[f"z{i}"]
        out.append(Decoded(_native(kind, table[f"v{i}"]), valid))
    return out


def decode_rows(data: bytes | bytearray | memoryview, kinds: Sequence[Kind]) -> list[Decoded]:
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
            raw[i].append(bytes(body[pos:pos + size]))
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
        return _native(kind, np.frombuffer(joined, dtype=_WIRE[kind], count=len(values)))
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
    element = np.dtype(_ELEMENT[kind])
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
