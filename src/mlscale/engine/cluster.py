"""Cluster / AsyncCluster: the user's entry point to a topology.

At this stage a cluster hands out pooled connections by node; routing,
consistency levels and sharding are layered on top in later modules, all
sharing the same pools.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ..config import ClusterConfig, load_config
from ..core.pooling import PoolSize
from ..core.topology import Node, Role
from ..errors import MlscaleError, NodeUnavailableError
from .pools import PoolSet

__all__ = ["AsyncCluster", "Cluster", "ClusterState"]

P = TypeVar("P", ConnectionPool[Any], AsyncConnectionPool[Any])


class ClusterState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class _ClusterBase(Generic[P]):
    def __init__(self, config: ClusterConfig, factory: Callable[..., P]) -> None:
        self.config = config
        self._pools: PoolSet[P] = PoolSet(config, factory)
        self.state = ClusterState.OPEN

    @property
    def nodes(self) -> list[Node]:
        return list(self._pools.nodes.values())

    @property
    def pool_size(self) -> PoolSize:
        """Bounds every node's pool uses, in connections."""
        return self._pools.size

    def primary(self, group: str | None = None) -> str:
        """Name of the primary of ``group`` (default: the first shard group)."""
        group = group or self.config.shard_groups[0].name
        return self._pools.node(f"{group}-primary").name

    def replicas(self, group: str | None = None) -> list[str]:
        """Names of the replicas of ``group`` (default: the first shard group)."""
        group = group or self.config.shard_groups[0].name
        return [n.name for n in self.nodes if n.role is Role.REPLICA and n.group == group]

    def stats(self) -> dict[str, Any]:
        """Pool counters per node, and the cluster's own counters."""
        return {"pools": self._pools.stats(), "cluster": dict(self._pools.counters)}

    def _check_open(self) -> None:
        if self.state is ClusterState.CLOSED:
            raise MlscaleError("this cluster is closed; create a new one to keep working")

    def _unavailable(self, name: str, exc: Exception) -> NodeUnavailableError:
        node = self._pools.node(name)
        return NodeUnavailableError(
            f"couldn't get a connection to node {name} at {node.address} after "
            f"{self.config.pools.timeout_s:.2f} s: {exc}"
        )


class Cluster(_ClusterBase[ConnectionPool[Any]]):
    """A topology with one connection pool per node (threads, sync code)."""

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config, ConnectionPool)

    @classmethod
    def from_file(cls, path: str | Path) -> Cluster:
        """A cluster from a TOML topology config (e.g. ``.mlscale/mlscale.toml``)."""
        return cls(load_config(path))

    def _pool(self, name: str) -> ConnectionPool[Any]:
        self._check_open()
        pool, fresh = self._pools.get(name)
        if fresh:
            pool.open(wait=False)
        return pool

    @contextmanager
    def connection(self, node: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection to ``node`` (default: the first primary).

        As with psycopg_pool, the transaction is committed when the block ends
        normally and rolled back if it raises; the connection then goes back.
        """
        name = node or self.primary()
        try:
            with self._pool(name).connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._unavailable(name, exc) from exc

    def close(self) -> None:
        """Close every pool; the cluster cannot be used afterwards."""
        for pool in self._pools.take_all():
            pool.close()
        self.state = ClusterState.CLOSED

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCluster(_ClusterBase[AsyncConnectionPool[Any]]):
    """A topology with one connection pool per node (asyncio code)."""

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config, AsyncConnectionPool)

    @classmethod
    def from_file(cls, path: str | Path) -> AsyncCluster:
        """An async cluster from a TOML topology config."""
        return cls(load_config(path))

    async def _pool(self, name: str) -> AsyncConnectionPool[Any]:
        self._check_open()
        pool, fresh = self._pools.get(name)
        if fresh:
            await pool.open(wait=False)
        return pool

    @asynccontextmanager
    async def connection(
        self, node: str | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled async connection to ``node`` (default: the first primary)."""
        name = node or self.primary()
        try:
            async with (await self._pool(name)).connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._unavailable(name, exc) from exc

    async def close(self) -> None:
        for pool in self._pools.take_all():
            await pool.close()
        self.state = ClusterState.CLOSED

    async def __aenter__(self) -> AsyncCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
