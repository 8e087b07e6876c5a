"""The prediction writer's pure decisions: room, due batches, the durable mark,
accounting and backoff, as tables."""

from __future__ import annotations

import pytest

from mlscale.core.predictions.queueing import Backoff, WriterOptions, WriterState
from mlscale.errors import PredictionError


def state(**kw: object) -> WriterState:
    opts = {"batch_rows": 100, "flush_interval_s": 1.0, "queue_rows": 1_000, **kw}
    return WriterState(WriterOptions(**opts))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("queued", "incoming", "room"),
    [
        (0, 10, True),
        (990, 10, True),
        (990, 11, False),
        (1_000, 1, False),
        (0, 5_000, True),  # larger than the queue: let into an empty one, alone
        (1, 5_000, False),
    ],
)
def test_room(queued: int, incoming: int, room: bool) -> None:
    s = state()
    s.queued = queued
    assert s.has_room(incoming) is room


@pytest.mark.parametrize(
    ("pending", "age_s", "forced", "due"),
    [
        (0, 10.0, True, False),  # nothing to write
        (99, 0.5, False, False),
        (100, 0.0, False, True),  # a full batch
        (1, 1.0, False, True),  # old enough
        (1, 0.99, False, False),
        (1, 0.0, True, True),  # a flush is waiting
    ],
)
def test_batch_due(pending: int, age_s: float, forced: bool, due: bool) -> None:
    s = state()
    if pending:
        s.take(pending, now=100.0)
    assert s.batch_due(100.0 + age_s, forced) is due


def test_wait_s_counts_down_from_the_oldest_row() -> None:
    s = state()
    assert s.wait_s(5.0) == 1.0
    s.take(3, now=10.0)
    assert s.wait_s(10.25) == pytest.approx(0.75)
    assert s.wait_s(20.0) == 0.0


def test_the_durable_mark_waits_for_every_group_of_every_earlier_batch() -> None:
    s = state()
    s.take(250, now=0.0)
    a = s.open_batch(100, {"g0", "g1"}, 0.0, 0.0)
    b = s.open_batch(100, {"g0"}, 0.0, 0.0)
    c = s.open_batch(50, {"g1"}, 0.0, None)
    assert (a.start, a.end, b.start, b.end, c.start, c.end) == (0, 100, 100, 200, 200, 250)
    assert s.pending == 0 and s.pending_since is None
    s.part_written(b, "g0", 100, 100, 1.0)  # a later batch first: nothing durable yet
    assert s.durable == 0 and not s.flushed(1)
    s.part_written(a, "g0", 60, 60, 1.0)
    assert s.durable == 0
    s.part_written(a, "g1", 40, 30, 2.0)  # 10 were already stored
    assert s.durable == 200 and s.flushed(200) and not s.flushed(201)
    s.part_written(c, "g1", 50, 50, 3.0)
    assert s.durable == 250 and s.queued == 0
    assert (s.written, s.duplicates, s.flushes) == (240, 10, 3)
    assert s.pop_since() == (240, 10, {"g0": 160, "g1": 90}, 0)
    assert s.pop_since() == (0, 0, {}, 0)


def test_failures_are_shown_until_the_group_recovers() -> None:
    s = state()
    s.take(10, now=0.0)
    t = s.open_batch(10, {"g0", "g1"}, 0.0, None)
    s.part_failed("g1", RuntimeError("down"))
    s.part_failed("g0", RuntimeError("slow"))
    s.part_written(t, "g0", 5, 5, 1.0)
    assert s.error is not None and s.failures == 2
    s.part_written(t, "g1", 5, 5, 1.0)
    assert s.error is None and s.failures == 2


def test_stats() -> None:
    s = state()
    s.take(10, now=0.0)
    t = s.open_batch(10, {"g0"}, 0.0, None)
    s.part_written(t, "g0", 10, 10, 0.5)
    st = s.stats(s.started + 2.0)
    assert (st.queued, st.queue_limit, st.written, st.flushes) == (0, 1_000, 10, 1)
    assert st.flush_p50_ms == st.flush_p99_ms == 500.0
    assert st.rows_per_s == pytest.approx(5.0)
    assert st.to_dict()["error"] is None


@pytest.mark.parametrize(("attempt", "delay"), [(1, 0.05), (2, 0.1), (3, 0.2), (7, 2.0), (99, 2.0)])
def test_backoff(attempt: int, delay: float) -> None:
    assert Backoff().delay(attempt) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_rows": 0}, "batch_rows"),
        ({"queue_rows": 10}, "at least batch_rows"),
        ({"flush_interval_s": 0}, "flush_interval_s"),
        ({"flush_interval_s": float("nan")}, "flush_interval_s"),
        ({"on_full": "drop"}, "on_full"),
        ({"block_timeout_s": -1}, "block_timeout_s"),
        ({"batch_rows": True}, "batch_rows"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(PredictionError, match=message):
        WriterOptions(**options)  # type: ignore[arg-type]
