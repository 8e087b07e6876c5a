"""Embeddings with vector search on pgvector, sharded by id (async source): the
store, the catalog of a cluster's collections.

A collection is a table ``(id, embedding vector(dim), metadata jsonb)`` on every shard
group, rows placed by their id's key family (:mod:`mlscale.core.vectors.spec`); its
spec is kept in ``mlscale_vector_collections`` on every group beside it. The rooms:

- this file: create, list, find and drop collections; their specs;
- :mod:`.collection_async`: a handle on one collection, and its indexes (HNSW or
  IVFFlat, built on every group at once; a GIN index on metadata);
- :mod:`.writes_async`: upsert, delete, count (binary COPY into a stage, then one
  upsert per group; groups commit separately);
- :mod:`.queries_async`: k-nearest queries, every group's own k merged exactly, with
  a ladder of retries for a group short of k rows; recall and ef_search tuning;
- :mod:`.batches`: a batch as arrays (pure), the COPY payload.

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from ...core.vectors import sql as vsql
from ...core.vectors.spec import Collection, IdType, Metric, check_name
from ...engine.cluster_async import AsyncCluster
from ...errors import CollectionNotFound, MlscaleError, QueryError, VectorError
from ..shared_async import ensure_family, run_all
from .collection_async import AsyncVectorCollection

__all__ = ["AsyncVectorCollection", "AsyncVectorStore"]


class AsyncVectorStore:
    """The vector collections of a cluster (see the module docstring)."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster
        self._ready = False  # the extension and the specs table exist on every group

    @property
    def cluster(self) -> AsyncCluster:
        """The cluster the collections live on."""
        return self._cluster

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return [g.name for g in self._cluster.config.shard_groups]

    async def _ensure(self) -> None:
        """pgvector and the specs table on every group's primary (replicas follow)."""
        if self._ready:
            return

        def maker(group: str) -> Callable[[], Any]:
            async def make() -> None:
                async with self._cluster.transaction(group=group, as_written=True) as tx:
                    try:
                        await tx.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except QueryError as exc:
                        raise VectorError(
                            f"shard group {group}: pgvector is not installed or may not be "
                            f"created there ({exc}); run scripts/setup.sh (it builds pgvector "
                            "for PostgreSQL 15) and create the extension as a superuser"
                        ) from exc
                    await tx.execute(vsql.SPECS_DDL)

            return make

        await run_all([maker(g) for g in self.groups])
        self._ready = True

    async def create_collection(
        self,
        name: str,
        dim: int,
        *,
        metric: Metric | str = Metric.L2,
        id_type: IdType | str = IdType.INT8,
        family: str | None = None,
    ) -> AsyncVectorCollection:
        """Create collection ``name`` of ``dim``-dimensional vectors compared by
        ``metric`` (``l2``, ``ip``, ``cosine``), ids of ``id_type`` (``int8``, ``text``,
        ``uuid``) sharded by key family ``family`` (default ``vectors_<id_type>``; name
        your own to co-locate vectors with rows keyed by the same ids). Creating it
        again with the same spec returns it; with another, a VectorError."""
        try:
            metric, id_type = Metric(metric), IdType(id_type)
        except ValueError:
            raise VectorError(
                f"collection {name!r}: metric must be one of {', '.join(Metric)} and id_type "
                f"one of {', '.join(IdType)} (got {metric!r}, {id_type!r})"
            ) from None
        wanted = Collection(
            name=check_name(name), dim=dim, metric=metric, id_type=id_type, family=family or ""
        )
        await self._ensure()
        await ensure_family(
            self._cluster,
            wanted.family,
            wanted.id_type.value,
            what=f"vector collection {wanted.name}",
            error=VectorError,
            keys="ids",
        )
        tables = (await self._cluster.refresh_shards()).tables
        if wanted.table not in tables:
            try:
                await self._cluster.create_sharded_table(
                    vsql.table_ddl(wanted), shard_key="id", family=wanted.family
                )
            except MlscaleError:
                if wanted.table not in (await self._cluster.refresh_shards()).tables:
                    raise  # not a racing creation: a real failure
        have = await self.save_spec(wanted, replace=False)
        if (have.dim, have.metric, have.id_type, have.family) != (
            wanted.dim,
            wanted.metric,
            wanted.id_type,
            wanted.family,
        ):
            raise VectorError(
                f"collection {name!r} exists with dim {have.dim}, metric {have.metric}, "
                f"id_type {have.id_type}, family {have.family}"
            )
        return AsyncVectorCollection(self, have)

    async def collection(self, name: str) -> AsyncVectorCollection:
        """Collection ``name``; CollectionNotFound if there is none."""
        return AsyncVectorCollection(self, await self.spec_of(check_name(name)))

    async def list_collections(self) -> list[Collection]:
        """Every collection's spec, by name."""
        await self._ensure()
        rows = await self._cluster.as_written(self.groups[0]).fetch_all(
            vsql.SPEC_LIST, consistency="strong"
        )
        return [Collection.from_spec(r[0]) for r in rows]

    async def drop_collection(self, name: str) -> None:
        """Drop collection ``name`` (its table on every group, then its spec)."""
        spec = await self.spec_of(check_name(name))
        if spec.table in (await self._cluster.refresh_shards()).tables:
            await self._cluster.drop_sharded_table(spec.table)
        await self.execute_on_primaries(vsql.SPEC_DELETE, (name,))

    # -- specs ---------------------------------------------------------------------------

    async def save_spec(self, c: Collection, *, replace: bool) -> Collection:
        """Record spec ``c`` on every group (``replace``: over the one there; else only
        where none is); the spec the first group then holds. For the collections'
        own calls (an index built, ef_search tuned)."""
        upsert = vsql.SPEC_REPLACE if replace else vsql.SPEC_ADD
        await self.execute_on_primaries(upsert, (c.name, Jsonb(c.to_spec())))
        return await self.spec_of(c.name)

    async def execute_on_primaries(
        self, statement: str, params: Sequence[Any] | None = None
    ) -> None:
        """Run ``statement`` with ``params`` on every group's primary at once (the
        specs, a collection's index DDL); the first error is raised."""

        def runner(group: str) -> Callable[[], Any]:
            async def run() -> None:
                await self._cluster.primary(group).execute(statement, params)

            return run

        await run_all([runner(g) for g in self.groups])

    async def spec_of(self, name: str) -> Collection:
        """The spec of collection ``name``; CollectionNotFound if there is none."""
        await self._ensure()
        row = await self._cluster.as_written(self.groups[0]).fetch_one(
            vsql.SPEC_GET, (name,), consistency="strong"
        )
        if row is None:
            known = ", ".join(c.name for c in await self.list_collections()) or "none yet"
            raise CollectionNotFound(f"no vector collection {name!r} (collections: {known})")
        return Collection.from_spec(row[0])

    async def _pgvector_version(self) -> tuple[int, ...]:
        """The oldest pgvector version among the groups."""
        versions = []
        for group in self.groups:
            v = await self._cluster.as_written(group).fetch_value(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
            versions.append(tuple(int(p) for p in str(v or "0").split(".") if p.isdigit()))
        return min(versions)
