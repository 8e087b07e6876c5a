"""Scopes and transactions: ways a caller says where its calls run (async source).

- :class:`AsyncScope`: calls with an explicit target (the primary, replicas, or one
  shard group); the cluster itself is the automatic scope over every group. A scope
  also offers the cross-shard read calls :meth:`~AsyncScope.scatter` and
  :meth:`~AsyncScope.stream`.
- :class:`AsyncTransaction`: statements inside one transaction, on one primary
  connection.

Sessions (calls that share session state) are in ``session_async.py``.

``scopes_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ..core.causal import CausalToken
from ..core.classify import Classification, TxAction
from ..core.consistency import Consistency
from ..core.copydecode import copies_to_stdout
from ..core.route import Scope as RouteScope
from ..core.scatter.result import ScatterResult
from ..core.shardplan import NO_KEY, Part, ShardPlan
from ..errors import MlscaleError, RoutingError
from .balancer import ReadOptions
from .commitcheck import CommitCheck
from .commits_async import position
from .fanout_async import Borrow, How
from .hooks import Committed
from .nodes_async import reset_session
from .runner_async import AsyncRooms, AsyncRunner, Params
from .statements import Isolation, set_transaction
from .translate import node_failed, translating

__all__ = ["AsyncScope", "AsyncTransaction", "open_transaction", "within"]

_COPY_BLOCK = 1 << 20  # bytes a copy_out() chunk gathers before it is handed over


def within(own: str | None, group: str | None) -> str | None:
    """The shard group a call runs in: the statement's ``group`` (None: not placed by
    a key), which must be the scope's ``own`` group if it has one."""
    if group is None:
        return own
    if own is not None and own != group:
        raise RoutingError(
            f"the statement's shard key lives on shard group {group}, but this scope runs "
            f"on {own}; open it with group=cluster.locate(table, key)"
        )
    return group


