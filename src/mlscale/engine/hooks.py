"""After-commit hooks: how caches, stores and controllers hear of writes without the
cluster knowing them.

A capability built on the cluster (a cache that invalidates, a store that keeps a
summary) registers a callable with ``cluster.on_commit(fn)``; the cluster calls it
after each write it ran has committed, in the calling thread (or task), with a
:class:`Committed`. A hook that raises is logged and does not turn a committed
write into an error. No I/O here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..core.causal import CausalToken

__all__ = ["CommitHooks", "Committed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Committed:
    """A write that committed: the shard ``groups`` it changed, its ``statement``
    (None for a transaction block), and its causal ``token``: the WAL position each
    group reached, read on the writing connection after its commit returned (for a
    plain write only because hooks are registered: see ``commits_async``), or None
    where the write's connection was still inside a transaction afterwards."""

    groups: tuple[str, ...]
    statement: str | None = None
    token: CausalToken | None = None


Hook = Callable[[Committed], None]


class CommitHooks:
    """The hooks of one cluster; adding and removing are thread-safe."""

    def __init__(self) -> None:
        self._hooks: tuple[Hook, ...] = ()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def add(self, hook: Hook) -> None:
        with self._lock:
            self._hooks = (*self._hooks, hook)

    def remove(self, hook: Hook) -> None:
        with self._lock:
            self._hooks = tuple(h for h in self._hooks if h != hook)  # bound methods: ==

    def fire(self, event: Committed) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                log.warning("an after-commit hook failed; the write stays committed", exc_info=True)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
