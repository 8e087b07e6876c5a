"""Deadlines of the replica monitor's probes, and the verdict on a probe that overran.

A node can freeze under a client: its kernel keeps acknowledging packets, so the
connection stays up, neither TCP keepalives nor ``tcp_user_timeout`` fire, and a
query sent to it waits until the node is continued. The monitor therefore gives
each probe a deadline (``[policies] probe_timeout_s``); a watchdog asks
:meth:`ProbeDeadlines.overdue` which probes passed theirs and cuts them. A node
whose probe overran is *unresponsive*: out of rotation, and the connections lent
to it (if a replica) are cut, until a probe answers again. A node merely slow,
whose probe still answers within the deadline, is none of this.

Times are monotonic seconds; the caller supplies ``now``. No I/O here.
"""

from __future__ import annotations

import threading

__all__ = ["UNRESPONSIVE", "ProbeDeadlines", "is_unresponsive", "unresponsive_error"]

# How an unresponsive node's error text begins: the transport tells it from a node
# that refused or failed, since only an unresponsive replica has its reads cut.
UNRESPONSIVE = "no answer to the monitor's probe within"


def unresponsive_error(timeout_s: float) -> str:
    """The error a node whose probe overran ``timeout_s`` (seconds) is marked with."""
    return f"{UNRESPONSIVE} {timeout_s:g} s (frozen, or a link that drops packets)"


def is_unresponsive(error: str | None) -> bool:
    """Whether ``error`` (a node's down reason) says a probe overran its deadline."""
    return error is not None and error.startswith(UNRESPONSIVE)


class ProbeDeadlines:
    """The probes running now, by key (a node name), each with its deadline.

    Thread-safe: the monitor's loops begin and end probes while a watchdog looks for
    the overdue ones. A probe is reported overdue once; :meth:`end` then says
    whether it overran, so the prober can tell a cut from a failure of the node's own.
    """

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        self._overran: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, key: str, now: float, timeout_s: float) -> None:
        """Probe ``key`` started at ``now`` and may run ``timeout_s`` seconds."""
        with self._lock:
            self._deadlines[key] = now + timeout_s
            self._overran.discard(key)

    def end(self, key: str) -> bool:
        """Probe ``key`` is over; whether it overran its deadline (it was reported)."""
        with self._lock:
            self._deadlines.pop(key, None)
            overran = key in self._overran
            self._overran.discard(key)
        return overran

    def overdue(self, now: float) -> list[str]:
        """The probes past their deadline at ``now`` not reported before (each once)."""
        with self._lock:
            late = [k for k, d in self._deadlines.items() if d <= now]
            for key in late:
                del self._deadlines[key]
                self._overran.add(key)
        return late
