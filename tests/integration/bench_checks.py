"""Checks every benchmark test makes of its JSON: spreads are ordered, verdicts follow
from their figures alone."""

from __future__ import annotations

from typing import Any

from mlscale.bench.results import Verdict


def spread(metrics: dict[str, Any], key: str, rounds: int | None = None) -> dict[str, Any]:
    """``metrics[key]``, checked to be a median with its range (over ``rounds`` rounds)."""
    value = metrics[key]
    assert isinstance(value, dict), key
    assert {"median", "min", "max", "n"} <= value.keys(), key
    assert rounds is None or value["n"] == rounds, key
    assert value["min"] <= value["median"] <= value["max"], key
    return value


def recheck(verdict: dict[str, Any]) -> None:
    """``passed`` follows from value, op and target alone."""
    value = verdict["value"]
    if value is None:
        assert verdict["passed"] is False
        return
    again = Verdict(verdict["name"], float(value), verdict["op"], float(verdict["target"]))
    assert verdict["passed"] == again.passed
