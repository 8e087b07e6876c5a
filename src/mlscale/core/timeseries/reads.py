"""A metrics read's arguments checked and made its statement's bound parameters,
and its rows made typed results. No I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.types.json import Jsonb

from ...errors import MetricsError
from .aggregate import Agg
from .batch import KIND_BOOL, KIND_INT, KIND_STR
from .results import Buckets
from .spec import Measurement
from .times import aware

__all__ = ["bucket_params", "buckets", "group_tags", "tag_filter", "typed", "value_params"]


def typed(row: Sequence[Any]) -> float | int | bool | str:
    """A value read as ``(kind, float value, integer value, string value)``, of its
    field's type."""
    kind, value, ival, sval = row
    if kind == KIND_INT:
        return int(ival)
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STR:
        return str(sval)
    return float(value)


def group_tags(group_by: Sequence[str]) -> tuple[str, ...]:
    """``group_by`` as a tuple of distinct tag names (a lone str is one name)."""
    if isinstance(group_by, str):
        group_by = (group_by,)
    out = tuple(group_by)
    if any(not isinstance(t, str) or not t for t in out) or len(set(out)) != len(out):
        raise MetricsError(f"group_by must be distinct tag names, got {group_by!r}")
    return out


def tag_filter(where: Mapping[str, str]) -> dict[str, str]:
    """``where`` as a dict of tag equalities; MetricsError unless tags and values are str."""
    for k, v in where.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise MetricsError(f"where: tags and values are str, got {k!r}={v!r}")
    return dict(where)


def bucket_params(
    field: str,
    start: dt.datetime,
    end: dt.datetime,
    every: dt.timedelta,
    where: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The parameters of a read of ``field``'s buckets ``every`` wide in
    ``[start, end)`` of the series matching ``where``."""
    if not isinstance(every, dt.timedelta) or every <= dt.timedelta(0):
        raise MetricsError(f"every must be a positive timedelta, not {every!r}")
    if not isinstance(field, str) or not field:
        raise MetricsError("field must be a non-empty str")
    params: dict[str, Any] = {
        "field": field,
        "start": aware(start),
        "end": aware(end),
        "every": every,
    }
    if params["end"] <= params["start"]:
        raise MetricsError("end must be after start")
    if where:
        params["tags"] = Jsonb(tag_filter(where))
    return params


def value_params(
    start: dt.datetime,
    end: dt.datetime | None,
    field: str | None,
    where: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The parameters of a read of field values (of ``field`` if given) from ``start``
    (before ``end`` if given; both aware) of the series matching ``where``."""
    params: dict[str, Any] = {"start": start}
    if end is not None:
        params["end"] = end
    if field is not None:
        params["field"] = field
    if where:
        params["tags"] = Jsonb(tag_filter(where))
    return params


def buckets(
    m: Measurement,
    field: str,
    a: Agg,
    every: dt.timedelta,
    group_by: tuple[str, ...],
    merged: tuple[list[tuple[Any, ...]], list[Any], npt.NDArray[Any], npt.NDArray[Any]],
) -> Buckets:
    """The buckets of groups' partials ``merged`` (tags, times in microseconds since
    1970 UTC, values, counts: :func:`~.aggregate.merge_partials`)."""
    tags, times, values, counts = merged
    stamps = np.array(times, dtype=np.int64).astype("datetime64[us]")
    return Buckets(
        measurement=m.name,
        field=field,
        agg=a.name,
        every=every,
        group_by=group_by,
        tags=tuple(tags),
        times=stamps,
        values=values,
        counts=counts,
    )
