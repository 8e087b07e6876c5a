"""Measuring helpers: timed closed-loop rounds, alternating A/B rounds, summaries.

Units are in the names: ``_s`` seconds, ``_ms`` milliseconds; a rate is
operations per second of wall time. CPU time is this process's (every thread,
via ``time.process_time``), so a reader can tell whether the client itself was
the bottleneck.

A comparison is only fair when its variants run side by side on the same
machine state, so :func:`alternate` interleaves them (A, B, A, B, ...) and
:func:`spread` reports the median with the whole range, never a single best run.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OpFactory",
    "Round",
    "Spread",
    "alternate",
    "latency_ms",
    "percentile",
    "spread",
    "timed_round",
]

OpFactory = Callable[[int], Callable[[], object]]
"""Called once in each worker thread with its index; returns the operation it repeats."""


@dataclass(frozen=True, slots=True)
class Round:
    """One timed round of a closed-loop workload.

    ``wall_s`` runs from the common start until the last thread finished its
    last operation, so every counted operation lies inside it.
    """

    threads: int
    ops: int
    wall_s: float
    cpu_s: float
    latencies_s: tuple[float, ...]

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.ops / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_per_s(self) -> float:
        """Client CPU seconds per wall second (1.0 = one core kept busy)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The round's figures as plain data (latencies summarised, not listed)."""
        return {
            "threads": self.threads,
            "ops": self.ops,
            "wall_s": self.wall_s,
            "per_s": self.rate,
            "client_cpu_s": self.cpu_s,
            "client_cpu_per_s": self.cpu_per_s,
            "latency_ms": latency_ms(self.latencies_s),
        }


def timed_round(make_op: OpFactory, *, threads: int, duration_s: float) -> Round:
    """Run an operation in a closed loop from ``threads`` threads for ``duration_s`` seconds.

    Every thread builds its operation first (``make_op(index)``), then all
    start together. The first error of any thread stops the round and is
    raised here; a KeyboardInterrupt stops the threads before it propagates.
    """
    if threads < 1 or duration_s <= 0:
        raise ValueError(f"need threads >= 1 and duration_s > 0, got {threads=}, {duration_s=}")
    stop = threading.Event()
    start = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            op = make_op(index)
            start.wait()
            mine = latencies[index]
            while not stop.is_set():
                t0 = time.perf_counter()
                op()
                mine.append(time.perf_counter() - t0)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(exc)
            stop.set()
            start.abort()

    workers = [
        threading.Thread(target=work, args=(i,), name=f"round-{i}", daemon=True)
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait()
        t0, cpu0 = time.perf_counter(), time.process_time()
        stop.wait(duration_s)
    finally:
        stop.set()
        start.abort()
        for w in workers:
            w.join()
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    if errors:
        raise errors[0]
    flat = tuple(x for mine in latencies for x in mine)
    return Round(threads=threads, ops=len(flat), wall_s=wall_s, cpu_s=cpu_s, latencies_s=flat)


def alternate(
    variants: Mapping[str, Callable[[], Round]], *, rounds: int, warmup: bool = True
) -> dict[str, list[Round]]:
    """Run the variants in turn (A, B, A, B, ...) for ``rounds`` rounds each.

    With ``warmup`` each variant first runs once unrecorded, so pools fill and
    caches warm before anything counts.
    """
    if rounds < 1:
        raise ValueError(f"need at least one round, got {rounds}")
    if warmup:
        for run in variants.values():
            run()
    out: dict[str, list[Round]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            out[name].append(run())
    return out


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range (min..max) of repeated measurements, in their own unit."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    """The median and range of ``values`` (at least one)."""
    if not values:
        raise ValueError("spread() needs at least one value")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between closest ranks."""
    if not values:
        raise ValueError("percentile() needs at least one value")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def latency_ms(
    latencies_s: Sequence[float], quantiles: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    """Latency percentiles and maximum in milliseconds, e.g. ``{"p50": .., "max": ..}``.

    Empty input gives an empty mapping: no operation, no latency to report.
    """
    if not latencies_s:
        return {}
    out = {f"p{q:g}": percentile(latencies_s, q) * 1000 for q in quantiles}
    out["max"] = max(latencies_s) * 1000
    return out
