"""Slot hashing that PostgreSQL computes the same way.

A shard key maps to one of ``S`` slots (``S`` a power of two) as
``hash<type>extended(key, 0) & (S - 1)``, where the hash is PostgreSQL's own
64-bit extended hash: Bob Jenkins' lookup3 as PostgreSQL 11+ runs it
(``hash_bytes_extended`` / ``hash_bytes_uint32_extended`` in
``src/common/hashfn.c``), reimplemented here bit for bit for seed 0. Because the
database computes the identical slot, it can select, count, checksum and
publish the rows of a slot itself (ARCHITECTURE.md, decisions 4 and 5).

The mask is applied to the *signed* int8 PostgreSQL returns; two's complement
makes ``&`` agree between SQL and Python, where ``%`` would not. Text hashes
equal their UTF-8 bytes only under a deterministic collation (clusters use C).
"""

from __future__ import annotations

import enum
import numbers
import re
import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql

from mlscale.errors import ConfigError, ShardKeyError

# numpy takes ~50 ms to import and only the batch functions (hash_keys, slots_of)
# use it, so they import it themselves and `import mlscale` does not load it.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "DEFAULT_SLOTS",
    "MAX_SLOTS",
    "KeyType",
    "check_slot_count",
    "composite_slot_of",
    "composite_slot_sql",
    "hash_composite",
    "hash_key",
    "hash_keys",
    "hash_sql",
    "slot_of",
    "slot_sql",
    "slots_of",
]

DEFAULT_SLOTS = 4096
"""Slots of a cluster unless configured otherwise: fine enough to move 1/N of the data."""
MAX_SLOTS = 2**20
"""Most slots a cluster may have; the directory stays small and a slot stays meaningful."""

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
# lookup3's initial state is this plus the key length in bytes (PostgreSQL's choice).
_INIT = 0x9E3779B9 + 3923095
_WORD_INIT = (_INIT + 4) & _M32  # the state for a 4-byte key (int2/int4/int8 hash)


class KeyType(enum.StrEnum):
    """A shard key's PostgreSQL type; the value is the SQL type it is cast to."""

    INT2 = "int2"
    INT4 = "int4"
    INT8 = "int8"
    TEXT = "text"
    VARCHAR = "varchar"
    UUID = "uuid"
    BYTEA = "bytea"

    @property
    def sql_function(self) -> str:
        """The name of PostgreSQL's extended hash support function for this type.

        Every one but bytea's (``hashvarlenaextended``, which takes ``internal``) is
        callable from SQL as ``f(value, seed)``; build SQL with :func:`hash_sql`.
        """
        return _SQL_FUNCTIONS[self]

    @property
    def is_integer(self) -> bool:
        """True for int2/int4/int8, whose equal values hash alike across the three."""
        return self in (KeyType.INT2, KeyType.INT4, KeyType.INT8)

    @classmethod
    def parse(cls, name: str) -> KeyType:
        """The key type for a SQL type name, e.g. ``bigint``, ``character varying(64)``.

        Raises :class:`ConfigError` for a type we cannot hash like the server does.
        """
        norm = re.sub(r"\s+", " ", re.sub(r"\(.*\)\s*$", "", str(name))).strip().lower()
        try:
            return _ALIASES[norm]
        except KeyError:
            known = ", ".join(sorted(_ALIASES))
            raise ConfigError(f"unsupported shard key type {name!r}; use one of: {known}") from None


