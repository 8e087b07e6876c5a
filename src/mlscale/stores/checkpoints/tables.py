"""The checkpoint store's tables, made on the first save (see
:mod:`mlscale.core.checkpoints.sql`): chunks placed by digest, manifests and upload
sessions placed by run, each family with an even slot map over every group."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ...core.checkpoints import sql
from ...engine.cluster_sync import Cluster
from ...errors import CheckpointError, QueryError
from ..shared_sync import LazyTables

__all__ = ["ChunkTables", "RunTables", "not_replayed", "unless_not_replayed"]


class ChunkTables(LazyTables):
    """The chunks table, sharded by chunk digest."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(
            cluster,
            family=sql.CHUNK_FAMILY,
            shard_key="digest",
            ddl=sql.CHUNK_DDL,
            error=CheckpointError,
            what="checkpoint store",
            keys="chunk digests",
        )

    def ensure(self) -> None:
        """Make the table where missing; its ``data`` column stored EXTERNAL on every
        group (by whoever made it: a maker that died in between leaves it compressible,
        which costs CPU, not correctness)."""
        if self.exist():
            return
        super().ensure()
        for group in self.groups:
            self._cluster.as_written(group).execute(sql.EXTERNAL_STORAGE)


class RunTables(LazyTables):
    """The manifests and upload sessions, sharded by run name."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(
            cluster,
            family=sql.RUN_FAMILY,
            shard_key="run",
            ddl=sql.RUN_DDL,
            error=CheckpointError,
            what="checkpoint store",
            keys="run names",
        )


_UNDEFINED_TABLE = "42P01"
T = TypeVar("T")


def not_replayed(exc: QueryError) -> bool:
    """Whether ``exc`` is a read that found no store table on its node although the
    directory lists it: a replica that has not replayed the table's creation yet."""
    return exc.sqlstate == _UNDEFINED_TABLE


def unless_not_replayed(read: Callable[[], T], nothing: T) -> T:
    """``read()``, or ``nothing`` if it ran on a replica that has not replayed the
    store's tables yet (:func:`not_replayed`): to the reader, nothing stored there yet.
    Any other error is raised."""
    try:
        return read()
    except QueryError as exc:
        if not not_replayed(exc):
            raise
        return nothing
