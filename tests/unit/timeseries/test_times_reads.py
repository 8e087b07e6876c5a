"""The metrics store's pure helpers: times as microseconds, bucket starts coalesced
into ranges, and a read's arguments checked and bound."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from mlscale.core.timeseries.batch import KIND_BOOL, KIND_FLOAT, KIND_INT, KIND_STR
from mlscale.core.timeseries.reads import (
    bucket_params,
    group_tags,
    tag_filter,
    typed,
    value_params,
)
from mlscale.core.timeseries.times import (
    EPOCH,
    US_DAY,
    US_HOUR,
    US_MINUTE,
    aware,
    days,
    floor,
    from_us,
    minutes,
    ranges,
    to_us,
)
from mlscale.errors import MetricsError

T = dt.datetime(2026, 12, 7, 14, 35, 12, 345, tzinfo=dt.UTC)


def test_microseconds_round_trip_and_naive_is_utc() -> None:
    assert from_us(to_us(T)) == T
    assert to_us(T.replace(tzinfo=None)) == to_us(T)
    assert to_us(EPOCH) == 0
    with pytest.raises(MetricsError, match="must be a datetime"):
        aware("2026-12-07")  # type: ignore[arg-type]


def test_floor_to_the_hour() -> None:
    assert floor(T, US_HOUR) == dt.datetime(2026, 12, 7, 14, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("starts", "lo", "hi"),
    [
        ([], [], []),
        ([0, 1, 2], [0], [3]),  # adjacent minutes: one range
        ([5, 0, 1], [0, 5], [2, 6]),  # unsorted, a gap
    ],
)
def test_ranges_coalesce_adjacent_buckets(starts: list[int], lo: list[int], hi: list[int]) -> None:
    minute = dt.timedelta(minutes=1)
    got = ranges([EPOCH + s * minute for s in starts], minute)
    assert got == ([EPOCH + s * minute for s in lo], [EPOCH + s * minute for s in hi])


def test_days_and_minutes_in_order_of_first_appearance() -> None:
    ts = np.array([US_DAY + 5, 3, US_DAY + US_MINUTE, 7], dtype=np.int64)
    assert days(ts) == [dt.date(1970, 1, 2), dt.date(1970, 1, 1)]
    assert minutes(ts) == [from_us(US_DAY), EPOCH, from_us(US_DAY + US_MINUTE)]


def test_typed_values_by_kind() -> None:
    assert typed((KIND_FLOAT, 1.5, None, None)) == 1.5
    assert typed((KIND_INT, None, 7, None)) == 7
    assert typed((KIND_BOOL, 1.0, None, None)) is True
    assert typed((KIND_STR, None, None, "x")) == "x"


def test_read_arguments_checked() -> None:
    assert group_tags("host") == ("host",)
    with pytest.raises(MetricsError, match="distinct"):
        group_tags(["a", "a"])
    with pytest.raises(MetricsError, match="are str"):
        tag_filter({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(MetricsError, match="positive"):
        bucket_params("f", T, T, dt.timedelta(0), None)
    with pytest.raises(MetricsError, match="after start"):
        bucket_params("f", T, T, dt.timedelta(minutes=1), None)
    params = bucket_params("f", T, T + dt.timedelta(1), dt.timedelta(minutes=1), {"h": "a"})
    assert set(params) == {"field", "start", "end", "every", "tags"}
    assert value_params(T, None, None, None) == {"start": T}
    assert set(value_params(T, T, "f", {"h": "a"})) == {"start", "end", "field", "tags"}
