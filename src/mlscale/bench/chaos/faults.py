"""Faults injected into a local HA cluster (``mlscale up --ha``), by PID.

- :meth:`Faults.crash_postmaster`: ``kill -9`` of a node's postmaster (its backends
  exit when they notice; its Patroni agent lives on and rejoins it as a replica);
- :meth:`Faults.kill_node`: the whole node -- its Patroni agent and every PostgreSQL
  process -- killed with SIGKILL (the agent is restarted by :meth:`Faults.restart`);
- :meth:`Faults.freeze_node` / :meth:`Faults.resume`: the whole node stopped with
  SIGSTOP and continued with SIGCONT, as a paused VM or a long GC pause would be.

A node's processes are found by walking the process tree from its agent and its
postmaster (PostgreSQL's children call ``setsid()``, so a process group or session
would miss them; the agent detaches its postmaster, so both roots are needed). Every
process the injector froze is continued when it is closed, and every node it killed
has its agent started again, so a trial leaves the cluster as it found it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable
from types import TracebackType

from ...local.binaries import find_patroni
from ...local.cluster import LocalCluster
from ...local.ha import LocalHa
from ...local.osuser import resolve_service_user
from ...local.procs import parents

__all__ = ["Faults", "process_tree"]

log = logging.getLogger(__name__)


def process_tree(roots: Iterable[int]) -> list[int]:
    """``roots`` and all their descendants now, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = [r for r in roots if r]
    seen: set[int] = set()
    while todo:
        pid = todo.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _signal(pids: Iterable[int], sig: signal.Signals) -> list[int]:
    """Send ``sig`` to each of ``pids``; those that were there to receive it."""
    sent = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent.append(pid)
        except ProcessLookupError:
            continue
    return sent


class Faults:
    """Fault injection on the local HA cluster in ``local``; a context manager that
    continues what it froze and restarts the agents of nodes it killed."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        config = local.config()
        self._ha = LocalHa(
            local.layout, resolve_service_user(config.local.os_user if config.local else None)
        )
        self._frozen: dict[str, list[int]] = {}
        self._killed: set[str] = set()

    def __enter__(self) -> Faults:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Continue every frozen node, start the agent of every killed one."""
        for name in list(self._frozen):
            self.resume(name)
        for name in list(self._killed):
            self.restart(name)

    # -- what is there -------------------------------------------------------------

    def roots(self, name: str) -> tuple[int | None, int | None]:
        """(agent PID, postmaster PID) of node ``name``, None for what is not running."""
        procs = self._ha.processes()
        agent = procs.get(f"patroni:{name}") or []
        pg = procs.get(name) or []
        return (agent[0] if agent else None, pg[0] if pg else None)

    def node_pids(self, name: str) -> list[int]:
        """Every process of node ``name``: its agent, its postmaster, their descendants."""
        agent, postmaster = self.roots(name)
        return process_tree([p for p in (agent, postmaster) if p])

    # -- faults --------------------------------------------------------------------

    def crash_postmaster(self, name: str) -> int:
        """``kill -9`` of node ``name``'s postmaster; its PID."""
        _, postmaster = self.roots(name)
        if postmaster is None:
            raise RuntimeError(f"{name}: PostgreSQL is not running")
        os.kill(postmaster, signal.SIGKILL)
        log.info("killed the postmaster of %s (pid %s)", name, postmaster)
        return postmaster

    def _stop_all(self, name: str) -> list[int]:
        """SIGSTOP the node's agent, then its postmaster (so it forks no more), then
        every descendant, until a walk of the tree finds nothing new; the PIDs."""
        agent, postmaster = self.roots(name)
        stopped = _signal([p for p in (agent, postmaster) if p], signal.SIGSTOP)
        while True:
            fresh = [p for p in process_tree(stopped) if p not in stopped]
            if not fresh:
                return stopped
            stopped += _signal(fresh, signal.SIGSTOP)

    def kill_node(self, name: str) -> list[int]:
        """The whole node ``name`` killed: everything frozen first (so no process reacts
        or forks while the others die), then SIGKILL to each; the PIDs."""
        pids = self._stop_all(name)
        _signal(pids, signal.SIGKILL)
        self._killed.add(name)
        log.info("killed node %s: %d processes", name, len(pids))
        return pids

    def freeze_node(self, name: str) -> list[int]:
        """The whole node ``name`` stopped with SIGSTOP; the PIDs (see :meth:`resume`)."""
        pids = self._stop_all(name)
        self._frozen[name] = pids
        log.info("froze node %s: %d processes", name, len(pids))
        return pids

    def resume(self, name: str) -> list[int]:
        """SIGCONT to what :meth:`freeze_node` stopped, children first and the agent last
        (so the agent wakes to its server running); the PIDs continued."""
        pids = self._frozen.pop(name, [])
        return _signal(reversed(pids), signal.SIGCONT)

    def restart(self, name: str) -> int | None:
        """Start the agent of node ``name`` again if it is not running (after
        :meth:`kill_node`); its PID, or None if it was running."""
        self._killed.discard(name)
        agent = self._ha.agent(name)
        if agent.pid() is not None:
            return None
        # The killed postmaster's backends may still be exiting; Patroni copes, but
        # give them a moment so its first start does not trip on their shared memory.
        deadline = time.monotonic() + 5.0
        while any(self.roots(name)[1:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return agent.start(find_patroni())
