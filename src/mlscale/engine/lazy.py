"""A background loop started on first use, once per process (fork-aware)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["OnFirstUse"]


class _Startable(Protocol):
    def start(self) -> None: ...


T = TypeVar("T", bound=_Startable)


class OnFirstUse(Generic[T]):
    """Makes and starts its loop with ``make()`` the first time :meth:`get` is called.

    Threads of a sync cluster race there on first use: the lock makes one loop.
    In a forked child the parent's loop did not come along: :meth:`after_fork`
    forgets it, and the child's first use starts its own.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._make()
                    value.start()
                    self._value = value
        return value

    def peek(self) -> T | None:
        """The loop if it was started, else None (starts nothing)."""
        return self._value

    def take(self) -> T | None:
        """The loop, forgotten here (for the caller to stop), or None."""
        with self._lock:
            value, self._value = self._value, None
        return value

    def after_fork(self) -> None:
        self._value = None
        self._lock = threading.Lock()
