"""Regions -> shard groups: data stays in the group serving its region.

The key is the region value itself (one column, e.g. ``'eu-west'``). Regions
the map does not name, and rows whose region is NULL, go to the default group.
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
    any_of,
    check_group_in,
    check_name,
    check_value,
    check_version,
    decode_value,
    encode_value,
    map_fields,
)

__all__ = ["GeoMap"]


@dataclass(frozen=True, slots=True)
class GeoMap:
    """``regions`` as ``(region, group)`` pairs, and the ``default`` group for all others.

    Pairs are kept sorted by region; :meth:`of` builds one from a dict.
    """

    strategy: ClassVar[str] = "geo"

    family: KeyFamily
    regions: tuple[tuple[Scalar, str], ...]
    default: str
    version: int = 1
    _index: dict[Scalar, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.family, KeyFamily):
            raise ConfigError(f"geo map: family must be a KeyFamily, got {self.family!r}")
        if self.family.composite:
            raise ConfigError(
                f"geo map: the key is one region column; family {self.family.name!r} has "
                f"{len(self.family.key_types)}"
            )
        check_version(self.version)
        check_name(self.default, "geo map default group")
        pairs = list(self.regions.items()) if isinstance(self.regions, Mapping) else self.regions
        if not isinstance(pairs, tuple | list):
            raise ConfigError(f"geo map: regions must be (region, group) pairs, got {pairs!r}")
        index: dict[Scalar, str] = {}
        kt = self.family.key_types[0]
        for i, pair in enumerate(pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ConfigError(f"geo map: regions[{i}] must be (region, group), got {pair!r}")
            try:
                region = check_value(pair[0], kt, "geo map region")
            except ShardKeyError as exc:
                raise ConfigError(f"geo map: regions[{i}]: {exc}") from None
            if region in index:
                raise ConfigError(f"geo map: region {region!r} is listed twice")
            index[region] = check_name(pair[1], f"geo map group of region {region!r}")
        object.__setattr__(self, "regions", tuple(sorted(index.items(), key=lambda p: p[0])))
        object.__setattr__(self, "_index", index)

    @classmethod
    def of(
        cls, family: KeyFamily, regions: Mapping[Scalar, str], default: str, *, version: int = 1
    ) -> GeoMap:
        """A map from a ``{region: group}`` dict."""
        return cls(family, tuple(regions.items()), default, version)

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The region column's type."""
        return self.family.key_types

    @property
    def groups(self) -> tuple[str, ...]:
        """The regions' groups (in region order), then the default, each once."""
        return tuple(dict.fromkeys([*(g for _, g in self.regions), self.default]))

    def locate(self, key: Key | None) -> str:
        """The group of region ``key``; unknown regions and ``None`` go to the default."""
        if key is None:
            return self.default
        (region,) = self.family.normalize(key)
        return self._index.get(region, self.default)

    def predicate(self, group: str, columns: Sequence[sql.Composable]) -> sql.Composed:
        """``col IN (...)``; the default group's adds ``col NOT IN (all) OR col IS NULL``."""
        check_group_in(group, self.groups)
        self.family.check_columns(columns)
        col = columns[0]

        def among(regions: Sequence[Scalar]) -> sql.Composable:
            return sql.SQL(", ").join(sql.Literal(r) for r in regions)

        parts: list[sql.Composable] = []
        mine = [r for r, g in self.regions if g == group]
        if mine:
            parts.append(sql.SQL("{} IN ({})").format(col, among(mine)))
        if group == self.default:
            if self.regions:
                everything = among([r for r, _ in self.regions])
                parts.append(sql.SQL("{} NOT IN ({})").format(col, everything))
            else:
                parts.append(sql.SQL("{} IS NOT NULL").format(col))
            parts.append(sql.SQL("{} IS NULL").format(col))
        return any_of(parts)

    def to_spec(self) -> dict[str, Any]:
        """``{"strategy": "geo", "version", "family", "regions", "default"}``.

        ``regions`` is a list of ``[region, group]`` in region order.
        """
        return {
            "strategy": self.strategy,
            "version": self.version,
            "family": self.family.to_spec(),
            "regions": [[encode_value(r), g] for r, g in self.regions],
            "default": self.default,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> GeoMap:
        """The map :meth:`to_spec` described; a ConfigError naming what is wrong."""
        fields, family, version = map_fields(spec, cls.strategy, required=("regions", "default"))
        regions = fields["regions"]
        if not isinstance(regions, list):
            raise ConfigError(f"geo map spec: regions must be a list, got {regions!r}")
        if family.composite:
            raise ConfigError("geo map spec: the family must have exactly one key column")
        pairs = []
        for i, item in enumerate(regions):
            if not isinstance(item, list) or len(item) != 2:
                raise ConfigError(
                    f"geo map spec: regions[{i}] must be [region, group], got {item!r}"
                )
            region = decode_value(item[0], family.key_types[0], f"geo map spec regions[{i}]")
            pairs.append((region, item[1]))
        return cls(family, tuple(pairs), fields["default"], version)
