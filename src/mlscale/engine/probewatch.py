"""The watchdog of the monitor's probes: it cuts a probe that overran its deadline.

A probe waits on a connection that may belong to a frozen node; no socket option
bounds that wait (see core/probes.py). The watchdog, run in a loop of its own,
shuts the socket of an overdue probe down, so the probe fails at once with a broken
connection and the prober learns, from :meth:`ProbeWatch.end`, that it overran.
Shared by the sync and async monitors: it only shuts sockets down, never waits.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from ..core.probes import ProbeDeadlines
from .nodepool_async import shutdown_socket

__all__ = ["ProbeWatch"]


class ProbeWatch:
    """Probes in flight by node name, each with its connection and a deadline of
    ``timeout_s`` seconds."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._deadlines = ProbeDeadlines()
        self._conns: dict[str, Any] = {}
        self._lock = threading.Lock()

    def begin(self, name: str, conn: Any) -> None:
        """A probe of node ``name`` on ``conn`` starts now."""
        with self._lock:
            self._conns[name] = conn
        self._deadlines.begin(name, time.monotonic(), self.timeout_s)

    def end(self, name: str) -> bool:
        """The probe of ``name`` is over; whether the watchdog cut it for overrunning."""
        with self._lock:
            self._conns.pop(name, None)
        return self._deadlines.end(name)

    def cut_overdue(self) -> list[str]:
        """Shut down the socket of every probe past its deadline; their node names."""
        late = self._deadlines.overdue(time.monotonic())
        for name in late:
            with self._lock:
                conn = self._conns.get(name)
            if conn is None or conn.closed:
                continue
            try:
                fd = conn.pgconn.socket
            except psycopg.Error:  # no socket: already broken, the probe fails anyway
                continue
            shutdown_socket(fd)
        return late
