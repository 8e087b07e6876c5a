"""Who leads each Patroni scope of one cluster, as its follower last saw it (no I/O).

The follower (``follower_async.py``) writes here what ``GET /cluster`` and
``GET /history`` said; the rooms read it: writes go only to a scope's leader,
reads to its streaming members, tokens from before a failover are honoured up
to their timeline's switch point. A scope without Patroni endpoints (a config
without HA) keeps the config's roles: ``gN-primary`` writes, its replicas read.

Anyone who sees a node of a scope fail asks for a poll at once (:meth:`poke`);
meanwhile a scope is polled about once a second, faster while it has no leader.
Shared by the sync and async clusters, like the balancer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..core.leadership import MemberLike, ScopeLeader, pools_to_renew, read_view
from ..core.topology import Node, Role

__all__ = ["POLL_HURRIED_S", "POLL_S", "Leadership", "ScopeState"]

POLL_S = 1.0
"""Seconds between two polls of a scope's ``/cluster`` while all is well."""
POLL_HURRIED_S = 0.1
"""Seconds between polls while a scope has no leader or a failure was seen on it."""
_HURRY_S = 10.0  # how long a poke keeps the scope polled fast


@dataclass(frozen=True, slots=True)
class ScopeState:
    """One scope now: its leader and replicas (None before the first view), its
    timeline history (timeline -> LSN where it ended), when the view was taken
    (monotonic s), the last polling error (None if the last poll answered) and when
    the leader last changed as this client saw it (monotonic s; None: not since the
    first view)."""

    scope: str
    view: ScopeLeader | None
    switch_points: Mapping[int, int]
    seen_at: float
    error: str | None
    changed_at: float | None = None


