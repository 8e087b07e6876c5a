"""Embeddings with vector search on pgvector, sharded by id (async source).

A collection is a table ``(id, embedding vector(dim), metadata jsonb)`` on every shard
group, rows placed by their id's key family (:mod:`mlscale.core.vectors.spec`); its
spec is kept in ``mlscale_vector_collections`` on every group beside it.

- **Writes**: ``upsert`` checks the whole batch first (dimension, finite values,
  JSON metadata), keeps the last row of a repeated id, splits rows by group, and per
  group writes a binary COPY into a temporary stage and one ``INSERT ... ON CONFLICT``
  in one transaction. Groups commit separately: a failure raises
  :class:`PartialWriteError` naming those that committed; upserting again is harmless.
- **Indexes**: HNSW (``m``, ``ef_construction``) or IVFFlat (``lists``), built on every
  group at once; a GIN index on metadata on request.
- **Queries**: every group answers with its own k nearest (never k / groups) under
  the call's ``ef_search`` / ``probes`` (set for that statement only), and the client
  merges them exactly (:mod:`mlscale.core.vectors.merge`). A group whose answer is
  short of k rows (a filter after the HNSW scan, a small ef_search) is asked again a
  step up -- HNSW iterative scan (pgvector >= 0.8) or a raised ef_search, then exact
  -- and the result says which step answered (``result.how``, ``result.steps``).
  ``exact=True`` scans every row (ties broken by id): the answer numpy's brute force
  gives on the same float32 vectors. ``query_many`` asks each group for up to 256
  queries in one statement. The async client asks the groups at once; the sync one
  asks them in turn (a thread hand-off costs about what a group's answer does), so
  run queries from several threads, or batch them, for throughput.

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.types.json import Jsonb

from ...core.causal import CausalToken
from ...core.copybinary import CopyColumn, PgType, encode_copy
from ...core.sharding import group_indexes
from ...core.shardmaps import KeyFamily, SlotMap
from ...core.vectors import sql as vsql
from ...core.vectors.filters import to_sql
from ...core.vectors.merge import Step, ladder, merge_topk, raised_ef
from ...core.vectors.results import (
    DeleteResult,
    QueryResult,
    RecallResult,
    TuneResult,
    UpsertResult,
)
from ...core.vectors.spec import (
    Collection,
    IdType,
    IndexKind,
    IndexSpec,
    Metric,
    check_ef_search,
    check_k,
    check_name,
    check_probes,
    finite,
)
from ...engine.cluster_async import AsyncCluster
from ...errors import (
    CollectionNotFound,
    MlscaleError,
    PartialWriteError,
    QueryError,
    VectorError,
)
from ..shared_async import run_all

__all__ = ["AsyncVectorCollection", "AsyncVectorStore"]

_CHUNK_ROWS = 50_000  # rows per group transaction of an upsert (bounds the stage and payload)
_BATCH_QUERIES = 256  # query vectors per statement of query_many()
_ITERATIVE_FROM = (0, 8, 0)  # pgvector's first version with hnsw.iterative_scan
Token = CausalToken | str | None


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
        await self._family(wanted)
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

        def dropper(group: str) -> Callable[[], Any]:
            async def drop() -> None:
                await self._cluster.primary(group).execute(vsql.SPEC_DELETE, (name,))

            return drop

        await run_all([dropper(g) for g in self.groups])

    # -- specs ---------------------------------------------------------------------------

    async def _family(self, c: Collection) -> None:
        shards = await self._cluster.shards()
        if c.family in shards.maps:
            have = tuple(shards.map_of(c.family).key_types)
            if have != (c.id_type.value,):
                raise VectorError(
                    f"key family {c.family!r} has key types {', '.join(have)}; collection "
                    f"{c.name!r} has {c.id_type} ids"
                )
            return
        try:
            even = SlotMap.even(KeyFamily.of(c.family, c.id_type.value), self.groups)
            await self._cluster.create_shard_map(even, f"vector collection {c.name}")
        except MlscaleError:
            if c.family not in (await self._cluster.refresh_shards()).maps:
                raise

    async def save_spec(self, c: Collection, *, replace: bool) -> Collection:
        """Record spec ``c`` on every group (``replace``: over the one there; else only
        where none is); the spec the first group then holds. For the collections'
        own calls (an index built, ef_search tuned)."""
        upsert = vsql.SPEC_REPLACE if replace else vsql.SPEC_ADD

        def writer(group: str) -> Callable[[], Any]:
            async def write() -> None:
                await self._cluster.primary(group).execute(upsert, (c.name, Jsonb(c.to_spec())))

            return write

        await run_all([writer(g) for g in self.groups])
        return await self.spec_of(c.name)

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


class AsyncVectorCollection:
    """One collection: writes, indexes and k-nearest queries (see the module docstring)."""

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

        def dropper(group: str) -> Callable[[], Any]:
            async def drop() -> None:
                await self._cluster.primary(group).execute(vsql.drop_index_ddl(spec))

            return drop

        await run_all([dropper(g) for g in self._store.groups])
        self._spec = await self._store.save_spec(spec.with_index(None), replace=True)
        return self._spec

    async def create_metadata_index(self) -> None:
        """A GIN index on metadata on every group (containment and jsonpath filters)."""
        spec = self._spec

        def builder(group: str) -> Callable[[], Any]:
            async def build() -> None:
                await self._cluster.primary(group).execute(vsql.metadata_index_ddl(spec))

            return build

        await run_all([builder(g) for g in self._store.groups])

    # -- writes --------------------------------------------------------------------------

    async def upsert(
        self,
        ids: Sequence[Any] | npt.NDArray[Any],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> UpsertResult:
        """Insert or replace rows ``(ids[i], vectors[i], metadata[i])``: ``vectors`` an
        (n, dim) array (float32 as stored), ``metadata`` JSON objects or None (``{}``).
        Checked whole before anything is written (see the module docstring)."""
        started = time.perf_counter()
        spec = self._spec
        keys = _ids(spec, ids)
        mat = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if mat.ndim == 1 and len(keys) == 1:
            mat = mat.reshape(1, -1)
        if mat.ndim != 2 or mat.shape != (len(keys), spec.dim):
            raise VectorError(
                f"collection {spec.name!r}: vectors must be ({len(keys)}, {spec.dim}) "
                f"(got {tuple(mat.shape)})"
            )
        finite(mat, f"collection {spec.name!r}")
        if metadata is not None and len(metadata) != len(keys):
            raise VectorError(
                f"collection {spec.name!r}: {len(metadata)} metadata for {len(keys)} ids"
            )
        docs = _metadata_json(spec, metadata, len(keys))
        keep = _last_of_each(keys)
        if len(keep) != len(keys):
            keys, mat, docs = keys[keep], mat[keep], docs[keep]
        if not len(keys):
            return UpsertResult(spec.name, 0, {}, "", time.perf_counter() - started)
        shard_map = (await self._cluster.shards()).map_of(spec.family)
        where = _place(shard_map, keys)
        parts = [
            (group, np.flatnonzero(where == gi))
            for gi, group in enumerate(shard_map.groups)
            if (where == gi).any()
        ]
        tokens: dict[str, CausalToken] = {}

        def writer(group: str, rows: npt.NDArray[np.int64]) -> Callable[[], Any]:
            async def write() -> None:
                token = CausalToken()
                for lo in range(0, len(rows), _CHUNK_ROWS):
                    chunk = rows[lo : lo + _CHUNK_ROWS]
                    payload = _payload(spec, keys[chunk], mat[chunk], docs[chunk])
                    async with self._cluster.transaction(group=group, as_written=True) as tx:
                        await tx.execute(vsql.stage_ddl(spec))
                        await tx.copy(vsql.copy_sql(), payload)
                        await tx.execute(vsql.upsert_sql(spec))
                    token = token.merge(tx.token or CausalToken())
                tokens[group] = token

            return write

        errors = await run_all([writer(g, r) for g, r in parts], raise_first=False)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        if errors:
            done, failed = sorted(tokens), sorted(g for g, _ in parts if g not in tokens)
            if not done:
                raise errors[0]
            raise PartialWriteError(
                f"upsert into {spec.name!r}: committed on {', '.join(done)}, failed on "
                f"{', '.join(failed)} ({errors[0]}); upserting the same rows again is harmless",
                committed=tuple(done),
                failed=failed[0],
            ) from errors[0]
        return UpsertResult(
            spec.name,
            len(keys),
            {g: len(r) for g, r in parts},
            token.to_string() if token else "",
            time.perf_counter() - started,
        )

    async def delete(self, ids: Sequence[Any] | npt.NDArray[Any]) -> DeleteResult:
        """Delete the rows of ``ids`` (absent ids are ignored)."""
        spec = self._spec
        keys = _ids(spec, ids)
        if not len(keys):
            return DeleteResult(spec.name, 0, {}, "")
        shard_map = (await self._cluster.shards()).map_of(spec.family)
        where = _place(shard_map, keys)
        counts: dict[str, int] = {}
        tokens: dict[str, CausalToken] = {}

        def deleter(group: str, mine: list[Any]) -> Callable[[], Any]:
            async def delete() -> None:
                async with self._cluster.transaction(group=group, as_written=True) as tx:
                    counts[group] = await tx.execute(vsql.delete_sql(spec), (mine,))
                tokens[group] = tx.token or CausalToken()

            return delete

        calls = [
            deleter(group, [_param(spec, k) for k in keys[where == gi].tolist()])
            for gi, group in enumerate(shard_map.groups)
            if (where == gi).any()
        ]
        await run_all(calls)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        return DeleteResult(
            spec.name, sum(counts.values()), counts, token.to_string() if token else ""
        )

    async def count(self, *, consistency: str | None = "strong") -> int:
        """Rows in the collection (every group counted)."""
        total = 0
        for group in self._store.groups:
            total += int(
                await self._cluster.as_written(group).fetch_value(
                    vsql.count_sql(self._spec), consistency=consistency
                )
            )
        return total

    # -- queries -------------------------------------------------------------------------

    async def query(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        include_metadata: bool = False,
        consistency: str | None = None,
        token: Token = None,
    ) -> QueryResult:
        """The ``k`` nearest rows to ``vector`` (see the module docstring), optionally
        only rows whose metadata satisfies ``filter``
        (:mod:`mlscale.core.vectors.filters`). ``ef_search`` (HNSW) / ``probes``
        (IVFFlat): this call's search width (default: the collection's); ``exact``:
        scan every row; ``consistency`` / ``token``: the reads' guarantee."""
        started = time.perf_counter()
        spec = self._spec
        k = check_k(k)
        ef = check_ef_search(spec.ef_search if ef_search is None else ef_search)
        nprobes = check_probes(spec.probes if probes is None else probes)
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape != (spec.dim,):
            raise VectorError(
                f"collection {spec.name!r}: the query vector must have {spec.dim} values "
                f"(got {vec.size})"
            )
        finite(vec, f"collection {spec.name!r}")
        text = vsql.vector_text(vec.tolist())
        flt = to_sql(filter)
        iterative = await self._has_iterative()
        steps = ladder(
            spec.index.kind if spec.index else None,
            exact=exact,
            filtered=flt is not None,
            iterative=iterative,
        )
        answers: dict[str, list[Any]] = {}
        used: dict[str, str] = {}
        retried: list[str] = []
        pending = list(self._store.groups)
        for n, step in enumerate(steps):
            stmt = vsql.knn(
                spec,
                text,
                k,
                flt,
                exact=step is Step.EXACT,
                ef_search=raised_ef(ef, k) if step is Step.EF_RAISED else ef,
                probes=nprobes,
                iterative=step is Step.ITERATIVE,
                with_metadata=include_metadata,
            )
            got: dict[str, list[Any]] = {}

            def reader(
                group: str, stmt: vsql.Knn = stmt, got: dict[str, list[Any]] = got
            ) -> Callable[[], Any]:
                async def read() -> None:
                    got[group] = await self._cluster.as_written(group).fetch_all(
                        stmt.sql,
                        stmt.params,
                        settings=stmt.settings,
                        consistency=consistency,
                        token=token,
                    )

                return read

            await run_all([reader(g) for g in pending], small=True)
            for group in pending:
                answers[group] = got[group]
                used[group] = step.value
            pending = [g for g in pending if len(got[g]) < k]
            if not pending or n + 1 == len(steps):
                break
            retried += [g for g in pending if g not in retried]
        rows = merge_topk(answers.values(), k)
        strongest = max((Step(s) for s in used.values()), key=lambda s: s.rank)
        return QueryResult(
            ids=tuple(r[0] for r in rows),
            distances=tuple(float(r[1]) for r in rows),
            metadata=tuple(r[2] for r in rows) if include_metadata else None,
            k=k,
            how=strongest.value,
            steps=dict(sorted(used.items())),
            retried=tuple(retried),
            ef_search=ef,
            elapsed_s=time.perf_counter() - started,
        )

    async def query_many(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        include_metadata: bool = False,
        consistency: str | None = None,
        token: Token = None,
    ) -> list[QueryResult]:
        """:meth:`query` for each row of ``vectors`` (an (n, dim) array), in order, with
        the same options. Each group answers up to 256 queries in one statement (a
        LATERAL join, one index scan per query), so a batch costs one round trip per
        group instead of n. A query short of k rows on some group is answered again by
        :meth:`query` (its ladder); the others report the first step, and every
        result's ``elapsed_s`` is the whole batch's."""
        started = time.perf_counter()
        spec = self._spec
        k = check_k(k)
        ef = check_ef_search(spec.ef_search if ef_search is None else ef_search)
        nprobes = check_probes(spec.probes if probes is None else probes)
        mat = np.asarray(vectors, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[1] != spec.dim:
            raise VectorError(
                f"collection {spec.name!r}: query vectors must be (n, {spec.dim}) "
                f"(got {tuple(mat.shape)})"
            )
        finite(mat, f"collection {spec.name!r}")
        flt = to_sql(filter)
        steps = ladder(
            spec.index.kind if spec.index else None,
            exact=exact,
            filtered=flt is not None,
            iterative=await self._has_iterative(),
        )
        first = steps[0]
        groups = self._store.groups
        per: list[dict[str, list[Any]]] = [{} for _ in range(len(mat))]
        for lo in range(0, len(mat), _BATCH_QUERIES):
            texts = [vsql.vector_text(row.tolist()) for row in mat[lo : lo + _BATCH_QUERIES]]
            stmt = vsql.knn_many(
                spec,
                texts,
                k,
                flt,
                exact=first is Step.EXACT,
                ef_search=ef,
                probes=nprobes,
                iterative=first is Step.ITERATIVE,
                with_metadata=include_metadata,
            )

            def reader(group: str, stmt: vsql.Knn = stmt, lo: int = lo) -> Callable[[], Any]:
                async def read() -> None:
                    rows = await self._cluster.as_written(group).fetch_all(
                        stmt.sql,
                        stmt.params,
                        settings=stmt.settings,
                        consistency=consistency,
                        token=token,
                    )
                    for row in rows:
                        per[lo + row[0] - 1].setdefault(group, []).append(row[1:])

                return read

            await run_all([reader(g) for g in groups], small=True)
        elapsed = time.perf_counter() - started
        out: list[QueryResult] = []
        for i, answers in enumerate(per):
            if len(steps) > 1 and any(len(answers.get(g, ())) < k for g in groups):
                out.append(
                    await self.query(
                        mat[i],
                        k,
                        filter=filter,
                        ef_search=ef,
                        probes=nprobes,
                        exact=exact,
                        include_metadata=include_metadata,
                        consistency=consistency,
                        token=token,
                    )
                )
                continue
            rows = merge_topk(answers.values(), k)
            out.append(
                QueryResult(
                    ids=tuple(r[0] for r in rows),
                    distances=tuple(float(r[1]) for r in rows),
                    metadata=tuple(r[2] for r in rows) if include_metadata else None,
                    k=k,
                    how=first.value,
                    steps={g: first.value for g in sorted(groups)},
                    retried=(),
                    ef_search=ef,
                    elapsed_s=elapsed,
                )
            )
        return out

    async def recall(
        self,
        queries: Any,
        k: int = 10,
        *,
        ef_search: int | None = None,
        probes: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> RecallResult:
        """recall@k of the index against exact search over the rows of ``queries``."""
        mat = np.asarray(queries, dtype=np.float32)
        found = []
        for row in mat:
            truth = await self.query(row, k, exact=True, filter=filter, consistency="strong")
            approx = await self.query(
                row, k, ef_search=ef_search, probes=probes, filter=filter, consistency="strong"
            )
            want = set(truth.ids)
            found.append(len(want & set(approx.ids)) / max(1, len(want)))
        ef = self._spec.ef_search if ef_search is None else ef_search
        return RecallResult(
            k, ef, len(found), float(np.mean(found)) if found else 1.0, min(found, default=1.0)
        )

    async def tune_ef_search(
        self,
        queries: Any,
        k: int = 10,
        *,
        target: float = 0.95,
        candidates: Sequence[int] = (10, 20, 40, 64, 100, 160, 250, 400, 640, 1000),
        save: bool = True,
    ) -> TuneResult:
        """The smallest ``ef_search`` of ``candidates`` whose recall@k over ``queries``
        reaches ``target``, measured against exact search; with ``save`` it becomes
        the collection's default (recorded on every group)."""
        if self._spec.index is None or self._spec.index.kind is not IndexKind.HNSW:
            raise VectorError(f"collection {self.name!r} has no HNSW index to tune")
        mat = np.asarray(queries, dtype=np.float32)
        truths = [set((await self.query(q, k, exact=True, consistency="strong")).ids) for q in mat]
        tried: list[RecallResult] = []
        for ef in sorted({check_ef_search(c) for c in candidates if c >= k}):
            scores = []
            for q, want in zip(mat, truths, strict=True):
                got = await self.query(q, k, ef_search=ef, consistency="strong")
                scores.append(len(want & set(got.ids)) / max(1, len(want)))
            tried.append(RecallResult(k, ef, len(scores), float(np.mean(scores)), min(scores)))
            if tried[-1].recall >= target:
                break
        best = tried[-1]
        if save:
            new = Collection.from_spec({**self._spec.to_spec(), "ef_search": best.ef_search})
            self._spec = await self._store.save_spec(new, replace=True)
        return TuneResult(best.ef_search, best.recall, target, best.recall >= target, tuple(tried))

    async def _has_iterative(self) -> bool:
        if self._iterative is None:
            self._iterative = await self._store._pgvector_version() >= _ITERATIVE_FROM
        return self._iterative


# -- batches as arrays ---------------------------------------------------------------------


def _ids(spec: Collection, ids: Any) -> npt.NDArray[Any]:
    """Ids as an array of the collection's type (int64, or objects: str / UUID)."""
    if spec.id_type is IdType.INT8:
        arr = np.asarray(ids)
        if arr.size and arr.dtype.kind not in "iu":
            raise VectorError(f"collection {spec.name!r}: ids must be integers (int8)")
        return arr.astype(np.int64).reshape(-1)
    out = np.empty(len(ids), dtype=object)
    for i, key in enumerate(ids):
        if spec.id_type is IdType.TEXT:
            if not isinstance(key, str):
                raise VectorError(f"collection {spec.name!r}: ids must be str (got {key!r})")
            out[i] = key
        else:
            try:
                out[i] = key if isinstance(key, uuid.UUID) else uuid.UUID(str(key))
            except ValueError:
                raise VectorError(f"collection {spec.name!r}: {key!r} is not a uuid") from None
    return out


def _param(spec: Collection, key: Any) -> Any:
    return str(key) if spec.id_type is IdType.UUID else key


def _last_of_each(keys: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Positions of the last occurrence of each key, in first-seen order."""
    last = {k: i for i, k in enumerate(keys.tolist())}
    if len(last) == len(keys):
        return np.arange(len(keys), dtype=np.int64)
    return np.fromiter(sorted(last.values()), dtype=np.int64, count=len(last))


def _metadata_json(
    spec: Collection, metadata: Sequence[Mapping[str, Any] | None] | None, n: int
) -> npt.NDArray[Any]:
    out = np.empty(n, dtype=object)
    if metadata is None:
        out[:] = "{}"
        return out
    for i, doc in enumerate(metadata):
        if doc is None:
            out[i] = "{}"
            continue
        if not isinstance(doc, Mapping):
            raise VectorError(f"collection {spec.name!r}: metadata must be dicts (row {i})")
        try:
            out[i] = json.dumps(doc, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise VectorError(
                f"collection {spec.name!r}: metadata of row {i} is not JSON ({exc})"
            ) from None
    return out


def _place(shard_map: Any, keys: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """The index in ``shard_map.groups`` of each key's group."""
    return group_indexes(shard_map, keys.tolist())


def _payload(
    spec: Collection, keys: npt.NDArray[Any], mat: npt.NDArray[np.float32], docs: npt.NDArray[Any]
) -> bytes:
    """The rows as one binary COPY payload for the stage (id, embedding, metadata)."""
    n = len(keys)
    # pgvector's binary form: int16 dim, int16 unused (0), dim float4, big-endian.
    raw = np.empty((n, 4 + 4 * spec.dim), dtype=np.uint8)
    raw[:, :2] = np.frombuffer(np.array([spec.dim], dtype=">i2").tobytes(), dtype=np.uint8)
    raw[:, 2:4] = 0
    raw[:, 4:] = mat.astype(">f4").view(np.uint8).reshape(n, 4 * spec.dim)
    blobs = np.empty(n, dtype=object)
    blobs[:] = [row.tobytes() for row in raw]
    if spec.id_type is IdType.INT8:
        id_col = CopyColumn(PgType.INT8, keys.astype(np.int64))
    elif spec.id_type is IdType.TEXT:
        id_col = CopyColumn(PgType.TEXT, keys)
    else:
        id_col = CopyColumn(
            PgType.UUID,
            np.frombuffer(b"".join(k.bytes for k in keys), dtype=np.uint8).reshape(-1, 16),
        )
    # The vector column travels as a variable-width field of ready bytes (the encoder
    # writes bytes values as they are).
    return encode_copy([id_col, CopyColumn(PgType.TEXT, blobs), CopyColumn(PgType.JSONB, docs)])
