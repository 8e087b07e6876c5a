"""Benchmark results: what a run measured, its verdicts, and the charts to draw.

Every benchmark writes one JSON document, ``DIR/NAME.json``::

    {
      "name": "node-cap",                 # the benchmark's CLI name
      "title": "...",                     # one line for people
      "started_at": "2026-11-22T06:00:00+00:00",
      "duration_s": 41.2,
      "quick": false,
      "params": {...},                    # what was run: sizes, rounds, durations
      "metrics": {...},                   # measured figures; nested dicts allowed;
                                          # keys carry units (_ms, _s, _per_s, ...)
      "gates": [{"name", "value", "op", "target", "unit", "passed"}],
      "goals": [same shape],              # op is "<=" or ">="
      "charts": [{"title", "unit", "target"?, "groups": [
                   {"label", "bars": [{"label", "value", "low"?, "high"?}]}]}],
      "notes": ["..."],                   # caveats a reader must see
      "machine": {...}                    # cpus, versions, caps
    }

A gate must hold for the benchmark's issue to be resolved; a goal is a figure to
reach or explain. ``passed`` is derived from value/op/target, so anyone can
recheck a verdict from the file alone.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["Bar", "BenchResult", "Chart", "Group", "Verdict", "machine_facts"]

Op = Literal["<=", ">="]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A gate or goal: ``value op target`` must hold."""

    name: str
    value: float
    op: Op
    target: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise ValueError(f"op must be '<=' or '>=', got {self.op!r}")

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value <= self.target if self.op == "<=" else self.value >= self.target

    def as_dict(self) -> dict[str, Any]:
        """Plain data; a value that could not be measured (NaN) is written as null."""
        value = None if math.isnan(self.value) else self.value
        return {**asdict(self), "value": value, "passed": self.passed}


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: a value, optionally with the range (low..high) it came from."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Group:
    label: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """Grouped bars in one unit; ``target`` draws a reference line (e.g. a gate)."""

    title: str
    unit: str
    groups: tuple[Group, ...]
    target: float | None = None


@dataclass
class BenchResult:
    """Everything one benchmark run produced."""

    name: str
    title: str
    quick: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    gates: list[Verdict] = field(default_factory=list)
    goals: list[Verdict] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every gate holds (goals do not decide)."""
        return all(g.passed for g in self.gates)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "quick": self.quick,
            "params": self.params,
            "metrics": self.metrics,
            "gates": [g.as_dict() for g in self.gates],
            "goals": [g.as_dict() for g in self.goals],
            "charts": [asdict(c) for c in self.charts],
            "notes": self.notes,
            "machine": self.machine,
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/NAME.json``; its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
        return path


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": round(load[0], 2),
    }
