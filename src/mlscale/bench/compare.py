"""A/B comparisons: variants run in alternating rounds, summarised as median and range.

A comparison is only fair when its variants run side by side on the same
machine state, so :func:`ab_rounds` interleaves them (A, B, A, B, ... or
A, B, C, A, B, C, ...) and :class:`Spread` reports the median with the whole
range (min..max), never a single best run. The ratio of two variants is the
ratio of their medians; :func:`paired_ratios` adds the per-round ratios, whose
range shows how steady that ratio was.

Charts for :mod:`mlscale.bench.results` draw each variant as a bar at its
median with whiskers from its min to its max.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .progress import Progress
from .results import Bar, Chart, Group

__all__ = [
    "Spread",
    "ab_rounds",
    "chart",
    "group",
    "paired_ratios",
    "ratio_of_medians",
    "spread",
    "spread_metrics",
    "spreads",
]

R = TypeVar("R")


def ab_rounds(
    variants: Mapping[str, Callable[[], R]],
    rounds: int = 5,
    warmup: bool = True,
    *,
    progress: Progress | None = None,
    title: str = "rounds",
) -> dict[str, list[R]]:
    """Run every variant once per round, in the order given, for ``rounds`` rounds.

    With ``warmup`` each variant first runs once unrecorded (pools fill, caches
    warm). Returns each variant's results in round order. ``progress`` shows a
    phase called ``title`` with one step per run.
    """
    if rounds < 1:
        raise ValueError(f"need at least one round, got {rounds}")
    if not variants:
        raise ValueError("ab_rounds() needs at least one variant")
    total = len(variants) * (rounds + (1 if warmup else 0))
    out: dict[str, list[R]] = {name: [] for name in variants}
    shown = (progress or Progress(quiet=True)).phase(title, total)
    with shown:
        if warmup:
            for name, run in variants.items():
                shown.step(f"{name} (warm-up)")
                run()
        for i in range(1, rounds + 1):
            for name, run in variants.items():
                shown.step(f"{name} (round {i}/{rounds})")
                out[name].append(run())
    return out


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range (low = min, high = max) of repeated measurements, in their own unit."""

    median: float
    low: float
    high: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The median and range of ``values`` (at least one)."""
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    @property
    def n(self) -> int:
        """How many measurements."""
        return len(self.values)

    def as_dict(self, *, with_values: bool = False) -> dict[str, object]:
        """``{"median", "min", "max", "n"}`` (and ``"values"`` when asked)."""
        out: dict[str, object] = {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "n": self.n,
        }
        if with_values:
            out["values"] = list(self.values)
        return out

    def bar(self, label: str) -> Bar:
        """A chart bar at the median, whiskers from min to max."""
        return Bar(label=label, value=self.median, low=self.low, high=self.high)


def spread(values: Sequence[float]) -> Spread:
    """The median and range of ``values`` (at least one); see :class:`Spread`."""
    return Spread.of(values)


def spreads(results: Mapping[str, Sequence[R]], metric: Callable[[R], float]) -> dict[str, Spread]:
    """Each variant's spread of ``metric`` over its rounds.

    E.g. ``spreads(runs, lambda r: r.rate)`` for operations per second.
    """
    return {name: Spread.of([metric(r) for r in rs]) for name, rs in results.items()}


def _median(x: Spread | Sequence[float]) -> float:
    return x.median if isinstance(x, Spread) else Spread.of(x).median


def ratio_of_medians(a: Spread | Sequence[float], b: Spread | Sequence[float]) -> float:
    """``median(a) / median(b)``; a ValueError if ``b``'s median is 0."""
    den = _median(b)
    if den == 0:
        raise ValueError("ratio_of_medians(): the second median is 0")
    return _median(a) / den


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> Spread:
    """The spread of round-by-round ratios ``a[i] / b[i]`` (rounds run side by side)."""
    if len(a) != len(b):
        raise ValueError(f"paired_ratios() needs as many a as b values, got {len(a)}, {len(b)}")
    if any(y == 0 for y in b):
        raise ValueError("paired_ratios(): a value of b is 0")
    return Spread.of([x / y for x, y in zip(a, b, strict=True)])


def group(label: str, variants: Mapping[str, Spread]) -> Group:
    """A chart group: one bar per variant, at its median with its min..max range."""
    return Group(label=label, bars=tuple(s.bar(name) for name, s in variants.items()))


def chart(
    title: str,
    unit: str,
    groups: Mapping[str, Mapping[str, Spread]],
    *,
    target: float | None = None,
) -> Chart:
    """A chart of ``{group label: {bar label: spread}}`` in ``unit``; ``target`` draws a line."""
    return Chart(
        title=title,
        unit=unit,
        groups=tuple(group(label, bars) for label, bars in groups.items()),
        target=target,
    )


def spread_metrics(
    variants: Mapping[str, Spread], suffix: str = "", *, with_values: bool = False
) -> dict[str, dict[str, object]]:
    """Metrics entries ``{name + suffix: {"median", "min", "max", "n"}}``.

    ``suffix`` carries the unit, e.g. ``_per_s`` or ``_ms``.
    """
    return {f"{name}{suffix}": s.as_dict(with_values=with_values) for name, s in variants.items()}
