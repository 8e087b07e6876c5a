"""Open-loop load: requests sent at a fixed arrival rate, whatever the server does.

A closed loop waits for each answer before it asks again, so a slow server
slows the load down and its stalls hide from the latencies (coordinated
omission). Here request ``i`` has a scheduled send time fixed in advance
(every ``1/rate`` seconds, or Poisson arrivals from a seed), and its latency
runs from that scheduled time to its answer: time spent waiting for a free
worker counts, as it would for a real caller.

A pool of workers (threads, or asyncio tasks) takes the requests in order.
A request that starts more than ``late_after_s`` after its time is *late*: the
pool could not keep up there. A request whose time falls inside the window but
that no worker could start before the window closed is *dropped* (not sent and
not in the histogram; its latency would only have been larger), so a run lasts
about ``duration_s`` even when the target is overloaded. Report both counts
with the latencies: a tail measured with drops is a lower bound.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .histogram import Histogram
from .workers import AsyncOp, AsyncOpFactory, OpFactory, PerWallSecond

__all__ = [
    "Arrivals",
    "OpenLoopResult",
    "Schedule",
    "run_open_loop",
    "run_open_loop_async",
]

Arrivals = Literal["constant", "poisson"]


class Schedule:
    """Send times of an open-loop run, as offsets (s) from its start; thread-safe.

    ``constant``: request ``i`` at ``i / rate_per_s``. ``poisson``: exponential
    gaps with mean ``1 / rate_per_s`` from ``random.Random(seed)``, the same for
    the same seed. Only times before ``duration_s`` are scheduled.
    """

    def __init__(
        self, rate_per_s: float, duration_s: float, arrivals: Arrivals, seed: int | None
    ) -> None:
        if not rate_per_s > 0 or not duration_s > 0:
            raise ValueError(
                f"need rate_per_s > 0 and duration_s > 0, got {rate_per_s=}, {duration_s=}"
            )
        if arrivals not in ("constant", "poisson"):
            raise ValueError(f"arrivals must be 'constant' or 'poisson', got {arrivals!r}")
        self.rate_per_s = rate_per_s
        self.duration_s = duration_s
        self.arrivals = arrivals
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._taken = 0
        self._next = 0.0  # offset of request number self._taken

    def _advance(self) -> None:
        self._taken += 1
        if self.arrivals == "constant":
            self._next = self._taken / self.rate_per_s
        else:
            self._next += self._rng.expovariate(self.rate_per_s)

    def take(self) -> float | None:
        """The next request's offset (s), or None once the window is used up."""
        with self._lock:
            if self._next >= self.duration_s:
                return None
            offset = self._next
            self._advance()
            return offset

    def close(self) -> int:
        """End the schedule now; how many requests were left untaken in the window."""
        with self._lock:
            left = 0
            while self._next < self.duration_s:
                left += 1
                self._advance()
            return left

    @property
    def taken(self) -> int:
        """Requests handed out so far."""
        return self._taken


@dataclass
class _Tally:
    latency: Histogram = field(default_factory=Histogram)
    service: Histogram = field(default_factory=Histogram)
    ops: int = 0
    errors: int = 0
    late: int = 0
    dropped: int = 0
    first_error: BaseException | None = None
    last_end: float = 0.0


