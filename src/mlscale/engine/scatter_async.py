"""Reads across shard groups (async source): every group's query at once, merged
into what one PostgreSQL server holding all the rows would return.

The plan (core/scatter) says what each group runs and how the rows merge. While
the tables' key family has a move open (or with ``policies.ownership_filter =
"always"``) each group's query is restricted to the slots the group owns in the map
version the plan used, so a slot copied to a second group is read once; outside a
move each row is on one group only and that filter (a hash per row) is left out.
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

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from ..core.scatter import ConcatMerge, merge_rows
from ..core.scatter.pgvalues import MergeArithmeticError
from ..core.scatter.prepare import GroupQuery, PlannedRead, plan_read
from ..core.scatter.result import ScatterResult
from ..core.scatter.stream import OrderedMerge
from ..core.shardplan import ShardPlan
from ..errors import NodeUnavailableError, QueryError, RoutingError, ShardGroupError
from .concurrency_async import Outcome, gather_all
from .context import ClusterContext
from .fanout_async import Borrow

__all__ = ["AsyncScatter"]

log = logging.getLogger(__name__)

_PLANS = 512  # planned statements kept per cluster (by text, directory version, groups)
_AGGREGATES = (
    "SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE prokind = 'a' AND proname = ANY(%s)"
)


@dataclass(frozen=True, slots=True)
class _GroupRows:
    rows: list[Any]
    columns: tuple[str, ...]
    types: tuple[int, ...]  # the group query's column type OIDs, for the merger


class AsyncScatter:
    """Runs the cross-shard reads of one cluster and keeps their plans."""

    def __init__(self, context: ClusterContext[AsyncConnectionPool[Any]]) -> None:
        self._context = context
        self._plans: OrderedDict[tuple[Any, ...], PlannedRead] = OrderedDict()
        self._columns: dict[str, tuple[str, ...]] = {}
        self._aggregates: dict[str, bool] = {}  # function name -> an aggregate on the server
        self._lock = threading.Lock()  # guards the caches; never held across an await

    def planned(self, shard_plan: ShardPlan) -> PlannedRead:
        """The plan of ``shard_plan``'s statement over its groups (cached)."""
        part = shard_plan.parts[0]
        directory = shard_plan.directory
        if directory is None:
            raise ValueError("a merged shard plan carries the directory it was placed by")
        key = (part.sql, part.params is not None, directory.version, shard_plan.groups)
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                return found
        policies = self._context.config.policies
        planned = plan_read(
            part.sql,
            part.params is not None,
            shard_plan.groups,
            directory,
            always_filter=policies.ownership_filter == "always",
            gather_limit=policies.gather_limit,
        )
        with self._lock:
            self._plans[key] = planned
            while len(self._plans) > _PLANS:
                self._plans.popitem(last=False)
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
        await self._check_functions(planned, borrow, shard_plan.groups[0])
        queries = planned.queries(params)
        with self._lock:
            columns = self._columns.get(planned.statement)
        describe = planned.columns_query(params) if columns is None else None
        inflight: dict[str, AsyncConnection[Any]] = {}

        def call(index: int, query: GroupQuery) -> Callable[[], Any]:
            return lambda: self._read_group(
                query, borrow, inflight, describe if index == 0 else None
            )

        outcomes: list[Outcome[_GroupRows]] = await gather_all(
            [call(i, q) for i, q in enumerate(queries)],
            timeout=timeout,
            fatal=lambda error: not (allow_partial and _lost(error)),
            on_abort=lambda: _cancel(inflight),
        )
        answered, missing = self._sort_out(queries, outcomes, allow_partial, timeout)
        if columns is None:
            first = answered[0][1]
            if describe is not None and queries[0].group != answered[0][0]:
                # the group that named the columns did not answer: name them next time
                columns = first.columns
            else:
                merge = planned.plan.merge
                hidden = merge.hidden if isinstance(merge, ConcatMerge) else 0
                columns = first.columns[: len(first.columns) - hidden]
                with self._lock:
                    self._columns[planned.statement] = columns
        rows = _merge(planned, [group_rows.rows for _, group_rows in answered],
                      answered[0][1].types)
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
        answered = [
            (q.group, o.value) for q, o in pairs if o.finished and o.value is not None
        ]
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
        inflight: dict[str, AsyncConnection[Any]],
        describe: tuple[str, Any] | None,
    ) -> _GroupRows:
        """One group's rows (and the result's column names, by ``describe``). A replica
        that fails is banned by the transport; the read is tried once more in the group."""
        for attempt in (1, 2):
            try:
                async with borrow(query.group) as conn:
                    inflight[query.group] = conn
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
                        inflight.pop(query.group, None)
            except NodeUnavailableError as exc:
                if attempt == 2 or exc.node_role != "replica":
                    raise
                self._context.balancer.record_retry()
                log.info("cross-shard read failed on %s (%s); retrying once", exc.node, exc)
        raise AssertionError("unreachable")

    async def _check_functions(self, planned: PlannedRead, borrow: Borrow, group: str) -> None:
        """Refuse a function the server knows as an aggregate but the planner does
        not (a user-defined one): its per-group results would be a silent union."""
        with self._lock:
            unknown = sorted(f for f in planned.functions if f not in self._aggregates)
        if unknown:
            async with borrow(group) as conn:
                cur = await conn.execute(_AGGREGATES, (unknown,))
                found = {str(row[0]) for row in await cur.fetchall()}
            with self._lock:
                self._aggregates.update({name: name in found for name in unknown})
        with self._lock:
            aggregates = sorted(f for f in planned.functions if self._aggregates.get(f))
        if aggregates:
            raise RoutingError(
                f"cross-shard read: {', '.join(aggregates)} is an aggregate the merger does not "
                "know (user-defined): its per-group results cannot be combined; filter on the "
                "shard key so it runs on one group"
            )

    async def stream(
        self,
        shard_plan: ShardPlan,
        borrow: Borrow,
        *,
        batch_size: int = 2000,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of ``shard_plan`` as they are merged, ``batch_size`` rows fetched at
        a time from a server-side cursor per group (in one read-only transaction per
        group, held until the iteration ends). ``timeout`` bounds each fetch on each
        group (statement_timeout). An aggregate is merged whole, then yielded."""
        planned = self.planned(shard_plan)
        merge = planned.plan.merge
        if not isinstance(merge, ConcatMerge):
            result = await self.read(shard_plan, borrow, timeout=timeout)
            for row in result.rows:
                yield row
            return
        await self._check_functions(planned, borrow, shard_plan.groups[0])
        queries = planned.queries(shard_plan.parts[0].params)
        async with AsyncExitStack() as stack:
            cursors = []
            for query in queries:
                conn = await stack.enter_async_context(borrow(query.group))
                await stack.enter_async_context(conn.transaction())
                if timeout is not None:
                    await conn.execute(
                        sql.SQL("SET LOCAL statement_timeout = {}").format(int(timeout * 1000))
                    )
                cur = conn.cursor(name="mlscale_stream", row_factory=tuple_row)
                cur = await stack.enter_async_context(cur)
                await cur.execute(query.sql, query.params)
                cursors.append(cur)
            merger = OrderedMerge(merge, len(cursors))
            while not merger.done:
                index = merger.needs()
                if index is not None:
                    merger.feed(index, await cursors[index].fetchmany(batch_size))
                    continue
                for row in merger.take():
                    yield row


def _merge(planned: PlannedRead, groups: list[list[Any]], types: Sequence[int]) -> list[Any]:
    try:
        return merge_rows(planned.plan, groups, column_types=types)
    except MergeArithmeticError as exc:  # as the server would have raised it
        raise QueryError(str(exc), sqlstate=exc.sqlstate) from exc
    except TypeError as exc:  # an operand the server would have rejected
        raise QueryError(f"cross-shard read: {exc}") from exc


def _lost(error: BaseException) -> bool:
    """Whether ``error`` means its group was lost (not the statement refused)."""
    return isinstance(error, NodeUnavailableError)


def _cancel(inflight: dict[str, AsyncConnection[Any]]) -> None:
    """Cancel the queries still running (the thread twin's stop: a thread cannot be)."""
    for conn in list(inflight.values()):
        with contextlib.suppress(Exception):
            conn.cancel()
