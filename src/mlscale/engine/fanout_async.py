"""Running one statement's shard plan over several shard groups (async source).

Reads split by key whose parts are simply put together (run one after another),
and writes split over groups, each part in a transaction on its group's primary,
committed in group order once every part has run. (Two-phase commit plugs in
here.) Reads whose rows must be merged run in the scatter room.

``fanout_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..core.classify import Classification
from ..core.scatter.result import ScatterResult
from ..core.shardplan import ShardPlan
from ..errors import PartialWriteError
from .context import ClusterContext
from .nodes_async import AsyncNodes, Work

__all__ = ["AsyncFanout", "Combine", "How", "Present", "concat", "first_row", "total"]

# How the results of a statement split over shard groups are put together.
Combine = Callable[[list[Any]], Any]


def total(counts: list[Any]) -> int:
    """Rows affected in all groups (-1 if some group could not say)."""
    return -1 if any(n < 0 for n in counts) else sum(counts)


def concat(results: list[Any]) -> list[Any]:
    """Every group's rows, one group after another."""
    return [row for rows in results for row in rows]


def first_row(rows: list[Any]) -> Any:
    """The first group's row that is not None."""
    return next((row for row in rows if row is not None), None)


# present(result): what a call returns for a cross-shard read's merged rows.
Present = Callable[[ScatterResult], Any]


def _rows(result: ScatterResult) -> list[Any]:
    return result.rows


# committed(conn, group): told after ``group``'s part committed on ``conn``.
AfterCommit = Callable[[AsyncConnection[Any], str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class How:
    """What a call runs on a connection (``work``) and how results are put together:
    ``combine`` for a statement split by key, ``present`` for a cross-shard read;
    ``committed`` is told after each group's COMMIT of a write split over groups."""

    work: Work
    combine: Combine
    present: Present = _rows
    committed: AfterCommit | None = None


# borrow(group): a connection that runs a part in ``group``.
Borrow = Callable[[str], AbstractAsyncContextManager[AsyncConnection[Any]]]


class AsyncFanout:
    """Runs the parts of a shard plan, one per shard group."""

    def __init__(
        self, context: ClusterContext[AsyncConnectionPool[Any]], nodes: AsyncNodes
    ) -> None:
        self._context = context
        self._nodes = nodes

    async def read_parts(
        self, shard_plan: ShardPlan, borrow: Borrow, work: Work, combine: Combine
    ) -> Any:
        """Each part on the connection ``borrow(group)`` lends, results combined."""
        results = []
        for part in shard_plan.parts:
            async with borrow(part.group) as conn:
                results.append(await work(conn, part.sql, part.params))
        return combine(results)

    async def write_parts(
        self,
        c: Classification,
        shard_plan: ShardPlan,
        work: Work,
        combine: Combine,
        committed: AfterCommit | None = None,
    ) -> Any:
        """A write split over shard groups: each part in a transaction on its group's
        primary, all committed once every part has run (any error rolls back all).
        A failure while committing can leave some groups committed
        (:class:`PartialWriteError`): two-phase commit closes that window (a later
        release). ``committed(conn, group)`` runs after each group's COMMIT, on its
        connection (a session reads its causal token there)."""
        results = []
        # Checked once, before any part runs: every part is a cut of the same statement.
        self._context.check_one_call(c)
        async with AsyncExitStack() as stack:
            conns: list[tuple[str, AsyncConnection[Any]]] = []
            try:
                for part in shard_plan.parts:  # in group order: see shardplan._in_order
                    conn = await stack.enter_async_context(
                        self._nodes.connect_leader(part.group)
                    )
                    await conn.execute("BEGIN")
                    conns.append((part.group, conn))
                    results.append(await work(conn, part.sql, part.params))
            except BaseException:
                for _, conn in conns:  # nothing committed yet: undo every group
                    if not conn.closed:
                        await conn.execute("ROLLBACK")
                raise
            done: list[str] = []
            for group, conn in conns:
                try:
                    await conn.execute("COMMIT")
                except psycopg.Error as exc:
                    for _, rest in conns[len(done) + 1 :]:
                        if not rest.closed:
                            await rest.execute("ROLLBACK")
                    if not done:
                        raise
                    raise PartialWriteError(
                        f"the write committed on {', '.join(done)} but failed to commit "
                        f"on {group} ({exc}); the remaining groups were rolled back",
                        committed=tuple(done),
                        failed=group,
                    ) from exc
                done.append(group)
                if committed is not None:
                    await committed(conn, group)
        return combine(results)
