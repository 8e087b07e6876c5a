# Generated from writes_async.py by scripts/async_to_sync.py: do not edit.
# Change writes_async.py and run the script again.
"""Writes of a vector collection (async source): upsert, delete, count.

``upsert`` checks the whole batch first (dimension, finite values, JSON metadata),
keeps the last row of a repeated id, splits rows by group, and per group writes a
binary COPY into a temporary stage and one ``INSERT ... ON CONFLICT`` in one
transaction (:mod:`.batches` makes the arrays and the payload). Groups commit
separately: a failure raises :class:`PartialWriteError` naming those that committed;
upserting again is harmless. Results carry the commits' causal token.

``writes_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ...core.causal import CausalToken
from ...core.vectors import sql as vsql
from ...core.vectors.results import DeleteResult, UpsertResult
from ...core.vectors.spec import Collection, finite
from ...engine.cluster_sync import Cluster
from ...errors import PartialWriteError, VectorError
from ..shared_sync import run_all
from .batches import id_array, id_param, last_of_each, metadata_json, payload, place

if TYPE_CHECKING:
    from .store_sync import VectorStore

__all__ = ["VectorWrites"]

_CHUNK_ROWS = 50_000  # rows per group transaction of an upsert (bounds the stage and payload)


class VectorWrites:
    """The writes of :class:`~.collection_sync.VectorCollection`, which sets
    the state below (see the module docstring)."""

    _store: VectorStore
    _cluster: Cluster
    _spec: Collection

    def upsert(
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
        keys = id_array(spec, ids)
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
        docs = metadata_json(spec, metadata, len(keys))
        keep = last_of_each(keys)
        if len(keep) != len(keys):
            keys, mat, docs = keys[keep], mat[keep], docs[keep]
        if not len(keys):
            return UpsertResult(spec.name, 0, {}, "", time.perf_counter() - started)
        shard_map = (self._cluster.shards()).map_of(spec.family)
        where = place(shard_map, keys)
        parts = [
            (group, np.flatnonzero(where == gi))
            for gi, group in enumerate(shard_map.groups)
            if (where == gi).any()
        ]
        tokens: dict[str, CausalToken] = {}

        def writer(group: str, rows: npt.NDArray[np.int64]) -> Callable[[], Any]:
            def write() -> None:
                token = CausalToken()
                for lo in range(0, len(rows), _CHUNK_ROWS):
                    chunk = rows[lo : lo + _CHUNK_ROWS]
                    body = payload(spec, keys[chunk], mat[chunk], docs[chunk])
                    with self._cluster.transaction(group=group, as_written=True) as tx:
                        tx.execute(vsql.stage_ddl(spec))
                        tx.copy(vsql.copy_sql(), body)
                        tx.execute(vsql.upsert_sql(spec))
                    token = token.merge(tx.token or CausalToken())
                tokens[group] = token

            return write

        errors = run_all([writer(g, r) for g, r in parts], raise_first=False)
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

    def delete(self, ids: Sequence[Any] | npt.NDArray[Any]) -> DeleteResult:
        """Delete the rows of ``ids`` (absent ids are ignored)."""
        spec = self._spec
        keys = id_array(spec, ids)
        if not len(keys):
            return DeleteResult(spec.name, 0, {}, "")
        shard_map = (self._cluster.shards()).map_of(spec.family)
        where = place(shard_map, keys)
        counts: dict[str, int] = {}
        tokens: dict[str, CausalToken] = {}

        def deleter(group: str, mine: list[Any]) -> Callable[[], Any]:
            def delete() -> None:
                with self._cluster.transaction(group=group, as_written=True) as tx:
                    counts[group] = tx.execute(vsql.delete_sql(spec), (mine,))
                tokens[group] = tx.token or CausalToken()

            return delete

        calls = [
            deleter(group, [id_param(spec, k) for k in keys[where == gi].tolist()])
            for gi, group in enumerate(shard_map.groups)
            if (where == gi).any()
        ]
        run_all(calls)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        return DeleteResult(
            spec.name, sum(counts.values()), counts, token.to_string() if token else ""
        )

    def count(self, *, consistency: str | None = "strong") -> int:
        """Rows in the collection (every group counted)."""
        total = 0
        for group in self._store.groups:
            total += int(
                self._cluster.as_written(group).fetch_value(
                    vsql.count_sql(self._spec), consistency=consistency
                )
            )
        return total
