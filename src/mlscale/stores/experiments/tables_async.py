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

from ...core.experiments import sql
from ...engine.cluster_async import AsyncCluster
from ...errors import ExperimentError
from ..shared_async import AsyncLazyTables

__all__ = ["AsyncExperimentTables"]


class AsyncExperimentTables(AsyncLazyTables):
    """Where an experiment's rows live, and the tables made when first needed."""

    def __init__(self, cluster: AsyncCluster) -> None:
        super().__init__(
            cluster,
            family=sql.FAMILY,
            shard_key="experiment",
            ddl=sql.DDL,
            error=ExperimentError,
            what="experiment store",
            keys="experiment names",
        )

    async def group_of(self, experiment: str) -> str:
        """The shard group holding experiment ``experiment``'s documents."""
        return await self._cluster.locate(sql.FAMILY, experiment)
