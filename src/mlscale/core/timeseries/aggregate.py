"""Aggregates of buckets, computed per shard group and merged exactly. No I/O.

Every group answers, per bucket, partials that merge without loss: a count, and
the sum (mean, sum), the min or the max. A percentile has no such partial: each
group answers its own exact ``percentile_cont`` and its count; a bucket that
turns out to hold values of more than one group is asked again of those groups as
the values themselves (``array_agg``) and its percentile taken over all of them in
numpy, whose default (linear) interpolation is ``percentile_cont``'s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
from psycopg import sql

from ...errors import MetricsError

__all__ = ["AGGREGATES", "Agg", "merge_partials"]

AGGREGATES = ("mean", "min", "max", "sum", "count", "pNN (a percentile, e.g. p50, p99, p99.9)")
_PCT = re.compile(r"p(\d{1,2}(?:\.\d+)?|100)")


@dataclass(frozen=True, slots=True)
class Agg:
    """An aggregate: ``kind`` (mean, min, max, sum, count, percentile) and, for a
    percentile, ``q`` in [0, 1]. ``name`` is how it was asked for."""

    kind: str
    name: str
    q: float | None = None

    @classmethod
    def parse(cls, name: str) -> Agg:
        """``mean``, ``min``, ``max``, ``sum``, ``count`` or ``pNN`` (``p50``, ``p99.9``)."""
        if name in ("mean", "min", "max", "sum", "count"):
            return cls(name, name)
        m = _PCT.fullmatch(name) if isinstance(name, str) else None
        if m is None:
            raise MetricsError(f"unknown aggregate {name!r} (use {', '.join(AGGREGATES)})")
        q = float(m.group(1)) / 100
        if not 0 <= q <= 1:
            raise MetricsError(f"percentile {name!r} outside p0..p100")
        return cls("percentile", name, q)

    @property
    def percentile(self) -> bool:
        """Whether partials cannot be merged (a percentile)."""
        return self.kind == "percentile"

    def partials_sql(self, value: str, raw_values: bool = False) -> sql.Composable:
        """The partial columns over raw values ``value`` (a column): count, then the
        sum, min, max, the percentile (or, ``raw_values``, every value as an array)."""
        v = sql.SQL(value)
        extra: sql.Composable
        if self.kind in ("mean", "sum"):
            extra = sql.SQL(", sum({})").format(v)
        elif self.kind == "min":
            extra = sql.SQL(", min({})").format(v)
        elif self.kind == "max":
            extra = sql.SQL(", max({})").format(v)
        elif self.kind == "count":
            extra = sql.SQL("")
        elif raw_values:
            extra = sql.SQL(", array_agg({})").format(v)
        else:
            extra = sql.SQL(", percentile_cont({}) WITHIN GROUP (ORDER BY {})").format(
                sql.Literal(self.q), v
            )
        return sql.SQL("count(*)") + extra

    def rollup_partials_sql(self) -> sql.Composable:
        """The partial columns over a rollup's rows (n, total, lo, hi)."""
        extra = {
            "mean": ", sum(p.total)",
            "sum": ", sum(p.total)",
            "min": ", min(p.lo)",
            "max": ", max(p.hi)",
            "count": "",
        }.get(self.kind)
        if extra is None:
            raise MetricsError(
                f"aggregate {self.name!r} cannot be read from a rollup (percentiles need the "
                "points: use downsample)"
            )
        return sql.SQL("sum(p.n)::int8" + extra)


def merge_partials(
    parts: Sequence[Sequence[Sequence[Any]]], keys: int, agg: Agg
) -> tuple[list[tuple[Any, ...]], list[Any], np.ndarray, np.ndarray]:
    """Groups' partial rows ``(*tags, bucket, count[, x])`` merged per (tags, bucket):
    the tags, buckets, values and counts, sorted by tags then bucket. Percentile rows
    must not be in more than one part (see the module docstring)."""
    answered = [rows for rows in parts if rows]
    if len(answered) <= 1:
        return _unmerged(answered[0] if answered else [], keys, agg)
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for rows in parts:
        for row in rows:
            key = tuple(row[: keys + 1])
            n = int(row[keys + 1])
            x = row[keys + 2] if len(row) > keys + 2 else None
            have = merged.get(key)
            if have is None:
                merged[key] = [n, x]
                continue
            if agg.percentile:
                raise AssertionError("a percentile bucket from two groups was not recomputed")
            have[0] += n
            if agg.kind in ("mean", "sum"):
                have[1] += x
            elif agg.kind == "min":
                have[1] = min(have[1], x)
            elif agg.kind == "max":
                have[1] = max(have[1], x)
    order = sorted(merged, key=lambda k: (tuple("" if t is None else t for t in k[:keys]), k[keys]))
    counts = np.array([merged[k][0] for k in order], dtype=np.int64)
    if agg.kind == "mean":
        sums = np.array([merged[k][1] for k in order], dtype=np.float64)
        values = sums / np.maximum(counts, 1)
    elif agg.kind == "count":
        values = counts.astype(np.float64)
    else:
        values = np.array([merged[k][1] for k in order], dtype=np.float64)
    return [k[:keys] for k in order], [k[keys] for k in order], values, counts


def _sort_key(keys: int) -> Any:
    """Rows' order: tags (None first, as ""), then bucket."""
    if not keys:
        return itemgetter(0)
    return lambda r: (tuple("" if t is None else t for t in r[:keys]), r[keys])


def _unmerged(
    rows: Sequence[Sequence[Any]], keys: int, agg: Agg
) -> tuple[list[tuple[Any, ...]], list[Any], np.ndarray, np.ndarray]:
    """One group's rows (a bucket a row, nothing to merge) as :func:`merge_partials`
    returns them -- the common case of a read that matches series of one group, about
    twice as fast as merging (no dict of buckets)."""
    order = sorted(rows, key=_sort_key(keys))
    n = len(order)
    counts = np.fromiter((r[keys + 1] for r in order), np.int64, n)
    if agg.kind == "count":
        values = counts.astype(np.float64)
    else:
        values = np.fromiter((r[keys + 2] for r in order), np.float64, n)
        if agg.kind == "mean":
            values = values / np.maximum(counts, 1)
    return [tuple(r[:keys]) for r in order], [r[keys] for r in order], values, counts


def exact_percentiles(arrays: Sequence[Sequence[float]], q: float) -> float:
    """The percentile ``q`` of every value of ``arrays`` together (linear, as
    ``percentile_cont``)."""
    values = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
    return float(np.percentile(values, q * 100))
