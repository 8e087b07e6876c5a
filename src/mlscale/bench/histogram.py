"""A latency histogram with bounded memory and a fixed relative precision.

Values (seconds) fall into logarithmic buckets: bucket ``i`` holds
``[lowest_s * g**i, lowest_s * g**(i + 1))`` with ``g = 1 + precision``. A
bucket stands for its geometric midpoint, so a percentile is off by at most
``sqrt(g) - 1`` of itself (about 0.5 % at the default 1 % precision), at any
scale from ``lowest_s`` to ``highest_s``: tails keep their precision, unlike
fixed-width buckets. Values outside that span go to the first or last bucket;
``min`` and ``max`` are kept exactly, and every percentile is clamped to them,
so p0 and p100 are exact.

Memory depends only on the span and precision (1 µs .. 100 s at 1 % is
1,852 buckets at most), never on how many values were recorded. Worker
histograms :meth:`~Histogram.merge` into one; processes send theirs back as
:meth:`~Histogram.to_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Histogram"]


class Histogram:
    """Counts of values (seconds) in log-spaced buckets; percentiles in seconds.

    Not thread-safe: give each worker its own and merge them afterwards.
    """

    __slots__ = (
        "_buckets",
        "_inv_log_g",
        "_last",
        "_log_lowest",
        "count",
        "highest_s",
        "lowest_s",
        "max_s",
        "min_s",
        "precision",
        "sum_s",
    )

    def __init__(
        self, *, lowest_s: float = 1e-6, highest_s: float = 100.0, precision: float = 0.01
    ) -> None:
        """A histogram resolving ``lowest_s``..``highest_s`` seconds to ``precision``
        (relative bucket width, e.g. 0.01 = 1 %)."""
        if not 0 < lowest_s < highest_s:
            raise ValueError(f"need 0 < lowest_s < highest_s, got {lowest_s=}, {highest_s=}")
        if not 0 < precision <= 1:
            raise ValueError(f"precision must be in (0, 1], got {precision}")
        self.lowest_s = float(lowest_s)
        self.highest_s = float(highest_s)
        self.precision = float(precision)
        self._log_lowest = math.log(self.lowest_s)
        self._inv_log_g = 1.0 / math.log1p(self.precision)
        self._last = math.ceil(math.log(self.highest_s / self.lowest_s) * self._inv_log_g)
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.sum_s = 0.0
        self.min_s = math.inf
        self.max_s = -math.inf

    @classmethod
    def of(cls, values_s: Iterable[float], **config: float) -> Histogram:
        """A histogram of ``values_s`` (seconds); ``config`` as for the constructor."""
        h = cls(**config)
        for v in values_s:
            h.record(v)
        return h

    # -- recording --------------------------------------------------------------

    def _index(self, value_s: float) -> int:
        if value_s <= self.lowest_s:
            return 0
        i = int((math.log(value_s) - self._log_lowest) * self._inv_log_g)
        return i if i < self._last else self._last

    def record(self, value_s: float) -> None:
        """Count one value (seconds, >= 0)."""
        if not value_s >= 0:  # also rejects NaN
            raise ValueError(f"a latency must be >= 0 seconds, got {value_s}")
        i = self._index(value_s)
        self._buckets[i] = self._buckets.get(i, 0) + 1
        self.count += 1
        self.sum_s += value_s
        if value_s < self.min_s:
            self.min_s = value_s
        if value_s > self.max_s:
            self.max_s = value_s

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other``'s counts to this histogram (same span and precision); returns self."""
        if (other.lowest_s, other.highest_s, other.precision) != (
            self.lowest_s,
            self.highest_s,
            self.precision,
        ):
            raise ValueError("can only merge histograms with the same span and precision")
        for i, n in other._buckets.items():
            self._buckets[i] = self._buckets.get(i, 0) + n
        self.count += other.count
        self.sum_s += other.sum_s
        self.min_s = min(self.min_s, other.min_s)
        self.max_s = max(self.max_s, other.max_s)
        return self

    @classmethod
    def merged(cls, parts: Iterable[Histogram], **config: float) -> Histogram:
        """One histogram holding every count of ``parts`` (an empty one if none)."""
        out = cls(**config)
        for part in parts:
            out.merge(part)
        return out

    # -- reading ----------------------------------------------------------------

    @property
    def bucket_count(self) -> int:
        """Buckets in use now (memory), at most :attr:`max_buckets`."""
        return len(self._buckets)

    @property
    def max_buckets(self) -> int:
        """The most buckets this histogram can ever use, whatever it records."""
        return self._last + 1

    @property
    def relative_error(self) -> float:
        """The largest relative error of a percentile inside the span (e.g. 0.005)."""
        return math.sqrt(1.0 + self.precision) - 1.0

    @property
    def mean_s(self) -> float:
        """The exact mean in seconds (NaN when empty)."""
        return self.sum_s / self.count if self.count else math.nan

    def _value(self, i: int) -> float:
        mid = math.exp(self._log_lowest + (i + 0.5) / self._inv_log_g)
        return min(max(mid, self.min_s), self.max_s)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in seconds, by nearest rank.

        The value at rank ``ceil(q / 100 * count)`` of the sorted samples, within
        :attr:`relative_error`; ``q=0`` is the exact minimum, ``q=100`` the maximum.
        """
        if not 0 <= q <= 100:
            raise ValueError(f"q must be between 0 and 100, got {q}")
        if self.count == 0:
            raise ValueError("percentile() of an empty histogram")
        if q == 0:
            return self.min_s
        if q == 100:
            return self.max_s
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for i in sorted(self._buckets):
            seen += self._buckets[i]
            if seen >= rank:
                return self._value(i)
        return self.max_s  # unreachable: the counts add up to self.count

    def summary_ms(self, quantiles: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
        """Percentiles and maximum in milliseconds, e.g. ``{"p50": .., "p99": .., "max": ..}``.

        Empty gives an empty mapping: no operation, no latency to report.
        """
        if self.count == 0:
            return {}
        out = {f"p{q:g}": self.percentile(q) * 1000 for q in quantiles}
        out["max"] = self.max_s * 1000
        return out

    # -- transport --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON- and pickle-safe) that :meth:`from_dict` turns back into a histogram."""
        empty = self.count == 0
        return {
            "lowest_s": self.lowest_s,
            "highest_s": self.highest_s,
            "precision": self.precision,
            "count": self.count,
            "sum_s": self.sum_s,
            "min_s": None if empty else self.min_s,
            "max_s": None if empty else self.max_s,
            "buckets": sorted(self._buckets.items()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """The histogram that :meth:`to_dict` described."""
        h = cls(lowest_s=data["lowest_s"], highest_s=data["highest_s"], precision=data["precision"])
        buckets = {int(i): int(n) for i, n in data["buckets"]}
        if sum(buckets.values()) != data["count"] or any(
            n < 0 or not 0 <= i <= h._last for i, n in buckets.items()
        ):
            raise ValueError("histogram data is inconsistent: bucket counts do not add up")
        h._buckets = {i: n for i, n in buckets.items() if n}
        h.count = int(data["count"])
        h.sum_s = float(data["sum_s"])
        if h.count:
            h.min_s = float(data["min_s"])
            h.max_s = float(data["max_s"])
        return h

    def __repr__(self) -> str:
        if not self.count:
            return "Histogram(count=0)"
        return (
            f"Histogram(count={self.count}, p50={self.percentile(50) * 1000:.3g} ms, "
            f"p99={self.percentile(99) * 1000:.3g} ms, max={self.max_s * 1000:.3g} ms)"
        )
