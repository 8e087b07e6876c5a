# Generated from session_async.py by scripts/async_to_sync.py: do not edit.
# Change session_async.py and run the script again.
"""Sessions: calls that share session state, and a read guarantee (async source).

``session_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import Connection

from ..core.causal import CausalToken
from ..core.classify import Classification
from ..core.consistency import Consistency
from ..core.route import Scope as RouteScope
from ..core.session import SessionState
from ..core.shardplan import ShardPlan
from ..errors import DatabaseError, MlscaleError
from .balancer import ReadOptions, SeenPositions
from .commits_sync import position
from .fanout_sync import How
from .hooks import Committed
from .runner_sync import Rooms, Runner
from .scopes_sync import Transaction, open_transaction, within
from .statements import Isolation
from .translate import translating

__all__ = ["Session"]


class Session(Runner):
    """Calls that share session state, and a read guarantee.

    Reads go to replicas while the session holds no state. A statement that
    creates state (SET, PREPARE, CREATE TEMP, nextval, advisory locks, LISTEN,
    WITH HOLD cursors, BEGIN) pins the session to one primary connection, and
    every later call runs there until the state is gone or the session ends.
    The connection is reset (as by DISCARD ALL) before another caller gets it.

    A READ_YOUR_WRITES session keeps ``token`` (a causal token: pass
    ``str(s.token)`` to another process) at its latest write; a monotonic
    session remembers the newest position it has read from in each group.
    """

    def __init__(
        self, rooms: Rooms, group: str | None, options: ReadOptions, monotonic: bool
    ) -> None:
        super().__init__(rooms)
        self._group = group
        self._node = self._context.primary_node(group)
        self.options = options
        self.token = options.token or CausalToken()
        self.monotonic = monotonic
        self._seen = SeenPositions()
        self.state = SessionState()
        self._conn: Connection[Any] | None = None
        self._closed = False

    @property
    def pinned(self) -> bool:
        """Whether the session holds a primary connection now."""
        return self._conn is not None

    @property
    def seen(self) -> dict[str, int]:
        """The newest WAL position (bytes) read from in each group (monotonic sessions)."""
        return dict(self._seen.by_group)

    def _check_usable(self) -> None:
        if self._closed:
            raise MlscaleError("this session is closed; open a new one with cluster.session()")
        self._context.check_open()

    def _group_given(self) -> bool:
        return self._group is not None

    def _may_repeat(self, c: Classification) -> bool:
        return not self.pinned and not self.state.needs_pin(c)

    def _home_group(self) -> str:
        return self._context.group(self._group)

    def _write_parts(self, c: Classification, shard_plan: ShardPlan, how: How) -> Any:
        """A write split over groups, when the session holds no connection: run as the
        cluster runs it, the token advanced in every group it committed in (and the
        hooks' marks told, if any)."""
        if self.pinned or self.state.needs_pin(c):
            return super()._write_parts(c, shard_plan, how)
        marked = how.committed

        def committed(conn: Connection[Any], group: str) -> None:
            self._wrote(conn, group)
            if marked is not None:
                marked(conn, group)

        fanout = self._rooms.fanout
        return fanout.write_parts(c, shard_plan, how.work, how.combine, committed)

    def _marks_writes(self) -> bool:
        # A read-your-writes session reads its position after each write anyway.
        return self.options.consistency is not Consistency.READ_YOUR_WRITES

    def _committed(
        self, query: str, shard_plan: ShardPlan | None, token: CausalToken | None
    ) -> None:
        if self.state.in_transaction:
            return  # it commits with the session's COMMIT
        groups = shard_plan.groups if shard_plan is not None else (self._home_group(),)
        if self.options.consistency is Consistency.READ_YOUR_WRITES:
            token = self.token
        self._rooms.hooks.fire(Committed(groups, query, token or None))

    def _quick(self, c: Classification, options: ReadOptions, group: str | None) -> str | None:
        if self.monotonic or self.state.needs_pin(c):
            return None
        target = group if group is not None else self._group
        return self._rooms.router.quick_replica(c, RouteScope.AUTO, target, options)

    def _options(
        self,
        consistency: Consistency | str | None,
        token: CausalToken | str | None,
        max_lag_ms: float | None,
        max_lag_bytes: int | None,
    ) -> ReadOptions:
        call = ReadOptions.of(
            consistency or self.options.consistency, token, max_lag_ms, max_lag_bytes
        )
        merged = self.token.merge(call.token) if call.token else self.token
        return ReadOptions(call.consistency, merged or None, call.max_lag_ms, call.max_lag_bytes)

    def _wrote(self, conn: Connection[Any], group: str | None = None) -> None:
        """After a write committed on ``conn`` (a primary of ``group``, default the
        session's): advance the token and the monotonic mark."""
        if self.options.consistency is not Consistency.READ_YOUR_WRITES and not self.monotonic:
            return
        now = position(conn)
        group = self._context.group(group if group is not None else self._group)
        self.token = self.token.merge(CausalToken({group: now}))
        if self.monotonic:
            self._seen.saw(group, now.lsn)

    def _pin(self) -> Connection[Any]:
        if self._closed:
            raise MlscaleError("this session is closed")
        if self._conn is None:
            # The group's primary as of now: in a Patroni group, its current leader.
            self._node = self._rooms.nodes.leader(self._context.group(self._group))
            self._conn = self._rooms.nodes.hold(self._node)
        return self._conn

    def _unpin(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._rooms.nodes.release(self._node, conn)

    @contextmanager
    def _borrow(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> Iterator[Connection[Any]]:
        if not self.state.needs_pin(c):
            # Unpinned calls may go to any shard group: the token keeps one position per group.
            target = group if group is not None else self._group
            router = self._rooms.router
            if c.read_only:
                seen = self._seen if self.monotonic else None
                with router.connection(c, RouteScope.AUTO, target, options, seen) as conn:
                    yield conn
                return
            with router.connection(c, RouteScope.AUTO, target, options) as conn:
                yield conn
                self._wrote(conn, target)
            return
        within(self._context.group(self._group), group)
        conn = self._pin()
        try:
            with translating(self._node, conn=conn):
                yield conn
        except DatabaseError:
            if conn.closed:  # the state died with the connection
                self.state = SessionState()
                self._unpin()
            raise
        self.state = self.state.after(c)
        if not c.read_only and not self.state.in_transaction:
            self._wrote(conn)
        if not self.state.pinned:
            self._unpin()

    @contextmanager
    def transaction(
        self, *, isolation: Isolation | None = None, readonly: bool = False
    ) -> Iterator[Transaction]:
        """A transaction on the session's (pinned) primary connection."""
        conn = self._pin()
        try:
            with translating(self._node, conn=conn):
                with open_transaction(
                    self._rooms, conn, self._node, isolation, readonly, reset_dirty=False
                ) as tx:
                    yield tx
            self._wrote(conn)
        finally:
            if not self.state.pinned:
                self._unpin()

    def close(self) -> None:
        """End the session: its connection (if any) is reset and goes back to the pool."""
        self.state = SessionState()
        self._unpin()
        self._closed = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
