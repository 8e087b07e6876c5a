"""Point-in-time training sets (async source): :func:`historical`.

For each (entity, time) row of the caller's frame, and each view, the newest history
row of that entity with ``event_ts <= time`` and ``event_ts >= time - ttl`` -- the
semantics of Feast's point-in-time join (and of pandas ``merge_asof`` with
``direction="backward"`` and ``tolerance=ttl``). Rows are placed on groups by key
and sent per group in chunks as arrays; each row is one backward index probe of the
history's primary key (``LATERAL ... ORDER BY event_ts DESC LIMIT 1``), and the
answers come back aggregated and binary (see :mod:`mlscale.core.features.layout`).

``history_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...core.causal import CausalToken
from ...core.features.arrays import Decoded, decode
from ...core.features.batch import event_times
from ...core.features.online import OnlineBuilder
from ...engine.cluster_async import AsyncCluster
from ...errors import FeatureError
from ..shared_async import run_all
from .placing_async import keys_of, place
from .views_async import AsyncViews

__all__ = ["historical"]


async def historical(
    cluster: AsyncCluster,
    views: AsyncViews,
    entity_df: Any,
    features: Sequence[str] | str,
    timestamp_column: str,
    token: CausalToken | str | None,
    consistency: str | None,
    chunk_rows: int,
) -> Any:
    """See :meth:`AsyncFeatureStore.get_historical_features`."""
    import pandas as pd

    if not isinstance(entity_df, pd.DataFrame):
        raise FeatureError("get_historical_features: entity_df must be a pandas DataFrame")
    if chunk_rows < 1:
        raise FeatureError("get_historical_features: chunk_rows must be at least 1")
    requests, names = await views.shape(features)
    first = requests[0].layout.view
    missing = [c for c in (*first.entity_names, timestamp_column) if c not in entity_df.columns]
    if missing:
        raise FeatureError(
            f"get_historical_features: entity_df lacks column(s) {', '.join(missing)}"
        )
    n = len(entity_df)
    keys = keys_of(first, {e: entity_df[e].to_numpy() for e in first.entity_names})
    times = event_times(entity_df[timestamp_column], f"entity_df {timestamp_column!r}")
    stamps = times.astype("datetime64[us]").astype(object)
    builder = OnlineBuilder(keys, n, requests, names)
    if n:
        shards = await cluster.shards()
        for vi, req in enumerate(requests):
            view = req.layout.view
            shard_map = shards.map_of(view.family)
            where = place(shard_map, keys, view)
            text = req.layout.historical_read(req.columns)
            calls: list[Callable[[], Any]] = []
            for gi, group in enumerate(shard_map.groups):
                mine = np.flatnonzero(where == gi)
                for at in range(0, mine.size, chunk_rows):
                    chunk = mine[at : at + chunk_rows]
                    params = [v[chunk].tolist() for v in keys.values()]
                    params.append([s.replace(tzinfo=dt.UTC) for s in stamps[chunk].tolist()])
                    calls.append(
                        _reader(
                            cluster, group, text, params, chunk, builder, vi, token, consistency
                        )
                    )
            await run_all(calls)
    out = entity_df.copy()
    got = builder.result.to_pandas()
    for col in [c for group in names for c in group]:
        out[col] = got[col].to_numpy() if got[col].dtype.kind != "O" else got[col].tolist()
    return out


def _reader(
    cluster: AsyncCluster,
    group: str,
    text: str,
    params: list[Any],
    positions: Any,
    builder: OnlineBuilder,
    vi: int,
    token: CausalToken | str | None,
    consistency: str | None,
) -> Callable[[], Any]:
    async def read() -> None:
        row = await cluster.as_written(group).fetch_one(
            text, params, token=token, consistency=consistency, binary=True
        )
        decoded = [decode(v) for v in row]
        if decoded[0] is None:
            return
        decoded[0] = Decoded(positions[decoded[0].values.astype(np.int64) - 1] + 1, None)
        builder.take(vi, decoded)

    return read
