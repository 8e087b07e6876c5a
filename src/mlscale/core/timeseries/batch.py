"""Points as columns: what the line-protocol parser and typed points both become
before they are placed on shard groups and copied. No I/O.

A *series* is a measurement and its tag set; its canonical key is the line-protocol
head with the tags sorted by key (``cpu,host=a,region=eu``), and its id (``sid``) a
64-bit hash of that key: the shard key, so every point of a series lives on one
shard group. A batch holds one row per field value: the series (index into the
batch's series), the point, the field name, the time (microseconds since 1970 UTC:
nanosecond inputs are truncated), the kind (float, integer, boolean, string) and the
value. :func:`as_rows` turns one measurement's values into what is stored: one row
per series and time, a column per field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ...errors import MetricsError

__all__ = [
    "KIND_BOOL",
    "KIND_FLOAT",
    "KIND_INT",
    "KIND_STR",
    "BatchBuilder",
    "FieldColumn",
    "Point",
    "PointBatch",
    "RowBatch",
    "as_rows",
    "field_kinds",
    "series_id",
    "series_key",
]

KIND_FLOAT, KIND_INT, KIND_BOOL, KIND_STR = 0, 1, 2, 3
FieldValue = float | int | bool | str
_INT64 = (-(2**63), 2**63 - 1)


def _esc_measurement(name: str) -> str:
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _esc_tag(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def series_key(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """The canonical key of a series: its line-protocol head, tags sorted by key."""
    parts = [_esc_measurement(measurement)]
    parts += [f"{_esc_tag(k)}={_esc_tag(v)}" for k, v in sorted(tags)]
    return ",".join(parts)


def series_id(key: str) -> int:
    """The series' 64-bit id (signed, as PostgreSQL's int8) from its canonical key."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class Point:
    """One point: a ``measurement``, its ``tags`` (str -> str), its ``fields`` (name ->
    float, int, bool or str; at least one) and its ``time`` (a datetime, naive = UTC,
    or integer nanoseconds since 1970 UTC; None: the time of the write)."""

    measurement: str
    fields: Mapping[str, FieldValue]
    tags: Mapping[str, str] = field(default_factory=dict)
    time: dt.datetime | int | None = None


@dataclass(frozen=True, slots=True)
class PointBatch:
    """Field values as columns (see the module docstring). ``points``: how many points
    (lines) they came from. Series ``i`` is ``measurements[i]`` with ``tags[i]``
    (sorted pairs), key ``keys[i]`` and id ``sids[i]``; ``point[j]``: the point (0-based,
    in the order given) of value ``j``."""

    measurements: tuple[str, ...]
    tags: tuple[tuple[tuple[str, str], ...], ...]
    keys: tuple[str, ...]
    sids: npt.NDArray[np.int64]
    series: npt.NDArray[np.int64]
    point: npt.NDArray[np.int64]
    field: npt.NDArray[Any]
    ts: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]
    value: npt.NDArray[np.float64]
    ival: npt.NDArray[np.int64]
    sval: npt.NDArray[Any]
    points: int

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, rows: npt.NDArray[Any]) -> PointBatch:
        """The rows ``rows`` (a mask or indexes) of the batch, same series tables."""
        return PointBatch(
            self.measurements,
            self.tags,
            self.keys,
            self.sids,
            self.series[rows],
            self.point[rows],
            self.field[rows],
            self.ts[rows],
            self.kind[rows],
            self.value[rows],
            self.ival[rows],
            self.sval[rows],
            self.points,
        )


