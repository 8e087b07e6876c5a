"""Results of calls in order, a few running ahead of the consumer (asyncio tasks).

Written by hand, as is ``prefetch_sync.py`` (threads): the two worlds run work ahead
differently, so this pair is not generated (see scripts/async_to_sync.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["ahead"]

T = TypeVar("T")


async def ahead(calls: Iterable[Callable[[], Awaitable[T]]], depth: int) -> AsyncIterator[T]:
    """Each call's result, in the calls' order, with up to ``depth`` calls running while
    the consumer holds the last result: at most ``depth + 1`` results exist at once.
    Closing the iterator early cancels the calls still running."""
    todo = iter(calls)
    running: deque[asyncio.Task[T]] = deque()

    def start_next() -> None:
        call = next(todo, None)
        if call is not None:
            running.append(asyncio.ensure_future(call()))

    try:
        for _ in range(max(1, depth)):
            start_next()
        while running:
            result = await running.popleft()
            start_next()
            yield result
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
