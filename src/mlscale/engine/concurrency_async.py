"""Background work for async clusters: a task, an event, an interruptible sleep.

``concurrency_sync.py`` offers the same names with threads, so modules written
once in async form (and generated as sync twins) run in either world.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["SMALL_WORK_IN_PLACE", "Background", "Outcome", "Stop", "gather_all", "pause"]

T = TypeVar("T")

# Whether a few short calls (a millisecond each) are better run one after another
# than at once: not with tasks, which cost next to nothing.
SMALL_WORK_IN_PLACE = False


@dataclass(slots=True)
class Outcome(Generic[T]):
    """How one of :func:`gather_all`'s calls ended: ``value`` or ``error`` once
    ``finished``; not finished if it was stopped (a timeout, another call's error)."""

    value: T | None = None
    error: BaseException | None = None
    finished: bool = False


async def gather_all(
    calls: Sequence[Callable[[], Awaitable[T]]],
    *,
    timeout: float | None,
    fatal: Callable[[BaseException], bool],
    on_abort: Callable[[], None],
) -> list[Outcome[T]]:
    """Run ``calls`` at once; each one's :class:`Outcome`, in order. Stops waiting at
    ``timeout`` seconds or as soon as a call fails with an error ``fatal`` says ends
    them all; the calls still running are then cancelled (a task cancelled in a query
    cancels it on the server; the thread twin calls ``on_abort`` for that)."""
    tasks = [asyncio.ensure_future(call()) for call in calls]
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending: set[asyncio.Future[T]] = set(tasks)
    try:
        while pending:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if not done or any(_failed(task, fatal) for task in done):
                break
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    outcomes: list[Outcome[T]] = []
    for task in tasks:
        if task in pending or task.cancelled():
            outcomes.append(Outcome())
        elif task.exception() is not None:
            outcomes.append(Outcome(error=task.exception(), finished=True))
        else:
            outcomes.append(Outcome(value=task.result(), finished=True))
    return outcomes


def _failed(task: asyncio.Future[Any], fatal: Callable[[BaseException], bool]) -> bool:
    if task.cancelled():
        return False
    error = task.exception()
    return error is not None and fatal(error)


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
