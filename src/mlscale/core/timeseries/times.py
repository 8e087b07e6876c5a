"""Times of the metrics store: datetimes as microseconds since 1970 UTC and back,
bucket starts floored and coalesced into ranges, the UTC days and minutes a batch's
times fall in. No I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from ...errors import MetricsError

__all__ = [
    "EPOCH",
    "US_DAY",
    "US_HOUR",
    "US_MINUTE",
    "aware",
    "days",
    "floor",
    "from_us",
    "minutes",
    "ranges",
    "to_us",
]

US_MINUTE = 60_000_000  # microseconds in a minute
US_HOUR = 3_600_000_000
US_DAY = 86_400_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def aware(when: dt.datetime) -> dt.datetime:
    """``when`` with a time zone (a naive datetime is UTC); MetricsError if it is not
    a datetime."""
    if not isinstance(when, dt.datetime):
        raise MetricsError(f"a time must be a datetime, not {type(when).__name__}")
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def to_us(when: dt.datetime) -> int:
    """``when`` as microseconds since 1970 UTC (a naive datetime is UTC)."""
    delta = aware(when) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> dt.datetime:
    """Microseconds since 1970 UTC as an aware datetime."""
    return EPOCH + dt.timedelta(microseconds=us)


def floor(when: dt.datetime, unit_us: int) -> dt.datetime:
    """``when`` floored to a multiple of ``unit_us`` microseconds since 1970 UTC."""
    us = to_us(when)
    return from_us(us - us % unit_us)


def ranges(
    starts: Sequence[dt.datetime], width: dt.timedelta
) -> tuple[list[dt.datetime], list[dt.datetime]]:
    """Sorted bucket starts ``width`` wide coalesced into ranges: their lows, highs."""
    lo: list[dt.datetime] = []
    hi: list[dt.datetime] = []
    for s in sorted(starts):
        if hi and s <= hi[-1]:
            hi[-1] = max(hi[-1], s + width)
        else:
            lo.append(s)
            hi.append(s + width)
    return lo, hi


def days(ts: npt.NDArray[np.int64]) -> list[dt.date]:
    """The UTC days times ``ts`` (microseconds since 1970) fall in, in order of first
    appearance."""
    found = pd.unique(ts // US_DAY)
    return [(EPOCH + dt.timedelta(days=int(d))).date() for d in found.tolist()]


def minutes(ts: npt.NDArray[np.int64]) -> list[dt.datetime]:
    """The starts of the minutes times ``ts`` (microseconds since 1970) fall in, in
    order of first appearance."""
    return [from_us(int(m) * US_MINUTE) for m in pd.unique(ts // US_MINUTE).tolist()]
