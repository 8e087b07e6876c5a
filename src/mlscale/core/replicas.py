"""Replicas as the router sees them, and when they leave and rejoin the rotation.

A ban carries its kind and a reason in words. ERROR bans back off
exponentially with consecutive failures and expire; LAG bans lift once lag
falls under the threshold times a hysteresis factor, so a replica hovering at
the threshold does not flap; MANUAL bans are an operator's and are never
lifted automatically. Times are monotonic seconds; the caller supplies ``now``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = ["Ban", "BanKind", "BanPolicy", "ReplicaState", "manual_ban"]


class BanKind(enum.StrEnum):
    """Why a replica is out of rotation."""

    ERROR = "error"  # connection or query failures; expires
    LAG = "lag"  # too far behind; lifted when caught up
    MANUAL = "manual"  # an operator's; never lifted automatically


@dataclass(frozen=True, slots=True)
class Ban:
    """A replica out of rotation. ``since``/``until`` in monotonic seconds;
    ``until`` None: until caught up (LAG) or lifted by an operator (MANUAL)."""

    kind: BanKind
    reason: str
    since: float
    until: float | None = None

    @property
    def manual(self) -> bool:
        return self.kind is BanKind.MANUAL

    def expired(self, now: float) -> bool:
        """Whether the ban's time is up at ``now`` (monotonic seconds); never for MANUAL."""
        return not self.manual and self.until is not None and now >= self.until

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


def manual_ban(reason: str, now: float) -> Ban:
    """An operator's ban, from ``now`` (monotonic seconds) until an operator lifts it."""
    return Ban(BanKind.MANUAL, reason, since=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaState:
    """One replica as the router sees it. LSNs and lag in bytes, lag in ms.

    ``outstanding``: requests in flight on it; ``weight``: its share of reads
    relative to its peers (0 drains it).
    """

    name: str
    group: str
    up: bool = True
    replay_lsn: int | None = None
    receive_lsn: int | None = None
    lag_bytes: int | None = None
    lag_ms: float | None = None
    system_identifier: int | None = None
    timeline: int | None = None
    outstanding: int = 0
    weight: float = 1.0
    ban: Ban | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"replica {self.name}: weight must be finite and >= 0")
        if self.outstanding < 0:
            raise ValueError(f"replica {self.name}: outstanding must be >= 0")

    @property
    def available(self) -> bool:
        """Up, not banned, not drained."""
        return self.up and self.ban is None and self.weight > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BanPolicy:
    """When replicas leave and rejoin the rotation. Times in seconds, lag in bytes and ms.

    ERROR bans last ``error_backoff_s * backoff_factor ** (failures - 1)``, at
    most ``max_backoff_s``. A replica over ``lag_ban_bytes`` or ``lag_ban_ms``
    is banned for lag, and rejoins once under ``threshold * lag_unban_factor``
    on every dimension measured (hysteresis: no flapping at the threshold). A
    threshold of None is not checked; a lag not measured is ignored.
    """

    error_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    backoff_factor: float = 2.0
    lag_ban_bytes: int | None = 16 * 1024 * 1024
    lag_ban_ms: float | None = 5_000.0
    lag_unban_factor: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.error_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < error_backoff_s <= max_backoff_s")
        if self.backoff_factor < 1:
            raise ValueError(f"backoff_factor must be >= 1, got {self.backoff_factor}")
        if not 0 < self.lag_unban_factor <= 1:
            raise ValueError(f"lag_unban_factor must be in (0, 1], got {self.lag_unban_factor}")
        for name in ("lag_ban_bytes", "lag_ban_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def backoff_s(self, failures: int) -> float:
        """How long an ERROR ban lasts after ``failures`` consecutive failures (>= 1)."""
        exponent = max(0, failures - 1)
        if exponent > 64:  # beyond any cap; avoids float overflow
            return self.max_backoff_s
        return min(self.max_backoff_s, self.error_backoff_s * self.backoff_factor**exponent)

    def after_error(self, state: ReplicaState, now: float, reason: str, failures: int) -> Ban:
        """The replica's ban after its ``failures``-th consecutive failure at ``now``.

        A MANUAL ban stays as it is; any other is replaced by an ERROR ban.
        """
        if state.ban is not None and state.ban.manual:
            return state.ban
        return Ban(BanKind.ERROR, reason, since=now, until=now + self.backoff_s(failures))

    def _lags(self, state: ReplicaState) -> list[tuple[float, float, str]]:
        lags: list[tuple[float, float, str]] = []
        if self.lag_ban_bytes is not None and state.lag_bytes is not None:
            lags.append((state.lag_bytes, self.lag_ban_bytes, "bytes"))
        if self.lag_ban_ms is not None and state.lag_ms is not None:
            lags.append((state.lag_ms, self.lag_ban_ms, "ms"))
        return lags

    def evaluate_lag(self, state: ReplicaState, now: float) -> Ban | None:
        """The replica's ban after a lag sample at ``now``.

        MANUAL bans and unexpired ERROR bans stay. A LAG ban lifts when every
        measured lag is under its threshold times ``lag_unban_factor``. Otherwise
        a replica over a threshold gets a LAG ban.
        """
        ban = state.ban
        if ban is not None and ban.kind is not BanKind.LAG and not ban.expired(now):
            return ban
        lags = self._lags(state)
        if ban is not None and ban.kind is BanKind.LAG:
            healed = bool(lags) and all(v <= t * self.lag_unban_factor for v, t, _ in lags)
            return None if healed else ban
        over = [f"lag {v:.0f} {unit} > {t:.0f} {unit}" for v, t, unit in lags if v > t]
        return Ban(BanKind.LAG, ", ".join(over), since=now) if over else None

    def effective(self, replicas: Iterable[ReplicaState], now: float) -> list[ReplicaState]:
        """``replicas`` with their expired ERROR bans lifted at ``now``."""
        return [
            replace(r, ban=None) if r.ban is not None and r.ban.expired(now) else r
            for r in replicas
        ]
