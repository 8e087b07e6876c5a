"""The monitor's probe deadlines (core/probes.py): which probes overran, and the
error a node that stopped answering is marked with."""

from __future__ import annotations

import pytest

from mlscale.core.probes import ProbeDeadlines, is_unresponsive, unresponsive_error


def test_a_probe_within_its_deadline_is_not_overdue_and_did_not_overrun() -> None:
    probes = ProbeDeadlines()
    probes.begin("r1", now=10.0, timeout_s=1.0)
    assert probes.overdue(10.99) == []
    assert probes.end("r1") is False


def test_an_overdue_probe_is_reported_once_and_its_end_says_it_overran() -> None:
    probes = ProbeDeadlines()
    probes.begin("r1", now=10.0, timeout_s=1.0)
    probes.begin("r2", now=10.5, timeout_s=1.0)
    assert probes.overdue(11.0) == ["r1"]
    assert probes.overdue(11.2) == []  # reported already
    assert probes.end("r1") is True
    assert probes.end("r2") is False


def test_a_new_probe_of_a_node_forgets_that_the_last_one_overran() -> None:
    probes = ProbeDeadlines()
    probes.begin("r1", now=0.0, timeout_s=1.0)
    assert probes.overdue(2.0) == ["r1"]
    probes.begin("r1", now=3.0, timeout_s=1.0)  # the old one's end never came
    assert probes.end("r1") is False


def test_ending_a_probe_never_begun_is_harmless() -> None:
    assert ProbeDeadlines().end("nobody") is False


@pytest.mark.parametrize(
    ("error", "unresponsive"),
    [
        (unresponsive_error(1.0), True),
        (unresponsive_error(0.25), True),
        ("connection refused", False),
        ("timeout expired", False),
        (None, False),
    ],
)
def test_only_an_overrun_probe_marks_a_node_unresponsive(
    error: str | None, unresponsive: bool
) -> None:
    assert is_unresponsive(error) is unresponsive
