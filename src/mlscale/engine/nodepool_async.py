"""A node's connection pool that reports a refused login at once (async source).

psycopg_pool connects in the background and retries a failed connection with
backoff, so a caller of a pool whose logins all fail only hears, after the whole
pool timeout (30 s by default), that no connection came: a wrong password looks
like an outage. This pool asks the server itself, with one direct login, when
that matters: on the first request (before which nothing is known of the node),
after a request timed out, and on every request while logins are refused. A
refused login raises :class:`AuthenticationError` naming the node and where the
password came from; any other failure is left to the pool and its timeout.

The pool also knows which of its connections are lent out, so that
:meth:`AsyncNodePool.interrupt` can cut them: a statement waiting on a server that
will not answer (a frozen process, whose kernel still acknowledges every packet, so
neither TCP keepalives nor ``tcp_user_timeout`` ever fire) fails at once with a
broken connection when the cluster learns the node lost its role.

``nodepool_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..core.topology import Node
from .connect import connect_kwargs, login_refused, refused_login_error

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["AsyncNodePool", "shutdown_socket"]

# How long the direct login may take to be answered (libpq's minimum): a server
# that does not answer within it is not refusing the login, and the pool's own
# attempts deal with it.
_LOGIN_CHECK_TIMEOUT_S = 2.0


class AsyncNodePool(AsyncConnectionPool[Any]):
    """The pool of connections to ``node``, with psycopg_pool's keyword arguments."""

    def __init__(self, *, node: Node, config: ClusterConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node = node
        self._config = config
        self._login = {
            **connect_kwargs(node, config, connect_timeout=_LOGIN_CHECK_TIMEOUT_S),
            "autocommit": True,
        }
        # Whether the next request checks the login first: nothing is known yet.
        self._check_login = True
        # Connections lent now (by id), what interrupt() cuts; a lock, since the
        # follower interrupts from its own thread.
        self._lent: dict[int, Any] = {}
        self._lent_lock = threading.Lock()

    def _lend(self, conn: Any) -> Any:
        with self._lent_lock:
            self._lent[id(conn)] = conn
        return conn

    async def putconn(self, conn: Any) -> None:
        with self._lent_lock:
            self._lent.pop(id(conn), None)
        await super().putconn(conn)

    def interrupt(self) -> int:
        """Shut down the socket of every connection lent now: whatever waits on one
        gets a broken connection at once (the pool discards it when it comes back).
        For a node that lost its role while it may be frozen; how many were cut."""
        with self._lent_lock:
            lent = list(self._lent.values())
        cut = 0
        for conn in lent:
            if conn.closed:
                continue
            try:
                fd = conn.pgconn.socket
            except psycopg.Error:  # no socket: already broken
                continue
            cut += shutdown_socket(fd)
        return cut

    async def getconn(self, timeout: float | None = None) -> Any:
        """A connection, as psycopg_pool gives it; :class:`AuthenticationError` at once
        if the node refuses the login (the login check's time counts against
        ``timeout``)."""
        if not self._check_login:
            try:
                return self._lend(await super().getconn(timeout))
            except PoolTimeout:
                # Logins may have been refused since, if no connection is left; a
                # timeout with connections (all busy) says nothing about logins, and
                # checking then would add a connection per waiter under load.
                if not self.get_stats().get("pool_size", 0):
                    await self.check_login()
                raise
        budget = self.timeout if timeout is None else timeout
        started = time.monotonic()
        await self.check_login()
        left = budget - (time.monotonic() - started)
        return self._lend(await super().getconn(max(left, 0.001)))

    async def check_login(self) -> None:
        """Log in to the node once, directly; raise :class:`AuthenticationError` if it
        refuses the login. Other failures (a node down or slow) raise nothing."""
        try:
            conn = await AsyncConnection.connect(**self._login)
        except psycopg.OperationalError as exc:
            refused = login_refused(exc)
            self._check_login = refused
            if refused:
                raise refused_login_error(self.node, self._config, exc) from exc
            return
        self._check_login = False
        await conn.close()


def shutdown_socket(fd: int) -> int:
    """``shutdown(SHUT_RDWR)`` of the socket behind file descriptor ``fd`` (through a
    duplicate, so ``fd`` stays its owner's to close and cannot be reused under it);
    1 if it was shut down, 0 if it was gone or not connected."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return 0
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return 0
    finally:
        sock.close()
    return 1
