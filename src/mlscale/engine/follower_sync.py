# Generated from follower_async.py by scripts/async_to_sync.py: do not edit.
# Change follower_async.py and run the script again.
"""The Patroni follower: each scope's leader and members, kept current in the background
(async source).

For every scope with Patroni endpoints (the control database, shard groups) one
loop asks ``GET /cluster`` about once a second -- every 0.1 s while the scope has
no leader or a node of it was seen failing (:meth:`Leadership.poke`) -- starting
each poll at the next endpoint in turn, with a short timeout, and moving on to the
next member when one does not answer (a frozen node must not stall the view).
What it hears goes to the cluster's :class:`Leadership`; when the leader's
timeline is new, ``GET /history`` gives the switch points that keep older causal
tokens valid. Parsing is ``engine/patroni.py``'s; every decision is core's.

``follower_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import httpx

from .concurrency_sync import Background, Stop
from .leadership import Leadership
from .patroni import parse_cluster, parse_history

__all__ = ["REQUEST_TIMEOUT_S", "Follower"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 0.5
"""How long one member's REST API may take to answer before the next one is asked."""
_TICK_S = 0.02  # how often the loop looks for due scopes (a poke is served within it)


class Follower:
    """Follows the Patroni scopes ``endpoints`` names (scope -> REST endpoints)."""

    def __init__(
        self,
        leadership: Leadership,
        endpoints: Mapping[str, Sequence[str]],
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.leadership = leadership
        self._endpoints = {scope: list(urls) for scope, urls in endpoints.items()}
        self._turn: dict[str, int] = dict.fromkeys(self._endpoints, 0)
        self._timeline: dict[str, int | None] = {}
        self.timeout_s = timeout_s
        self._stop = Stop()
        self._loop = Background("mlscale-patroni-follower", self._run)
        self.polls = 0
        self.failures = 0

    def start(self) -> None:
        """Start following in the background (idempotent)."""
        if not self._loop.running:
            self._loop.start()

    def stop(self) -> None:
        self._stop.set()
        self._loop.join(5.0)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                for scope in self.leadership.due(time.monotonic()):
                    try:
                        self.poll(client, scope)
                    except Exception:  # the follower must outlive any one bad answer
                        log.warning("following Patroni scope %s failed", scope, exc_info=True)
                    self.leadership.polled(scope, time.monotonic())
                if self._stop.wait(_TICK_S):
                    return

    def poll(self, client: httpx.Client, scope: str) -> None:
        """Ask ``scope``'s members for its view, the next one first, until one answers."""
        urls = self._endpoints[scope]
        start = self._turn[scope] % len(urls)
        self._turn[scope] = start + 1
        errors = []
        for url in urls[start:] + urls[:start]:
            try:
                resp = client.get(f"{url}/cluster")
                resp.raise_for_status()
                doc = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            if not isinstance(doc, dict):
                errors.append(f"{url}: not a JSON object")
                continue
            self.polls += 1
            view = parse_cluster(doc, url)
            now = self.leadership.update(scope, view.members, time.monotonic())
            if now.leader is not None and now.timeline != self._timeline.get(scope):
                self._history(client, scope, url, now.timeline)
            return
        self.failures += 1
        self.leadership.failed(scope, "; ".join(errors))
        log.info("no Patroni endpoint of %s answered: %s", scope, "; ".join(errors))

    def _history(self, client: httpx.Client, scope: str, url: str, timeline: int | None) -> None:
        """Read ``scope``'s timeline history from ``url`` (the member that answered)."""
        try:
            resp = client.get(f"{url}/history")
            resp.raise_for_status()
            events = parse_history(resp.json())
        except (httpx.HTTPError, ValueError):
            return  # asked again at the next poll
        self.leadership.set_history(scope, {e.timeline: e.lsn for e in events})
        if timeline is None or timeline <= 1 or any(e.timeline == timeline - 1 for e in events):
            self._timeline[scope] = timeline  # complete: not asked again until it moves
