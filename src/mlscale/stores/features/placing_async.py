"""Placing a call's entity keys on shard groups (async source).

``placing_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ...core.features.spec import FeatureView
from ...core.sharding import locate_many
from ...core.slots import KeyType
from ...errors import FeatureError

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


def keys_of(view: FeatureView, entity_ids: Any) -> dict[str, npt.NDArray[Any]]:
    """The request's keys as one array per entity column."""
    names = view.entity_names
    if isinstance(entity_ids, Mapping):
        missing = [n for n in names if n not in entity_ids]
        if missing:
            raise FeatureError(f"entity_ids lacks entity column(s) {', '.join(missing)}")
        cols = {n: np.asarray(entity_ids[n]) for n in names}
    elif len(names) == 1:
        arr = np.asarray(entity_ids)
        if arr.ndim != 1:
            raise FeatureError(
                f"entity_ids: one key per entity of {names[0]!r}, got shape {arr.shape}"
            )
        cols = {names[0]: arr}
    else:
        rows = list(entity_ids)
        if not all(isinstance(r, tuple | list) and len(r) == len(names) for r in rows):
            raise FeatureError(f"entity_ids: tuples of ({', '.join(names)}) expected")
        cols = {n: np.asarray([r[i] for r in rows]) for i, n in enumerate(names)}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise FeatureError("entity_ids: the entity columns have different lengths")
    for e in view.entities:
        arr = cols[e.name]
        if e.key_type.is_integer:
            if arr.size and arr.dtype.kind not in "iu":
                raise FeatureError(
                    f"entity {e.name!r} is {e.key_type}; the keys given are {arr.dtype}"
                )
            cols[e.name] = arr.astype(np.int64)
            continue
        values = arr.tolist()
        if e.key_type is KeyType.TEXT and not all(isinstance(v, str) for v in values):
            raise FeatureError(f"entity {e.name!r} is text; the keys given are not all strings")
        cols[e.name] = np.asarray([str(v) for v in values], dtype=object)
    return cols


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
