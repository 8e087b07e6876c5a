"""Background work for sync clusters: a thread, an event, an interruptible sleep.

The thread twin of ``concurrency_async.py`` (same names, same behaviour).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from .concurrency_async import Outcome

__all__ = ["SMALL_WORK_IN_PLACE", "Background", "Outcome", "Stop", "gather_all", "pause"]

T = TypeVar("T")

# Whether a few short calls (a millisecond each) are better run one after another
# than at once: yes with threads, whose hand-offs cost about as much as the calls
# (an online feature read of 100 entities on 2 groups: ~1.2 ms in turn, ~2.2 ms on
# two threads, measured on 2 cores).
SMALL_WORK_IN_PLACE = True

# The threads every sync cluster of the process runs its parallel calls on (the
# groups of a cross-shard read): made on first use, forgotten in a forked child.
WORKERS = 16
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="mlscale-gather")
        return _executor


def _forget_workers() -> None:
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_workers)


def gather_all(
    calls: Sequence[Callable[[], T]],
    *,
    timeout: float | None,
    fatal: Callable[[BaseException], bool],
    on_abort: Callable[[], None],
) -> list[Outcome[T]]:
    """Run ``calls`` at once on the shared worker threads; each one's
    :class:`Outcome`, in order. Stops waiting at ``timeout`` seconds or as soon as a
    call fails with an error ``fatal`` says ends them all; then ``on_abort`` is
    called (a thread cannot be cancelled: it cancels their queries on the server)
    and the calls still running are left to end by themselves."""
    futures = [_workers().submit(call) for call in calls]
    deadline = None if timeout is None else time.monotonic() + timeout
    pending: set[Future[T]] = set(futures)
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
        if not done or any(_failed(future, fatal) for future in done):
            break
    if pending:
        for future in pending:
            future.cancel()
        on_abort()
    outcomes: list[Outcome[T]] = []
    for future in futures:
        if future in pending or future.cancelled():
            outcomes.append(Outcome())
        elif future.exception() is not None:
            outcomes.append(Outcome(error=future.exception(), finished=True))
        else:
            outcomes.append(Outcome(value=future.result(), finished=True))
    return outcomes


def _failed(future: Future[Any], fatal: Callable[[BaseException], bool]) -> bool:
    if future.cancelled():
        return False
    error = future.exception()
    return error is not None and fatal(error)


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