_SQL_FUNCTIONS = {
    KeyType.INT2: "hashint2extended",
    KeyType.INT4: "hashint4extended",
    KeyType.INT8: "hashint8extended",
    KeyType.TEXT: "hashtextextended",
    KeyType.VARCHAR: "hashtextextended",  # varchar has no hash of its own: it is text
    KeyType.UUID: "uuid_hash_extended",
    KeyType.BYTEA: "hashvarlenaextended",
}
_ALIASES = {t.value: t for t in KeyType} | {
    "smallint": KeyType.INT2,
    "smallserial": KeyType.INT2,
    "int": KeyType.INT4,
    "integer": KeyType.INT4,
    "serial": KeyType.INT4,
    "bigint": KeyType.INT8,
    "bigserial": KeyType.INT8,
    "character varying": KeyType.VARCHAR,
}
_INT_RANGE = {
    KeyType.INT2: (-(2**15), 2**15 - 1),
    KeyType.INT4: (-(2**31), 2**31 - 1),
    KeyType.INT8: (-(2**63), 2**63 - 1),
}


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = ((a - c) & _M32) ^ _rot(c, 4)
    c = (c + b) & _M32
    b = ((b - a) & _M32) ^ _rot(a, 6)
    a = (a + c) & _M32
    c = ((c - b) & _M32) ^ _rot(b, 8)
    b = (b + a) & _M32
    a = ((a - c) & _M32) ^ _rot(c, 16)
    c = (c + b) & _M32
    b = ((b - a) & _M32) ^ _rot(a, 19)
    a = (a + c) & _M32
    c = ((c - b) & _M32) ^ _rot(b, 4)
    b = (b + a) & _M32
    return a, b, c


def _final_signed(a: int, b: int, c: int) -> int:
    """lookup3's final avalanche, reported as PostgreSQL does: int8 of (b << 32) | c."""
    c = ((c ^ b) - _rot(b, 14)) & _M32
    a = ((a ^ c) - _rot(c, 11)) & _M32
    b = ((b ^ a) - _rot(a, 25)) & _M32
    c = ((c ^ b) - _rot(b, 16)) & _M32
    a = ((a ^ c) - _rot(c, 4)) & _M32
    b = ((b ^ a) - _rot(a, 14)) & _M32
    c = ((c ^ b) - _rot(b, 24)) & _M32
    u = (b << 32) | c
    return u - (1 << 64) if u >> 63 else u


def _hash_bytes(data: bytes) -> int:
    """``hash_bytes_extended(data, len, 0)`` as a signed int8 (little-endian words)."""
    n = len(data)
    a = b = c = (_INIT + n) & _M32
    full = n - n % 12
    words = struct.unpack_from(f"<{full // 4}I", data)
    for i in range(0, len(words), 3):
        a, b, c = _mix((a + words[i]) & _M32, (b + words[i + 1]) & _M32, (c + words[i + 2]) & _M32)
    if n > full:
        ta, tb, tc = struct.unpack("<3I", data[full:].ljust(12, b"\0"))
        # The tail's 9th-11th bytes go one byte up in c: lookup2 kept c's low byte
        # for the length and PostgreSQL's lookup3 still skips it.
        a, b, c = (a + ta) & _M32, (b + tb) & _M32, (c + (tc << 8)) & _M32
    return _final_signed(a, b, c)


def _hash_word(k: int) -> int:
    """``hash_bytes_uint32_extended(k, 0)`` as a signed int8."""
    return _final_signed((_WORD_INIT + k) & _M32, _WORD_INIT, _WORD_INIT)


def _fold_int(v: int, key_type: KeyType) -> int:
    """The uint32 PostgreSQL hashes for an integer key: int2/int4 sign-extended to 32
    bits; int8 with its high half folded in so it equals int4 for int4-range values."""
    if key_type is KeyType.INT8:
        return (v ^ (v >> 32) ^ (v >> 63)) & _M32
    return v & _M32


def _null_key(key_type: KeyType) -> ShardKeyError:
    return ShardKeyError(f"a shard key ({key_type}) cannot be NULL: its row has no slot")


def _coerce_int(value: object, key_type: KeyType) -> int:
    if value is None:
        raise _null_key(key_type)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ShardKeyError(f"an {key_type} shard key must be an int, not {type(value).__name__}")
    v = int(value)
    lo, hi = _INT_RANGE[key_type]
    if not lo <= v <= hi:
        raise ShardKeyError(f"shard key {v} is out of range for {key_type} ({lo}..{hi})")
    return v


