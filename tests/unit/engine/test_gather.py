"""gather_all, the parallel calls of a cross-shard read, in both worlds: results in
order, a timeout or a fatal error stops the rest, a tolerated error does not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from mlscale.engine import concurrency_async, concurrency_sync


def _never_fatal(error: BaseException) -> bool:
    return False


def _always_fatal(error: BaseException) -> bool:
    return True


def test_sync_calls_run_at_once_and_answer_in_order() -> None:
    started = time.monotonic()

    def call(n: int) -> Callable[[], int]:
        def run() -> int:
            time.sleep(0.2)
            return n

        return run

    outcomes = concurrency_sync.gather_all(
        [call(n) for n in range(4)], timeout=None, fatal=_never_fatal, on_abort=lambda: None
    )
    assert [o.value for o in outcomes] == [0, 1, 2, 3]
    assert all(o.finished and o.error is None for o in outcomes)
    assert time.monotonic() - started < 0.6  # four 0.2 s calls, not one after another


def test_sync_timeout_leaves_the_slow_call_unfinished_and_aborts() -> None:
    release = threading.Event()
    aborted: list[bool] = []

    def slow() -> str:
        release.wait(5)
        return "late"

    outcomes = concurrency_sync.gather_all(
        [lambda: "quick", slow],
        timeout=0.2,
        fatal=_never_fatal,
        on_abort=lambda: (aborted.append(True), release.set()),
    )
    assert outcomes[0].value == "quick" and outcomes[0].finished
    assert not outcomes[1].finished and outcomes[1].error is None
    assert aborted == [True]


def test_sync_fatal_error_stops_waiting_for_the_rest() -> None:
    release = threading.Event()

    def fails() -> Any:
        raise ValueError("boom")

    started = time.monotonic()
    outcomes = concurrency_sync.gather_all(
        [fails, lambda: release.wait(5)],
        timeout=None,
        fatal=_always_fatal,
        on_abort=release.set,
    )
    assert isinstance(outcomes[0].error, ValueError)
    assert time.monotonic() - started < 2


def test_sync_tolerated_error_lets_the_others_finish() -> None:
    def fails() -> Any:
        raise ValueError("boom")

    def slow() -> str:
        time.sleep(0.2)
        return "done"

    outcomes = concurrency_sync.gather_all(
        [fails, slow], timeout=None, fatal=_never_fatal, on_abort=lambda: None
    )
    assert isinstance(outcomes[0].error, ValueError)
    assert outcomes[1].value == "done"


def test_async_timeout_cancels_the_slow_call() -> None:
    cancelled: list[bool] = []

    async def quick() -> str:
        return "quick"

    async def slow() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "late"

    async def main() -> list[concurrency_async.Outcome[str]]:
        return await concurrency_async.gather_all(
            [quick, slow], timeout=0.2, fatal=_never_fatal, on_abort=lambda: None
        )

    outcomes = asyncio.run(main())
    assert outcomes[0].value == "quick"
    assert not outcomes[1].finished
    assert cancelled == [True]


def test_async_fatal_error_cancels_the_rest() -> None:
    async def fails() -> str:
        raise ValueError("boom")

    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    async def main() -> list[concurrency_async.Outcome[str]]:
        return await concurrency_async.gather_all(
            [slow, fails], timeout=None, fatal=_always_fatal, on_abort=lambda: None
        )

    started = time.monotonic()
    outcomes = asyncio.run(main())
    assert isinstance(outcomes[1].error, ValueError)
    assert not outcomes[0].finished
    assert time.monotonic() - started < 2
