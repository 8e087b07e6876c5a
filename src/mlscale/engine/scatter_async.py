"""Reads across shard groups (async source): every group's query at once, merged
into what one PostgreSQL server holding all the rows would return.

The plan (core/scatter) says what each group runs and how the rows merge. While
the tables' key family has a move open (or with ``policies.ownership_filter =
"always"``, or when this process's directory has not been confirmed by the catalog
within ``UNCONFIRMED_S``: it might miss a move) each group's query is restricted to
the slots the group owns in the map version the plan used, so a slot copied to a
second group is read once; outside a move each row is on one group only and that
filter (a hash per row) is left out.
Groups run in parallel (asyncio tasks; the sync twin uses a small shared thread
pool), each on the connection the caller's consistency picks in that group. A
group that fails or does not answer within the call's timeout stops the others
(their queries are cancelled) and raises :class:`ShardGroupError` naming it;
with ``allow_partial`` the other groups' rows come back, marked partial.
:meth:`AsyncScatter.stream` k-way merges server-side cursors, so a large ordered
result is never held whole.

``scatter_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from ..core.scatter import ConcatMerge, merge_rows
from ..core.scatter.pgvalues import MergeArithmeticError
from ..core.scatter.prepare import GroupQuery, PlannedRead, plan_read
from ..core.scatter.result import ScatterResult
from ..core.scatter.stream import OrderedMerge
from ..core.sharding import UNCONFIRMED_S
from ..core.shardplan import ShardPlan
from ..errors import NodeUnavailableError, QueryError, RoutingError, ShardGroupError
from .concurrency_async import Outcome, gather_all
from .context import ClusterContext
from .directory_async import AsyncDirectory
from .fanout_async import Borrow

__all__ = ["AsyncScatter"]

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_KEPT = 512  # plans and column names kept per cluster
_AGGREGATE_CHECK_S = 60.0  # how long a function's "(not) an aggregate" answer is kept
# Aggregates by name, case-insensitively and in any schema: a match is refused, so
# erring towards a match is safe.
_AGGREGATES = (
    "SELECT DISTINCT lower(proname) FROM pg_catalog.pg_proc "
    "WHERE prokind = 'a' AND lower(proname) = ANY(%s)"
)


class _Kept(Generic[K, V]):
    """A bounded map, least recently used out first; safe across threads."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # never held across an await

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _GroupRows:
    rows: list[Any]
    columns: tuple[str, ...]  # the result's names (described) or the group query's
    types: tuple[int, ...]  # the group query's column type OIDs, for the merger


class _Stopped(Exception):
    """A group got its connection after its call was stopped: it does not start."""


class _Inflight:
    """The connections a call's groups run their queries on. Once the call stops, a
    group that gets its connection does not start, and a connection is cancelled
    only while it is still this call's (not once it is back in its pool)."""

    def __init__(self) -> None:
        self._conns: dict[str, AsyncConnection[Any]] = {}
        self._stopped = False
        self._lock = threading.Lock()

    def start(self, group: str, conn: AsyncConnection[Any]) -> None:
        with self._lock:
            if self._stopped:
                raise _Stopped(group)
            self._conns[group] = conn

    def end(self, group: str) -> None:
        with self._lock:
            self._conns.pop(group, None)

    def stop(self) -> None:
        """Cancel the queries still running (the thread twin's stop: a thread cannot
        be cancelled; a task is, and its query with it)."""
        with self._lock:
            self._stopped = True
            for conn in self._conns.values():
                try:
                    conn.cancel()
                except Exception:
                    log.debug("could not cancel a cross-shard read's query", exc_info=True)


