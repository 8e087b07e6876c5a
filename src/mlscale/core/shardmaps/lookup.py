"""Explicit key -> shard group entries, e.g. a big tenant pinned to its own group.

The caller supplies the entries (the engine keeps them in the catalog and
caches them). A key without an entry goes to the default group, or, when the
map has none, is refused with a :class:`~mlscale.errors.ShardKeyError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from psycopg import sql

from ...errors import ConfigError, ShardKeyError
from ..slots import KeyType
from .base import (
    Key,
    KeyFamily,
    Scalar,
    check_group_in,
    check_name,
    check_version,
    decode_key,
    encode_key,
    key_expr,
    key_literal,
    keyed_any_of,
    map_fields,
    spec_rows,
)

__all__ = ["LookupMap"]


@dataclass(frozen=True, slots=True)
class LookupMap:
    """``entries`` as ``(key, group)`` pairs, kept sorted by key; ``default`` for the rest.

    With ``default=None`` a key without an entry is an error, not a guess.
    :meth:`of` builds one from a dict.
    """

    strategy: ClassVar[str] = "lookup"

    family: KeyFamily
    entries: tuple[tuple[Key, str], ...]
    default: str | None = None
    version: int = 1
    _index: dict[tuple[Scalar, ...], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.family, KeyFamily):
            raise ConfigError(f"lookup map: family must be a KeyFamily, got {self.family!r}")
        check_version(self.version)
        if self.default is not None:
            check_name(self.default, "lookup map default group")
        pairs = list(self.entries.items()) if isinstance(self.entries, Mapping) else self.entries
        if not isinstance(pairs, tuple | list):
            raise ConfigError(f"lookup map: entries must be (key, group) pairs, got {pairs!r}")
        if not pairs and self.default is None:
            raise ConfigError("lookup map: with no entries it needs a default group")
        index: dict[tuple[Scalar, ...], str] = {}
        for i, pair in enumerate(pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ConfigError(f"lookup map: entries[{i}] must be (key, group), got {pair!r}")
            try:
                values = self.family.normalize(pair[0])
            except ShardKeyError as exc:
                raise ConfigError(f"lookup map: entries[{i}]: {exc}") from None
            if values in index:
                raise ConfigError(f"lookup map: key {pair[0]!r} has two entries")
            index[values] = check_name(pair[1], f"lookup map group of key {pair[0]!r}")
        ordered = sorted(index.items(), key=lambda p: p[0])
        object.__setattr__(self, "entries", tuple((self.family.present(k), g) for k, g in ordered))
        object.__setattr__(self, "_index", dict(ordered))

    @classmethod
    def of(
        cls,
        family: KeyFamily,
        entries: Mapping[Key, str],
        default: str | None = None,
        *,
        version: int = 1,
    ) -> LookupMap:
        """A map from a ``{key: group}`` dict."""
        return cls(family, tuple(entries.items()), default, version)

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The key columns' types, in key order."""
        return self.family.key_types

    @property
    def groups(self) -> tuple[str, ...]:
        """The entries' groups (in key order), then the default, each once."""
        names = [g for _, g in self.entries]
        if self.default is not None:
            names.append(self.default)
        return tuple(dict.fromkeys(names))

    def locate(self, key: Key) -> str:
        """The group of ``key``'s entry, else the default; a ShardKeyError without either."""
        values = self.family.normalize(key)
        group = self._index.get(values, self.default)
        if group is None:
            raise ShardKeyError(
                f"key {key!r} has no entry in the lookup map of family {self.family.name!r}, "
                "which has no default group"
            )
        return group

    def with_entries(self, entries: Mapping[Key, str]) -> LookupMap:
        """The next version with ``entries`` added or replacing existing ones."""
        merged: dict[tuple[Scalar, ...], str] = dict(self._index)
        for key, group in entries.items():
            try:
                merged[self.family.normalize(key)] = group
            except ShardKeyError as exc:
                raise ConfigError(f"lookup map: {exc}") from None
        pairs = tuple((self.family.present(k), g) for k, g in merged.items())
        return LookupMap(self.family, pairs, self.default, check_version(self.version + 1))

    def _member_sql(self, key: sql.Composable, keys: Sequence[tuple[Scalar, ...]]) -> sql.Composed:
        if self.family.composite:
            rows = sql.SQL(", ").join(key_literal(self.family, k) for k in keys)
            return sql.SQL("{} IN ({})").format(key, rows)
        # One array literal, cast to the key's type, instead of N literals to parse.
        array = sql.Literal([k[0] for k in keys])
        return sql.SQL("{} = ANY(CAST({} AS {}[]))").format(
            key, array, sql.SQL(self.family.key_types[0].value)
        )

    def predicate(self, group: str, columns: Sequence[sql.Composable]) -> sql.Composed:
        """``col = ANY(array)`` of ``group``'s keys; the default adds ``NOT (col = ANY(all))``."""
        check_group_in(group, self.groups)
        self.family.check_columns(columns)
        key = key_expr(columns)
        parts: list[sql.Composable] = []
        mine = [k for k, g in self._index.items() if g == group]
        if mine:
            parts.append(self._member_sql(key, mine))
        if group == self.default:
            if self._index:
                # NOT of NULL is NULL: rows with a NULL key stay in no group.
                parts.append(sql.SQL("NOT ({})").format(self._member_sql(key, list(self._index))))
            else:
                parts.append(sql.SQL("{} IS NOT NULL").format(key))
        return keyed_any_of(self.family, columns, parts, hashed=False)

    def to_spec(self) -> dict[str, Any]:
        """``{"strategy": "lookup", "version", "family", "entries", "default"}``.

        ``entries`` is a list of ``[key, group]`` in key order.
        """
        return {
            "strategy": self.strategy,
            "version": self.version,
            "family": self.family.to_spec(),
            "entries": [[encode_key(self.family, k), g] for k, g in self._index.items()],
            "default": self.default,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LookupMap:
        """The map :meth:`to_spec` described; a ConfigError naming what is wrong."""
        fields, family, version = map_fields(
            spec, cls.strategy, required=("entries",), optional=("default",)
        )
        pairs = []
        for i, item in enumerate(spec_rows(fields, "lookup map", "entries", "[key, group]")):
            key = family.present(decode_key(family, item[0], f"lookup map spec entries[{i}]"))
            pairs.append((key, item[1]))
        return cls(family, tuple(pairs), fields.get("default"), version)
