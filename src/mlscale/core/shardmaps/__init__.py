"""Shard maps: where each shard key lives, as one interface with several strategies.

Every strategy implements :class:`ShardMap`: ``locate(key)`` names a key's shard
group, ``predicate(group, columns)`` is SQL true for exactly that group's rows,
and ``to_spec()`` / :func:`map_from_spec` store a map as JSON in the catalog.

============  =============================================================
strategy      placement
============  =============================================================
``slots``     :class:`SlotMap`, the default: hash slots, a directory of slot
              ranges; adding a group moves whole slots (about 1/(N+1))
``ring``      :class:`HashRing`: consistent hashing with virtual nodes,
              balanced tokens by default (:class:`TokenAllocation`)
``range``     :class:`RangeMap`: ordered key ranges, open ends allowed
``geo``       :class:`GeoMap`: region -> group, a default for the rest
``lookup``    :class:`LookupMap`: explicit key -> group entries
============  =============================================================

Co-location: a :class:`KeyFamily` names a shard key shape. Each sharded table
records its family (and which of its columns form the key); the catalog keeps
one map per family. Tables of one family are therefore placed by the same map
version, and equal keys land in the same group in every one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ConfigError
from .base import Key, KeyFamily, Scalar, ShardMap, key_hash_sql
from .geomap import GeoMap
from .lookup import LookupMap
from .rangemap import KeyRange, RangeMap
from .ring import DEFAULT_VNODES, HashRing, TokenAllocation
from .slotmap import SlotMap, SlotMove, SlotRange, moves

__all__ = [
    "DEFAULT_VNODES",
    "STRATEGIES",
    "GeoMap",
    "HashRing",
    "Key",
    "KeyFamily",
    "KeyRange",
    "LookupMap",
    "RangeMap",
    "Scalar",
    "ShardMap",
    "SlotMap",
    "SlotMove",
    "SlotRange",
    "TokenAllocation",
    "key_hash_sql",
    "map_from_spec",
    "moves",
]

STRATEGIES: dict[str, type[SlotMap | HashRing | RangeMap | GeoMap | LookupMap]] = {
    cls.strategy: cls for cls in (SlotMap, HashRing, RangeMap, GeoMap, LookupMap)
}
"""Strategy name (a spec's ``"strategy"``) -> map class."""


def map_from_spec(spec: Mapping[str, Any]) -> ShardMap:
    """The shard map a ``to_spec()`` dict describes, whatever its strategy.

    A :class:`~mlscale.errors.ConfigError` names the field that is wrong.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a shard map spec must be a JSON object, got {type(spec).__name__}")
    strategy = spec.get("strategy")
    cls = STRATEGIES.get(strategy) if isinstance(strategy, str) else None
    if cls is None:
        raise ConfigError(
            f"unknown shard map strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
        )
    return cls.from_spec(spec)
