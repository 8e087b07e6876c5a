"""The experiment store's tables: made on every group on the first write, placed by
the key family of experiment names (async source).

The family (``experiments``, text keys) gets an even slot map over every shard
group if it has none; the two tables (:mod:`mlscale.core.experiments.sql`) are then
created sharded on ``experiment``. Two processes making them at once is harmless:
the loser finds them made. Reads never make anything: before the first write there
is no document.

``tables_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time

from ...core.experiments import sql
from ...core.shardmaps import KeyFamily, SlotMap
from ...engine.cluster_async import AsyncCluster
from ...errors import ExperimentError, MlscaleError

__all__ = ["AsyncExperimentTables"]


class AsyncExperimentTables:
    """Where an experiment's documents live, and the tables made when first needed."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster
        self._made = False  # every table known to exist (they are never dropped by us)
        self._refreshed = 0.0  # monotonic time of the last directory refresh for a miss

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return [g.name for g in self._cluster.config.shard_groups]

    async def exist(self) -> bool:
        """Whether the store's tables exist (as far as this client's directory knows)."""
        if self._made:
            return True
        tables = (await self._cluster.shards()).tables
        if not all(name in tables for name in sql.DDL) and time.monotonic() - self._refreshed > 1.0:
            # Made by another process moments ago: its NOTIFY may not have reached us yet.
            self._refreshed = time.monotonic()
            tables = (await self._cluster.refresh_shards()).tables
        self._made = all(name in tables for name in sql.DDL)
        return self._made

    async def group_of(self, experiment: str) -> str:
        """The shard group holding experiment ``experiment``'s documents."""
        return await self._cluster.locate(sql.FAMILY, experiment)

    async def ensure(self) -> None:
        """Make the key family's map and the tables where missing."""
        if await self.exist():
            return
        await self._family()
        known = (await self._cluster.shards()).tables
        for name, ddl in sql.DDL.items():
            if name in known:
                continue
            try:
                await self._cluster.create_sharded_table(
                    ddl, shard_key="experiment", family=sql.FAMILY
                )
            except MlscaleError:
                known = (await self._cluster.refresh_shards()).tables
                if name not in known:  # not a racing creation: a real failure
                    raise
        self._made = True

    async def _family(self) -> None:
        shards = await self._cluster.shards()
        if sql.FAMILY in shards.maps:
            have = tuple(shards.map_of(sql.FAMILY).key_types)
            if have != ("text",):
                raise ExperimentError(
                    f"key family {sql.FAMILY!r} exists with key types {', '.join(have)}; the "
                    "experiment store needs it to have one text key (experiment names)"
                )
            return
        family = KeyFamily.of(sql.FAMILY, "text")
        try:
            even = SlotMap.even(family, self.groups)
            await self._cluster.create_shard_map(even, "experiment store")
        except MlscaleError:
            shards = await self._cluster.refresh_shards()
            if sql.FAMILY not in shards.maps:  # not a racing creation: a real failure
                raise