class AsyncScatter:
    """Runs the cross-shard reads of one cluster and keeps their plans."""

    def __init__(
        self, context: ClusterContext[AsyncConnectionPool[Any]], directory: AsyncDirectory
    ) -> None:
        self._context = context
        self._directory = directory
        self._plans: _Kept[tuple[Any, ...], PlannedRead] = _Kept(_KEPT)
        self._columns: _Kept[tuple[str, int], tuple[str, ...]] = _Kept(_KEPT)
        # function name -> (an aggregate on the server, when that was asked)
        self._aggregates: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()  # guards _aggregates; never held across an await

    def planned(self, shard_plan: ShardPlan) -> PlannedRead:
        """The plan of ``shard_plan``'s statement over its groups (cached)."""
        part = shard_plan.parts[0]
        directory = shard_plan.directory
        if directory is None:
            raise ValueError("a merged shard plan carries the directory it was placed by")
        policies = self._context.config.policies
        always = (
            policies.ownership_filter == "always" or self._directory.unconfirmed_s() > UNCONFIRMED_S
        )
        key = (part.sql, part.params is not None, directory.version, shard_plan.groups, always)
        planned = self._plans.get(key)
        if planned is None:
            planned = plan_read(
                part.sql,
                part.params is not None,
                shard_plan.groups,
                directory,
                always_filter=always,
                gather_limit=policies.gather_limit,
            )
            self._plans.put(key, planned)
        return planned

    async def read(
        self,
        shard_plan: ShardPlan,
        borrow: Borrow,
        *,
        allow_partial: bool = False,
        timeout: float | None = None,
    ) -> ScatterResult:
        """The merged rows of ``shard_plan`` (a merged plan), each group's query run at
        once on ``borrow(group)``; see the module docstring for failures."""
        planned = self.planned(shard_plan)
        params = shard_plan.parts[0].params
        await self._check_functions(planned, borrow, shard_plan.groups)
        queries = planned.queries(params)
        version = shard_plan.directory.version if shard_plan.directory else 0
        columns = self._columns.get((planned.statement, version))
        # Each group names the columns the first time (one more round trip): the
        # answer must not hang on one group being there.
        describe = planned.columns_query(params) if columns is None else None
        inflight = _Inflight()

        def call(query: GroupQuery) -> Callable[[], Any]:
            return lambda: self._read_group(query, borrow, inflight, describe)

        outcomes: list[Outcome[_GroupRows]] = await gather_all(
            [call(q) for q in queries],
            timeout=timeout,
            fatal=lambda error: not (allow_partial and _lost(error)),
            on_abort=inflight.stop,
        )
        answered, missing = self._sort_out(queries, outcomes, allow_partial, timeout)
        first = answered[0][1]
        if columns is None:
            merge = planned.plan.merge
            hidden = merge.hidden if isinstance(merge, ConcatMerge) and describe is None else 0
            columns = first.columns[: len(first.columns) - hidden]
            self._columns.put((planned.statement, version), columns)
        rows = _merge(planned, [group_rows.rows for _, group_rows in answered], first.types)
        return ScatterResult(rows, columns, tuple(g for g, _ in answered), missing)

    def _sort_out(
        self,
        queries: Sequence[GroupQuery],
        outcomes: Sequence[Outcome[_GroupRows]],
        allow_partial: bool,
        timeout: float | None,
    ) -> tuple[list[tuple[str, _GroupRows]], tuple[str, ...]]:
        """The groups that answered (with their rows) and those lost; raises the
        statement's own error (a server rejecting it is no lost group), or
        :class:`ShardGroupError` when groups were lost and that is not allowed."""
        pairs = list(zip(queries, outcomes, strict=True))
        for _, outcome in pairs:
            if outcome.error is not None and not _lost(outcome.error):
                raise outcome.error
        answered = [(q.group, o.value) for q, o in pairs if o.finished and o.value is not None]
        failed = [(q.group, o.error) for q, o in pairs if o.error is not None]
        silent = tuple(q.group for q, o in pairs if not o.finished)
        cause = failed[0][1] if failed else None
        if failed and not allow_partial:  # the unfinished ones were stopped for them
            lost = tuple(g for g, _ in failed)
            why = f"failed ({cause})"
        else:
            lost = tuple(g for g, _ in failed) + silent
            why = f"did not answer within {timeout} s" if not failed else f"were lost ({cause})"
        if lost and (not allow_partial or not answered):
            raise ShardGroupError(
                f"cross-shard read: shard group(s) {', '.join(lost)} {why}; the other groups' "
                "queries were cancelled (allow_partial=True returns the rest, marked partial)",
                groups=lost,
            ) from cause
        if lost:
            log.warning("cross-shard read partial: %s missing", ", ".join(lost))
        return answered, lost

    async def _read_group(
        self,
        query: GroupQuery,
        borrow: Borrow,
        inflight: _Inflight,
        describe: tuple[str, Any] | None,
    ) -> _GroupRows:
        """One group's rows (and the result's column names, by ``describe``). A replica
        that fails is banned by the transport; the read is tried once more in the group."""
        for attempt in (1, 2):
            try:
                async with borrow(query.group) as conn:
                    inflight.start(query.group, conn)
                    try:
                        cur = conn.cursor(row_factory=tuple_row)
                        await cur.execute(query.sql, query.params)
                        rows = await cur.fetchall()
                        names = tuple(d.name for d in cur.description or ())
                        types = tuple(d.type_code for d in cur.description or ())
                        if describe is not None:
                            await cur.execute(describe[0], describe[1])
                            names = tuple(d.name for d in cur.description or ())
                        return _GroupRows(rows, names, types)
                    finally:
                        inflight.end(query.group)
            except NodeUnavailableError as exc:
                if attempt == 2 or exc.node_role != "replica":
                    raise
                self._context.balancer.record_retry()
                log.info("cross-shard read failed on %s (%s); retrying once", exc.node, exc)
        raise AssertionError("unreachable")

    async def _check_functions(
        self, planned: PlannedRead, borrow: Borrow, groups: Sequence[str]
    ) -> None:
        """Refuse a function the server knows as an aggregate but the planner does
        not (a user-defined one): its per-group results would be a silent union. The
        server is asked (on the first group that answers) about names it has not been
        asked about in the last minute."""
        names = {f.rsplit(".", 1)[-1].lower() for f in planned.functions}
        now = time.monotonic()
        with self._lock:
            unknown = sorted(
                n
                for n in names
                if n not in self._aggregates or now - self._aggregates[n][1] > _AGGREGATE_CHECK_S
            )
        if unknown:
            found = await self._ask_aggregates(unknown, borrow, groups)
            with self._lock:
                self._aggregates.update({n: (n in found, now) for n in unknown})
        with self._lock:
            aggregates = sorted(n for n in names if self._aggregates[n][0])
        if aggregates:
            raise RoutingError(
                f"cross-shard read: {', '.join(aggregates)} is an aggregate the merger does not "
                "know (user-defined): its per-group results cannot be combined; filter on the "
                "shard key so it runs on one group"
            )

    async def _ask_aggregates(
        self, names: list[str], borrow: Borrow, groups: Sequence[str]
    ) -> set[str]:
        lost: list[str] = []
        for group in groups:
            try:
                async with borrow(group) as conn:
                    cur = await conn.execute(_AGGREGATES, (names,))
                    return {str(row[0]) for row in await cur.fetchall()}
            except NodeUnavailableError:
                lost.append(group)
        raise ShardGroupError(
            "cross-shard read: no shard group answered to check its functions "
            f"({', '.join(names)}) against the server's aggregates",
            groups=tuple(lost),
        )

    async def stream(
        self,
        shard_plan: ShardPlan,
        borrow: Borrow,
        *,
        batch_size: int = 2000,
        timeout: float | None = None,
    ) -> AsyncGenerator[tuple[Any, ...], None]:
        """The rows of ``shard_plan`` as they are merged, ``batch_size`` rows fetched at
        a time from a server-side cursor per group (in one read-only transaction per
        group, held until the iteration ends or is closed). ``timeout`` bounds each
        fetch on each group (statement_timeout). An aggregate or a DISTINCT is merged
        whole, then yielded. A group lost on the way raises :class:`ShardGroupError`."""
        planned = self.planned(shard_plan)
        merge = planned.plan.merge
        if not isinstance(merge, ConcatMerge) or merge.distinct:
            result = await self.read(shard_plan, borrow, timeout=timeout)
            for row in result.rows:
                yield row
            return
        await self._check_functions(planned, borrow, shard_plan.groups)
        queries = planned.queries(shard_plan.parts[0].params)
        async with AsyncExitStack() as stack:
            cursors = []
            for query in queries:
                with _naming(query.group):
                    conn = await stack.enter_async_context(borrow(query.group))
                    await stack.enter_async_context(conn.transaction())
                    if timeout is not None:
                        limit = max(1, round(timeout * 1000))
                        await conn.execute(
                            sql.SQL("SET LOCAL statement_timeout = {}").format(limit)
                        )
                    cur = conn.cursor(name="mlscale_stream", row_factory=tuple_row)
                    cur = await stack.enter_async_context(cur)
                    await cur.execute(query.sql, query.params)
                cursors.append(cur)
            merger = OrderedMerge(merge, len(cursors))
            while not merger.done:
                index = merger.needs()
                if index is not None:
                    with _naming(queries[index].group):
                        batch = await cursors[index].fetchmany(batch_size)
                    merger.feed(index, batch)
                    continue
                for row in merger.take():
                    yield row


@contextmanager
def _naming(group: str) -> Iterator[None]:
    """A group lost in the block raises :class:`ShardGroupError` naming it."""
    try:
        yield
    except NodeUnavailableError as exc:
        raise ShardGroupError(
            f"cross-shard read: shard group {group} was lost while streaming ({exc})",
            groups=(group,),
        ) from exc


def _merge(planned: PlannedRead, groups: list[list[Any]], types: Sequence[int]) -> list[Any]:
    try:
        return merge_rows(planned.plan, groups, column_types=types)
    except MergeArithmeticError as exc:  # as the server would have raised it
        raise QueryError(str(exc), sqlstate=exc.sqlstate) from exc
    except TypeError as exc:  # an operand the merger cannot combine exactly: refused
        raise RoutingError(f"cross-shard read: {exc}; filter on the shard key") from exc


def _lost(error: BaseException) -> bool:
    """Whether ``error`` means its group was lost (not the statement refused)."""
    return isinstance(error, NodeUnavailableError | _Stopped)
