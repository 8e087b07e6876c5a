"""Watching a Patroni scope through a fault: when the new leader took over, where the
old timeline ended, and when the old leader was back as a streaming replica.

:class:`Observer` polls ``GET /cluster`` every ``interval_s`` (0.1 s) from its own
thread, asking the old leader's agent last (a frozen agent accepts the TCP connection
and never answers, costing a timeout). :func:`switch_point` reads ``GET /history``
for the LSN and time at which the old timeline ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ...engine.patroni import PatroniError, PatroniView, fetch_history, fetch_view

__all__ = ["Observer", "SwitchPoint", "settle", "switch_point"]

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.5


def _settled(view: PatroniView, sync: bool) -> bool:
    leader = view.leader
    if leader is None or leader.state != "running":
        return False
    others = [m for m in view.members if not m.is_leader]
    if any(m.state != "streaming" or m.timeline != leader.timeline for m in others):
        return False
    return not sync or not others or any(m.is_sync for m in others)


def settle(
    endpoints: Sequence[str], *, members: int, sync: bool, timeout_s: float = 120.0
) -> PatroniView:
    """Wait until the scope has a running leader, its ``members - 1`` others stream on
    the leader's timeline and (``sync``) one of them is a sync standby; the view."""
    deadline = time.monotonic() + timeout_s
    last: PatroniView | None = None
    while True:
        try:
            last = fetch_view(endpoints, timeout=1.0)
            if len(last.members) == members and _settled(last, sync):
                return last
        except PatroniError:
            pass
        if time.monotonic() > deadline:
            shown = last.to_dict() if last else "no answer"
            raise TimeoutError(f"the scope did not settle within {timeout_s:.0f} s: {shown}")
        time.sleep(0.2)


class Observer:
    """Polls a scope after a fault on ``old_leader`` (which led on ``old_timeline``).

    ``takeover_seen_at``: first poll (wall-clock seconds) showing another member leading
    and running; ``rejoined_at``: first poll, after that, showing the old leader
    streaming on a later timeline. Use as a context manager (the thread stops on exit).
    """

    def __init__(
        self,
        endpoints_by_member: dict[str, str],
        old_leader: str,
        old_timeline: int,
        *,
        interval_s: float = 0.1,
    ) -> None:
        others = [u for n, u in endpoints_by_member.items() if n != old_leader]
        mine = [u for n, u in endpoints_by_member.items() if n == old_leader]
        self.endpoints = others + mine
        self.old_leader = old_leader
        self.old_timeline = old_timeline
        self.interval_s = interval_s
        self.new_leader: str | None = None
        self.takeover_seen_at: float | None = None
        self.rejoined_at: float | None = None
        self.took_over = threading.Event()
        self.rejoined = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-observer", daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                view = fetch_view(self.endpoints, timeout=POLL_TIMEOUT_S)
            except PatroniError:
                view = None
            now = time.time()
            if view is not None:
                self._see(view, now)
            if self.rejoined.is_set():
                return
            self._stop.wait(self.interval_s)

    def _see(self, view: PatroniView, now: float) -> None:
        leader = view.leader
        if (
            not self.took_over.is_set()
            and leader is not None
            and leader.name != self.old_leader
            and leader.state == "running"
        ):
            self.new_leader = leader.name
            self.takeover_seen_at = now
            self.took_over.set()
            log.info("new leader %s seen", leader.name)
        if self.took_over.is_set() and not self.rejoined.is_set():
            old = view.member(self.old_leader)
            if (
                old is not None
                and old.state == "streaming"
                and old.timeline is not None
                and old.timeline > self.old_timeline
            ):
                self.rejoined_at = now
                self.rejoined.set()
                log.info("%s streams again (timeline %s)", self.old_leader, old.timeline)


@dataclass(frozen=True, slots=True)
class SwitchPoint:
    """Where timeline ``timeline`` ended in the scope's history: ``lsn`` (bytes), at
    ``at`` (wall-clock seconds, Patroni's timestamp), the next leader ``new_leader``."""

    timeline: int
    lsn: int
    at: float | None
    new_leader: str | None


def switch_point(
    endpoints: Sequence[str], timeline: int, timeout_s: float = 10.0
) -> SwitchPoint | None:
    """The end of ``timeline`` in the scope's /history, waiting up to ``timeout_s`` for
    the new leader to record it; None if it never appears."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            for event in fetch_history(endpoints, timeout=1.0):
                if event.timeline == timeline:
                    at = datetime.fromisoformat(event.at).timestamp() if event.at else None
                    return SwitchPoint(timeline, event.lsn, at, event.new_leader)
        except (PatroniError, ValueError):
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
