"""Who leads a Patroni scope, and what a client does about it: pure decisions.

A client that follows Patroni (``engine/follower_async.py``) hands each view of
``GET /cluster`` to :func:`read_view`, which maps Patroni's members onto the
config's nodes -- by member name, else by ``host:port``, never by the role the
config gave a node (after a failover ``g0-primary`` is a replica) -- and names
the one write target: the member holding the leader key whose PostgreSQL is
running. :func:`pools_to_renew` says whose pooled connections must not be used
again after a change, and :func:`after_write_failure` what a write that failed
during a failover does next. No I/O here; everything is table-tested.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .topology import Node

__all__ = [
    "LEADER_ROLES",
    "READABLE_STATES",
    "MemberLike",
    "ScopeLeader",
    "WriteStep",
    "after_write_failure",
    "is_local_commit_warning",
    "pools_to_renew",
    "read_view",
]

LEADER_ROLES = frozenset({"leader", "master", "primary", "standby_leader"})
"""Patroni roles that hold the scope's leader key (older Patroni said ``master``)."""

READABLE_STATES = frozenset({"streaming", "running"})
"""States in which a non-leader member replays its leader's WAL and may serve reads."""

_REPLICA_ROLES = frozenset({"replica", "sync_standby", "quorum_standby"})


class MemberLike(Protocol):
    """What a decision reads of one member of Patroni's view (``PatroniMember`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def timeline(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ScopeLeader:
    """One scope as the last view described it, in the config's node names.

    ``leader``: the only node that may take writes (None: no member holds the leader
    key with its PostgreSQL running -- an election, a switchover under way).
    ``replicas``: the other members that replay its WAL (streaming or running), in
    view order. ``timeline``: the leader's timeline when the view gave it.
    ``unknown``: members no config node matches (by name or address); they get no
    traffic.
    """

    scope: str
    leader: str | None
    replicas: tuple[str, ...]
    timeline: int | None = None
    unknown: tuple[str, ...] = ()

    def role_of(self, node: str) -> str | None:
        """``primary``, ``replica``, or None (neither: stopped, starting, unknown)."""
        if node == self.leader:
            return "primary"
        return "replica" if node in self.replicas else None


def _match(member: MemberLike, nodes: Sequence[Node]) -> str | None:
    """The config node ``member`` is: the same name, else the same ``host:port``."""
    for node in nodes:
        if node.name == member.name:
            return node.name
    for node in nodes:
        if member.port is not None and node.port == member.port and node.host == member.host:
            return node.name
    return None


def read_view(scope: str, members: Iterable[MemberLike], nodes: Sequence[Node]) -> ScopeLeader:
    """The leader and readable replicas of ``scope`` among ``nodes`` (the config's
    nodes of that scope), from Patroni's ``members``.

    A leader whose state is not ``running`` (stopping, crashed, starting) takes no
    writes: the scope has no leader until one runs.
    """
    leader = None
    timeline = None
    replicas: list[str] = []
    unknown: list[str] = []
    for member in members:
        name = _match(member, nodes)
        if name is None:
            unknown.append(member.name)
            continue
        if member.role in LEADER_ROLES:
            if member.state == "running" and leader is None:
                leader, timeline = name, member.timeline
        elif member.role in _REPLICA_ROLES and member.state in READABLE_STATES:
            replicas.append(name)
    return ScopeLeader(
        scope, leader, tuple(r for r in replicas if r != leader), timeline, tuple(unknown)
    )


def pools_to_renew(old: ScopeLeader | None, new: ScopeLeader) -> frozenset[str]:
    """Nodes whose pooled connections are discarded after ``old`` -> ``new``.

    A node that stopped being leader: a connection it still holds could take a
    write Patroni's leader never sees (a frozen old primary still says read-write).
    A node that became leader: its connections were opened to a standby. Nothing
    when the leader did not change (a replica coming and going keeps its pool; a
    broken connection is the pool's to find), nor at the first view (``old`` None:
    writes wait for it, so no pool was used for one).
    """
    if old is None or old.leader == new.leader:
        return frozenset()
    return frozenset(n for n in (old.leader, new.leader) if n is not None)


class WriteStep(enum.Enum):
    """What a write that failed on its group's leader does next."""

    WAIT_AND_RETRY = "wait for a leader, then run it again"
    OUTCOME_UNKNOWN = "raise CommitOutcomeUnknown"


def after_write_failure(*, sent: bool, idempotent: bool, refused: bool) -> WriteStep:
    """The next step of a write (one statement, its own transaction) that failed.

    ``sent``: the statement reached a connection (its COMMIT with it) before the
    failure; ``refused``: the server answered that it is read-only (a leader not yet
    promoted, or one being demoted): nothing ran. A write that cannot have run, or
    that the caller marked ``idempotent``, waits for the next leader and runs again;
    one that may have committed is reported as such, never as a plain failure.
    """
    if refused or not sent or idempotent:
        return WriteStep.WAIT_AND_RETRY
    return WriteStep.OUTCOME_UNKNOWN


def is_local_commit_warning(message: str | None, detail: str | None) -> bool:
    """Whether a server notice says a COMMIT stopped waiting for its synchronous
    standby (cancelled or terminated) after committing locally: the write is on the
    primary but may be missing from the node that takes over."""
    text = (message or "").lower()
    return ("wait for synchronous replication" in text and text.startswith("canceling")) or (
        "committed locally" in (detail or "").lower()
    )
