# Generated from ride_async.py by scripts/async_to_sync.py: do not edit.
# Change ride_async.py and run the script again.
"""Writes that ride through a Patroni failover (async source).

A write the cluster (or a scope) runs as one statement in its own transaction,
in a Patroni group, goes to the group's leader only. While the group has no
leader, or its leader fails, the write waits up to ``[policies]
failover_wait_s`` for the next one and runs there -- if it was never sent, was
refused as read-only (a leader not yet promoted: nothing ran), or the caller
marked it ``idempotent``. A write that may have committed when its connection
broke raises :class:`~mlscale.errors.CommitOutcomeUnknown`, as does a commit the
server says committed only locally (its wait for the synchronous standby was
cancelled). What to do after each failure is core's
(:func:`~mlscale.core.leadership.after_write_failure`).

``ride_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from psycopg import Connection

from ..core.classify import Classification
from ..core.leadership import WriteStep, after_write_failure
from ..core.shardplan import ShardPlan
from ..errors import NodeUnavailableError, ReadOnlyViolation
from .commitcheck import CommitCheck
from .concurrency_sync import pause
from .context import ClusterContext
from .fanout_sync import How

__all__ = ["RIDE_PAUSE_S", "checked", "ride_group", "ride_through"]

log = logging.getLogger(__name__)

RIDE_PAUSE_S = 0.05
"""Seconds between two tries of a write waiting through a failover: the follower
polls the scope every 0.1 s meanwhile, so a new leader is taken within about that."""


def checked(how: How, check: CommitCheck) -> How:
    """``how`` whose work tells ``check`` when it is sent and what the server warned."""
    work = how.work

    def run(conn: Connection[Any], text: str, values: Any) -> Any:
        check.attach(conn)
        try:
            return work(conn, text, values)
        finally:
            check.detach(conn)

    return replace(how, work=run)


def ride_group(
    c: Classification,
    shard_plan: ShardPlan | None,
    home: str,
    context: ClusterContext[Any],
    rides: bool = True,
) -> str | None:
    """The Patroni group a write ``c`` rides a failover in, or None: a read, a write in
    a group without Patroni, inside a transaction or session (``rides`` False), or
    split over groups (the parts' own transactions decide)."""
    if not rides or c.read_only or c.transaction is not None:
        return None
    group = home
    if shard_plan is not None:
        if len(shard_plan.parts) != 1:
            return None
        if not shard_plan.any_group:
            group = shard_plan.parts[0].group
    return group if context.leadership.follows(group) else None


def ride_through(
    context: ClusterContext[Any],
    group: str,
    statement: str,
    idempotent: bool,
    how: How,
    attempt: Callable[[How], Any],
) -> Any:
    """``attempt(how)`` on ``group``'s leader until it succeeds, or the rules above say
    stop, waiting at most ``failover_wait_s`` from the first try."""
    lead = context.leadership
    wait_s = context.config.policies.failover_wait_s
    deadline = time.monotonic() + wait_s
    sent_before = False  # an earlier try may have committed (idempotent: tried again)
    while True:
        check = CommitCheck(statement, idempotent=idempotent)
        try:
            result = attempt(checked(how, check))
        except (NodeUnavailableError, ReadOnlyViolation) as exc:
            refused = isinstance(exc, ReadOnlyViolation)
            step = after_write_failure(sent=check.sent, idempotent=idempotent, refused=refused)
            if step is WriteStep.OUTCOME_UNKNOWN:
                why = f"the connection broke after it was sent ({exc})"
                raise check.unknown(exc.node, why) from exc
            sent_before = sent_before or (check.sent and not refused)
            if time.monotonic() >= deadline:
                if sent_before:
                    why = (
                        f"it was sent, then no leader of {group} ran it again within "
                        f"{wait_s:.2f} s ({exc})"
                    )
                    raise check.unknown(exc.node, why) from exc
                raise
            log.info("write on %s failed (%s); waiting for %s's leader", exc.node, exc, group)
            lead.poke(group)
            pause(RIDE_PAUSE_S)
            continue
        check.raise_if_local(lead.primary(group))
        return result
