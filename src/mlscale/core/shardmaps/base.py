"""What every shard map shares: the interface, key families, key values and spec checks.

A *key family* names a shard key shape (its column types). Tables sharded on the
same family share one map, so rows with equal keys land in the same shard group
whatever table they are in: that is co-location. Key values are Python scalars
(``int`` for int2/int4/int8, ``str`` for text/varchar, ``uuid.UUID`` for uuid,
``bytes`` for bytea) and tuples of them for composite keys.
"""

from __future__ import annotations

import numbers
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from psycopg import sql

from ...errors import ConfigError, ShardKeyError
from ..slots import KeyType, hash_composite, hash_key, hash_sql

__all__ = [
    "MAX_VERSION",
    "Key",
    "KeyFamily",
    "Scalar",
    "ShardMap",
]

Scalar = int | str | bytes | uuid.UUID
"""One key column's value."""

Key = Scalar | tuple[Scalar, ...]
"""A shard key: a scalar for one-column families, a tuple for composite ones."""

MAX_VERSION = 2**63 - 1
"""Versions are stored as bigint in the catalog."""

_INT_BOUNDS = {
    KeyType.INT2: (-(2**15), 2**15 - 1),
    KeyType.INT4: (-(2**31), 2**31 - 1),
    KeyType.INT8: (-(2**63), 2**63 - 1),
}
_TEXT_TYPES = frozenset({KeyType.TEXT, KeyType.VARCHAR})
# Text keys are compared with the C collation on both sides: Python orders str by
# code point, which is the byte order of UTF-8, which is what COLLATE "C" does.
_COLLATE_C = sql.SQL(' COLLATE "C"')
_MAX_NAME = 63  # PostgreSQL's identifier length, so names fit catalog columns


