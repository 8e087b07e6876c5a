"""The sharding directory a client routes by: maps per key family, sharded tables.

One immutable value per catalog version (``version`` is the catalog's sharding
counter, bumped by every change), swapped whole when a newer one is loaded, so
a call sees one consistent directory from start to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import RoutingError
from .keyroute import ShardedTable
from .shardmaps import ShardMap, SlotMap
from .slots import slots_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "EMPTY",
    "MOVE_GRACE_S",
    "UNCONFIRMED_S",
    "ShardDirectory",
    "group_indexes",
    "locate_many",
]

# A process whose directory the catalog has not confirmed for this long may have
# missed a move being opened: its cross-shard reads filter every group by ownership.
UNCONFIRMED_S = 1.0
# How long opening a move waits before it returns (and rows may be copied): every
# process then has either seen the move or stopped trusting its directory.
MOVE_GRACE_S = UNCONFIRMED_S + 0.5


@dataclass(frozen=True, slots=True)
class ShardDirectory:
    """Shard maps by key family, sharded tables by name, and the families with a move
    open (``moving``): their rows may exist on two groups at once, so a read across
    groups must keep each group to the rows its map gives it."""

    version: int = 0
    maps: Mapping[str, ShardMap] = field(default_factory=dict)
    tables: Mapping[str, ShardedTable] = field(default_factory=dict)
    moving: frozenset[str] = frozenset()

    def map_of(self, family: str) -> ShardMap:
        """The current map of key family ``family``."""
        try:
            return self.maps[family]
        except KeyError:
            known = ", ".join(sorted(self.maps)) or "none yet"
            raise RoutingError(
                f"no shard map for key family {family!r} (known: {known}); "
                "create one with cluster.create_shard_map(...)"
            ) from None

    def table(self, name: str) -> ShardedTable:
        """The sharded table ``name`` (unqualified, as PostgreSQL folds it)."""
        try:
            return self.tables[name]
        except KeyError:
            known = ", ".join(sorted(self.tables)) or "none yet"
            raise RoutingError(f"{name!r} is not a sharded table (known: {known})") from None

    def map_of_table(self, name: str) -> ShardMap:
        return self.map_of(self.table(name).family)

    def locate(self, table_or_family: str, key: Any) -> str:
        """The shard group of ``key`` in a sharded table's (or a key family's) map."""
        if table_or_family in self.tables:
            return self.map_of_table(table_or_family).locate(key)
        return self.map_of(table_or_family).locate(key)

    def group_keys(self, shard_map: ShardMap, keys: Sequence[Any]) -> dict[str, list[int]]:
        """Indexes of ``keys`` (tuples, one value per key column) by the group each
        maps to, groups in first-seen order."""
        indexes = locate_many(shard_map, keys)
        out: dict[str, list[int]] = {}
        if indexes is not None:
            names = shard_map.groups
            for i, g in enumerate(indexes.tolist()):
                out.setdefault(names[g], []).append(i)
            return out
        for i, key in enumerate(keys):
            out.setdefault(shard_map.locate(key), []).append(i)
        return out


def locate_many(shard_map: ShardMap, keys: Sequence[Any]) -> npt.NDArray[np.int64] | None:
    """For many keys (tuples of one value, or plain values) of a one-column integer
    family placed by slots, the index in ``shard_map.groups`` of each key's group,
    hashed in numpy (a batch of 100 keys in tens of microseconds instead of
    milliseconds); None when the map or the keys need the per-key path."""
    if not isinstance(shard_map, SlotMap) or len(shard_map.key_types) != 1 or not keys:
        return None
    key_type = shard_map.key_types[0]
    if not key_type.is_integer:
        return None
    values = [k[0] if type(k) is tuple and len(k) == 1 else k for k in keys]
    if not set(map(type, values)) <= {int}:
        return None  # the per-key path names the malformed key
    return shard_map.locate_slots(slots_of(values, key_type, shard_map.slots))


def group_indexes(shard_map: ShardMap, keys: Sequence[Any]) -> npt.NDArray[np.int64]:
    """The index in ``shard_map.groups`` of each key's group: :func:`locate_many` where
    it applies, else key by key."""
    import numpy as np

    where = locate_many(shard_map, keys)
    if where is not None:
        return where
    index = {g: i for i, g in enumerate(shard_map.groups)}
    return np.array([index[shard_map.locate(k)] for k in keys], dtype=np.int64)


EMPTY = ShardDirectory()
