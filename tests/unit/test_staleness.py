"""Staleness bounds from heartbeats and primary position history."""

from __future__ import annotations

from mlscale.core.staleness import PositionHistory, staleness_ms


def test_caught_up_at_is_the_latest_sample_the_replica_has_reached() -> None:
    h = PositionHistory()
    h.add(100, 1.0)
    h.add(200, 2.0)
    h.add(300, 3.0)
    assert h.caught_up_at(50) is None
    assert h.caught_up_at(100) == 1.0
    assert h.caught_up_at(299) == 2.0
    assert h.caught_up_at(10_000) == 3.0


def test_history_forgets_old_samples_but_keeps_one() -> None:
    h = PositionHistory(keep_s=5.0)
    h.add(100, 0.0)
    h.add(200, 10.0)
    assert h.caught_up_at(150) is None  # the sample at 0.0 is gone
    h2 = PositionHistory(keep_s=5.0)
    h2.add(100, 0.0)
    assert h2.caught_up_at(100) == 0.0


def test_the_tighter_bound_wins() -> None:
    # An hour-old heartbeat, but the replica reached the primary's position of 0.1 s ago.
    assert staleness_ms(3_600_000.0, 9.75, 10.0) == 250.0
    # A fresh heartbeat beats an old catch-up point.
    assert staleness_ms(20.0, 5.0, 10.0) == 20.0
    assert staleness_ms(None, 9.5, 10.0) == 500.0
    assert staleness_ms(42.0, None, 10.0) == 42.0
    assert staleness_ms(None, None, 10.0) is None
    # Clock order is never trusted to give a negative figure.
    assert staleness_ms(None, 11.0, 10.0) == 0.0