class Leadership:
    """Each scope's leader and replicas; the config's roles where Patroni is not followed.

    ``scopes``: the config's nodes of each scope (``control`` and every shard group);
    ``followed``: the scopes with Patroni endpoints.
    """

    def __init__(self, scopes: Mapping[str, Sequence[Node]], followed: frozenset[str]) -> None:
        self._nodes = {scope: tuple(nodes) for scope, nodes in scopes.items()}
        self.followed = followed
        self._static = {
            scope: ScopeLeader(
                scope,
                next(n.name for n in nodes if n.role is not Role.REPLICA),
                tuple(n.name for n in nodes if n.role is Role.REPLICA),
            )
            for scope, nodes in self._nodes.items()
        }
        self._views: dict[str, ScopeLeader] = {}
        self._last_leader: dict[str, str] = {}  # per scope, the last leader seen
        self._changed_at: dict[str, float] = {}  # per scope, when its leader last changed
        self._switch_points: dict[str, dict[int, int]] = {}
        self._seen_at: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._next_poll: dict[str, float] = dict.fromkeys(followed, 0.0)
        self._hurry_until: dict[str, float] = {}
        self._scope_of = {n.name: scope for scope, nodes in self._nodes.items() for n in nodes}
        self._lock = threading.Lock()
        # on_change(scope, renew): a scope's leader changed; ``renew``: the nodes whose
        # pooled connections must not be used again.
        self.listeners: list[Callable[[str, frozenset[str]], None]] = []
        self.generation = 0  # bumped at every change of any scope's leader or replicas

    # -- reading --------------------------------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        """Every scope: ``control`` and each shard group, followed or not."""
        return tuple(self._nodes)

    def follows(self, scope: str) -> bool:
        """Whether ``scope`` is a Patroni scope this client follows."""
        return scope in self.followed

    def leader(self, scope: str) -> str | None:
        """The node that takes ``scope``'s writes now; None while it has none (or
        before the first view of a followed scope)."""
        if scope not in self.followed:
            return self._static[scope].leader
        view = self._views.get(scope)
        return view.leader if view is not None else None

    def primary(self, scope: str) -> str:
        """The leader, or while there is none the last one known (else the config's
        first node): for callers that cannot wait, and fail fast on a node that is down."""
        view = self._views.get(scope)
        if view is not None and view.leader is not None:
            return view.leader
        return self._last_leader.get(scope) or self._static[scope].leader or scope

    def replicas(self, scope: str) -> tuple[str, ...]:
        """The nodes that may serve ``scope``'s reads beside its leader."""
        view = self._views.get(scope)
        return (view if view is not None else self._static[scope]).replicas

    def role(self, node: str) -> str:
        """``primary``, ``replica`` or ``control`` as the node serves now (a member that
        is neither leader nor streaming counts as a replica: it takes no writes)."""
        scope = self._scope_of[node]
        if scope == "control":
            return "control"
        return "primary" if node == self.primary(scope) else "replica"

    def changed_recently(self, scope: str, within_s: float = _HURRY_S) -> bool:
        """Whether ``scope``'s leader changed in the last ``within_s`` seconds (a new
        leader may still be finishing its promotion)."""
        at = self._changed_at.get(scope)
        return at is not None and time.monotonic() - at < within_s

    def switch_points(self, scope: str) -> Mapping[int, int]:
        """``scope``'s timeline history: timeline -> the LSN (bytes) where it ended."""
        return self._switch_points.get(scope, {})

    def state(self, scope: str) -> ScopeState:
        return ScopeState(
            scope,
            self._views.get(scope),
            self.switch_points(scope),
            self._seen_at.get(scope, 0.0),
            self._errors.get(scope),
            self._changed_at.get(scope),
        )

    def scope_of(self, node: str) -> str | None:
        return self._scope_of.get(node)

    # -- what the follower writes ---------------------------------------------------

    def due(self, now: float) -> list[str]:
        """The followed scopes whose next poll is due at ``now`` (monotonic s)."""
        return [s for s, at in self._next_poll.items() if now >= at]

    def polled(self, scope: str, now: float) -> None:
        """``scope`` was just polled: schedule the next poll."""
        view = self._views.get(scope)
        hurried = view is None or view.leader is None or now < self._hurry_until.get(scope, 0.0)
        self._next_poll[scope] = now + (POLL_HURRIED_S if hurried else POLL_S)

    def update(self, scope: str, members: Sequence[MemberLike], now: float) -> ScopeLeader:
        """Record a view of ``scope`` (Patroni's members); listeners hear of a change
        of leader, with the nodes whose pools must be renewed."""
        new = read_view(scope, members, self._nodes[scope])
        with self._lock:
            old = self._views.get(scope)
            self._views[scope] = new
            self._seen_at[scope] = now
            self._errors.pop(scope, None)
            if old is not None and old.leader is not None:
                self._last_leader[scope] = old.leader
            if new.leader is not None:
                self._last_leader[scope] = new.leader
            changed = old is None or (old.leader, old.replicas) != (new.leader, new.replicas)
            if changed:
                self.generation += 1
            if old is not None and old.leader != new.leader:
                self._changed_at[scope] = now
        renew = pools_to_renew(old, new)
        if changed:
            for listener in list(self.listeners):
                listener(scope, renew)
        return new

    def failed(self, scope: str, error: str) -> None:
        """No endpoint of ``scope`` answered: keep the last view, note why."""
        self._errors[scope] = error

    def set_history(self, scope: str, points: Mapping[int, int]) -> None:
        """``scope``'s timeline history, from ``GET /history``."""
        self._switch_points[scope] = dict(points)

    def poke(self, scope: str | None) -> None:
        """A node of ``scope`` failed (or a write found no leader): poll it at once,
        and fast for a while. Safe from any thread; a no-op for an unfollowed scope."""
        if scope is None or scope not in self.followed:
            return
        now = time.monotonic()
        self._hurry_until[scope] = now + _HURRY_S
        self._next_poll[scope] = min(self._next_poll.get(scope, 0.0), now)

    def poke_node(self, node: str) -> None:
        """Node ``node`` failed: poll its scope now."""
        self.poke(self._scope_of.get(node))

    def after_fork(self) -> None:
        self._lock = threading.Lock()
