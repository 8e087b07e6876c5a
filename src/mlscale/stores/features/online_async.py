"""Online reads: the newest feature values of many entities, one statement per group
(async source).

The request's keys are placed on groups in numpy; each group answers every view of
the call in ONE statement (the views' aggregated rows side by side, see
:mod:`mlscale.core.features.layout`), read in binary and decoded by numpy, each
under the call's consistency (``token=`` for read-your-writes). With a cache,
entities are looked up first (one batch per call) and the misses read and filled,
versioned by event time (see :mod:`.writes_async` for the invalidation).

``online_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ...cache.policy import Versioned
from ...cache.tiered_async import AsyncCache
from ...core.causal import CausalToken
from ...core.features.arrays import PG_EPOCH_US, Decoded, decode
from ...core.features.layout import online_statement
from ...core.features.online import (
    OnlineBuilder,
    OnlineFeatures,
    ViewRequest,
    from_entries,
    to_entries,
)
from ...engine.cluster_async import AsyncCluster
from ...metrics.latency import observe_feature_read
from ..shared_async import run_all
from .placing_async import array_text, cache_version, key_rows, keys_of, place
from .views_async import AsyncViews

__all__ = ["AsyncOnlineReader"]

# An online read of at most this many entities runs its groups in turn where that
# is cheaper than handing them to threads (see engine/concurrency SMALL_WORK_IN_PLACE).
SMALL_READ = 1000


@dataclass(slots=True)
class _Call:
    """One online read, being assembled: per view, the positions still to read."""

    requests: list[ViewRequest]
    keys: dict[str, npt.NDArray[Any]]
    n: int
    builder: OnlineBuilder
    todo: list[npt.NDArray[np.int64]]
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # keys as tuples (cache names)


class AsyncOnlineReader:
    """Reads online features for a store (see the module docstring)."""

    def __init__(
        self, cluster: AsyncCluster, views: AsyncViews, cache: AsyncCache | None, cache_ttl_s: float
    ) -> None:
        self._cluster = cluster
        self._views = views
        self._cache = cache
        self._cache_ttl_s = cache_ttl_s
        self._statements: dict[tuple[Any, ...], str] = {}

    async def read(
        self,
        features: Sequence[str] | str,
        entity_ids: Any,
        token: CausalToken | str | None,
        consistency: str | None,
        use_cache: bool,
    ) -> OnlineFeatures:
        """See :meth:`AsyncFeatureStore.get_online_features`."""
        started = time.perf_counter()
        requests, names = await self._views.shape(features)
        keys = keys_of(requests[0].layout.view, entity_ids)
        n = int(next(iter(keys.values())).shape[0])
        builder = OnlineBuilder(keys, n, requests, names)
        call = _Call(requests, keys, n, builder, [np.arange(n, dtype=np.int64) for _ in requests])
        if n == 0:
            return builder.result
        cache = self._cache if use_cache else None
        if cache is not None:
            call.rows = key_rows(keys)
            await self._from_cache(cache, call)
        await self._from_groups(call, token, consistency, cache)
        took = time.perf_counter() - started
        for req in requests:  # a read of several views counts for each of them
            observe_feature_read(req.layout.view.name, took)
        return builder.result

    async def _from_cache(self, cache: AsyncCache, call: _Call) -> None:
        """Serve what the cache holds; leave the misses in ``call.todo``."""
        rows = call.rows
        now_us = time.time_ns() // 1000 - PG_EPOCH_US  # cached times count from 2000
        for vi, req in enumerate(call.requests):
            view = req.layout.view
            names = [(view.name, view.version, *rows[p]) for p in range(call.n)]
            got = await cache.get_many(names)
            hits = []
            miss = []
            cutoff = None if view.ttl_s is None else now_us - int(view.ttl_s * 1e6)
            for p in range(call.n):
                entry = got.get(names[p])
                if entry is None or (cutoff is not None and entry[0] < cutoff):
                    miss.append(p)
                else:
                    hits.append((p + 1, entry))
            if hits:
                call.builder.take(vi, from_entries(req.layout, req, hits))
            call.todo[vi] = np.array(miss, dtype=np.int64)

    async def _from_groups(
        self,
        call: _Call,
        token: CausalToken | str | None,
        consistency: str | None,
        cache: AsyncCache | None,
    ) -> None:
        """Read ``call.todo`` from the groups, one statement per group, groups at once."""
        shards = await self._cluster.shards()
        plan: dict[str, list[tuple[int, npt.NDArray[np.int64]]]] = {}
        for vi, req in enumerate(call.requests):
            todo = call.todo[vi]
            if not todo.size:
                continue
            view = req.layout.view
            shard_map = shards.map_of(view.family)
            sub = {k: v[todo] for k, v in call.keys.items()}
            where = place(shard_map, sub, view)
            for gi, group in enumerate(shard_map.groups):
                mine = todo[where == gi]
                if mine.size:
                    plan.setdefault(group, []).append((vi, mine))
        if not plan:
            return
        fill: list[tuple[Any, Any]] = []

        def reader(group: str, parts: list[tuple[int, npt.NDArray[np.int64]]]) -> Callable[[], Any]:
            async def read() -> None:
                sql_text, params, columns = self._online_sql(call, parts, cache is not None)
                row = await self._cluster.as_written(group).fetch_one(
                    sql_text, params, token=token, consistency=consistency, binary=True
                )
                at = 0
                for (vi, positions), cols in zip(parts, columns, strict=True):
                    width = 2 + len(cols)
                    decoded = [decode(v) for v in row[at : at + width]]
                    at += width
                    if decoded[0] is not None:
                        decoded[0] = Decoded(
                            positions[decoded[0].values.astype(np.int64) - 1] + 1, None
                        )
                    req = call.requests[vi]
                    if cache is not None:
                        fill.extend((req.layout.view, e) for e in to_entries(req.layout, decoded))
                        decoded = _select(req, decoded)
                    call.builder.take(vi, decoded)

            return read

        await run_all([reader(g, parts) for g, parts in plan.items()], small=call.n <= SMALL_READ)
        if cache is not None and fill:
            await self._fill(cache, call, fill)

    def _online_sql(
        self, call: _Call, parts: list[tuple[int, npt.NDArray[np.int64]]], whole: bool
    ) -> tuple[str, list[Any], list[tuple[Any, ...]]]:
        """The statement, its parameters and each view's columns for one group."""
        params: list[Any] = []
        columns = []
        for vi, positions in parts:
            req = call.requests[vi]
            cols = req.layout.columns if whole else req.columns
            columns.append(cols)
            params += [array_text(v[positions]) for v in call.keys.values()]
            if req.layout.view.ttl_s is not None:
                params.append(float(req.layout.view.ttl_s))
        key = tuple((vi, whole) for vi, _ in parts) + tuple(
            (r.layout.view.name, r.layout.view.version, r.features) for r in call.requests
        )
        text = self._statements.get(key)
        if text is None:
            text = online_statement(
                [
                    call.requests[vi].layout.online_read(cols)
                    for (vi, _), cols in zip(parts, columns, strict=True)
                ]
            )
            self._statements[key] = text
        return text, params, columns

    async def _fill(self, cache: AsyncCache, call: _Call, fill: list[tuple[Any, Any]]) -> None:
        rows = call.rows
        items: dict[Any, Any] = {
            (view.name, view.version, *rows[pos - 1]): Versioned(entry, cache_version(entry[0]))
            for view, (pos, entry) in fill
        }
        await cache.set_many(items, ttl=self._cache_ttl_s)


def _select(req: ViewRequest, decoded: list[Decoded | None]) -> list[Decoded | None]:
    """From an answer of every column of the view, the request's columns."""
    index = {c.name: k for k, c in enumerate(req.layout.columns)}
    return decoded[:2] + [decoded[2 + index[c.name]] for c in req.columns]
