"""Ordered key ranges: ``[low, high)`` of the key itself -> shard group.

Good for keys whose order means something (time buckets, tenant id blocks).
Keys compare as PostgreSQL compares them under the C collation: integers by
value, text by code point (UTF-8 byte order), uuids and bytea bytewise,
composite keys column by column, as ``ROW(...) < ROW(...)`` does.
"""

from __future__ import annotations

import bisect
import itertools
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
    check_version,
    decode_key,
    encode_key,
    key_expr,
    key_literal,
    keyed_any_of,
    map_fields,
    spec_rows,
)

__all__ = ["KeyRange", "RangeMap"]

_Bound = tuple[Scalar, ...] | None


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys from ``low`` (included) up to ``high`` (excluded) go to ``group``.

    ``None`` leaves that end open: no lower or no upper bound.
    """

    low: Key | None
    high: Key | None
    group: str


@dataclass(frozen=True, slots=True)
class RangeMap:
    """Key ranges -> shard groups, with an optional ``default`` group for the gaps.

    Ranges may not overlap. Without a default they must cover every key: the
    first open below, the last open above, each starting where the previous
    ends. Ranges are kept sorted by their low end.
    """

    strategy: ClassVar[str] = "range"

    family: KeyFamily
    ranges: tuple[KeyRange, ...]
    default: str | None = None
    version: int = 1
    _bounds: tuple[tuple[_Bound, _Bound], ...] = field(init=False, repr=False, compare=False)
    _lows: list[tuple[Scalar, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.family, KeyFamily):
            raise ConfigError(f"range map: family must be a KeyFamily, got {self.family!r}")
        check_version(self.version)
        if self.default is not None:
            check_name(self.default, "range map default group")
        if not isinstance(self.ranges, tuple | list) or not self.ranges:
            raise ConfigError("range map: ranges must be a non-empty list of key ranges")
        checked: list[tuple[_Bound, _Bound, str]] = []
        for i, r in enumerate(self.ranges):
            if not isinstance(r, KeyRange):
                raise ConfigError(f"range map: ranges[{i}] is not a KeyRange: {r!r}")
            low, high = self._bound(r.low, i, "low"), self._bound(r.high, i, "high")
            if low is not None and high is not None and not low < high:
                raise ConfigError(
                    f"range map: ranges[{i}] is empty: low {r.low!r} is not below high {r.high!r}"
                )
            checked.append((low, high, check_name(r.group, f"range map ranges[{i}] group")))
        # None sorts first as a low end: it is minus infinity.
        checked.sort(key=lambda t: (t[0] is not None, t[0] or ()))
        self._check_order(checked)

        def present(bound: _Bound) -> Key | None:
            return None if bound is None else self.family.present(bound)

        ranges = tuple(KeyRange(present(lo), present(hi), g) for lo, hi, g in checked)
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "_bounds", tuple((lo, hi) for lo, hi, _ in checked))
        object.__setattr__(self, "_lows", [lo for lo, _, _ in checked if lo is not None])

    def _bound(self, value: Key | None, i: int, end: str) -> _Bound:
        if value is None:
            return None
        try:
            return self.family.normalize(value)
        except ShardKeyError as exc:
            raise ConfigError(f"range map: ranges[{i}].{end}: {exc}") from None

    def _check_order(self, checked: list[tuple[_Bound, _Bound, str]]) -> None:
        def show(bound: _Bound) -> str:
            return "unbounded" if bound is None else repr(self.family.present(bound))

        for (lo1, hi1, g1), (lo2, _, g2) in itertools.pairwise(checked):
            if hi1 is None or lo2 is None or hi1 > lo2:
                raise ConfigError(
                    f"range map: the ranges of {g1!r} (from {show(lo1)}) and {g2!r} "
                    f"(from {show(lo2)}) overlap"
                )
            if hi1 < lo2 and self.default is None:
                raise ConfigError(
                    f"range map: keys from {show(hi1)} up to {show(lo2)} have no range; "
                    "add one or set a default group"
                )
        if self.default is None and (checked[0][0] is not None or checked[-1][1] is not None):
            raise ConfigError(
                "range map: without a default group the first range must be open below "
                "(low None) and the last open above (high None)"
            )

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The key columns' types, in key order."""
        return self.family.key_types

    @property
    def groups(self) -> tuple[str, ...]:
        """The ranges' groups in key order, then the default group, each once."""
        names = [r.group for r in self.ranges]
        if self.default is not None:
            names.append(self.default)
        return tuple(dict.fromkeys(names))

    def locate(self, key: Key) -> str:
        """The group of the range holding ``key``, else the default group.

        A ShardKeyError for a malformed key (or one outside every range, which
        validation makes impossible without a default).
        """
        values = self.family.normalize(key)
        # The range with the greatest low end at or below the key (an open low end is lowest).
        i = bisect.bisect_right(self._lows, values) - 1
        if self._bounds[0][0] is None:
            i += 1
        if i >= 0:
            high = self._bounds[i][1]
            if high is None or values < high:
                return self.ranges[i].group
        if self.default is None:  # unreachable for a validated map; kept as a guard
            raise ShardKeyError(f"key {key!r} is in no range of family {self.family.name!r}")
        return self.default

    def _range_sql(self, key: sql.Composable, low: _Bound, high: _Bound) -> sql.Composable:
        conditions: list[sql.Composable] = []
        if low is not None:
            lit = key_literal(self.family, low, ordered=True)
            conditions.append(sql.SQL("{} >= {}").format(key, lit))
        if high is not None:
            lit = key_literal(self.family, high, ordered=True)
            conditions.append(sql.SQL("{} < {}").format(key, lit))
        if not conditions:
            return sql.SQL("{} IS NOT NULL").format(key)
        return sql.SQL(" AND ").join(conditions)

    def predicate(self, group: str, columns: Sequence[sql.Composable]) -> sql.Composed:
        """``(key >= lo AND key < hi OR ...)``; the default group adds ``NOT (any range)``."""
        check_group_in(group, self.groups)
        self.family.check_columns(columns)
        key = key_expr(columns)
        parts: list[sql.Composable] = [
            self._range_sql(key, lo, hi)
            for r, (lo, hi) in zip(self.ranges, self._bounds, strict=True)
            if r.group == group
        ]
        if group == self.default:
            everything = any_of(self._range_sql(key, lo, hi) for lo, hi in self._bounds)
            # NOT of a NULL comparison is NULL: rows with a NULL key stay in no group.
            parts.append(sql.SQL("NOT {}").format(everything))
        return keyed_any_of(self.family, columns, parts, hashed=False)

    def to_spec(self) -> dict[str, Any]:
        """``{"strategy": "range", "version", "family", "ranges", "default"}``.

        ``ranges`` is a list of ``[low, high, group]``; an open end is null,
        keys are written as :func:`~mlscale.core.shardmaps.base.encode_key` does.
        """
        return {
            "strategy": self.strategy,
            "version": self.version,
            "family": self.family.to_spec(),
            "ranges": [
                [
                    None if lo is None else encode_key(self.family, lo),
                    None if hi is None else encode_key(self.family, hi),
                    r.group,
                ]
                for r, (lo, hi) in zip(self.ranges, self._bounds, strict=True)
            ],
            "default": self.default,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RangeMap:
        """The map :meth:`to_spec` described; a ConfigError naming what is wrong."""
        fields, family, version = map_fields(
            spec, cls.strategy, required=("ranges",), optional=("default",)
        )
        parsed = []
        for i, item in enumerate(spec_rows(fields, "range map", "ranges", "[low, high, group]")):
            low, high = (
                None if v is None else family.present(decode_key(family, v, f"ranges[{i}]"))
                for v in item[:2]
            )
            parsed.append(KeyRange(low, high, item[2]))
        return cls(family, tuple(parsed), fields.get("default"), version)