def _key_bytes(value: object, key_type: KeyType) -> bytes:
    """The bytes PostgreSQL hashes for a text, uuid or bytea key."""
    if value is None:
        raise _null_key(key_type)
    if key_type in (KeyType.TEXT, KeyType.VARCHAR):
        if not isinstance(value, str):
            raise ShardKeyError(f"a {key_type} shard key must be a str, not {type(value).__name__}")
        if "\0" in value:
            raise ShardKeyError(f"a {key_type} shard key cannot contain NUL characters")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ShardKeyError(f"a {key_type} shard key is not valid UTF-8: {exc}") from None
    if key_type is KeyType.UUID:
        if isinstance(value, uuid.UUID):
            return value.bytes
        if isinstance(value, str):
            try:
                return uuid.UUID(value).bytes
            except ValueError:
                raise ShardKeyError(f"shard key {value!r} is not a valid uuid") from None
        raise ShardKeyError(f"a uuid shard key must be a UUID or str, not {type(value).__name__}")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ShardKeyError(f"a bytea shard key must be bytes, not {type(value).__name__}")


def hash_key(value: object, key_type: KeyType) -> int:
    """``<key_type.sql_function>(value, 0)`` exactly as PostgreSQL returns it (signed int8).

    Raises :class:`ShardKeyError` if ``value`` is NULL, of the wrong Python type, or
    out of range for the key type.
    """
    if key_type.is_integer:
        return _hash_word(_fold_int(_coerce_int(value, key_type), key_type))
    return _hash_bytes(_key_bytes(value, key_type))


def hash_composite(values: Sequence[object], key_types: Sequence[KeyType]) -> int:
    """``hash_record_extended(ROW(values...), 0)`` (PostgreSQL 14+) as a signed int8.

    Each element hashes with its type's extended hash; ``None`` (NULL) contributes 0;
    the running result is ``result * 31 + element`` modulo 2**64.
    """
    if len(values) != len(key_types) or not key_types:
        raise ShardKeyError(
            f"a composite shard key needs one value per key column: got {len(values)} "
            f"values for {len(key_types)} columns"
        )
    result = 0
    for value, key_type in zip(values, key_types, strict=True):
        element = 0 if value is None else hash_key(value, key_type)
        result = (result * 31 + element) & _M64
    return result - (1 << 64) if result >> 63 else result