class BatchBuilder:
    """Collects points (series, time, fields) into a :class:`PointBatch`. Per point
    cost is a few list appends; typing happens in numpy at :meth:`build`."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}  # canonical key -> series index
        self.measurements: list[str] = []
        self.tags: list[tuple[tuple[str, str], ...]] = []
        self.keys: list[str] = []
        # Per point: its series, its time, how many field values it has.
        self.point_series: list[int] = []
        self.point_ts: list[int] = []
        self.ts_array: npt.NDArray[np.int64] | None = None  # instead of point_ts if set
        self.point_fields: list[int] = []
        # Per field value: its name and float value (nan for strings, 0.0 for
        # integers: set from them at build); the rows of other kinds listed aside.
        self.fields: list[str] = []
        self.values: list[float] = []
        self.ints_at: list[int] = []
        self.ints: list[int] = []
        self.bools_at: list[int] = []
        self.strs_at: list[int] = []
        self.strs: list[str] = []

    def series(self, measurement: str, tags: Iterable[tuple[str, str]]) -> int:
        """The index of the series (made on first sight)."""
        pairs = tuple(sorted(tags))
        key = series_key(measurement, pairs)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.keys)
            self.measurements.append(measurement)
            self.tags.append(pairs)
            self.keys.append(key)
        return found

    def add_point(self, series: int, ts_us: int, fields: Mapping[str, FieldValue]) -> None:
        """One point of series ``series`` at ``ts_us`` (microseconds since 1970 UTC)."""
        for name, value in fields.items():
            self.add_value(name, value)
        self.point_series.append(series)
        self.point_ts.append(ts_us)
        self.point_fields.append(len(fields))

    def add_value(self, name: str, value: Any) -> None:
        """One field value of the point being added (see :meth:`add_point`)."""
        row = len(self.values)
        if isinstance(value, bool):
            self.bools_at.append(row)
            self.values.append(1.0 if value else 0.0)
        elif isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                raise MetricsError(f"field {name!r}: integer {value} out of int64 range")
            self.ints_at.append(row)
            self.ints.append(value)
            self.values.append(0.0)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise MetricsError(f"field {name!r}: {value} is not a finite number")
            self.values.append(value)
        elif isinstance(value, str):
            self.strs_at.append(row)
            self.strs.append(value)
            self.values.append(math.nan)
        else:
            raise MetricsError(
                f"field {name!r}: a {type(value).__name__} is not a float, int, bool or str"
            )
        self.fields.append(name)

    def build(self) -> PointBatch:
        """The batch of every point added."""
        n = len(self.values)
        per_point = np.asarray(self.point_fields, dtype=np.int64)
        series = np.repeat(np.asarray(self.point_series, dtype=np.int64), per_point)
        times = self.ts_array if self.ts_array is not None else self.point_ts
        ts = np.repeat(np.asarray(times, dtype=np.int64), per_point)
        kind = np.zeros(n, dtype=np.int8)
        value = np.asarray(self.values, dtype=np.float64)
        ival = np.zeros(n, dtype=np.int64)
        sval = np.full(n, None, dtype=object)
        if self.ints_at:
            at = np.asarray(self.ints_at, dtype=np.int64)
            kind[at] = KIND_INT
            ival[at] = np.fromiter(self.ints, np.int64, len(self.ints))
            value[at] = ival[at].astype(np.float64)
        if self.bools_at:
            kind[np.asarray(self.bools_at, dtype=np.int64)] = KIND_BOOL
        if self.strs_at:
            at = np.asarray(self.strs_at, dtype=np.int64)
            kind[at] = KIND_STR
            sval[at] = self.strs
        sids = np.fromiter(map(series_id, self.keys), np.int64, len(self.keys))
        return PointBatch(
            measurements=tuple(self.measurements),
            tags=tuple(self.tags),
            keys=tuple(self.keys),
            sids=sids,
            series=series,
            point=np.repeat(np.arange(len(per_point), dtype=np.int64), per_point),
            field=np.asarray(self.fields, dtype=object),
            ts=ts,
            kind=kind,
            value=value,
            ival=ival,
            sval=sval,
            points=len(per_point),
        )


def time_us(value: dt.datetime | int | None, now_us: int) -> int:
    """A point's time as microseconds since 1970 UTC (int: nanoseconds, truncated
    toward the past; None: ``now_us``; a naive datetime is UTC)."""
    if value is None:
        return now_us
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        delta = aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, bool) or not isinstance(value, int):
        raise MetricsError(f"a point's time must be a datetime or integer ns, not {value!r}")
    return value // 1000


def batch_of_points(points: Iterable[Point], now_us: int) -> PointBatch:
    """Typed points as a batch; MetricsError naming the point (0-based) if one is bad."""
    b = BatchBuilder()
    for i, p in enumerate(points):
        try:
            if not isinstance(p.measurement, str) or not p.measurement:
                raise MetricsError("the measurement must be a non-empty str")
            if not p.fields:
                raise MetricsError("a point needs at least one field")
            for k, v in p.tags.items():
                if not isinstance(k, str) or not isinstance(v, str) or not k or not v:
                    raise MetricsError(f"tag {k!r}={v!r}: tags are non-empty str")
            for k in p.fields:
                if not isinstance(k, str) or not k:
                    raise MetricsError(f"field name {k!r}: field names are non-empty str")
            b.add_point(b.series(p.measurement, p.tags.items()), time_us(p.time, now_us), p.fields)
        except MetricsError as exc:
            raise MetricsError(f"point {i}: {exc}") from None
    return b.build()


@dataclass(frozen=True, slots=True)
class FieldColumn:
    """One field's values of a :class:`RowBatch`: its ``name``, ``kind`` and a value a
    row (float64, int64, bool or str objects by kind), present where ``valid`` (None:
    in every row)."""

    name: str
    kind: int
    values: npt.NDArray[Any]
    valid: npt.NDArray[np.bool_] | None


@dataclass(frozen=True, slots=True)
class RowBatch:
    """One measurement's points as stored: a row per series and time (``series``: index
    into the batch's series; ``ts`` in microseconds), sorted by both, a column a field.
    ``merged``: points folded into an earlier one of the same series and time."""

    series: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    fields: tuple[FieldColumn, ...]
    merged: int

    def __len__(self) -> int:
        return len(self.ts)


def field_kinds(batch: PointBatch, measurement: str = "") -> dict[str, int]:
    """Each field's kind in ``batch`` (one measurement's values); MetricsError if a field
    has values of two kinds (as InfluxDB, a field's type is fixed)."""
    names, codes = _factor(batch.field)
    out: dict[str, int] = {}
    for i, name in enumerate(names):
        kinds = batch.kind[codes == i]
        lo, hi = int(kinds.min()), int(kinds.max())
        if lo != hi:
            raise MetricsError(
                f"field {name!r} of {measurement!r}: both {_KIND_NAMES[lo]} and "
                f"{_KIND_NAMES[hi]} values in one write (a field's type is fixed)"
            )
        out[name] = lo
    return out


def as_rows(batch: PointBatch) -> RowBatch:
    """One measurement's values as a row per series and time. Points of the same series
    and time are merged as InfluxDB merges them: a field given again takes the value
    of the last point given, the other fields are kept. Mixed kinds raise as
    :func:`field_kinds` says."""
    kinds = field_kinds(batch)
    n = len(batch)
    order = np.lexsort((batch.ts, batch.series))  # stable: equal keys keep their order
    s, t = batch.series[order], batch.ts[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    row = np.empty(n, dtype=np.int64)
    row[order] = np.cumsum(starts) - 1
    rows = int(starts.sum())
    points = len(np.unique(batch.point))
    names, codes = _factor(batch.field)
    columns = []
    for i, name in enumerate(names):
        at = np.flatnonzero(codes == i)  # in the order given: the last one wins
        r = row[at]
        if len(np.unique(r)) != len(r):
            kept, first = np.unique(r[::-1], return_index=True)
            at, r = at[::-1][first], kept
        kind = kinds[name]
        source = _SOURCE[kind](batch)
        values = np.zeros(rows, dtype=source.dtype) if kind != KIND_STR else np.full(rows, None)
        values[r] = source[at]
        valid = None
        if len(r) != rows:
            valid = np.zeros(rows, dtype=bool)
            valid[r] = True
        columns.append(FieldColumn(name, kind, values, valid))
    return RowBatch(s[starts], t[starts], tuple(columns), points - rows)


_KIND_NAMES = ("float", "integer", "boolean", "string")
_SOURCE: tuple[Any, ...] = (
    lambda b: b.value,
    lambda b: b.ival,
    lambda b: b.value != 0.0,
    lambda b: b.sval,
)


def _factor(names: npt.NDArray[Any]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Distinct field names (first seen first) and each value's index among them."""
    codes, uniques = pd.factorize(names)
    return uniques.tolist(), codes.astype(np.int64, copy=False)
