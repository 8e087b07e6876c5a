"""Routes: where one statement goes, as a closed type with a safe default.

``route()`` is the single decision of the read/write split: given a
statement's classification, the caller's scope and session, it picks the
primary or a replica and says why. When in doubt, the primary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .classify import Classification, Target
from .session import SessionState

__all__ = ["Route", "RouteRefused", "Scope", "ToPrimary", "ToReplica", "route"]


class Scope(enum.StrEnum):
    """Who chooses the node: the router, or the caller's explicit scope."""

    AUTO = "auto"
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class ToPrimary:
    reason: str


@dataclass(frozen=True, slots=True)
class ToReplica:
    reason: str


Route = ToPrimary | ToReplica


class RouteRefused(ValueError):
    """The statement cannot run where the caller asked (e.g. a write in a replica scope)."""


def route(
    c: Classification,
    *,
    scope: Scope = Scope.AUTO,
    session: SessionState | None = None,
    has_replicas: bool = True,
) -> Route:
    """Where ``c`` goes. Raises :class:`RouteRefused` for a write in a replica scope."""
    if session is not None and session.needs_pin(c):
        held = session.describe() or c.reason
        return ToPrimary(f"session pinned to its primary connection ({held})")
    if scope is Scope.REPLICA:
        if c.target is Target.PRIMARY:
            raise RouteRefused(f"cannot run on a replica: {c.reason}")
        if not has_replicas:
            return ToPrimary("replica scope, but no replica is configured")
        return ToReplica(c.reason)
    if scope is Scope.PRIMARY:
        return ToPrimary("primary scope")
    if c.target is Target.PRIMARY:
        return ToPrimary(c.reason)
    if not has_replicas:
        return ToPrimary(f"{c.reason}; no replica is configured")
    return ToReplica(c.reason)
