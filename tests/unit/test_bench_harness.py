"""The benchmark harness without servers: histograms, workers, open loop, A/B rounds, progress.

Timing checks keep wide margins: these run on small, busy CI machines.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import random
import time
from collections.abc import Callable

import pytest

from mlscale.bench.compare import (
    Spread,
    ab_rounds,
    chart,
    paired_ratios,
    ratio_of_medians,
    spread,
    spread_metrics,
    spreads,
)
from mlscale.bench.histogram import Histogram
from mlscale.bench.openloop import Schedule, run_open_loop, run_open_loop_async
from mlscale.bench.progress import Progress
from mlscale.bench.results import Bar, Chart, Group
from mlscale.bench.workers import Round, run_asyncio, run_processes, run_threads
from mlscale.errors import MlscaleError

CPUS = os.cpu_count() or 1

# -- histogram --------------------------------------------------------------------


def exact_percentile(values: list[float], q: float) -> float:
    """Nearest rank: the value at rank ceil(q/100 * n) of the sorted values."""
    ordered = sorted(values)
    if q == 0:
        return ordered[0]
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def samples(seed: int, n: int) -> list[float]:
    """Latency-like values: log-normal around 1 ms with a heavy tail, plus outliers."""
    rng = random.Random(seed)
    out = [rng.lognormvariate(math.log(0.001), 1.0) for _ in range(n)]
    out += [rng.uniform(0.5, 3.0) for _ in range(n // 100)]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_histogram_percentiles_match_exact_ones_within_its_precision(seed: int) -> None:
    values = samples(seed, 20_000)
    h = Histogram.of(values)
    assert h.count == len(values)
    assert h.min_s == min(values) and h.max_s == max(values)
    assert h.mean_s == pytest.approx(sum(values) / len(values), rel=1e-9)
    for q in (0, 1, 10, 50, 90, 95, 99, 99.9, 99.99, 100):
        exact = exact_percentile(values, q)
        # the precision (1 %) bounds the error; the midpoint makes it about half that
        assert h.percentile(q) == pytest.approx(exact, rel=h.precision), q
    assert h.percentile(0) == min(values) and h.percentile(100) == max(values)


def test_histogram_summary_is_in_ms_with_p_keys_and_max() -> None:
    h = Histogram.of([0.001] * 99 + [0.1])
    s = h.summary_ms()
    assert list(s) == ["p50", "p95", "p99", "max"]
    assert s["p50"] == pytest.approx(1.0, rel=0.01)
    assert s["max"] == pytest.approx(100.0)
    assert list(h.summary_ms((50, 99.9))) == ["p50", "p99.9", "max"]
    assert Histogram().summary_ms() == {}


def test_histogram_values_outside_the_span_keep_exact_min_and_max() -> None:
    h = Histogram.of([0.0, 1e-9, 500.0])
    assert h.percentile(0) == 0.0 and h.percentile(100) == 500.0
    assert h.bucket_count == 2  # the underflow and the overflow bucket
    with pytest.raises(ValueError):
        h.record(-1.0)
    with pytest.raises(ValueError):
        h.record(math.nan)
    with pytest.raises(ValueError):
        Histogram().percentile(50)
    with pytest.raises(ValueError):
        h.percentile(101)


def test_histogram_merge_equals_recording_everything_in_one() -> None:
    a_vals, b_vals = samples(4, 5_000), samples(5, 7_000)
    a, b = Histogram.of(a_vals), Histogram.of(b_vals)
    both = Histogram.of(a_vals + b_vals)
    merged = Histogram.merged([a, b])
    assert merged.to_dict()["buckets"] == both.to_dict()["buckets"]
    assert merged.count == both.count and merged.min_s == both.min_s
    assert merged.max_s == both.max_s
    assert merged.sum_s == pytest.approx(both.sum_s)
    for q in (50, 95, 99, 99.9):
        assert merged.percentile(q) == both.percentile(q)
    assert a.count == len(a_vals)  # merged() leaves its parts alone
    with pytest.raises(ValueError):
        a.merge(Histogram(precision=0.02))


def test_histogram_memory_is_bounded_whatever_it_records() -> None:
    h = Histogram()
    rng = random.Random(9)
    for _ in range(200_000):
        h.record(10 ** rng.uniform(-7, 3))  # 0.1 µs .. 1000 s, beyond the span both ways
    assert h.max_buckets < 2_000  # 1 µs .. 100 s at 1 %
    assert h.bucket_count <= h.max_buckets
    assert h.count == 200_000


def test_histogram_round_trips_through_dict_json_and_pickle() -> None:
    import pickle

    h = Histogram.of(samples(6, 3_000))
    back = Histogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back.to_dict() == h.to_dict()
    assert back.percentile(99) == h.percentile(99)
    assert Histogram.from_dict(pickle.loads(pickle.dumps(h.to_dict()))).count == h.count
    empty = Histogram.from_dict(Histogram().to_dict())
    assert empty.count == 0 and empty.summary_ms() == {}
    broken = h.to_dict()
    broken["count"] += 1
    with pytest.raises(ValueError):
        Histogram.from_dict(broken)


# -- closed-loop workers ------------------------------------------------------------


def sleeper(seconds: float) -> Callable[[int], Callable[[], object]]:
    def make(index: int) -> Callable[[], object]:
        return lambda: time.sleep(seconds)

    return make


def busy_loop(index: int) -> Callable[[], object]:
    def op() -> None:
        x = 0
        for k in range(20_000):
            x += k

    return op


def check_sleep_round(r: Round, workers: int, duration_s: float) -> None:
    """A 1 ms sleep from ``workers`` loops: wall near the duration, ops near the ideal."""
    assert r.workers == workers
    assert duration_s * 0.9 <= r.wall_s <= duration_s + 1.0
    ideal = workers * r.wall_s / 0.001
    assert 0.1 * ideal <= r.ops <= ideal * 1.05
    assert r.histogram.count == r.ops and r.errors == 0
    assert r.histogram.percentile(50) >= 0.001
    assert r.rate == pytest.approx(r.ops / r.wall_s)
    assert r.cpu_s >= 0
    assert set(r.as_dict()) >= {"ops", "wall_s", "per_s", "client_cpu_s", "latency_ms"}


def test_run_threads_counts_ops_in_its_window() -> None:
    r = run_threads(sleeper(0.001), 4, 0.5)
    assert r.mode == "threads"
    check_sleep_round(r, 4, 0.5)


def test_run_asyncio_counts_ops_in_its_window() -> None:
    async def op() -> None:
        await asyncio.sleep(0.001)

    r = run_asyncio(lambda i: op, 8, 0.5)
    assert r.mode == "asyncio"
    check_sleep_round(r, 8, 0.5)


def test_run_asyncio_accepts_an_async_factory() -> None:
    built: list[int] = []

    async def make(i: int) -> Callable[[], object]:
        built.append(i)

        async def op() -> None:
            await asyncio.sleep(0.001)

        return op

    r = run_asyncio(make, 3, 0.2)
    assert sorted(built) == [0, 1, 2] and r.ops > 0


def test_run_processes_counts_ops_of_every_child() -> None:
    seen: list[int] = []  # the factory runs in the children: nothing lands here

    def make(index: int) -> Callable[[], object]:
        seen.append(index)
        return lambda: time.sleep(0.001)

    r = run_processes(make, 2, 2, 0.5)
    assert r.mode == "processes" and r.processes == 2
    check_sleep_round(r, 4, 0.5)
    assert seen == []


def test_run_processes_counts_the_childrens_cpu() -> None:
    op = busy_loop(0)
    per_op = []
    for _ in range(3):  # CPU seconds one op costs here; the cheapest of three tries
        c0 = time.process_time()
        for _ in range(50):
            op()
        per_op.append((time.process_time() - c0) / 50)
    parent0 = time.process_time()
    r = run_processes(busy_loop, 2, 1, 1.0)
    parent_cpu = time.process_time() - parent0
    assert r.ops > 0
    # The children did the work, so their CPU must be in cpu_s: at least about
    # what their ops cost, and far more than this (waiting) process used. Bounds
    # by work done, not by wall time, hold on a loaded machine too.
    assert r.cpu_s > 0.5 * r.ops * min(per_op)
    assert r.cpu_s > 3 * parent_cpu
    assert r.cpu_s < r.wall_s * CPUS * 1.2 + 0.2
    # On an idle 2-core machine this is about 2 CPU-s/s; keep the bound loose.
    assert r.cpu_per_s > 0.1


def test_an_error_in_an_op_stops_the_round_and_is_raised() -> None:
    def make(index: int) -> Callable[[], object]:
        count = [0]

        def op() -> None:
            count[0] += 1
            if count[0] == 20:
                raise ValueError(f"boom {index}")
            time.sleep(0.001)

        return op

    t0 = time.monotonic()
    with pytest.raises(ValueError, match="boom"):
        run_threads(make, 2, 30.0)
    with pytest.raises(ValueError, match="boom") as info:
        run_processes(make, 2, 1, 30.0)
    assert any("benchmark process" in n for n in getattr(info.value, "__notes__", []))
    assert time.monotonic() - t0 < 20  # stopped early, not after 30 s

    r = run_threads(make, 2, 0.3, tolerate_errors=True)
    assert r.errors == 2 and r.ops > 0 and r.first_error and "boom" in r.first_error
    r = run_processes(make, 2, 1, 0.3, tolerate_errors=True)
    assert r.errors == 2 and r.ops > 0


def test_setup_errors_and_dead_children_are_reported() -> None:
    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:  # cannot be unpickled
            super().__init__(a)

    def bad_setup(index: int) -> Callable[[], object]:
        if index == 1:
            raise RuntimeError("no connection")
        return lambda: time.sleep(0.001)

    def odd(index: int) -> Callable[[], object]:
        def op() -> None:
            raise Odd(1, 2)

        return op

    def dies(index: int) -> Callable[[], object]:
        return lambda: os._exit(3)

    with pytest.raises(RuntimeError, match="no connection"):
        run_threads(bad_setup, 2, 5.0)
    with pytest.raises(RuntimeError, match="no connection"):
        run_processes(bad_setup, 2, 1, 5.0)
    with pytest.raises(MlscaleError, match="Odd"):
        run_processes(odd, 1, 1, 5.0)
    with pytest.raises(MlscaleError, match="exited"):
        run_processes(dies, 2, 1, 5.0)
    import multiprocessing

    assert multiprocessing.active_children() == []


def test_workers_reject_bad_sizes() -> None:
    with pytest.raises(ValueError):
        run_threads(sleeper(0.001), 0, 1.0)
    with pytest.raises(ValueError):
        run_processes(sleeper(0.001), 1, 1, 0.0)


# -- open loop ----------------------------------------------------------------------


def test_schedule_constant_and_poisson() -> None:
    const = Schedule(200.0, 1.0, "constant", None)
    offsets = []
    while (o := const.take()) is not None:
        offsets.append(o)
    assert len(offsets) == 200 and offsets[1] == pytest.approx(0.005)
    p1, p2 = Schedule(200.0, 1.0, "poisson", 3), Schedule(200.0, 1.0, "poisson", 3)
    a = [p1.take() for _ in range(50)]
    assert a == [p2.take() for _ in range(50)]  # same seed, same arrivals
    assert all(x is not None for x in a)
    left = p1.close()
    assert 100 < 50 + left < 300 and p1.take() is None
    with pytest.raises(ValueError):
        Schedule(0.0, 1.0, "constant", None)


def test_open_loop_issues_requests_at_the_rate() -> None:
    r = run_open_loop(sleeper(0.001), rate_per_s=200, duration_s=1.0, workers=8)
    assert r.scheduled == 200
    assert r.issued + r.dropped == r.scheduled
    assert r.issued >= 170 and r.ops == r.issued
    assert r.achieved_per_s == pytest.approx(r.issued / 1.0)
    assert 0.9 <= r.wall_s <= 2.0
    # Latency from the scheduled time includes the service time.
    assert r.histogram.percentile(50) >= r.service.percentile(50) * 0.99
    assert r.histogram.percentile(50) < 0.05
    assert set(r.as_dict()) >= {"achieved_per_s", "late", "dropped", "latency_ms", "service_ms"}


def test_open_loop_latency_runs_from_the_scheduled_time() -> None:
    # 2 workers x 20 ms = 100/s at most, asked for 200/s: requests queue up.
    r = run_open_loop(sleeper(0.02), rate_per_s=200, duration_s=1.0, workers=2)
    assert r.scheduled == 200
    assert r.dropped >= 40 and r.late >= 40 and not r.kept_up
    assert r.issued + r.dropped == r.scheduled
    # each request took ~20 ms to serve, but callers waited ever longer
    assert r.service.percentile(50) < 0.1
    assert r.histogram.percentile(99) > 0.2
    assert r.histogram.max_s > 5 * r.service.percentile(50)
    # the queue grows: later requests waited longer than the first ones
    assert r.histogram.percentile(90) > 2 * r.histogram.percentile(10)


def test_open_loop_async_and_poisson() -> None:
    async def op() -> None:
        await asyncio.sleep(0.001)

    r = asyncio.run(
        run_open_loop_async(
            lambda i: op, rate_per_s=200, duration_s=0.5, tasks=16, arrivals="poisson", seed=1
        )
    )
    assert r.mode == "asyncio" and 50 <= r.scheduled <= 200
    assert r.issued + r.dropped == r.scheduled and r.ops > 0


def test_open_loop_raises_the_first_error_unless_tolerated() -> None:
    def make(index: int) -> Callable[[], object]:
        def op() -> None:
            raise KeyError("gone")

        return op

    with pytest.raises(KeyError):
        run_open_loop(make, rate_per_s=100, duration_s=0.3, workers=2)
    r = run_open_loop(make, rate_per_s=100, duration_s=0.3, workers=2, tolerate_errors=True)
    assert r.errors == r.issued > 0 and r.ops == 0 and r.histogram.count == 0


# -- A/B rounds and their summaries --------------------------------------------------


def test_ab_rounds_alternate_in_order_after_a_warmup() -> None:
    calls: list[str] = []

    def variant(name: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(name)
            return f"{name}{len(calls)}"

        return run

    out = ab_rounds({"a": variant("a"), "b": variant("b"), "c": variant("c")}, rounds=5)
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] * 5
    assert out["a"] == ["a4", "a7", "a10", "a13", "a16"]
    calls.clear()
    ab_rounds({"a": variant("a"), "b": variant("b")}, rounds=2, warmup=False)
    assert calls == ["a", "b", "a", "b"]
    with pytest.raises(ValueError):
        ab_rounds({"a": variant("a")}, rounds=0)


def test_spread_and_ratio_math() -> None:
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert s.as_dict() == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert s.as_dict(with_values=True)["values"] == [3.0, 1.0, 2.0, 10.0]
    assert ratio_of_medians([4.0, 6.0, 5.0], [1.0, 3.0, 2.0]) == 2.5
    assert ratio_of_medians(Spread.of([9.0]), Spread.of([3.0])) == 3.0
    with pytest.raises(ValueError):
        ratio_of_medians([1.0], [0.0])
    pr = paired_ratios([2.0, 6.0, 4.0], [1.0, 2.0, 4.0])
    assert (pr.median, pr.low, pr.high) == (2.0, 1.0, 3.0)
    with pytest.raises(ValueError):
        spread([])


def test_comparisons_become_charts_and_metrics() -> None:
    runs = {"pooled": [1.0, 3.0, 2.0], "raw": [10.0, 30.0, 20.0]}
    per_variant = spreads(runs, lambda x: x * 100)
    assert per_variant["pooled"].median == 200.0
    c = chart("reads", "reads/s", {"4 threads": per_variant}, target=150.0)
    assert c == Chart(
        title="reads",
        unit="reads/s",
        target=150.0,
        groups=(
            Group(
                "4 threads",
                (Bar("pooled", 200.0, 100.0, 300.0), Bar("raw", 2000.0, 1000.0, 3000.0)),
            ),
        ),
    )
    m = spread_metrics(per_variant, "_per_s")
    assert m["pooled_per_s"] == {"median": 200.0, "min": 100.0, "max": 300.0, "n": 3}


# -- progress -------------------------------------------------------------------------


def test_progress_prints_one_line_per_step_when_not_a_tty() -> None:
    out = io.StringIO()
    progress = Progress(stream=out)
    assert not progress.is_tty
    ab_rounds({"a": lambda: None, "b": lambda: None}, rounds=2, progress=progress, title="reads")
    lines = out.getvalue().splitlines()
    assert len(lines) == 7  # 2 warm-ups, 4 rounds, the final line
    assert lines[0].startswith("reads: 1/6 a (warm-up), ")
    assert lines[3].startswith("reads: 4/6 b (round 1/2), ")
    assert lines[-1].startswith("reads: done 6/6 in ")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_progress_redraws_on_a_tty_and_is_silent_when_quiet() -> None:
    out = io.StringIO()
    with Progress(stream=out, tty=True).phase("load", 2) as phase:
        phase.step("x")
        phase.step("y")
    text = out.getvalue()
    assert "\r" in text and "load [" in text and "2/2 y" in text
    assert text.endswith("load: done 2/2 in 0.0 s\n") or "load: done 2/2" in text
    assert text.count("\n") == 1  # redrawn in place, one final line

    quiet = io.StringIO()
    with Progress(stream=quiet, quiet=True).phase("load", 1) as phase:
        phase.step()
    assert quiet.getvalue() == ""


def test_progress_marks_a_phase_stopped_by_an_error() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress(stream=out).phase("p", 3) as phase:
        phase.step()
        raise RuntimeError
    assert out.getvalue().splitlines()[-1].startswith("p: stopped 1/3")
