"""The failover benchmark's plan: which clients run how many trials."""

from __future__ import annotations

from mlscale.bench.failover import CLIENTS, GATED_CLIENT, Plan


def test_quick_runs_the_gated_client_twice_and_the_others_once() -> None:
    quick = Plan.of(True)
    assert GATED_CLIENT in CLIENTS
    assert quick.trials_of(GATED_CLIENT) == 2  # the gates are its medians
    assert {quick.trials_of(c) for c in CLIENTS if c != GATED_CLIENT} == {1}
    assert quick.async_trials == 1


def test_the_full_run_gives_every_client_twenty_trials() -> None:
    full = Plan.of(False)
    assert {full.trials_of(c) for c in CLIENTS} == {20}
    assert full.async_trials == 5
