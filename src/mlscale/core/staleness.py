"""How stale a replica is, in time, from what the monitor has sampled.

Two upper bounds, the tighter one wins:

- the age of the newest heartbeat row the replica has replayed: loose when
  nobody wrote heartbeats for a while (no client was running), since an old
  beat then says nothing about how far behind the replica is;
- the time since the primary was at a WAL position the replica has since
  replayed: the replica then holds every commit made before that sample.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PositionHistory", "staleness_ms"]


class PositionHistory:
    """A primary's recent WAL positions (bytes), each with its monotonic sample time."""

    def __init__(self, keep_s: float = 10.0) -> None:
        self.keep_s = keep_s
        self._points: deque[tuple[int, float]] = deque()

    def add(self, lsn: int, at: float) -> None:
        """The primary was at ``lsn`` at ``at`` (times must not go backwards)."""
        self._points.append((lsn, at))
        while len(self._points) > 1 and self._points[0][1] < at - self.keep_s:
            self._points.popleft()

    def latest(self) -> tuple[int, float] | None:
        """The newest (position, time) sampled, if any."""
        return self._points[-1] if self._points else None

    def caught_up_at(self, replayed: int) -> float | None:
        """The latest sample time whose position ``replayed`` has reached, if any."""
        for lsn, at in reversed(self._points):
            if lsn <= replayed:
                return at
        return None


def staleness_ms(
    heartbeat_ms: float | None, caught_up_at: float | None, now: float
) -> float | None:
    """The tighter of the two bounds, in ms (None if neither is known)."""
    bounds = [b for b in (heartbeat_ms,) if b is not None]
    if caught_up_at is not None:
        bounds.append(max(0.0, (now - caught_up_at) * 1000))
    return min(bounds) if bounds else None
