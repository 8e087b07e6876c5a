"""The kinds of column a binary COPY read moves: per PostgreSQL type, its width, wire
dtype, send function and a zero literal (for ``mlscale.core.copydecode`` and the
training reader's select lists)."""

from __future__ import annotations

import enum

__all__ = ["Kind", "kind_of_oid"]


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
    def send(self) -> str:
        """The SQL function giving a fixed-width value's binary form (bytea)."""
        return _SEND[self]

    @property
    def zero(self) -> str:
        """A SQL literal of this fixed-width kind standing in for NULL."""
        return _ZERO[self]

    @property
    def wire(self) -> str:
        """The big-endian numpy dtype of a fixed-width value as sent."""
        return _WIRE[self]

    @property
    def element(self) -> str:
        """The big-endian numpy dtype of an array kind's elements."""
        return _ELEMENT[self]

    @property
    def is_array(self) -> bool:
        """Whether values are arrays themselves (read one row per message)."""
        return self in _ELEMENT


_WIDTH = {
    Kind.BOOL: 1,
    Kind.INT2: 2,
    Kind.INT4: 4,
    Kind.INT8: 8,
    Kind.FLOAT4: 4,
    Kind.FLOAT8: 8,
    Kind.DATE: 4,
    Kind.TIMESTAMP: 8,
    Kind.TIMESTAMPTZ: 8,
    Kind.UUID: 16,
}
_WIRE = {  # big-endian numpy dtype of the value as sent
    Kind.BOOL: "?",
    Kind.INT2: ">i2",
    Kind.INT4: ">i4",
    Kind.INT8: ">i8",
    Kind.FLOAT4: ">f4",
    Kind.FLOAT8: ">f8",
    Kind.DATE: ">i4",
    Kind.TIMESTAMP: ">i8",
    Kind.TIMESTAMPTZ: ">i8",
    Kind.UUID: "S16",
}
_SEND = {
    Kind.BOOL: "boolsend",
    Kind.INT2: "int2send",
    Kind.INT4: "int4send",
    Kind.INT8: "int8send",
    Kind.FLOAT4: "float4send",
    Kind.FLOAT8: "float8send",
    Kind.DATE: "date_send",
    Kind.TIMESTAMP: "timestamp_send",
    Kind.TIMESTAMPTZ: "timestamptz_send",
    Kind.UUID: "uuid_send",
}
_ZERO = {
    Kind.BOOL: "false",
    Kind.INT2: "0::int2",
    Kind.INT4: "0::int4",
    Kind.INT8: "0::int8",
    Kind.FLOAT4: "0::float4",
    Kind.FLOAT8: "0::float8",
    Kind.DATE: "'2000-01-01'::date",
    Kind.TIMESTAMP: "'2000-01-01'::timestamp",
    Kind.TIMESTAMPTZ: "'2000-01-01 00:00:00+00'::timestamptz",
    Kind.UUID: "'00000000-0000-0000-0000-000000000000'::uuid",
}
_ELEMENT = {
    Kind.INT2_ARRAY: ">i2",
    Kind.INT4_ARRAY: ">i4",
    Kind.INT8_ARRAY: ">i8",
    Kind.FLOAT4_ARRAY: ">f4",
    Kind.FLOAT8_ARRAY: ">f8",
}
_OIDS = {
    16: Kind.BOOL,
    21: Kind.INT2,
    23: Kind.INT4,
    20: Kind.INT8,
    700: Kind.FLOAT4,
    701: Kind.FLOAT8,
    1082: Kind.DATE,
    1114: Kind.TIMESTAMP,
    1184: Kind.TIMESTAMPTZ,
    2950: Kind.UUID,
    25: Kind.TEXT,
    1043: Kind.TEXT,
    1042: Kind.TEXT,
    19: Kind.TEXT,
    17: Kind.BYTEA,
    114: Kind.JSON,
    3802: Kind.JSONB,
    1005: Kind.INT2_ARRAY,
    1007: Kind.INT4_ARRAY,
    1016: Kind.INT8_ARRAY,
    1021: Kind.FLOAT4_ARRAY,
    1022: Kind.FLOAT8_ARRAY,
}


def kind_of_oid(oid: int) -> Kind:
    """The kind a column of type ``oid`` is read as; :attr:`Kind.OTHER` (its text form)
    for types without a decoder here (numeric, interval, enums, ...)."""
    return _OIDS.get(oid, Kind.OTHER)
