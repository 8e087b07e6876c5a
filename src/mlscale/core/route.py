"""Routes: where one statement runs, as a closed type with a safe default.

A :class:`Route` is the one answer of placement and role: the shard groups a
statement runs in (one, several, or all) and whether it runs on their primary
or on a replica, with the reason in words. :func:`choose_role` is the single
decision of the read/write split; :func:`route` adds the placement a shard
plan made. When in doubt: the primary, and (for placement) every group.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .classify import Classification, Target
from .session import SessionState

__all__ = [
    "AllGroups",
    "OnPrimary",
    "OnReplica",
    "OneGroup",
    "Placement",
    "Role",
    "Route",
    "RouteRefused",
    "Scope",
    "SomeGroups",
    "choose_role",
    "route",
]


class Scope(enum.StrEnum):
    """Who chooses the node: the router, or the caller's explicit scope."""

    AUTO = "auto"
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class OnPrimary:
    """The statement runs on a primary."""

    reason: str


@dataclass(frozen=True, slots=True)
class OnReplica:
    """The statement may run on a replica (which one is the balancer's choice)."""

    reason: str


Role = OnPrimary | OnReplica


@dataclass(frozen=True, slots=True)
class OneGroup:
    """Every row the statement touches lives in ``group``."""

    group: str


@dataclass(frozen=True, slots=True)
class SomeGroups:
    """The statement is split over ``groups`` (in the cluster's group order)."""

    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AllGroups:
    """The statement runs in every shard group ``groups``."""

    groups: tuple[str, ...]


Placement = OneGroup | SomeGroups | AllGroups


@dataclass(frozen=True, slots=True)
class Route:
    """Where a statement runs: ``placement`` (which groups), ``role`` (primary or
    replica), and ``placed_by`` (why those groups: a shard key, or not sharded)."""

    role: Role
    placement: Placement
    placed_by: str = "not sharded: the caller's group"

    @property
    def target(self) -> Target:
        return Target.PRIMARY if isinstance(self.role, OnPrimary) else Target.REPLICA

    @property
    def groups(self) -> tuple[str, ...]:
        if isinstance(self.placement, OneGroup):
            return (self.placement.group,)
        return self.placement.groups

    def to_dict(self) -> dict[str, Any]:
        kind = {OneGroup: "one", SomeGroups: "some", AllGroups: "all"}[type(self.placement)]
        return {
            "target": self.target.value,
            "reason": self.role.reason,
            "placement": kind,
            "groups": list(self.groups),
            "placed_by": self.placed_by,
        }


class RouteRefused(ValueError):
    """The statement cannot run where the caller asked (e.g. a write in a replica scope)."""


def choose_role(
    c: Classification,
    *,
    scope: Scope = Scope.AUTO,
    session: SessionState | None = None,
    has_replicas: bool = True,
) -> Role:
    """Primary or replica for ``c``. Raises :class:`RouteRefused` for a write in a
    replica scope."""
    if session is not None and session.needs_pin(c):
        held = session.describe() or c.reason
        return OnPrimary(f"session pinned to its primary connection ({held})")
    if scope is Scope.REPLICA:
        if c.target is Target.PRIMARY:
            raise RouteRefused(f"cannot run on a replica: {c.reason}")
        if not has_replicas:
            return OnPrimary("replica scope, but no replica is configured")
        return OnReplica(c.reason)
    if scope is Scope.PRIMARY:
        return OnPrimary("primary scope")
    if c.target is Target.PRIMARY:
        return OnPrimary(c.reason)
    if not has_replicas:
        return OnPrimary(f"{c.reason}; no replica is configured")
    return OnReplica(c.reason)


def route(
    role: Role,
    groups: Sequence[str],
    all_groups: Sequence[str],
    placed_by: str = "not sharded: the caller's group",
) -> Route:
    """The route of a statement of ``role`` running in ``groups`` (of ``all_groups``)."""
    chosen = tuple(groups)
    placement: Placement
    if len(chosen) == 1:
        placement = OneGroup(chosen[0])
    elif set(chosen) == set(all_groups):
        placement = AllGroups(chosen)
    else:
        placement = SomeGroups(chosen)
    return Route(role, placement, placed_by)
