"""Pushes and materializations: checked rows written to the online table and the
history, one transaction per group (async source).

A push is checked whole first (nothing is written if anything is wrong), split by
group, and per group: binary COPY into a staging table, an upsert into the online
table that an older event never wins, an append to the history. Groups commit
separately: a group's failure raises :class:`PartialWriteError` naming the groups
that committed; pushing again is harmless (same rows, same result). With a cache,
the written keys are invalidated after each group's commit with its causal token
and a version floor of the newest event written, so a fill read from a lagging
replica cannot put the old row back.

``writes_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...cache.tiered_async import AsyncCache
from ...core.causal import CausalToken
from ...core.features.arrays import PG_EPOCH_US
from ...core.features.batch import Batch, to_batch
from ...core.features.layout import Layout
from ...core.features.results import MaterializeResult, PushResult
from ...core.features.spec import FeatureView
from ...engine.cluster_async import AsyncCluster
from ...errors import PartialWriteError
from ..shared_async import run_all
from .placing_async import cache_version, place
from .sources_async import batches_of
from .views_async import AsyncViews

__all__ = ["AsyncWriter"]


class AsyncWriter:
    """Writes feature rows for a store (see the module docstring)."""

    def __init__(
        self, cluster: AsyncCluster, views: AsyncViews, cache: AsyncCache | None, max_rows: int
    ) -> None:
        self._cluster = cluster
        self._views = views
        self._cache = cache
        self._max_rows = max_rows

    async def push(
        self, view: str | FeatureView, data: Any, *, timestamp_column: str = "event_ts"
    ) -> PushResult:
        """Write ``data`` (a DataFrame, an Arrow table or records with the entity
        columns, ``timestamp_column`` and every feature) to the view's online table
        (newest event per entity wins) and history. Checked whole before anything is
        written. Returns the commits' causal token (see the module docstring)."""
        started = time.perf_counter()
        fv = view if isinstance(view, FeatureView) else await self._views.get(view)
        batch = to_batch(fv, data, timestamp_column=timestamp_column, max_rows=self._max_rows)
        groups, token = await self._write(fv, batch)
        return PushResult(
            fv.name, fv.version, batch.size, groups, token, time.perf_counter() - started
        )

    async def _write(self, view: FeatureView, batch: Batch) -> tuple[dict[str, int], CausalToken]:
        if batch.size == 0:
            return {}, CausalToken()
        layout = Layout.of(view)
        await self._views.registry.ensure_partitions(layout, batch.months())
        shard_map = (await self._cluster.shards()).map_of(view.family)
        keys = {e: k for e, k in zip(view.entity_names, batch.keys, strict=True)}
        where = place(shard_map, keys, view)
        parts = [
            (group, batch.take(np.flatnonzero(where == gi)))
            for gi, group in enumerate(shard_map.groups)
            if (where == gi).any()
        ]
        tokens: dict[str, CausalToken] = {}

        def writer(group: str, part: Batch) -> Callable[[], Any]:
            async def write() -> None:
                payload = part.copy_payload(layout)
                async with self._cluster.transaction(group=group, as_written=True) as tx:
                    await tx.execute(layout.stage_ddl())
                    await tx.copy(
                        layout.copy_sql(), payload if payload is not None else part.rows(layout)
                    )
                    await tx.execute(layout.upsert_sql())
                    await tx.execute(layout.history_sql())
                tokens[group] = tx.token or CausalToken()
                if self._cache is not None:
                    await self._invalidate(self._cache, view, part, tokens[group])

            return write

        errors = await run_all([writer(g, p) for g, p in parts], raise_first=False)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        if errors:
            done = sorted(tokens)
            failed = sorted(g for g, _ in parts if g not in tokens)
            first = errors[0]
            if not done:
                raise first
            raise PartialWriteError(
                f"push to {view.name!r}: committed on {', '.join(done)}, failed on "
                f"{', '.join(failed)} ({first}); pushing the same data again is harmless",
                committed=tuple(done),
                failed=failed[0],
            ) from first
        return {g: p.size for g, p in parts}, token

    async def _invalidate(
        self, cache: AsyncCache, view: FeatureView, part: Batch, token: CausalToken
    ) -> None:
        """Drop the written keys from the cache, with the commit's token and a version
        floor of the newest event written, so an older row is never filled again."""
        names = [(view.name, view.version, *k) for k in part.key_tuples()]
        floor = cache_version(int(part.event_us.max()) - PG_EPOCH_US)
        await cache.invalidate(names, token, version=floor)

    async def materialize(
        self,
        view: str | FeatureView,
        source: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        timestamp_column: str = "event_ts",
        batch_rows: int = 100_000,
        progress: bool | Callable[[int, int], None] = False,
    ) -> MaterializeResult:
        """Push the rows of ``source`` with event times in [``start``, ``end``) in
        batches of ``batch_rows``: ``source`` is a Parquet file or directory (a path
        ending in ``.parquet`` or a directory), or a table on the cluster with the
        view's columns. ``progress``: a line on stderr per batch (or a callable
        taking rows done and batches done)."""
        started = time.perf_counter()
        fv = view if isinstance(view, FeatureView) else await self._views.get(view)
        wanted = [*fv.entity_names, timestamp_column, *(f.name for f in fv.features)]
        report = _progress(progress, fv.name)
        rows = batches_done = 0
        token = CausalToken()
        async for frame in batches_of(
            self._cluster,
            source,
            wanted,
            timestamp_column,
            start,
            end,
            batch_rows,
            fv.entity_names,
        ):
            batch = to_batch(
                fv, frame, timestamp_column=timestamp_column, max_rows=max(batch_rows, len(frame))
            )
            _, t = await self._write(fv, batch)
            token = token.merge(t)
            rows += batch.size
            batches_done += 1
            report(rows, batches_done)
        return MaterializeResult(fv.name, rows, batches_done, token, time.perf_counter() - started)


def _progress(progress: bool | Callable[[int, int], None], name: str) -> Callable[[int, int], None]:
    if callable(progress):
        return progress
    if not progress:
        return lambda rows, batches: None
    started = time.perf_counter()

    def line(rows: int, batches: int) -> None:
        took = time.perf_counter() - started
        rate = rows / took if took > 0 else 0.0
        print(
            f"materialize {name}: {rows:,} rows in {batches} batches, "
            f"{took:.1f} s ({rate:,.0f} rows/s)",
            file=sys.stderr,
            flush=True,
        )

    return line
