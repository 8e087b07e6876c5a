"""Causal tokens of committed writes: the WAL positions they reached (async source).

A transaction and a read-your-writes session read their group's position after
COMMIT returned anyway. A plain write the cluster (or a scope) runs, each call its
own transaction, reads it only when after-commit hooks are registered, so that
``Committed.token`` lets a hook (a cache's invalidation) send later reads to a
node at least that fresh; without hooks it costs no round trip.

``commits_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from ..core.causal import CausalToken, GroupPosition
from ..core.lsn import parse_lsn
from ..errors import MlscaleError
from .fanout_async import How
from .nodes_async import Work
from .samples import PRIMARY_SAMPLE

__all__ = ["CommitMarks", "position"]


async def position(conn: AsyncConnection[Any]) -> GroupPosition:
    """The primary's WAL position now, read on ``conn`` after its commit returned."""
    cur = await conn.execute(PRIMARY_SAMPLE, prepare=True)
    row = await cur.fetchone()
    if row is None:
        raise MlscaleError("the primary returned no WAL position")
    return GroupPosition(int(row[1]) % 2**64, int(row[2]), parse_lsn(row[0]))


class CommitMarks:
    """The positions one write call reached, one per shard group it committed in.

    Made per call. ``marked(work, group)`` runs ``work`` and, if the connection is
    idle afterwards (autocommit: the statement's commit has returned), reads the
    position there; inside a transaction (the parts of a write split over groups)
    it reads nothing, and :meth:`committed` is told after each group's COMMIT.
    """

    def __init__(self) -> None:
        self.positions: dict[str, GroupPosition] = {}

    def wrap(self, how: How, group: str) -> How:
        """``how`` with its work marked (a write on one connection, in ``group``) and
        told of each group's COMMIT (a write split over groups)."""
        return replace(how, work=self.marked(how.work, group), committed=self.committed)

    def marked(self, work: Work, group: str) -> Work:
        """``work``, followed by a read of ``group``'s position once it committed."""

        async def run(conn: AsyncConnection[Any], text: str, values: Any) -> Any:
            result = await work(conn, text, values)
            if conn.info.transaction_status == TransactionStatus.IDLE:
                self.positions[group] = await position(conn)
            return result

        return run

    async def committed(self, conn: AsyncConnection[Any], group: str) -> None:
        """After ``group``'s part of a split write committed on ``conn``."""
        self.positions[group] = await position(conn)

    @property
    def token(self) -> CausalToken | None:
        """The causal token of what was marked (None: nothing was)."""
        return CausalToken(self.positions) if self.positions else None
