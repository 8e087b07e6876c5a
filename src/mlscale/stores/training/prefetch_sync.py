"""Results of calls in order, a few running ahead of the consumer (threads).

Written by hand, as is ``prefetch_async.py`` (asyncio tasks); see its docstring.
The database drivers release the GIL while they wait for the network, so threads
read several groups at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ahead"]

T = TypeVar("T")


def ahead(calls: Iterable[Callable[[], T]], depth: int) -> Iterator[T]:
    """Each call's result, in the calls' order, with up to ``depth`` calls running while
    the consumer holds the last result: at most ``depth + 1`` results exist at once.
    Closing the iterator early cancels the calls not started and waits for the rest."""
    todo = iter(calls)
    running: deque[Future[T]] = deque()
    pool = ThreadPoolExecutor(max_workers=max(1, depth), thread_name_prefix="mlscale-read")

    def start_next() -> None:
        call = next(todo, None)
        if call is not None:
            running.append(pool.submit(call))

    try:
        for _ in range(max(1, depth)):
            start_next()
        while running:
            result = running.popleft().result()
            start_next()
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
