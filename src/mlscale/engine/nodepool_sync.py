# Generated from nodepool_async.py by scripts/async_to_sync.py: do not edit.
# Change nodepool_async.py and run the script again.
"""A node's connection pool that reports a refused login at once (async source).

psycopg_pool connects in the background and retries a failed connection with
backoff, so a caller of a pool whose logins all fail only hears, after the whole
pool timeout (30 s by default), that no connection came: a wrong password looks
like an outage. This pool asks the server itself, with one direct login, when
that matters: on the first request (before which nothing is known of the node),
after a request timed out, and on every request while logins are refused. A
refused login raises :class:`AuthenticationError` naming the node and where the
password came from; any other failure is left to the pool and its timeout.

``nodepool_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool, PoolTimeout

from ..core.topology import Node
from .connect import connect_kwargs, login_refused, refused_login_error

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["NodePool"]

# How long the direct login may take to be answered (libpq's minimum): a server
# that does not answer within it is not refusing the login, and the pool's own
# attempts deal with it.
_LOGIN_CHECK_TIMEOUT_S = 2.0


class NodePool(ConnectionPool[Any]):
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

    def getconn(self, timeout: float | None = None) -> Any:
        """A connection, as psycopg_pool gives it; :class:`AuthenticationError` at once
        if the node refuses the login (the login check's time counts against
        ``timeout``)."""
        if not self._check_login:
            try:
                return super().getconn(timeout)
            except PoolTimeout:
                # Logins may have been refused since, if no connection is left; a
                # timeout with connections (all busy) says nothing about logins, and
                # checking then would add a connection per waiter under load.
                if not self.get_stats().get("pool_size", 0):
                    self.check_login()
                raise
        budget = self.timeout if timeout is None else timeout
        started = time.monotonic()
        self.check_login()
        left = budget - (time.monotonic() - started)
        return super().getconn(max(left, 0.001))

    def check_login(self) -> None:
        """Log in to the node once, directly; raise :class:`AuthenticationError` if it
        refuses the login. Other failures (a node down or slow) raise nothing."""
        try:
            conn = Connection.connect(**self._login)
        except psycopg.OperationalError as exc:
            refused = login_refused(exc)
            self._check_login = refused
            if refused:
                raise refused_login_error(self.node, self._config, exc) from exc
            return
        self._check_login = False
        conn.close()
