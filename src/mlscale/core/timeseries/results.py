"""What the metrics store's calls return (plain values with ``to_dict()``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..causal import CausalToken
from ..plain import plain, plain_dict

__all__ = [
    "Buckets",
    "LastValue",
    "PointRows",
    "ReadStats",
    "RefreshResult",
    "RetentionResult",
    "WriteResult",
]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A write: ``points`` (lines) and ``values`` (field values, one row each) stored,
    ``series`` distinct series among them, per shard group the values sent, the causal
    ``token`` of the commits (read your writes with it), and how long it took
    (``seconds``, parsing included)."""

    points: int
    values: int
    series: int
    groups: dict[str, int]
    token: CausalToken
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the token as its string)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class Buckets:
    """Aggregated buckets of one field, as columns: bucket ``i`` starts at
    ``times[i]`` (UTC datetime64[us]; buckets are aligned on the Unix epoch and
    ``every`` wide), holds ``counts[i]`` values, aggregated to ``values[i]``, and is of
    the group-by tag values ``tags[i]`` (None: the series has no such tag). Only
    buckets with values are listed, sorted by tags, then time."""

    measurement: str
    field: str
    agg: str
    every: dt.timedelta
    group_by: tuple[str, ...]
    tags: tuple[tuple[str | None, ...], ...]
    times: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.times)

    def to_frame(self) -> Any:
        """A pandas DataFrame: the group-by tags, ``time`` (UTC), ``value``, ``count``."""
        import pandas as pd

        data: dict[str, Any] = {
            tag: [t[i] for t in self.tags] for i, tag in enumerate(self.group_by)
        }
        data["time"] = pd.to_datetime(self.times, utc=True)
        data["value"] = self.values
        data["count"] = self.counts
        return pd.DataFrame(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (times as ISO strings)."""
        return {
            "measurement": self.measurement,
            "field": self.field,
            "agg": self.agg,
            "every_s": self.every.total_seconds(),
            "group_by": list(self.group_by),
            "buckets": [
                {
                    "tags": list(t),
                    "time": plain(_utc(ts)),
                    "value": float(v),
                    "count": int(n),
                }
                for t, ts, v, n in zip(
                    self.tags, self.times.tolist(), self.values, self.counts, strict=True
                )
            ],
        }


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class LastValue:
    """A series' field's last value: the series ``key`` (line-protocol head, tags
    sorted), its ``tags``, the ``field``, its ``time`` and ``value`` (float, int, bool
    or str, as written)."""

    key: str
    tags: dict[str, str]
    field: str
    time: dt.datetime
    value: float | int | bool | str

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class PointRows:
    """Raw field values, oldest first: row ``i`` is series ``keys[i]`` (tags
    ``tags[i]``), field ``fields[i]`` at ``times[i]`` with value ``values[i]`` (float,
    int, bool or str, as written)."""

    keys: tuple[str, ...]
    tags: tuple[dict[str, str], ...]
    fields: tuple[str, ...]
    times: tuple[dt.datetime, ...]
    values: tuple[float | int | bool | str, ...]

    def __len__(self) -> int:
        return len(self.times)

    def to_frame(self) -> Any:
        """A pandas DataFrame: ``key``, ``field``, ``time`` (UTC), ``value``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "key": list(self.keys),
                "field": list(self.fields),
                "time": pd.to_datetime(list(self.times), utc=True),
                "value": list(self.values),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """A rollup refresh: per measurement and shard group, the dirty minutes
    recomputed (``minutes``) and the hours recomputed from them (``hours``)."""

    minutes: dict[str, dict[str, int]]
    hours: dict[str, dict[str, int]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """Retention applied: per measurement, the UTC days dropped before (``before``:
    the first day kept) and per shard group the partitions dropped."""

    before: dict[str, dt.date]
    days: dict[str, tuple[dt.date, ...]]
    dropped: dict[str, dict[str, tuple[str, ...]]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(slots=True)
class ReadStats:
    """A store's reads so far: statements sent to groups (``reads``, one a read, two for
    a percentile recomputed across groups), the groups they went to in all
    (``groups_asked``) and how many every group would have been (``groups_total``),
    reads answered by one series' group alone (``one_series``), reads of one series
    whose group answered no rows and that asked every group again (``asked_again``),
    and the catalog look-ups of a measurement's tag keys (``tag_key_lookups``).
    Counted without a lock: exact in one thread, approximate when threads share the
    store."""

    reads: int = 0
    groups_asked: int = 0
    groups_total: int = 0
    one_series: int = 0
    asked_again: int = 0
    tag_key_lookups: int = 0

    def count(self, asked: int, total: int) -> None:
        """One read sent to ``asked`` of ``total`` groups."""
        self.reads += 1
        self.groups_asked += asked
        self.groups_total += total

    def copy(self) -> ReadStats:
        """The counts as they are now."""
        return dataclasses.replace(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)
