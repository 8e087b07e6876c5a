"""The client API: a cluster, its sessions, transactions and scopes (async source).

This file is the one written by hand: ``cluster_sync.py`` is generated from it
by ``scripts/async_to_sync.py`` (a test fails if they drift). Every decision is
made by :class:`~mlscale.engine.base.ClusterCore` and core/; this module only
borrows connections and runs statements on them.

- ``cluster.execute / fetch_one / fetch_all / fetch_value / copy``: each call is
  routed on its own: reads to a replica of the group (in turn), everything else
  to the primary. Statements whose session state would be lost are refused.
- ``cluster.session()``: calls that share session state; the session pins one
  primary connection while it holds state, and lets it go when the state is gone.
- ``cluster.transaction()``: everything inside on one primary connection.
- ``cluster.primary_node()`` / ``cluster.replica()``: explicit scopes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..config import ClusterConfig, load_config
from ..core.classify import Classification, TxAction
from ..core.route import Scope as RouteScope
from ..core.session import SessionState
from ..errors import MlscaleError, RoutingError
from .base import (
    RESET_SESSION,
    ClusterCore,
    ClusterState,
    Isolation,
    set_transaction,
)
from .translate import translate

log = logging.getLogger(__name__)

__all__ = ["AsyncCluster", "AsyncScope", "AsyncSession", "AsyncTransaction"]


async def reset_session(conn: AsyncConnection[Any]) -> None:
    """Leave ``conn`` as a new session would find it, in one round trip (usually).

    As DISCARD ALL, except the driver's own prepared statements stay: the driver
    tracks them, and a DISCARD ALL would leave its cache pointing at nothing.
    A connection that is broken is left for the pool to throw away.
    """
    if conn.closed:
        return
    if conn.info.transaction_status != TransactionStatus.IDLE:
        await conn.rollback()
    cur = await conn.execute(RESET_SESSION, prepare=False)
    while cur.nextset():
        pass
    for (name,) in await cur.fetchall():
        await conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))


class _AsyncRunner:
    """The query methods, written once: subclasses say which connection runs a statement."""

    _core: ClusterCore[Any]

    def _lease(self, c: Classification) -> Any:
        """An async context manager yielding the connection that runs ``c``."""
        raise NotImplementedError

    async def execute(
        self, query: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> int:
        """Run a statement; the number of rows it affected (-1 if not applicable)."""
        async with self._lease(self._core.classify(query)) as conn:
            cur = await conn.execute(query, params)
            return int(cur.rowcount)

    async def fetch_all(
        self,
        query: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        as_dict: bool = False,
    ) -> list[Any]:
        """Every row, as tuples (or dicts with ``as_dict``)."""
        async with self._lease(self._core.classify(query)) as conn:
            cur = conn.cursor(row_factory=dict_row if as_dict else tuple_row)
            await cur.execute(query, params)
            rows: list[Any] = await cur.fetchall()
            return rows

    async def fetch_one(
        self,
        query: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        as_dict: bool = False,
    ) -> Any:
        """The first row (tuple, or dict with ``as_dict``), or None."""
        async with self._lease(self._core.classify(query)) as conn:
            cur = conn.cursor(row_factory=dict_row if as_dict else tuple_row)
            await cur.execute(query, params)
            return await cur.fetchone()

    async def fetch_value(
        self, query: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> Any:
        """The first column of the first row, or None if there is no row."""
        row = await self.fetch_one(query, params)
        return None if row is None else row[0]

    async def copy(self, query: str, rows: Iterable[Sequence[Any]] | None = None) -> Any:
        """``COPY ... FROM STDIN`` writes ``rows`` and returns how many;
        ``COPY ... TO STDOUT`` returns the rows it produced (as text tuples)."""
        c = self._core.classify(query)
        async with self._lease(c) as conn:
            cur = conn.cursor()
            async with cur.copy(query) as copy:
                if rows is not None:
                    count = 0
                    for row in rows:
                        await copy.write_row(row)
                        count += 1
                    return count
                return [row async for row in copy.rows()]


class AsyncCluster(_AsyncRunner):
    """A topology: one pool per node, statements routed by what they do."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._core: ClusterCore[AsyncConnectionPool[Any]] = ClusterCore(config, self._make_pool)

    @classmethod
    def from_file(cls, path: str | Path) -> AsyncCluster:
        """A cluster from a TOML topology config (e.g. ``.mlscale/mlscale.toml``)."""
        return cls(load_config(path))

    def _make_pool(self, **kwargs: Any) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(**kwargs)

    # -- nodes and stats ------------------------------------------------------------

    @property
    def nodes(self) -> list[Any]:
        return self._core.nodes

    @property
    def pool_size(self) -> Any:
        """Bounds every node's pool uses, in connections."""
        return self._core.pool_size

    @property
    def state(self) -> ClusterState:
        return self._core.state

    def primary_node(self, group: str | None = None) -> str:
        """Name of the primary of ``group`` (default: the first shard group)."""
        return self._core.primary_node(group)

    def replica_nodes(self, group: str | None = None) -> list[str]:
        """Names of the replicas of ``group`` (default: the first shard group)."""
        return self._core.replica_nodes(group)

    def stats(self) -> dict[str, Any]:
        """Pool counters per node, cluster counters, classifier cache hits."""
        return self._core.stats()

    def explain_route(self, query: str, group: str | None = None) -> dict[str, str]:
        """Where ``query`` would go from outside any session, and why."""
        return self._core.explain(query, group)

    # -- connections ------------------------------------------------------------------

    async def _pool(self, name: str) -> AsyncConnectionPool[Any]:
        self._core.check_open()
        pool = self._core.pools.peek(name)
        if pool is not None:
            return pool
        # Opened before it is shared, so no caller ever sees an unopened pool.
        fresh = self._core.pools.make(name)
        await fresh.open(wait=False)
        pool = self._core.pools.publish(name, fresh)
        if pool is not fresh:
            await fresh.close()
        return pool

    @asynccontextmanager
    async def connection(self, node: str | None = None) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection to ``node`` (default: the first primary), unrouted.

        Connections are in autocommit mode; use ``conn.transaction()`` for a
        transaction. Whatever session state the block leaves is discarded when
        the connection goes back to the pool (one extra round trip: hot paths
        should use the query methods, which know when no reset is needed).
        """
        name = node or self._core.primary_node()
        pool = await self._pool(name)
        try:
            async with pool.connection() as conn:
                try:
                    yield conn
                finally:
                    await reset_session(conn)
        except PoolTimeout as exc:
            raise self._core.unavailable(name, exc) from exc

    @asynccontextmanager
    async def _on(self, name: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection to ``name``; driver errors become mlscale errors."""
        pool = await self._pool(name)
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._core.unavailable(name, exc) from exc
        except psycopg.Error as exc:
            raise translate(exc, name) from exc

    def _routed(self, c: Classification, scope: RouteScope, group: str | None) -> Any:
        self._core.check_one_call(c)
        _, node = self._core.route(c, scope, group)
        return self._on(node)

    def _lease(self, c: Classification) -> Any:
        return self._routed(c, RouteScope.AUTO, None)

    # -- scopes, sessions, transactions ----------------------------------------------------

    def primary(self, group: str | None = None) -> AsyncScope:
        """Calls that all run on the primary of ``group``."""
        return AsyncScope(self, RouteScope.PRIMARY, group)

    def replica(self, group: str | None = None) -> AsyncScope:
        """Calls that all run on replicas of ``group``; a write is refused."""
        return AsyncScope(self, RouteScope.REPLICA, group)

    def group(self, group: str) -> AsyncScope:
        """Calls routed within shard group ``group``."""
        return AsyncScope(self, RouteScope.AUTO, group)

    def session(self, group: str | None = None) -> AsyncSession:
        """Calls that share session state (``async with cluster.session() as s``)."""
        return AsyncSession(self, group)

    @asynccontextmanager
    async def transaction(
        self,
        *,
        isolation: Isolation | None = None,
        readonly: bool = False,
        group: str | None = None,
    ) -> AsyncIterator[AsyncTransaction]:
        """A transaction on the primary of ``group``: committed if the block ends
        normally, rolled back if it raises."""
        name = self._core.primary_node(group)
        async with self._on(name) as conn:
            tx = AsyncTransaction(self._core, conn, name)
            try:
                async with conn.transaction():
                    options = set_transaction(isolation, readonly)
                    if options is not None:
                        await conn.execute(options)
                    yield tx
            finally:
                if tx.dirty:
                    await reset_session(conn)

    async def close(self) -> None:
        """Close every pool; the cluster cannot be used afterwards."""
        self._core.state = ClusterState.CLOSED
        for pool in self._core.pools.take_all():
            try:
                await pool.close()
            except Exception:  # one failing pool must not keep the others open
                log.warning("closing a pool failed", exc_info=True)

    async def __aenter__(self) -> AsyncCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncScope(_AsyncRunner):
    """Calls with an explicit target: the primary, replicas, or one shard group."""

    def __init__(self, cluster: AsyncCluster, scope: RouteScope, group: str | None) -> None:
        self._cluster = cluster
        self._core = cluster._core
        self._scope = scope
        self._group = group

    def _lease(self, c: Classification) -> Any:
        return self._cluster._routed(c, self._scope, self._group)

    async def __aenter__(self) -> AsyncScope:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class AsyncTransaction(_AsyncRunner):
    """Statements inside one transaction, on one primary connection."""

    def __init__(self, core: ClusterCore[Any], conn: AsyncConnection[Any], node: str) -> None:
        self._core = core
        self._conn = conn
        self.node = node
        self.dirty = False  # whether a statement left session state on the connection

    @asynccontextmanager
    async def _lease(self, c: Classification) -> AsyncIterator[AsyncConnection[Any]]:
        if c.transaction in (TxAction.BEGIN, TxAction.END):
            raise RoutingError(
                f"{c.reason}: inside a transaction block, end it by leaving the block "
                "(or use tx.savepoint())"
            )
        if c.creates:
            self.dirty = True
        try:
            yield self._conn
        except psycopg.Error as exc:
            raise translate(exc, self.node) from exc

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[AsyncTransaction]:
        """A nested transaction (SAVEPOINT): rolled back alone if its block raises."""
        try:
            async with self._conn.transaction():
                yield self
        except psycopg.Error as exc:
            raise translate(exc, self.node) from exc


