"""The model registry's tables: made on every group on the first write, placed by the
key family of model names (async source).

The family (``models``, text keys) gets an even slot map over every shard group if it
has none; the four tables (:mod:`mlscale.core.registry.sql`) are then created sharded
on ``model``. Two processes making them at once is harmless: the loser finds them
made. Reads never make anything: before the first write there is no model.

``tables_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from ...core.registry import sql
from ...engine.cluster_async import AsyncCluster
from ...errors import ModelNotFound, RegistryError
from ..shared_async import AsyncLazyTables

__all__ = ["AsyncRegistryTables"]


class AsyncRegistryTables(AsyncLazyTables):
    """Where a model's rows live, and the tables made when first needed."""

    def __init__(self, cluster: AsyncCluster) -> None:
        super().__init__(
            cluster,
            family=sql.FAMILY,
            shard_key="model",
            ddl=sql.DDL,
            error=RegistryError,
            what="model registry",
            keys="model names",
        )

    async def group_of(self, name: str) -> str:
        """The shard group holding model ``name``'s rows; ModelNotFound if the registry
        has no tables yet (so no model at all)."""
        if not await self.exist():
            raise ModelNotFound(f"no model {name!r}: the registry has no models yet")
        return await self._cluster.locate(sql.FAMILY, name)