class AsyncScope(AsyncRunner):
    """Calls with an explicit target: the primary, replicas, or one shard group."""

    def __init__(
        self, rooms: AsyncRooms, scope: RouteScope, group: str | None, as_written: bool = False
    ) -> None:
        super().__init__(rooms)
        self._scope = scope
        self._group = group
        self._as_written = as_written

    def _borrow(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return self._rooms.router.connection(c, self._scope, within(self._group, group), options)

    async def _write_parts(self, c: Classification, shard_plan: ShardPlan, how: How) -> Any:
        if self._scope is RouteScope.REPLICA:
            raise RoutingError("a write cannot run in a replica scope")
        for part in shard_plan.parts:
            within(self._group, part.group)
        fanout = self._rooms.fanout
        return await fanout.write_parts(c, shard_plan, how.work, how.combine, how.committed)

    async def _quick(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> str | None:
        return await self._rooms.router.quick_replica(
            c, self._scope, within(self._group, group), options
        )

    def _home_group(self) -> str:
        return self._context.group(self._group)

    def _group_given(self) -> bool:
        return self._group is not None

    async def scatter(
        self,
        query: str,
        params: Params = None,
        *,
        allow_partial: bool = False,
        timeout: float | None = None,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
    ) -> ScatterResult:
        """A read of sharded tables on every shard group it needs, merged into what one
        server holding all the rows would return (``fetch_all`` does the same for a
        read with no shard key; this call says more and takes more).

        Groups run at once, each read under the call's consistency. ``timeout``
        (seconds) bounds the whole call. A group that fails or does not answer in
        time cancels the others and raises :class:`ShardGroupError` naming it;
        with ``allow_partial`` the rest comes back, ``result.partial`` and
        ``result.missing`` saying what is not in it. A construct the merger cannot
        make exact raises :class:`RoutingError` naming it.
        """
        shard_plan, borrow = await self._merged(
            query, params, self._options(consistency, token, max_lag_ms, max_lag_bytes)
        )
        return await self._rooms.scatter.read(
            shard_plan, borrow, allow_partial=allow_partial, timeout=timeout
        )

    async def stream(
        self,
        query: str,
        params: Params = None,
        *,
        batch_size: int = 2000,
        timeout: float | None = None,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of a read across shard groups as they are merged (tuples), for
        results too large to hold: each group's rows come from a server-side cursor,
        ``batch_size`` at a time, k-way merged by the ORDER BY. ``timeout`` bounds each
        fetch. Leave the loop early, or close the iterator, to release the groups."""
        shard_plan, borrow = await self._merged(
            query, params, self._options(consistency, token, None, None)
        )
        scatter = self._rooms.scatter
        rows = scatter.stream(shard_plan, borrow, batch_size=batch_size, timeout=timeout)
        async with aclosing(rows):  # leaving early closes the groups' cursors now
            async for row in rows:  # noqa: RUF100, UP028 (async: no "yield from")
                yield row

    async def copy_out(
        self,
        query: str,
        *,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
    ) -> AsyncIterator[memoryview]:
        """The bytes of one ``COPY ... TO STDOUT`` as the server sends them (any FORMAT),
        in chunks of at least about 1 MB (not cut at rows; a larger message of the
        server's is one chunk, not copied), run where this scope's reads run (a
        replica fit for the call's consistency, else the primary). For callers that
        decode the stream themselves, such as binary COPY into numpy. The statement is
        not placed by a key: use it in a group's scope (``cluster.as_written(group)``).
        Leave the loop early, or close the iterator, to give the connection back."""
        self._check_usable()
        if not copies_to_stdout(query):
            raise RoutingError("copy_out() runs one COPY ... TO STDOUT statement")
        c = self._context.classify(query)
        if not c.read_only:
            raise RoutingError(f"{c.reason}: copy_out() is for reads")
        options = self._options(consistency, token, max_lag_ms, max_lag_bytes)
        block = bytearray()
        async with self._borrow(c, options, None) as conn, conn.cursor().copy(query) as copy:
            # The server sends a message per row: gathered into blocks of about
            # _COPY_BLOCK bytes, the caller's loop runs once per block, not per row.
            async for chunk in copy:
                if not block and len(chunk) >= _COPY_BLOCK:
                    # The driver's buffer of one message, ours to keep (each message
                    # gets its own): handed over as it is, not copied.
                    yield memoryview(chunk)
                    continue
                block += chunk
                if len(block) >= _COPY_BLOCK:
                    yield memoryview(bytes(block))
                    block.clear()
        if block:
            yield memoryview(bytes(block))

    async def _merged(
        self, query: str, params: Params, options: ReadOptions
    ) -> tuple[ShardPlan, Borrow]:
        """The merged plan of a read of sharded tables (one group's, if its keys place
        it on one) and how to borrow its groups' connections."""
        self._check_usable()
        c = self._context.classify(query)
        if not c.read_only:
            raise RoutingError(f"{c.reason}: scatter() and stream() are for reads")
        rooms = self._rooms
        shard_plan = await rooms.directory.plan(
            c, query, params, NO_KEY, False, self._group_given()
        )
        if shard_plan is None:
            raise RoutingError(
                "cross-shard read: the statement reads no sharded table; use fetch_all()"
            )
        if not shard_plan.merged:  # split by key: each part has its own text and keys
            directory = await self._rooms.directory.current()
            parts = tuple(Part(p.group, query, params) for p in shard_plan.parts)
            shard_plan = replace(shard_plan, parts=parts, merged=True, directory=directory)
        return shard_plan, self._borrower(c, options)

    async def __aenter__(self) -> AsyncScope:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class AsyncTransaction(AsyncRunner):
    """Statements inside one transaction, on one primary connection."""

    def __init__(
        self, rooms: AsyncRooms, conn: AsyncConnection[Any], node: str, as_written: bool = False
    ) -> None:
        super().__init__(rooms)
        self._as_written = as_written
        self._conn = conn
        self.node = node
        self.group = self._context.pools.node(node).group
        self.dirty = False  # whether a statement left session state on the connection
        self.token: CausalToken | None = None  # set once committed
        self.active = True  # until its block ends: then its connection is someone else's

    def _check_usable(self) -> None:
        if not self.active:
            raise MlscaleError(
                "this transaction's block has ended (committed or rolled back); "
                "open a new one with cluster.transaction()"
            )

    def _group_given(self) -> bool:
        return True  # it runs on one group's primary

    def _may_repeat(self, c: Classification) -> bool:
        return False  # the transaction died with its connection

    def _marks_writes(self) -> bool:
        return False  # its token is read once the block commits

    def _committed(
        self, query: str, shard_plan: ShardPlan | None, token: CausalToken | None
    ) -> None:
        return None  # nothing commits before the block ends: open_transaction tells

    @asynccontextmanager
    async def _borrow(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> AsyncIterator[AsyncConnection[Any]]:
        within(self.group, group)
        if c.transaction in (TxAction.BEGIN, TxAction.END):
            raise RoutingError(
                f"{c.reason}: inside a transaction block, end it by leaving the block "
                "(or use tx.savepoint())"
            )
        if c.creates:
            self.dirty = True
        with translating(self.node, conn=self._conn):
            yield self._conn

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[AsyncTransaction]:
        """A nested transaction (SAVEPOINT): rolled back alone if its block raises."""
        self._check_usable()
        with translating(self.node, conn=self._conn):
            async with self._conn.transaction():
                yield self


@asynccontextmanager
async def open_transaction(
    rooms: AsyncRooms,
    conn: AsyncConnection[Any],
    node: str,
    isolation: Isolation | None,
    readonly: bool,
    *,
    reset_dirty: bool = True,
    as_written: bool = False,
) -> AsyncIterator[AsyncTransaction]:
    """A transaction on ``conn`` (a connection to primary ``node``): committed if the
    block ends normally, rolled back if it raises; its token set once committed.
    With ``reset_dirty``, session state a statement left is discarded afterwards;
    ``as_written``: statements run as written (see :meth:`AsyncCluster.as_written`)."""
    tx = AsyncTransaction(rooms, conn, node, as_written)
    # In a Patroni group, a COMMIT whose answer never comes (or comes with the
    # "committed locally" warning) is reported as CommitOutcomeUnknown.
    check = None
    if rooms.context.leadership.follows(tx.group or ""):
        check = CommitCheck("COMMIT", idempotent=False)
    try:
        try:
            async with conn.transaction():
                options = set_transaction(isolation, readonly)
                if options is not None:
                    await conn.execute(options)
                yield tx
                if check is not None:  # the block ended normally: COMMIT is sent next
                    check.attach(conn)
        except psycopg.Error as exc:
            if check is None or not check.sent or isinstance(exc, MlscaleError):
                raise
            if not node_failed(exc, conn):
                raise  # the server refused the COMMIT (a deferred constraint): rolled back
            raise check.unknown(node, f"the connection broke during COMMIT ({exc})") from exc
        finally:
            if check is not None and check.sent and not conn.closed:
                check.detach(conn)
        if check is not None:
            check.raise_if_local(node)
        group = rooms.context.group(tx.group)
        tx.token = CausalToken({group: await position(conn)})
        if rooms.hooks:
            rooms.hooks.fire(Committed((group,), None, tx.token))
    finally:
        tx.active = False
        if reset_dirty and tx.dirty:
            await reset_session(conn)
