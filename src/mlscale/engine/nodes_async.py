"""Connections to named nodes: the transport seam of a cluster (async source).

Every room that talks to a server borrows its connection here, by node name,
and gets driver errors translated once, on the way out: a node that fails has
its other idle connections checked (they died with it), and a replica that
fails is banned from reads for a while. A test can hand the rooms another
:class:`AsyncNodes` (say, fake connections) to drive pinning and retries with
no server.

``nodes_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import MlscaleError, NodeUnavailableError
from .context import ClusterContext
from .statements import RESET_SESSION
from .translate import translate

__all__ = ["AsyncNodes", "reset_session"]

_log = logging.getLogger(__name__)

# work(conn, statement, params): what a query method does on the connection it got.
Work = Callable[..., Any]


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


class AsyncNodes:
    """One pool per node, opened on first use; connections borrowed by node name."""

    def __init__(self, context: ClusterContext[AsyncConnectionPool[Any]]) -> None:
        self._context = context
        self._roles = context.roles
        self._balancer = context.balancer
        self._pools = context.pools

    async def pool(self, name: str) -> AsyncConnectionPool[Any]:
        """The open pool of node ``name``."""
        self._context.check_open()
        pool = self._pools.peek(name)
        if pool is not None:
            return pool
        # Opened before it is shared, so no caller ever sees an unopened pool.
        fresh = self._pools.make(name)
        await fresh.open(wait=False)
        pool = self._pools.publish(name, fresh)
        if pool is not fresh:
            await fresh.close()
        return pool

    @asynccontextmanager
    async def connect(
        self, name: str, timeout_s: float | None = None
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection to ``name`` (waiting at most ``timeout_s``, default the
        pool's); driver errors become mlscale errors, and a replica that fails is
        banned for a while. The connection goes back as the block left it: callers
        leave no session state on it (see :meth:`connect_and_reset`)."""
        role = self._roles[name]
        replica = role == "replica"
        pool = await self.pool(name)
        if replica:
            self._balancer.begin(name)
        conn: AsyncConnection[Any] | None = None
        try:
            async with pool.connection(timeout=timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            if replica:
                self._balancer.end(name, failed="no connection within the pool timeout")
            raise self._context.unavailable(name, exc, timeout_s) from exc
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):  # translated already, for a node nested inside
                if replica:
                    self._balancer.end(name)
                raise
            raise await self._failed(name, role, pool, exc, conn) from exc
        except BaseException:
            if replica:
                self._balancer.end(name)
            raise
        if replica:
            self._balancer.end(name)

    @asynccontextmanager
    async def connect_and_reset(self, name: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection to ``name`` for the caller's own use: whatever session
        state the block leaves is discarded before the pool gets it back."""
        pool = await self.pool(name)
        try:
            async with pool.connection() as conn:
                try:
                    yield conn
                finally:
                    await reset_session(conn)
        except PoolTimeout as exc:
            raise self._context.unavailable(name, exc) from exc

    async def run_on_replica(self, name: str, work: Work, query: str, params: Any) -> Any:
        """``work(conn, query, params)`` on a pooled connection to replica ``name``:
        what :meth:`connect` does for a replica under round robin, without its
        context managers (the hot path of replica reads)."""
        pool = self._pools.peek(name) or await self.pool(name)
        try:
            conn = await pool.getconn()
        except PoolTimeout as exc:
            self._balancer.end(name, failed="no connection within the pool timeout")
            raise self._context.unavailable(name, exc) from exc
        try:
            result = await work(conn, query, params)
        except psycopg.Error as exc:
            await pool.putconn(conn)
            raise await self._failed(name, "replica", pool, exc, conn) from exc
        except BaseException:
            await pool.putconn(conn)
            raise
        await pool.putconn(conn)
        self._balancer.end(name)
        return result

    async def hold(self, name: str) -> AsyncConnection[Any]:
        """A connection to ``name`` kept until :meth:`release` (a pinned session's)."""
        pool = await self.pool(name)
        try:
            conn: AsyncConnection[Any] = await pool.getconn()
            return conn
        except PoolTimeout as exc:
            raise self._context.unavailable(name, exc) from exc

    async def release(self, name: str, conn: AsyncConnection[Any]) -> None:
        """Give back a held connection, reset as a new session would find it."""
        pool = await self.pool(name)
        try:
            await reset_session(conn)
        finally:
            await pool.putconn(conn)

    async def _failed(
        self,
        name: str,
        role: str,
        pool: AsyncConnectionPool[Any],
        exc: psycopg.Error,
        conn: AsyncConnection[Any] | None,
    ) -> MlscaleError:
        """The mlscale error for driver error ``exc`` on node ``name``, raised while
        using ``conn`` (None: before one was had). A node found unavailable has its
        other idle connections checked now (they died with it), and a replica is
        banned for a while; an error that left ``conn`` healthy (the driver refusing
        a statement, say) is the caller's and bans nothing."""
        err = translate(exc, name, role, conn)
        if isinstance(err, NodeUnavailableError):
            await pool.check()
            if role == "replica":
                self._balancer.end(name, failed=str(err))
        elif role == "replica":
            self._balancer.end(name)
        return err

    async def close(self) -> None:
        """Close every pool (one failing pool does not keep the others open)."""
        for pool in self._pools.take_all():
            try:
                await pool.close()
            except Exception:
                _log.warning("closing a pool failed", exc_info=True)