@runtime_checkable
class ShardMap(Protocol):
    """Places key values onto shard groups; one version of one family's placement.

    Every strategy is an immutable value: changes return the next version.
    ``predicate(g, cols)`` is true in SQL for exactly the rows ``locate`` places
    on ``g`` (rows whose key columns are NULL belong to no group, except in a
    :class:`GeoMap`, whose default group takes unknown and NULL regions).
    """

    @property
    def strategy(self) -> str:
        """The strategy's name in specs: slots, ring, range, geo or lookup."""
        ...

    @property
    def version(self) -> int:
        """The map's version; every change makes the next one."""
        ...

    @property
    def family(self) -> KeyFamily:
        """The key family whose tables this map places."""
        ...

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The key columns' types, in key order."""
        ...

    @property
    def groups(self) -> tuple[str, ...]:
        """The shard groups this map places keys onto, each once."""
        ...

    def locate(self, key: Key) -> str:
        """The shard group of ``key``; a :class:`ShardKeyError` for a malformed key."""
        ...

    def predicate(self, group: str, columns: Sequence[sql.Composable]) -> sql.Composed:
        """An SQL boolean expression over the key ``columns``, true exactly for ``group``'s rows."""
        ...

    def to_spec(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_spec` rebuilds an equal map."""
        ...

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """The map a :meth:`to_spec` dict describes; a :class:`ConfigError` if malformed."""
        ...


@dataclass(frozen=True, slots=True)
class KeyFamily:
    """A shard key shape shared by co-located tables: a name and the key columns' types.

    Tables record the family they are sharded on (and which of their columns
    are its key, in order); the catalog holds one map per family. Every table
    of a family is placed by that map, so a join or a transaction on equal
    keys across them stays on one shard group.
    """

    name: str
    key_types: tuple[KeyType, ...]

    def __post_init__(self) -> None:
        check_name(self.name, "key family name")
        if not isinstance(self.key_types, tuple) or not self.key_types:
            raise ConfigError(
                f"key family {self.name!r}: key_types must be a non-empty tuple of key types"
            )
        for kt in self.key_types:
            if not isinstance(kt, KeyType):
                raise ConfigError(
                    f"key family {self.name!r}: {kt!r} is not a key type; "
                    f"use one of {', '.join(KeyType)}"
                )

    @classmethod
    def of(cls, name: str, *key_types: KeyType | str) -> KeyFamily:
        """``KeyFamily.of("users", "int8")``: key types given by name or member."""
        return cls(name, tuple(_key_type(t, f"key family {name!r}") for t in key_types))

    @property
    def composite(self) -> bool:
        """Whether keys have more than one column."""
        return len(self.key_types) > 1

    def normalize(self, key: object) -> tuple[Scalar, ...]:
        """``key`` as a tuple of checked column values; a :class:`ShardKeyError` if malformed."""
        if not self.composite:
            # The common case, checked without building an error context.
            fast = _plain_value(key, self.key_types[0])
            if fast is not None:
                return (fast,)
        if self.composite:
            if not isinstance(key, tuple | list) or len(key) != len(self.key_types):
                raise ShardKeyError(
                    f"a key of family {self.name!r} is a tuple of {len(self.key_types)} values "
                    f"({', '.join(self.key_types)}), got {key!r}"
                )
            values: Sequence[object] = key
        elif isinstance(key, tuple):
            if len(key) != 1:
                raise ShardKeyError(
                    f"a key of family {self.name!r} is one {self.key_types[0]} value, got {key!r}"
                )
            values = key
        else:
            values = (key,)
        return tuple(
            check_value(v, kt, f"family {self.name!r}")
            for v, kt in zip(values, self.key_types, strict=True)
        )

    def present(self, values: tuple[Scalar, ...]) -> Key:
        """A normalized key as users write it: a scalar for one-column families."""
        return values if self.composite else values[0]

    def hash(self, values: tuple[Scalar, ...]) -> int:
        """PostgreSQL's extended hash (seed 0, signed int64) of a normalized key."""
        if self.composite:
            return hash_composite(values, self.key_types)
        return hash_key(values[0], self.key_types[0])

    def check_columns(self, columns: Sequence[sql.Composable]) -> None:
        """A ValueError unless there is one SQL column per key column."""
        if len(columns) != len(self.key_types):
            raise ValueError(
                f"family {self.name!r} has {len(self.key_types)} key column(s), "
                f"got {len(columns)} SQL column(s)"
            )

    def to_spec(self) -> dict[str, Any]:
        """``{"name", "key_types"}``."""
        return {"name": self.name, "key_types": [str(kt) for kt in self.key_types]}

    @classmethod
    def from_spec(cls, spec: object) -> KeyFamily:
        """The family a :meth:`to_spec` dict describes; a :class:`ConfigError` if malformed."""
        fields = spec_fields(spec, "family", required=("name", "key_types"))
        name = fields["name"]
        if not isinstance(name, str):
            raise ConfigError(f"family.name must be a string, got {name!r}")
        types = fields["key_types"]
        if not isinstance(types, list) or not types:
            raise ConfigError(f"family.key_types must be a non-empty list, got {types!r}")
        return cls(name, tuple(_key_type(t, "family.key_types") for t in types))


def _key_type(value: object, where: str) -> KeyType:
    if isinstance(value, KeyType):
        return value
    if isinstance(value, str):
        try:
            return KeyType(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: unknown key type {value!r}; use one of {', '.join(KeyType)}")


def check_name(value: object, what: str) -> str:
    """``value`` if it is a usable name (shard group, family); a :class:`ConfigError` if not."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError(f"{what} must be a non-empty string without outer spaces, got {value!r}")
    if len(value) > _MAX_NAME:
        raise ConfigError(f"{what} {value!r} is longer than {_MAX_NAME} characters")
    return value


def check_groups(groups: object, what: str) -> tuple[str, ...]:
    """A tuple of distinct group names; a :class:`ConfigError` otherwise."""
    if not isinstance(groups, tuple | list) or not groups:
        raise ConfigError(f"{what} must be a non-empty list of shard group names, got {groups!r}")
    out = tuple(check_name(g, "a shard group name") for g in groups)
    seen: set[str] = set()
    for g in out:
        if g in seen:
            raise ConfigError(f"{what} lists shard group {g!r} twice")
        seen.add(g)
    return out


def check_version(version: object) -> int:
    """``version`` if it is an int in 1..2**63-1; a :class:`ConfigError` otherwise."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"a shard map version must be an integer, got {version!r}")
    if not 1 <= version <= MAX_VERSION:
        raise ConfigError(f"a shard map version must be between 1 and 2**63-1, got {version}")
    return version


def _plain_value(value: object, key_type: KeyType) -> Scalar | None:
    """``value`` when it is a plain int or str valid for ``key_type``; None to check it slowly."""
    if type(value) is int:
        bounds = _INT_BOUNDS.get(key_type)
        if bounds is not None and bounds[0] <= value <= bounds[1]:
            return value
    elif type(value) is str and key_type in _TEXT_TYPES and "\x00" not in value:
        return value
    return None


def check_value(value: object, key_type: KeyType, where: str) -> Scalar:
    """``value`` as the Python type for ``key_type``; a :class:`ShardKeyError` if it cannot be."""
    if key_type in _INT_BOUNDS:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ShardKeyError(f"{where}: a {key_type} key value must be an int, got {value!r}")
        low, high = _INT_BOUNDS[key_type]
        number = int(value)
        if not low <= number <= high:
            raise ShardKeyError(f"{where}: {number} is out of range for {key_type}")
        return number
    if key_type in _TEXT_TYPES:
        if not isinstance(value, str):
            raise ShardKeyError(f"{where}: a {key_type} key value must be a str, got {value!r}")
        if "\x00" in value:
            raise ShardKeyError(f"{where}: PostgreSQL text cannot hold NUL characters: {value!r}")
        return value
    if key_type is KeyType.UUID:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                pass
        raise ShardKeyError(f"{where}: a uuid key value must be a UUID, got {value!r}")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ShardKeyError(f"{where}: a bytea key value must be bytes, got {value!r}")


def encode_value(value: Scalar) -> int | str:
    """A checked column value as JSON: ints as they are, uuids as text, bytes as hex."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def decode_value(value: object, key_type: KeyType, where: str) -> Scalar:
    """The column value :func:`encode_value` wrote; a :class:`ConfigError` if malformed."""
    if key_type is KeyType.BYTEA:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: a bytea value is written as hex text, got {value!r}")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not hex text") from None
    try:
        return check_value(value, key_type, where)
    except ShardKeyError as exc:
        raise ConfigError(str(exc)) from None


def encode_key(family: KeyFamily, values: tuple[Scalar, ...]) -> Any:
    """A normalized key as JSON: a scalar, or a list for composite families."""
    if family.composite:
        return [encode_value(v) for v in values]
    return encode_value(values[0])


def decode_key(family: KeyFamily, value: object, where: str) -> tuple[Scalar, ...]:
    """The normalized key :func:`encode_key` wrote; a :class:`ConfigError` if malformed."""
    if family.composite:
        if not isinstance(value, list) or len(value) != len(family.key_types):
            raise ConfigError(
                f"{where}: a key of family {family.name!r} is a list of "
                f"{len(family.key_types)} values, got {value!r}"
            )
        parts: Sequence[object] = value
    else:
        parts = (value,)
    return tuple(decode_value(v, kt, where) for v, kt in zip(parts, family.key_types, strict=True))


def key_expr(columns: Sequence[sql.Composable]) -> sql.Composable:
    """The key columns as one SQL value: the column, or ``ROW(c1, c2, ...)``."""
    if len(columns) == 1:
        return columns[0]
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(columns))


def key_literal(
    family: KeyFamily, values: tuple[Scalar, ...], *, ordered: bool = False
) -> sql.Composable:
    """A key as SQL literal(s) matching :func:`key_expr`.

    With ``ordered`` (for ``<``/``>=``), text values carry ``COLLATE "C"`` so the
    server orders them as Python does, whatever the database's collation.
    """
    parts: list[sql.Composable] = []
    for v, kt in zip(values, family.key_types, strict=True):
        literal: sql.Composable = sql.Literal(v)
        if ordered and kt in _TEXT_TYPES:
            literal = sql.Composed([literal, _COLLATE_C])
        parts.append(literal)
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(parts))


def key_hash_sql(family: KeyFamily, columns: Sequence[sql.Composable]) -> sql.Composed:
    """SQL for the key's PostgreSQL extended hash, equal to :meth:`KeyFamily.hash` of the key.

    ``hash<type>extended(CAST(col AS type), 0)`` for one column (see
    :func:`mlscale.core.slots.hash_sql`); ``hash_record_extended(ROW(CAST(c1 AS t1),
    ...), 0)`` for composite keys.
    """
    family.check_columns(columns)
    if not family.composite:
        return hash_sql(columns[0], family.key_types[0])
    cast = sql.SQL(", ").join(
        sql.SQL("CAST({} AS {})").format(c, sql.SQL(kt.value))
        for c, kt in zip(columns, family.key_types, strict=True)
    )
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(cast)


def keyed_any_of(
    family: KeyFamily,
    columns: Sequence[sql.Composable],
    parts: Sequence[sql.Composable],
    *,
    hashed: bool,
) -> sql.Composed:
    """:func:`any_of` ``parts`` (conditions on the key, or on its hash when ``hashed``),
    made false or NULL for every row with a NULL key column.

    Only then is a row in no group when its key has a NULL: a composite key
    with one NULL column still compares (``ROW(1, NULL) < ROW(2, 'a')`` is
    true) and ``hash_record_extended`` (composite and bytea keys) hashes a
    NULL as 0, so those predicates say ``IS NOT NULL`` outright. The other
    hash functions are strict, and comparisons with a NULL scalar are NULL.
    """
    inner = any_of(parts)
    if not (family.composite or (hashed and family.key_types[0] is KeyType.BYTEA)):
        return inner
    guard = sql.SQL("{} IS NOT NULL").format(key_expr(columns))
    return sql.Composed([sql.SQL("("), guard, sql.SQL(" AND "), inner, sql.SQL(")")])


def any_of(predicates: Iterable[sql.Composable]) -> sql.Composed:
    """``(p1 OR p2 ...)``; ``FALSE`` when there are none."""
    parts = list(predicates)
    if not parts:
        return sql.Composed([sql.SQL("FALSE")])
    if len(parts) == 1:
        return sql.Composed([sql.SQL("("), parts[0], sql.SQL(")")])
    return sql.Composed([sql.SQL("("), sql.SQL(" OR ").join(parts), sql.SQL(")")])


def spec_fields(
    spec: object,
    what: str,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> Mapping[str, Any]:
    """``spec`` as a mapping with exactly the allowed fields; a :class:`ConfigError` if not."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{what} spec must be a JSON object, got {type(spec).__name__}")
    missing = [f for f in required if f not in spec]
    if missing:
        raise ConfigError(f"{what} spec is missing {', '.join(repr(f) for f in missing)}")
    unknown = sorted(str(f) for f in spec if f not in required and f not in optional)
    if unknown:
        raise ConfigError(f"{what} spec has unknown field(s) {', '.join(map(repr, unknown))}")
    return spec


def map_fields(
    spec: object,
    strategy: str,
    *,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> tuple[Mapping[str, Any], KeyFamily, int]:
    """A map spec's fields, family and version, after the checks every strategy shares."""
    fields = spec_fields(
        spec,
        f"{strategy} map",
        required=("strategy", "version", "family", *required),
        optional=optional,
    )
    if fields["strategy"] != strategy:
        raise ConfigError(
            f"a {strategy} map spec must have strategy {strategy!r}, got {fields['strategy']!r}"
        )
    return fields, KeyFamily.from_spec(fields["family"]), check_version(fields["version"])


def spec_rows(fields: Mapping[str, Any], what: str, key: str, shape: str) -> list[list[Any]]:
    """``fields[key]``: a list of lists shaped like ``shape`` (e.g. ``"[key, group]"``);
    a ConfigError naming the first item that is not."""
    items = fields[key]
    if not isinstance(items, list):
        raise ConfigError(f"{what} spec: {key} must be a list, got {items!r}")
    width = shape.count(",") + 1
    for i, item in enumerate(items):
        if not isinstance(item, list) or len(item) != width:
            raise ConfigError(f"{what} spec: {key}[{i}] must be {shape}, got {item!r}")
    return items


def check_group_in(group: str, groups: Sequence[str]) -> None:
    """A ValueError unless ``group`` is one of ``groups``."""
    if group not in groups:
        raise ValueError(f"no shard group {group!r} in this map (groups: {', '.join(groups)})")