@dataclass(frozen=True, slots=True)
class OpenLoopResult(PerWallSecond):
    """What an open-loop run sent and measured.

    ``histogram``: seconds from each request's scheduled time to its answer
    (what a caller sees). ``service``: seconds from when a worker actually
    started it (what the server took). ``scheduled`` = ``issued`` + ``dropped``;
    ``issued`` = ``ops`` + ``errors``. ``wall_s`` runs from the start to the
    last answer.
    """

    mode: Literal["threads", "asyncio"]
    workers: int
    target_per_s: float
    duration_s: float
    arrivals: Arrivals
    scheduled: int
    issued: int
    ops: int
    errors: int
    late: int
    dropped: int
    wall_s: float
    cpu_s: float
    histogram: Histogram
    service: Histogram
    first_error: str | None = None

    @property
    def achieved_per_s(self) -> float:
        """Requests sent per second of the window (the target, if the pool kept up)."""
        return self.issued / self.duration_s

    @property
    def kept_up(self) -> bool:
        """Whether every scheduled request was sent, none of them late."""
        return self.dropped == 0 and self.late == 0

    def as_dict(self) -> dict[str, Any]:
        """Plain data: counts, rates, latency summaries in ms."""
        out: dict[str, Any] = {
            "mode": self.mode,
            "workers": self.workers,
            "arrivals": self.arrivals,
            "target_per_s": self.target_per_s,
            "achieved_per_s": self.achieved_per_s,
            "duration_s": self.duration_s,
            "scheduled": self.scheduled,
            "issued": self.issued,
            "ops": self.ops,
            "errors": self.errors,
            "late": self.late,
            "dropped": self.dropped,
            "wall_s": self.wall_s,
            "per_s": self.rate,
            "client_cpu_s": self.cpu_s,
            "client_cpu_per_s": self.cpu_per_s,
            "latency_ms": self.histogram.summary_ms(),
            "service_ms": self.service.summary_ms(),
        }
        if self.first_error is not None:
            out["first_error"] = self.first_error
        return out


def _result(
    mode: Literal["threads", "asyncio"],
    schedule: Schedule,
    tallies: list[_Tally],
    start: float,
    cpu_s: float,
) -> OpenLoopResult:
    first = next((t.first_error for t in tallies if t.first_error is not None), None)
    ops, errors = sum(t.ops for t in tallies), sum(t.errors for t in tallies)
    last = max((t.last_end for t in tallies), default=0.0)
    return OpenLoopResult(
        mode=mode,
        workers=len(tallies),
        target_per_s=schedule.rate_per_s,
        duration_s=schedule.duration_s,
        arrivals=schedule.arrivals,
        scheduled=schedule.taken,
        issued=ops + errors,
        ops=ops,
        errors=errors,
        late=sum(t.late for t in tallies),
        dropped=sum(t.dropped for t in tallies),
        wall_s=max(last - start, 0.0),
        cpu_s=cpu_s,
        histogram=Histogram.merged(t.latency for t in tallies),
        service=Histogram.merged(t.service for t in tallies),
        first_error=None if first is None else repr(first),
    )


