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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..errors import MlscaleError, NodeUnavailableError
from .concurrency_sync import pause
from .context import ClusterContext
from .pools import quiet_reconnects
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


# A wait for a pooled connection is cut in slices this long: between two, a node
# found down meanwhile fails the wait at once instead of at the pool timeout.
WAIT_SLICE_S = 0.25
# While a Patroni scope has no leader, how often a waiting write looks again (s).
LEADER_CHECK_S = 0.02


class Nodes:
    """One pool per node, opened on first use; connections borrowed by node name.

    What the monitor and the catalog watcher see of each node arrives through
    :meth:`observe`: a call to a node known to be down fails at once with the
    cause, and a node that comes back gets a fresh pool (psycopg_pool would
    otherwise wait out its reconnect backoff, tens of seconds after an outage).
    """

    def __init__(
        self,
        context: ClusterContext[ConnectionPool[Any]],
        watchers: Callable[[], None] = lambda: None,
    ) -> None:
        self._context = context
        self._roles = context.roles
        self._balancer = context.balancer
        self._pools = context.pools
        # watchers(): start what observes the nodes (the monitor), on first use.
        self._watchers = watchers
        self.down: dict[str, str] = {}  # node -> why, while it is down
        self._revived: set[str] = set()

    def observe(self, name: str, error: str | None) -> None:
        """Node ``name`` was seen down with ``error``, or back up (None)."""
        if error is not None:
            self.down[name] = error
            self._context.leadership.poke_node(name)  # a Patroni scope: look at once
            return
        if self.down.pop(name, None) is not None:
            self._revived.add(name)
            quiet_reconnects.reset(name)

    def renew(self, names: frozenset[str]) -> None:
        """Discard the pools of ``names`` (a leader changed): their next user gets a
        fresh pool; a connection borrowed meanwhile is closed when it comes back.
        Patroni vouches for them now: a mark of one as down is dropped (the monitor
        marks it again if it is)."""
        for name in names:
            self.down.pop(name, None)
        self._revived |= names
        self.interrupt_demoted(names)

    def interrupt_demoted(self, names: frozenset[str]) -> None:
        """Of ``names``, cut the connections lent now to each node that no longer leads
        its scope: a statement in flight on a frozen old primary would otherwise wait
        until it is continued (its kernel acknowledges every packet, so keepalives
        never fire); it fails now and, as a write, rides to the next leader or
        raises CommitOutcomeUnknown. A new leader's connections are left alone."""
        lead = self._context.leadership
        for name in names:
            scope = lead.scope_of(name)
            if scope is None or lead.leader(scope) == name:
                continue
            pool = self._pools.peek(name)
            interrupt = getattr(pool, "interrupt", None)
            cut = interrupt() if interrupt is not None else 0
            if cut:
                self._pools.counters["connections_interrupted"] += cut
                _log.info("cut %d connection(s) in flight to %s (no longer leader)", cut, name)

    def after_fork(self) -> None:
        """In a forked child: what the parent's monitor saw is forgotten (the child's
        own monitor tells only of changes it sees, so a stale mark would stay)."""
        self.down = {}
        self._revived = set()

    def leader(self, scope: str, wait_s: float | None = None) -> str:
        """The node that takes ``scope``'s writes (a shard group, or ``control``): in a
        Patroni scope its leader, waiting up to ``wait_s`` (default: the config's
        ``failover_wait_s``) while it has none; :class:`NodeUnavailableError` after."""
        lead = self._context.leadership
        name = lead.leader(scope)
        if name is not None:
            return name
        self._watchers()  # the follower, among others, starts on first use
        waited = self._context.config.policies.failover_wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + waited
        while True:  # the follower polls a scope without a leader every 0.1 s
            pause(LEADER_CHECK_S)
            name = lead.leader(scope)
            if name is not None:
                return name
            if time.monotonic() >= deadline:
                why = lead.state(scope).error
                raise NodeUnavailableError(
                    f"{scope} has no Patroni leader after {waited:.2f} s"
                    + (f" (its REST API: {why})" if why else ""),
                    node=lead.primary(scope),
                    node_role="control" if scope == "control" else "primary",
                )

    @contextmanager
    def connect_leader(self, scope: str) -> Iterator[Connection[Any]]:
        """A pooled connection to ``scope``'s leader (see :meth:`connect`). In a Patroni
        scope, getting it waits through a failover up to ``failover_wait_s``: a
        connection that cannot be had sends nothing, so it is tried again on the next
        leader. What the caller sends on it is the caller's to retry or not."""
        lead = self._context.leadership
        if not lead.follows(scope):
            with self.connect(lead.primary(scope)) as conn:
                yield conn
            return
        deadline = time.monotonic() + self._context.config.policies.failover_wait_s
        while True:
            name = self.leader(scope, max(0.0, deadline - time.monotonic()))
            try:
                pool = self.pool(name)
                conn = self._getconn(name, pool, max(0.001, deadline - time.monotonic()))
                # Patroni names a leader before its promotion ends; a pooled connection
                # may have died with the old one. One round trip proves both, where it
                # is worth it: catalog calls (rare), and a leader new this moment.
                if scope == "control" or lead.changed_recently(scope):
                    self._writable(name, pool, conn)
            except (NodeUnavailableError, PoolClosed) as exc:  # closed: renewed meanwhile
                if time.monotonic() >= deadline:
                    raise
                _log.info("no connection to %s, leader of %s (%s); waiting", name, scope, exc)
                lead.poke(scope)
                pause(LEADER_CHECK_S * 5)
                continue
            break
        try:
            try:
                yield conn
            finally:
                pool.putconn(conn)
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):
                raise
            raise self._failed(name, self._roles[name], pool, exc, conn) from exc

    def _check_up(self, name: str) -> None:
        error = self.down.get(name)
        if error is not None:
            node = self._context.pools.node(name)
            raise NodeUnavailableError(
                f"node {name} at {node.address} is down: {error}",
                node=name,
                node_role=self._roles[name],
            )

    def pool(self, name: str) -> ConnectionPool[Any]:
        """The open pool of node ``name``."""
        self._context.check_open()
        pool = self._pools.peek(name)
        if pool is not None and name not in self._revived:
            return pool
        if pool is not None:  # back after an outage: a fresh pool, no backoff
            self._revived.discard(name)
            old = self._pools.retire(name, pool)
            if old is not None:
                old.close(timeout=0.2)
        self._watchers()
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
            conn = self._getconn(name, pool, timeout_s)
        except NodeUnavailableError as exc:
            if replica:
                self._balancer.end(name, failed=str(exc))
            raise
        try:
            try:
                yield conn
            finally:
                pool.putconn(conn)
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
        conn = self._getconn(name, pool, None)
        try:
            yield conn
        finally:
            try:
                reset_session(conn)
            finally:
                pool.putconn(conn)

    def _getconn(
        self, name: str, pool: ConnectionPool[Any], timeout_s: float | None
    ) -> Connection[Any]:
        """A connection from ``pool`` within ``timeout_s`` (default: the pool's), or
        :class:`NodeUnavailableError` -- at once if node ``name`` is known down."""
        self._check_up(name)
        waited = self._context.config.pools.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + waited
        while True:
            left = deadline - time.monotonic()
            try:
                conn: Connection[Any] = pool.getconn(timeout=max(0.001, min(WAIT_SLICE_S, left)))
                return conn
            except PoolTimeout as exc:
                self._check_up(name)
                if time.monotonic() >= deadline:
                    raise self._context.unavailable(name, exc, timeout_s) from exc

    def _writable(self, name: str, pool: ConnectionPool[Any], conn: Connection[Any]) -> None:
        """Check, before anything is sent on it, that ``conn`` is alive and its server
        out of recovery; :class:`NodeUnavailableError` (nothing sent) otherwise."""
        try:
            cur = conn.execute("SELECT pg_is_in_recovery()")
            row = cur.fetchone()
        except psycopg.Error as exc:
            pool.putconn(conn)  # broken: the pool discards it
            raise translate(exc, name, self._roles[name], conn) from exc
        if row is None or row[0]:
            pool.putconn(conn)
            raise NodeUnavailableError(
                f"node {name} leads in Patroni's view but is not promoted yet",
                node=name,
                node_role=self._roles[name],
            )

    def run_on_replica(self, name: str, work: Work, query: str, params: Any) -> Any:
        """``work(conn, query, params)`` on a pooled connection to replica ``name``:
        what :meth:`connect` does for a replica under round robin, without its
        context managers (the hot path of replica reads)."""
        pool = self._pools.peek(name)
        if pool is None or name in self._revived:
            pool = self.pool(name)
        try:
            conn = self._getconn(name, pool, None)
        except NodeUnavailableError as exc:
            self._balancer.end(name, failed=str(exc))
            raise
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
        return self._getconn(name, self.pool(name), None)

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
            self._context.leadership.poke_node(name)  # a Patroni scope: look at once
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
