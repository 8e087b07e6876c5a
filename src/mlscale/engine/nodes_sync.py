# Generated from nodes_async.py by scripts/async_to_sync.py: do not edit.
# Change nodes_async.py and run the script again.
"""Connections to named nodes: the transport seam of a cluster (async source).

Every room that talks to a server borrows its connection here, by node name,
and gets driver errors translated once, on the way out: a node that fails has
its other idle connections checked (they died with it), and a replica that
fails is banned from reads for a while. A test can hand the rooms another
:class:`Nodes` (say, fake connections) to drive pinning and retries with
no server.

``nodes_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import MlscaleError, NodeUnavailableError
from .context import ClusterContext
from .statements import RESET_SESSION
from .translate import translate

__all__ = ["Nodes", "reset_session"]

_log = logging.getLogger(__name__)

# work(conn, statement, params): what a query method does on the connection it got.
Work = Callable[..., Any]


def reset_session(conn: Connection[Any]) -> None:
    """Leave ``conn`` as a new session would find it, in one round trip (usually).

    As DISCARD ALL, except the driver's own prepared statements stay: the driver
    tracks them, and a DISCARD ALL would leave its cache pointing at nothing.
    A connection that is broken is left for the pool to throw away.
    """
    if conn.closed:
        return
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.rollback()
    cur = conn.execute(RESET_SESSION, prepare=False)
    while cur.nextset():
        pass
    for (name,) in cur.fetchall():
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))


class Nodes:
    """One pool per node, opened on first use; connections borrowed by node name."""

    def __init__(self, context: ClusterContext[ConnectionPool[Any]]) -> None:
        self._context = context
        self._roles = context.roles
        self._balancer = context.balancer
        self._pools = context.pools

    def pool(self, name: str) -> ConnectionPool[Any]:
        """The open pool of node ``name``."""
        self._context.check_open()
        pool = self._pools.peek(name)
        if pool is not None:
            return pool
        # Opened before it is shared, so no caller ever sees an unopened pool.
        fresh = self._pools.make(name)
        fresh.open(wait=False)
        pool = self._pools.publish(name, fresh)
        if pool is not fresh:
            fresh.close()
        return pool

    @contextmanager
    def connect(self, name: str, timeout_s: float | None = None) -> Iterator[Connection[Any]]:
        """A pooled connection to ``name`` (waiting at most ``timeout_s``, default the
        pool's); driver errors become mlscale errors, and a replica that fails is
        banned for a while. The connection goes back as the block left it: callers
        leave no session state on it (see :meth:`connect_and_reset`)."""
        role = self._roles[name]
        replica = role == "replica"
        pool = self.pool(name)
        if replica:
            self._balancer.begin(name)
        conn: Connection[Any] | None = None
        try:
            with pool.connection(timeout=timeout_s) as conn:
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
            raise self._failed(name, role, pool, exc, conn) from exc
        except BaseException:
            if replica:
                self._balancer.end(name)
            raise
        if replica:
            self._balancer.end(name)

    @contextmanager
    def connect_and_reset(self, name: str) -> Iterator[Connection[Any]]:
        """A pooled connection to ``name`` for the caller's own use: whatever session
        state the block leaves is discarded before the pool gets it back."""
        pool = self.pool(name)
        try:
            with pool.connection() as conn:
                try:
                    yield conn
                finally:
                    reset_session(conn)
        except PoolTimeout as exc:
            raise self._context.unavailable(name, exc) from exc

    def run_on_replica(self, name: str, work: Work, query: str, params: Any) -> Any:
        """``work(conn, query, params)`` on a pooled connection to replica ``name``:
        what :meth:`connect` does for a replica under round robin, without its
        context managers (the hot path of replica reads)."""
        pool = self._pools.peek(name) or self.pool(name)
        try:
            conn = pool.getconn()
        except PoolTimeout as exc:
            self._balancer.end(name, failed="no connection within the pool timeout")
            raise self._context.unavailable(name, exc) from exc
        try:
            result = work(conn, query, params)
        except psycopg.Error as exc:
            pool.putconn(conn)
            raise self._failed(name, "replica", pool, exc, conn) from exc
        except BaseException:
            pool.putconn(conn)
            raise
        pool.putconn(conn)
        self._balancer.end(name)
        return result

    def hold(self, name: str) -> Connection[Any]:
        """A connection to ``name`` kept until :meth:`release` (a pinned session's)."""
        pool = self.pool(name)
        try:
            conn: Connection[Any] = pool.getconn()
            return conn
        except PoolTimeout as exc:
            raise self._context.unavailable(name, exc) from exc

    def release(self, name: str, conn: Connection[Any]) -> None:
        """Give back a held connection, reset as a new session would find it."""
        pool = self.pool(name)
        try:
            reset_session(conn)
        finally:
            pool.putconn(conn)

    def _failed(
        self,
        name: str,
        role: str,
        pool: ConnectionPool[Any],
        exc: psycopg.Error,
        conn: Connection[Any] | None,
    ) -> MlscaleError:
        """The mlscale error for driver error ``exc`` on node ``name``, raised while
        using ``conn`` (None: before one was had). A node found unavailable has its
        other idle connections checked now (they died with it), and a replica is
        banned for a while; an error that left ``conn`` healthy (the driver refusing
        a statement, say) is the caller's and bans nothing."""
        err = translate(exc, name, role, conn)
        if isinstance(err, NodeUnavailableError):
            pool.check()
            if role == "replica":
                self._balancer.end(name, failed=str(err))
        elif role == "replica":
            self._balancer.end(name)
        return err

    def close(self) -> None:
        """Close every pool (one failing pool does not keep the others open)."""
        for pool in self._pools.take_all():
            try:
                pool.close()
            except Exception:
                _log.warning("closing a pool failed", exc_info=True)