def run_open_loop(
    op_factory: OpFactory,
    *,
    rate_per_s: float,
    duration_s: float,
    workers: int = 16,
    arrivals: Arrivals = "constant",
    seed: int | None = None,
    late_after_s: float = 0.001,
    tolerate_errors: bool = False,
) -> OpenLoopResult:
    """Send requests at ``rate_per_s`` for ``duration_s`` seconds from ``workers`` threads.

    ``op_factory(i)`` runs in thread ``i`` before the start. At most ``workers``
    requests are in flight: pick it above rate x expected latency (s), or the
    run reports late and dropped requests. Latencies run from each request's
    scheduled time. An operation that raises stops the run and is raised
    afterwards, unless ``tolerate_errors`` (then it is counted).
    """
    if workers < 1:
        raise ValueError(f"need workers >= 1, got {workers}")
    schedule = Schedule(rate_per_s, duration_s, arrivals, seed)
    tallies = [_Tally() for _ in range(workers)]
    ready = threading.Barrier(workers + 1)
    go, stop = threading.Event(), threading.Event()
    fatal: list[BaseException] = []
    origin = [0.0]  # perf_counter of the schedule's start, set before ``go``

    def work(i: int) -> None:
        tally = tallies[i]
        try:
            op = op_factory(i)
            ready.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:
            fatal.append(exc)
            ready.abort()
            return
        go.wait()
        clock, t_start = time.perf_counter, origin[0]
        end_at = t_start + duration_s
        while not stop.is_set():
            offset = schedule.take()
            if offset is None:
                return
            due, now = t_start + offset, clock()
            if now >= end_at:  # the window closed before a worker was free
                tally.dropped += 1 + schedule.close()
                return
            if due > now:
                if stop.wait(due - now):
                    return
                now = clock()
            if now - due > late_after_s:
                tally.late += 1
            try:
                op()
            except Exception as exc:
                tally.errors += 1
                tally.first_error = tally.first_error or exc
                tally.last_end = clock()
                if not tolerate_errors:
                    stop.set()
                continue
            except BaseException as exc:
                fatal.append(exc)
                stop.set()
                return
            done = clock()
            tally.latency.record(done - due)
            tally.service.record(done - now)
            tally.ops += 1
            tally.last_end = done

    pool = [
        threading.Thread(target=work, args=(i,), name=f"openloop-{i}", daemon=True)
        for i in range(workers)
    ]
    for t in pool:
        t.start()
    cpu0 = time.process_time()
    try:
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            pass
        else:
            # A small lead, so the first requests are not late by the threads' wake-up.
            origin[0] = time.perf_counter() + 0.002
            cpu0 = time.process_time()
            go.set()
        for t in pool:
            while t.is_alive():
                t.join(0.1)  # short joins keep Ctrl-C responsive
    finally:
        stop.set()
        ready.abort()
        go.set()
        for t in pool:
            t.join()
    cpu_s = time.process_time() - cpu0
    if fatal:
        raise fatal[0]
    _raise_first(tallies, tolerate_errors)
    return _result("threads", schedule, tallies, origin[0], cpu_s)


def _raise_first(tallies: list[_Tally], tolerate_errors: bool) -> None:
    if not tolerate_errors:
        first = next((t.first_error for t in tallies if t.first_error is not None), None)
        if first is not None:
            raise first


async def run_open_loop_async(
    op_factory: AsyncOpFactory,
    *,
    rate_per_s: float,
    duration_s: float,
    tasks: int = 64,
    arrivals: Arrivals = "constant",
    seed: int | None = None,
    late_after_s: float = 0.001,
    tolerate_errors: bool = False,
) -> OpenLoopResult:
    """:func:`run_open_loop` with ``tasks`` asyncio tasks on the running loop.

    At most ``tasks`` requests are in flight; pick it above rate x expected
    latency, or the run reports late and dropped requests.
    """
    if tasks < 1:
        raise ValueError(f"need tasks >= 1, got {tasks}")
    schedule = Schedule(rate_per_s, duration_s, arrivals, seed)

    async def build(i: int) -> AsyncOp:
        made = op_factory(i)
        return await made if inspect.isawaitable(made) else made

    ops = await asyncio.gather(*(build(i) for i in range(tasks)))
    tallies = [_Tally() for _ in range(tasks)]
    clock = time.perf_counter
    stopped = False
    t_start = clock() + 0.002
    end_at = t_start + duration_s

    async def work(op: AsyncOp, tally: _Tally) -> None:
        nonlocal stopped
        while not stopped:
            offset = schedule.take()
            if offset is None:
                return
            due = t_start + offset
            now = clock()
            if now >= end_at:
                tally.dropped += 1 + schedule.close()
                return
            if due > now:
                await asyncio.sleep(due - now)
                now = clock()
            if now - due > late_after_s:
                tally.late += 1
            try:
                await op()
            except Exception as exc:
                tally.errors += 1
                tally.first_error = tally.first_error or exc
                tally.last_end = clock()
                stopped = stopped or not tolerate_errors
                continue
            done = clock()
            tally.latency.record(done - due)
            tally.service.record(done - now)
            tally.ops += 1
            tally.last_end = done

    cpu0 = time.process_time()
    await asyncio.gather(*(work(op, t) for op, t in zip(ops, tallies, strict=True)))
    cpu_s = time.process_time() - cpu0
    _raise_first(tallies, tolerate_errors)
    return _result("asyncio", schedule, tallies, t_start, cpu_s)