def check_slot_count(n: object) -> int:
    """``n`` as a slot count: a power of two from 1 to :data:`MAX_SLOTS`, else ConfigError."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise ConfigError(f"slot count must be an int, not {type(n).__name__}")
    if not 1 <= n <= MAX_SLOTS or n & (n - 1):
        raise ConfigError(f"slot count must be a power of two from 1 to {MAX_SLOTS}, not {n}")
    return n


def slot_of(value: object, key_type: KeyType, slots: int = DEFAULT_SLOTS) -> int:
    """The slot (0 .. slots-1) of a key: its PostgreSQL hash masked with ``slots - 1``."""
    return hash_key(value, key_type) & (check_slot_count(slots) - 1)


def composite_slot_of(
    values: Sequence[object], key_types: Sequence[KeyType], slots: int = DEFAULT_SLOTS
) -> int:
    """The slot of a composite key, as :func:`composite_slot_sql` computes it in SQL."""
    return hash_composite(values, key_types) & (check_slot_count(slots) - 1)


def _int_array(values: Iterable[object], key_type: KeyType) -> npt.NDArray[np.int64]:
    """Validated int64 array of integer keys, without a Python loop for clean input."""
    import numpy as np

    lo, hi = _INT_RANGE[key_type]
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        arr: npt.NDArray[Any] = values.ravel()
        if arr.size and (arr.min() < lo or arr.max() > hi):
            bad = arr[(arr < lo) | (arr > hi)][0]
            raise ShardKeyError(f"shard key {int(bad)} is out of range for {key_type} ({lo}..{hi})")
        return arr.astype(np.int64, copy=False)
    items = list(values)
    if set(map(type, items)) <= {int}:  # plain ints: numpy converts, we range-check
        try:
            out = np.array(items, dtype=np.int64)
        except OverflowError:
            out = None
        if out is not None and (
            key_type is KeyType.INT8 or not out.size or (out.min() >= lo and out.max() <= hi)
        ):
            return out
    # Otherwise one element is wrong: the scalar check names it.
    return np.array([_coerce_int(v, key_type) for v in items], dtype=np.int64)


def _final_arrays(
    a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32], c: npt.NDArray[np.uint32]
) -> npt.NDArray[np.int64]:
    """:func:`_final_signed` over uint32 arrays (numpy wraps modulo 2**32)."""
    import numpy as np

    def rot(x: npt.NDArray[np.uint32], k: int) -> npt.NDArray[np.uint32]:
        return (x << np.uint32(k)) | (x >> np.uint32(32 - k))

    c = (c ^ b) - rot(b, 14)
    a = (a ^ c) - rot(c, 11)
    b = (b ^ a) - rot(a, 25)
    c = (c ^ b) - rot(b, 16)
    a = (a ^ c) - rot(c, 4)
    b = (b ^ a) - rot(a, 14)
    c = (c ^ b) - rot(b, 24)
    return ((b.astype(np.uint64) << np.uint64(32)) | c.astype(np.uint64)).view(np.int64)


def hash_keys(values: Iterable[object], key_type: KeyType) -> npt.NDArray[np.int64]:
    """:func:`hash_key` of many keys as an int64 array; integer keys are hashed in numpy."""
    import numpy as np

    if not key_type.is_integer:
        return np.array([_hash_bytes(_key_bytes(v, key_type)) for v in values], dtype=np.int64)
    v = _int_array(values, key_type)
    if key_type is KeyType.INT8:
        v = v ^ (v >> 32) ^ (v >> 63)
    k = v.astype(np.uint32)  # keeps the low 32 bits, as PostgreSQL's (uint32) cast
    init = np.uint32(_WORD_INIT)
    return _final_arrays(k + init, np.full_like(k, init), np.full_like(k, init))


def slots_of(
    values: Iterable[object], key_type: KeyType, slots: int = DEFAULT_SLOTS
) -> npt.NDArray[np.int64]:
    """:func:`slot_of` of many keys as an int64 array, element-wise equal to it."""
    import numpy as np

    return hash_keys(values, key_type) & np.int64(check_slot_count(slots) - 1)


def hash_sql(expr: sql.Composable, key_type: KeyType) -> sql.Composed:
    """SQL computing :func:`hash_key` of ``expr`` (an ``sql.Identifier`` or other Composable).

    E.g. ``hashint8extended(CAST("id" AS int8), 0)``. bytea's hash support function
    takes ``internal`` and cannot be called from SQL, so bytea goes through
    ``hash_record_extended(ROW(x), 0)``, which for one column is exactly that hash.
    """
    # The cast makes literals and parameters work (psycopg sends a small int as
    # int2/int4, which hashint2extended would not accept); on a column of the
    # key's own type the parser drops it, so indexes on the bare form still match.
    cast = sql.SQL("CAST({} AS {})").format(expr, sql.SQL(key_type.value))
    if key_type is KeyType.BYTEA:
        return sql.SQL("hash_record_extended(ROW({}), 0)").format(cast)
    return sql.SQL("{}({}, 0)").format(sql.SQL(key_type.sql_function), cast)


def slot_sql(column: sql.Composable, key_type: KeyType, slots: int = DEFAULT_SLOTS) -> sql.Composed:
    """SQL computing :func:`slot_of` of ``column`` (an ``sql.Identifier`` or other Composable).

    E.g. ``(hashint8extended(CAST("id" AS int8), 0) & 4095)``.
    """
    mask = sql.Literal(check_slot_count(slots) - 1)
    return sql.SQL("({} & {})").format(hash_sql(column, key_type), mask)


def composite_slot_sql(
    columns: Sequence[sql.Composable], key_types: Sequence[KeyType], slots: int = DEFAULT_SLOTS
) -> sql.Composed:
    """SQL computing :func:`composite_slot_of`: ``hash_record_extended(ROW(...), 0) & mask``."""
    if len(columns) != len(key_types) or not key_types:
        raise ShardKeyError(
            f"a composite shard key needs one type per column: got {len(columns)} columns "
            f"and {len(key_types)} types"
        )
    row = sql.SQL(", ").join(
        sql.SQL("CAST({} AS {})").format(c, sql.SQL(t.value))
        for c, t in zip(columns, key_types, strict=True)
    )
    mask = sql.Literal(check_slot_count(slots) - 1)
    return sql.SQL("(hash_record_extended(ROW({}), 0) & {})").format(row, mask)
