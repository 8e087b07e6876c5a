"""The query methods, written once, over a target that says where a statement runs
(async source).

``execute / fetch_one / fetch_all / fetch_value / copy`` classify the statement,
place it on shard groups by its key (sharded tables), and run it where the
subclass -- a scope, session, transaction, or the cluster itself -- lends a
connection. A read whose replica fails is retried once elsewhere; a write if marked
idempotent, or (Patroni groups) if unsent when its leader failed: ride_async.py.

``runner_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection

from ..core.causal import CausalToken
from ..core.classify import Classification
from ..core.consistency import Consistency
from ..core.copyformat import read_copy
from ..core.scatter.result import ScatterResult
from ..core.shardplan import NO_KEY, ShardPlan
from ..errors import NodeUnavailableError, RoutingError
from .balancer import EVENTUAL, ReadOptions
from .commits_async import CommitMarks
from .copydata_async import Payload, copy_data
from .fanout_async import Borrow, How, concat, first_row, total
from .hooks import Committed
from .ride_async import ride_group, ride_through
from .rooms_async import AsyncRooms
from .rows_async import read_rows

__all__ = ["AsyncRooms", "AsyncRunner", "Params"]  # AsyncRooms lives in rooms_async.py

log = logging.getLogger(__name__)

Params = Sequence[Any] | Mapping[str, Any] | None


class AsyncRunner:
    """The query methods, written once: subclasses say which connection runs a statement.

    Reads take a guarantee per call: ``consistency`` (STRONG, READ_YOUR_WRITES,
    BOUNDED_STALENESS, EVENTUAL), a causal ``token`` (a :class:`CausalToken` or
    its string), and for bounded staleness ``max_lag_ms`` / ``max_lag_bytes``.
    """

    _as_written = False  # statements as written on one group: no key read, split or merge

    def __init__(self, rooms: AsyncRooms) -> None:
        self._rooms = rooms
        self._context = rooms.context

    def _borrow(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """The connection that runs ``c`` in shard group ``group`` (None: the
        runner's own group)."""
        raise NotImplementedError

    async def _quick(self, c: Classification, options: ReadOptions, group: str | None) -> Any:
        """The replica of ``group`` for ``c`` if it may take the quick path (see
        :meth:`AsyncRouter.quick_replica`), else None."""
        return None

    async def _run(
        self,
        query: str,
        params: Params,
        options: ReadOptions,
        how: How,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
    ) -> Any:
        """``how.work(conn, query, params)`` where ``query`` must run (retries: above)."""
        self._check_usable()
        c = self._context.classify(query)
        shard_plan = None  # statements run as written: not placed by a key
        if not self._as_written:
            where = (shard_key, broadcast, self._group_given())
            shard_plan = await self._rooms.directory.plan(c, query, params, *where)
        # Decided first (a failure may reset a session's state): a read is safe to repeat.
        may_repeat = (idempotent or c.read_only) and self._may_repeat(c)
        how, marks = self._marking(c, shard_plan, how)
        ride = ride_group(c, shard_plan, self._home_group(), self._context, self._may_repeat(c))
        try:
            if ride is None:
                result = await self._attempt(c, query, params, options, how, shard_plan)
            else:  # a Patroni group's write waits through a failover: see ride_async.py
                run = lambda h: self._attempt(c, query, params, options, h, shard_plan)  # noqa: E731
                result = await ride_through(self._context, ride, query, idempotent, how, run)
        except NodeUnavailableError as exc:
            if c.read_only and (exc.node_role == "replica" or may_repeat):
                self._context.balancer.record_retry()
                log.info("read failed on %s (%s); retrying once", exc.node, exc)
            elif may_repeat and ride is None:  # a ride retried what it could
                log.info("failed on %s (%s); retrying once: marked idempotent", exc.node, exc)
            else:
                raise
            result = await self._attempt(c, query, params, options, how, shard_plan)
        if not c.read_only and c.transaction is None:
            self._context.record_write(shard_plan, self._home_group())
        if marks is not None:
            self._committed(query, shard_plan, marks.token)
        return result

    def _marking(
        self, c: Classification, shard_plan: ShardPlan | None, how: How
    ) -> tuple[How, CommitMarks | None]:
        """``how``, made to read the causal token of the write it runs when after-commit
        hooks will hear of it (else unchanged: no extra round trip)."""
        if c.read_only or not self._rooms.hooks:
            return how, None
        marks = CommitMarks()
        if not self._marks_writes():
            return how, marks
        group = self._home_group()  # no shard key, or no row to place: the home group
        if shard_plan is not None and not shard_plan.any_group:
            group = shard_plan.parts[0].group  # split: read after each group's COMMIT
        return marks.wrap(how, group), marks

    def _marks_writes(self) -> bool:
        """Whether a write reads its position for the hooks (no: read anyway, or later)."""
        return True

    def _committed(
        self, query: str, shard_plan: ShardPlan | None, token: CausalToken | None
    ) -> None:
        """Tell the after-commit hooks that ``query`` (placed by ``shard_plan``) has
        committed, having reached ``token``: the runner runs each call in its own
        transaction, unless a subclass says otherwise."""
        groups = shard_plan.groups if shard_plan is not None else (self._home_group(),)
        self._rooms.hooks.fire(Committed(groups, query, token))

    def _home_group(self) -> str:
        """The group a statement runs in when no shard key places it."""
        return self._context.group(None)

    def _check_usable(self) -> None:
        """Raise if calls can no longer run here (a closed cluster, an ended block)."""
        self._context.check_open()

    def _group_given(self) -> bool:
        """Whether the caller named the shard group its calls run in."""
        return False

    def _may_repeat(self, c: Classification) -> bool:
        """Whether ``c`` may run again on a new connection after its node failed: not
        when it belongs to a transaction or session state the failure took away."""
        return True

    async def _attempt(
        self,
        c: Classification,
        query: str,
        params: Params,
        options: ReadOptions,
        how: How,
        shard_plan: ShardPlan | None,
    ) -> Any:
        work = how.work
        if shard_plan is not None:
            return await self._run_plan(c, shard_plan, options, how)
        quick = await self._quick(c, options, None)
        if quick is not None:
            return await self._rooms.nodes.run_on_replica(quick, work, query, params)
        async with self._borrow(c, options, None) as conn:
            return await work(conn, query, params)

    async def _run_plan(
        self,
        c: Classification,
        shard_plan: ShardPlan,
        options: ReadOptions,
        how: How,
    ) -> Any:
        work, parts = how.work, shard_plan.parts
        if shard_plan.merged:
            if self._group_given() and set(shard_plan.groups) != {self._home_group()}:
                where = f"groups {', '.join(shard_plan.groups)}, but this runs on one group"
                raise RoutingError(f"cross-shard read: it reads {where}: run it on the cluster")
            borrow = self._borrower(c, options)
            return how.present(await self._rooms.scatter.read(shard_plan, borrow))
        if len(parts) == 1:
            (part,) = parts
            group = None if shard_plan.any_group else part.group
            quick = await self._quick(c, options, group)
            if quick is not None:
                return await self._rooms.nodes.run_on_replica(quick, work, part.sql, part.params)
            async with self._borrow(c, options, group) as conn:
                return await work(conn, part.sql, part.params)
        if not c.read_only:
            return await self._write_parts(c, shard_plan, how)
        return await self._rooms.fanout.read_parts(
            shard_plan, self._borrower(c, options), work, how.combine
        )

    def _borrower(self, c: Classification, options: ReadOptions) -> Borrow:
        return lambda group: self._borrow(c, options, group)

    async def _write_parts(self, c: Classification, shard_plan: ShardPlan, how: How) -> Any:
        """A write split over shard groups (see :meth:`AsyncFanout.write_parts`); refused
        where the runner holds one group's connection."""
        raise RoutingError(
            f"this write spans shard groups {', '.join(shard_plan.groups)}; a session or "
            "transaction holds one group's connection: run it on the cluster"
        )

    async def execute(
        self,
        query: str,
        params: Params = None,
        *,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
    ) -> int:
        """Run a statement; the number of rows it affected (-1 if not applicable).

        On sharded tables the key is read from the statement, or given as
        ``shard_key``; a write without one runs on every shard group only with
        ``broadcast=True``. ``idempotent``: running it twice is harmless, so a write
        whose node failed is run again (once; in a Patroni group, on the next leader
        within ``failover_wait_s``, else :class:`CommitOutcomeUnknown` if it was sent)."""

        async def work(conn: AsyncConnection[Any], text: str, values: Params) -> int:
            cur = await conn.execute(text, values)
            return int(cur.rowcount)

        result: int = await self._run(
            query,
            params,
            EVENTUAL,
            How(work, total, lambda merged: len(merged.rows)),
            shard_key=shard_key,
            broadcast=broadcast,
            idempotent=idempotent,
        )
        return result

    async def fetch_all(
        self,
        query: str,
        params: Params = None,
        *,
        as_dict: bool = False,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
        binary: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Every row, as tuples (or dicts with ``as_dict``); ``binary``: sent in
        PostgreSQL's binary format (bytea as its bytes, half the size of hex).

        ``settings``: server settings for this statement only (name -> value, e.g.
        ``{"hnsw.ef_search": "100"}``), set by ``set_config(name, value, true)`` in the
        same implicit transaction, sent with the statement in one round trip (pipeline
        mode): nothing outlives the call. Inside a transaction they last until it ends."""
        options = self._options(consistency, token, max_lag_ms, max_lag_bytes)
        where = (shard_key, broadcast, idempotent, binary, settings)
        rows: list[Any] = await self._fetch(query, params, as_dict, options, False, *where)
        return rows

    async def fetch_one(
        self,
        query: str,
        params: Params = None,
        *,
        as_dict: bool = False,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
        binary: bool = False,
    ) -> Any:
        """The first row (tuple, or dict with ``as_dict``), or None (``binary``: see
        :meth:`fetch_all`)."""
        options = self._options(consistency, token, max_lag_ms, max_lag_bytes)
        where = (shard_key, broadcast, idempotent, binary)
        return await self._fetch(query, params, as_dict, options, True, *where)

    async def _fetch(
        self,
        query: str,
        params: Params,
        as_dict: bool,
        options: ReadOptions,
        one: bool,
        shard_key: Any,
        broadcast: bool,
        idempotent: bool,
        binary: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> Any:
        """The rows of ``query`` (or only the first, with ``one``), read under ``options``."""

        async def work(conn: AsyncConnection[Any], text: str, values: Params) -> Any:
            return await read_rows(
                conn, text, values, as_dict=as_dict, binary=binary, one=one, settings=settings
            )

        def present(result: ScatterResult) -> Any:
            rows = result.as_dicts() if as_dict else result.rows
            return (rows[0] if rows else None) if one else rows

        how = How(work, first_row if one else concat, present)
        where = {"shard_key": shard_key, "broadcast": broadcast, "idempotent": idempotent}
        return await self._run(query, params, options, how, **where)

    async def fetch_value(
        self,
        query: str,
        params: Params = None,
        *,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
        shard_key: Any = NO_KEY,
        idempotent: bool = False,
    ) -> Any:
        """The first column of the first row, or None if there is no row."""
        options = self._options(consistency, token, max_lag_ms, max_lag_bytes)
        row = await self._fetch(query, params, False, options, True, shard_key, False, idempotent)
        return None if row is None else row[0]

    async def copy(self, query: str, rows: Iterable[Sequence[Any]] | Payload | None = None) -> Any:
        """``COPY ... FROM STDIN`` writes ``rows`` and returns how many;
        ``COPY ... TO STDOUT`` returns the rows it produced (tuples of text, None for
        NULL; in binary format, of Python values). ``rows`` may also be bytes already
        in the statement's format (not split: in an as_written scope or a transaction).

        The statement's FORMAT (text, csv, binary) and its DELIMITER, NULL, QUOTE and
        ESCAPE (csv) are honoured; what cannot be (HEADER with rows, ENCODING) raises
        :class:`RoutingError` before anything is sent. Into a sharded table, rows are
        split by their shard key (slots computed in batches) and each group's rows
        copied in one transaction per group.
        """
        layout = read_copy(query, with_rows=rows is not None)

        async def copy_rows(conn: AsyncConnection[Any], text: str, data: Any) -> Any:
            return await copy_data(conn, text, layout, data)

        async def given_rows(conn: AsyncConnection[Any], text: str, _: Params) -> Any:
            return await copy_rows(conn, text, rows)

        self._check_usable()
        if rows is not None and not self._as_written and not isinstance(rows, Payload):
            split = await self._rooms.directory.split_copy(query, rows)
            if split is not None:
                c = self._context.classify(query)
                how, marks = self._marking(c, split, How(copy_rows, total))
                if len(split.parts) == 1:
                    (part,) = split.parts
                    async with self._borrow(c, EVENTUAL, part.group) as conn:
                        count = await how.work(conn, part.sql, part.params)
                else:
                    count = await self._write_parts(c, split, how)
                self._context.record_write(split, self._home_group())
                if marks is not None:
                    self._committed(query, split, marks.token)
                return count
        return await self._run(
            query, None, EVENTUAL, How(given_rows, total if rows is not None else concat)
        )

    def _options(
        self,
        consistency: Consistency | str | None,
        token: CausalToken | str | None,
        max_lag_ms: float | None,
        max_lag_bytes: int | None,
    ) -> ReadOptions:
        return ReadOptions.of(consistency, token, max_lag_ms, max_lag_bytes)
