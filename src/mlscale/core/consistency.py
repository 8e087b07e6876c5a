"""Consistency levels, and what a read needs from the replica that serves it.

A read names its level: ``STRONG`` (the primary), ``READ_YOUR_WRITES`` (any
replica that has replayed the caller's causal token), ``BOUNDED_STALENESS``
(a replica at most so many ms or bytes behind) or ``EVENTUAL`` (any replica).
A monotonic session adds a floor to any level: the highest LSN it has read
from, so it never reads older data than it already saw.

A token position compares only with a replica of the same system identifier
and timeline, or of a later timeline that forked at or after it (the group's
``switch_points``; see :mod:`mlscale.core.causal`); any other replica falls
short, so such a read goes to the primary, which has every surviving write.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from ..errors import RoutingError
from .causal import U64, CausalToken, GroupPosition, InvalidToken
from .lsn import format_lsn

__all__ = [
    "CausalToken",
    "Consistency",
    "GroupPosition",
    "InvalidToken",
    "ReadRequirement",
    "ReplicaView",
    "Shortfall",
    "ShortfallKind",
    "parse_consistency",
    "requirement",
]


class Consistency(enum.StrEnum):
    """How fresh a read must be."""

    STRONG = "strong"
    READ_YOUR_WRITES = "read_your_writes"
    BOUNDED_STALENESS = "bounded_staleness"
    EVENTUAL = "eventual"


def parse_consistency(value: Consistency | str) -> Consistency:
    """``value`` as a level; a :class:`RoutingError` naming the levels if it is none."""
    try:
        return Consistency(value)
    except ValueError:
        levels = ", ".join(level.value for level in Consistency)
        raise RoutingError(f"unknown consistency {value!r}; use one of {levels}") from None


class ReplicaView(Protocol):
    """What a freshness check reads of a replica (``replicas.ReplicaState`` has it)."""

    @property
    def replay_lsn(self) -> int | None: ...
    @property
    def lag_bytes(self) -> int | None: ...
    @property
    def lag_ms(self) -> float | None: ...
    @property
    def system_identifier(self) -> int | None: ...
    @property
    def timeline(self) -> int | None: ...


class ShortfallKind(enum.StrEnum):
    """Why a replica cannot serve a read."""

    PRIMARY_ONLY = "primary only"  # STRONG
    INCOMPARABLE = "incomparable"  # another cluster or timeline, or identity unknown
    NOT_REPLAYED = "not replayed"  # behind the token or the session's high-water mark
    TOO_STALE = "too stale"  # beyond the staleness bound, or lag unknown


@dataclass(frozen=True, slots=True)
class Shortfall:
    """One reason a replica is not fresh enough, in words for logs and errors."""

    kind: ShortfallKind
    detail: str


@dataclass(frozen=True, slots=True)
class ReadRequirement:
    """What one read in one shard group needs from the node that serves it.

    ``primary_only``: only the primary may serve it (``reason`` says why).
    ``position``: the causal token's position in ``group`` (a replica must share
    its system identifier and timeline). ``min_lsn``: the replay LSN, in bytes, a
    replica must have reached (token and monotonic mark). ``max_lag_ms`` /
    ``max_lag_bytes``: the staleness bound. ``wait_ms``: how long the engine may
    wait for a replica to replay ``min_lsn`` before reading the primary.
    """

    consistency: Consistency
    group: str
    primary_only: bool = False
    reason: str = ""
    position: GroupPosition | None = None
    seen_lsn: int | None = None
    min_lsn: int | None = None
    max_lag_ms: float | None = None
    max_lag_bytes: int | None = None
    wait_ms: float = 0.0
    # timeline -> LSN where it ended (the group's timeline history): a token from
    # before a failover is honoured by the new timeline's nodes up to its switch point.
    switch_points: Mapping[int, int] = field(default_factory=dict)

    @property
    def monotonic(self) -> bool:
        """Whether a session high-water mark applies (the session has read before)."""
        return self.seen_lsn is not None

    def without_wait(self) -> ReadRequirement:
        """The same requirement once the wait is spent: read the primary if still unmet."""
        return replace(self, wait_ms=0.0)

    def serves(
        self, replayed: bool | None, system_identifier: int | None, timeline: int | None
    ) -> bool:
        """Whether a replica checked directly may serve: it has ``replayed`` the floor
        and, for a token, follows the token's history (``system_identifier``,
        ``timeline``)."""
        pos = self.position
        return bool(replayed) and (
            pos is None or pos.honoured_by(system_identifier, timeline, self.switch_points)
        )

    def shortfall(self, replica: ReplicaView) -> Shortfall | None:
        """Why ``replica`` cannot serve this read, or None if it can."""
        if self.primary_only:
            return Shortfall(ShortfallKind.PRIMARY_ONLY, f"{self.reason} reads need the primary")
        pos = self.position
        if pos is not None and not pos.honoured_by(
            replica.system_identifier, replica.timeline, self.switch_points
        ):
            if replica.system_identifier is None or replica.timeline is None:
                detail = "system identifier or timeline not known yet"
            elif replica.system_identifier % U64 != pos.system_identifier:
                detail = (
                    f"system identifier {replica.system_identifier % U64} is not the token's "
                    f"{pos.system_identifier} (another cluster)"
                )
            elif replica.timeline > pos.timeline:
                end = self.switch_points.get(pos.timeline)
                detail = f"on timeline {replica.timeline}; the token's timeline {pos.timeline} " + (
                    "has no known switch point"
                    if end is None
                    else f"ended at {format_lsn(end)}, before the token"
                )
            else:
                detail = f"on timeline {replica.timeline}, the token on {pos.timeline}"
            return Shortfall(ShortfallKind.INCOMPARABLE, detail)
        if self.min_lsn is not None:
            if replica.replay_lsn is None:
                return Shortfall(ShortfallKind.NOT_REPLAYED, "replay position not known yet")
            if replica.replay_lsn < self.min_lsn:
                return Shortfall(
                    ShortfallKind.NOT_REPLAYED,
                    f"replayed {format_lsn(replica.replay_lsn)} < {format_lsn(self.min_lsn)}",
                )
        if self.max_lag_ms is not None:
            if replica.lag_ms is None:
                return Shortfall(ShortfallKind.TOO_STALE, "lag in ms not known")
            if replica.lag_ms > self.max_lag_ms:
                return Shortfall(
                    ShortfallKind.TOO_STALE,
                    f"lag {replica.lag_ms:.0f} ms > {self.max_lag_ms:.0f} ms bound",
                )
        if self.max_lag_bytes is not None:
            if replica.lag_bytes is None:
                return Shortfall(ShortfallKind.TOO_STALE, "lag in bytes not known")
            if replica.lag_bytes > self.max_lag_bytes:
                return Shortfall(
                    ShortfallKind.TOO_STALE,
                    f"lag {replica.lag_bytes} bytes > {self.max_lag_bytes} bytes bound",
                )
        return None

    def satisfied_by(self, replica: ReplicaView) -> bool:
        """Whether ``replica`` may serve this read."""
        return self.shortfall(replica) is None


def requirement(
    consistency: Consistency,
    *,
    group: str,
    token: CausalToken | None = None,
    seen_lsn: int | None = None,
    max_lag_ms: float | None = None,
    max_lag_bytes: int | None = None,
    wait_ms: float = 0.0,
    switch_points: Mapping[int, int] | None = None,
) -> ReadRequirement:
    """What a ``consistency`` read in ``group`` needs.

    ``token`` counts only for READ_YOUR_WRITES; a token without ``group`` asks
    nothing (this writer never wrote there). ``seen_lsn``: the monotonic
    session's high-water mark in ``group`` (bytes), a floor at every level but
    STRONG; reset it when the group changes timeline. ``max_lag_ms`` /
    ``max_lag_bytes`` count only for BOUNDED_STALENESS, which needs one of them.
    ``wait_ms``: how long to wait for a replica to replay the floor (0: never).
    ``switch_points``: the group's timeline history (timeline -> LSN where it ended),
    so a token from before a failover is honoured by the new timeline's nodes.
    """
    consistency = Consistency(consistency)
    for name, value in (("max_lag_ms", max_lag_ms), ("max_lag_bytes", max_lag_bytes)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if wait_ms < 0:
        raise ValueError(f"wait_ms must be >= 0, got {wait_ms}")
    if seen_lsn is not None and seen_lsn < 0:
        raise ValueError(f"seen_lsn must be >= 0, got {seen_lsn}")
    if consistency is Consistency.STRONG:
        return ReadRequirement(consistency, group, primary_only=True, reason="STRONG")
    position = (
        token.for_group(group) if token and consistency is Consistency.READ_YOUR_WRITES else None
    )
    if consistency is Consistency.BOUNDED_STALENESS:
        if max_lag_ms is None and max_lag_bytes is None:
            raise ValueError("bounded_staleness needs max_lag_ms or max_lag_bytes")
    else:
        max_lag_ms = max_lag_bytes = None
    floors = [v for v in (position.lsn if position else None, seen_lsn) if v is not None]
    return ReadRequirement(
        consistency,
        group,
        position=position,
        seen_lsn=seen_lsn,
        min_lsn=max(floors) if floors else None,
        max_lag_ms=max_lag_ms,
        max_lag_bytes=max_lag_bytes,
        wait_ms=wait_ms,
        switch_points=dict(switch_points or {}),
    )
