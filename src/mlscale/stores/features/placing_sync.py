# Generated from placing_async.py by scripts/async_to_sync.py: do not edit.
# Change placing_async.py and run the script again.
"""Placing a call's entity keys on shard groups (async source).

``placing_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ...core.features.entity_keys import keys_of
from ...core.features.spec import FeatureView
from ...core.sharding import locate_many

__all__ = ["array_text", "cache_version", "key_rows", "keys_of", "place"]


def cache_version(event_us: int) -> int:
    """A cached row's version: its event time (microseconds since 2000, as PostgreSQL
    counts; 0 before it). An entity's online row only ever moves to newer events."""
    return max(0, int(event_us))


def array_text(values: npt.NDArray[Any]) -> Any:
    """Keys as a ``%s::type[]`` parameter: integer keys as the array's text form (built
    in one join; the driver's list adapter checks every element, ~40 us per 100
    keys), other keys as a list for the driver to quote."""
    if values.dtype.kind in "iu":
        return "{" + ",".join(map(str, values.tolist())) + "}"
    return values.tolist()


def key_rows(keys: Mapping[str, npt.NDArray[Any]]) -> list[tuple[Any, ...]]:
    return list(zip(*(v.tolist() for v in keys.values()), strict=True))


def place(
    shard_map: Any, keys: Mapping[str, npt.NDArray[Any]], view: FeatureView
) -> npt.NDArray[np.int64]:
    """The index in ``shard_map.groups`` of each key's group."""
    cols = list(keys.values())
    if len(cols) == 1:
        where = locate_many(shard_map, cols[0].tolist())
        if where is not None:
            return where
    index = {g: i for i, g in enumerate(shard_map.groups)}
    rows = key_rows(keys)
    if len(cols) == 1:
        return np.array([index[shard_map.locate(r[0])] for r in rows], dtype=np.int64)
    return np.array([index[shard_map.locate(r)] for r in rows], dtype=np.int64)
