"""A handle on one vector collection (async source): its spec, its indexes, and the
writes and queries of :mod:`.writes_async` and :mod:`.queries_async`.

Indexes: HNSW (``m``, ``ef_construction``) or IVFFlat (``lists``), built on every
group at once; a GIN index on metadata on request.

``collection_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...core.vectors import sql as vsql
from ...core.vectors.spec import Collection, IndexKind, IndexSpec
from ...errors import VectorError
from ..shared_async import run_all
from .queries_async import AsyncVectorQueries
from .writes_async import AsyncVectorWrites

if TYPE_CHECKING:
    from .store_async import AsyncVectorStore

__all__ = ["AsyncVectorCollection"]


class AsyncVectorCollection(AsyncVectorWrites, AsyncVectorQueries):
    """One collection: writes, indexes and k-nearest queries (see the module
    docstrings of :mod:`.store_async`, :mod:`.writes_async`, :mod:`.queries_async`)."""

    def __init__(self, store: AsyncVectorStore, spec: Collection) -> None:
        self._store = store
        self._cluster = store.cluster
        self._spec = spec
        self._iterative: bool | None = None  # whether every group's pgvector has it

    @property
    def spec(self) -> Collection:
        """The collection's spec as this handle last read it."""
        return self._spec

    @property
    def name(self) -> str:
        """The collection's name."""
        return self._spec.name

    async def refresh(self) -> Collection:
        """Read the spec again (another process may have built an index or tuned it)."""
        self._spec = await self._store.spec_of(self._spec.name)
        return self._spec

    # -- indexes -------------------------------------------------------------------------

    async def create_index(
        self,
        kind: IndexKind | str = IndexKind.HNSW,
        *,
        m: int = 16,
        ef_construction: int = 64,
        lists: int = 100,
        maintenance_work_mem: str = "512MB",
        parallel_workers: int | None = None,
    ) -> Collection:
        """Build the vector index on every group at once (replacing one there): HNSW
        with ``m`` and ``ef_construction``, or IVFFlat with ``lists`` per group (build
        it after loading: its lists are trained on the rows there).
        ``maintenance_work_mem``: memory for each group's build (an HNSW graph that does
        not fit is built far slower); ``parallel_workers``: the build's parallel
        workers per group (None: the server's default)."""
        try:
            index = IndexSpec(IndexKind(kind), m=m, ef_construction=ef_construction, lists=lists)
        except ValueError:
            raise VectorError(f"index kind must be one of {', '.join(IndexKind)}") from None
        spec = self._spec

        def builder(group: str) -> Callable[[], Any]:
            async def build() -> None:
                async with self._cluster.transaction(group=group, as_written=True) as tx:
                    await tx.execute(
                        "SELECT set_config('maintenance_work_mem', %s, true)",
                        (maintenance_work_mem,),
                    )
                    if parallel_workers is not None:
                        await tx.execute(
                            "SELECT set_config('max_parallel_maintenance_workers', %s, true)",
                            (str(int(parallel_workers)),),
                        )
                    await tx.execute(vsql.drop_index_ddl(spec))
                    await tx.execute(vsql.index_ddl(spec, index))

            return build

        await run_all([builder(g) for g in self._store.groups])
        self._spec = await self._store.save_spec(spec.with_index(index), replace=True)
        return self._spec

    async def drop_index(self) -> Collection:
        """Drop the vector index on every group (queries then scan exactly)."""
        spec = self._spec
        await self._store.execute_on_primaries(vsql.drop_index_ddl(spec))
        self._spec = await self._store.save_spec(spec.with_index(None), replace=True)
        return self._spec

    async def create_metadata_index(self) -> None:
        """A GIN index on metadata on every group (containment and jsonpath filters)."""
        await self._store.execute_on_primaries(vsql.metadata_index_ddl(self._spec))
