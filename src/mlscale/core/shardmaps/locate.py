"""Where many keys of one key type live: the index of each key's shard group in a
map's ``groups``, hashed in numpy when the map is a slot map. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..slots import KeyType, slots_of
from .slotmap import SlotMap

__all__ = ["group_indexes"]


def group_indexes(
    shard_map: Any, keys: Sequence[Any] | npt.NDArray[Any], key_type: KeyType
) -> npt.NDArray[np.int64]:
    """The index in ``shard_map.groups`` of each key's group (integer keys as an
    int64 array are hashed in numpy, about 20 ns a key; other maps place key by key)."""
    if isinstance(shard_map, SlotMap):
        found: npt.NDArray[np.int64] = shard_map.locate_slots(
            slots_of(keys, key_type, shard_map.slots)
        )
        return found
    index = {g: i for i, g in enumerate(shard_map.groups)}
    values = keys.tolist() if isinstance(keys, np.ndarray) else list(keys)
    return np.array([index[shard_map.locate(k)] for k in values], dtype=np.int64)
