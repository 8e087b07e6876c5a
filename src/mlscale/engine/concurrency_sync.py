"""Background work for sync clusters: a thread, an event, an interruptible sleep.

The thread twin of ``concurrency_async.py`` (same names, same behaviour).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Background", "Stop", "pause"]


def pause(seconds: float) -> None:
    """Sleep ``seconds``."""
    time.sleep(seconds)


class Stop:
    """A stop signal a background loop waits on between rounds."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the stop was set."""
        return self._event.wait(seconds)


class Background:
    """One background loop: started once, stopped and joined on request."""

    def __init__(self, name: str, target: Callable[[], Any]) -> None:
        self.name = name
        self._target = target
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
