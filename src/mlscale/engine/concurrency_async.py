"""Background work for async clusters: a task, an event, an interruptible sleep.

``concurrency_sync.py`` offers the same names with threads, so modules written
once in async form (and generated as sync twins) run in either world.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Background", "Stop", "pause"]


async def pause(seconds: float) -> None:
    """Sleep ``seconds`` without blocking other work."""
    await asyncio.sleep(seconds)


class Stop:
    """A stop signal a background loop waits on between rounds."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the stop was set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        return self._event.is_set()


class Background:
    """One background loop: started once, stopped and joined on request."""

    def __init__(self, name: str, target: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.name = name
        self._target = target
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._target(), name=self.name)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def join(self, timeout: float) -> None:
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