class AsyncSession(_AsyncRunner):
    """Calls that share session state.

    Reads go to replicas while the session holds no state. A statement that
    creates state (SET, PREPARE, CREATE TEMP, nextval, advisory locks, LISTEN,
    WITH HOLD cursors, BEGIN) pins the session to one primary connection, and
    every later call runs there until the state is gone or the session ends.
    The connection is reset (as by DISCARD ALL) before another caller gets it.
    """

    def __init__(self, cluster: AsyncCluster, group: str | None) -> None:
        self._cluster = cluster
        self._core = cluster._core
        self._group = group
        self._node = self._core.primary_node(group)
        self.state = SessionState()
        self._conn: AsyncConnection[Any] | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._closed = False

    @property
    def pinned(self) -> bool:
        """Whether the session holds a primary connection now."""
        return self._conn is not None

    async def _pin(self) -> AsyncConnection[Any]:
        if self._closed:
            raise MlscaleError("this session is closed")
        if self._conn is None:
            self._pool = await self._cluster._pool(self._node)
            try:
                self._conn = await self._pool.getconn()
            except PoolTimeout as exc:
                raise self._core.unavailable(self._node, exc) from exc
        return self._conn

    async def _unpin(self) -> None:
        conn, pool = self._conn, self._pool
        self._conn = self._pool = None
        if conn is not None and pool is not None:
            try:
                await reset_session(conn)
            finally:
                await pool.putconn(conn)

    @asynccontextmanager
    async def _lease(self, c: Classification) -> AsyncIterator[AsyncConnection[Any]]:
        if not self.state.needs_pin(c):
            async with self._cluster._routed(c, RouteScope.AUTO, self._group) as conn:
                yield conn
            return
        conn = await self._pin()
        try:
            yield conn
        except psycopg.Error as exc:
            if conn.closed:
                self.state = SessionState()
                await self._unpin()
            raise translate(exc, self._node) from exc
        self.state = self.state.after(c)
        if not self.state.pinned:
            await self._unpin()

    @asynccontextmanager
    async def transaction(
        self, *, isolation: Isolation | None = None, readonly: bool = False
    ) -> AsyncIterator[AsyncTransaction]:
        """A transaction on the session's (pinned) primary connection."""
        conn = await self._pin()
        try:
            async with conn.transaction():
                options = set_transaction(isolation, readonly)
                if options is not None:
                    await conn.execute(options)
                yield AsyncTransaction(self._core, conn, self._node)
        except psycopg.Error as exc:
            raise translate(exc, self._node) from exc
        finally:
            if not self.state.pinned:
                await self._unpin()

    async def close(self) -> None:
        """End the session: its connection (if any) is reset and goes back to the pool."""
        self.state = SessionState()
        await self._unpin()
        self._closed = True

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
