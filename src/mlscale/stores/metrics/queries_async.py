"""Reads of the metrics store (async source): downsample, rollup, range, last.

- :meth:`~AsyncMetricQueries.downsample` runs one statement per group (primary key
  on series and time, the field's column read; bound parameters) and merges the
  groups' partials exactly (:mod:`mlscale.core.timeseries.aggregate`);
  :meth:`~AsyncMetricQueries.rollup` does the same on a rollup's rows.
- A read whose ``where`` names every tag key the measurement's series have had (the
  catalog and every group record them, see :mod:`.tables_async`) matches one series
  at most: its id is the hash of the key ``where`` makes, so only the group that id
  maps to is asked, by id (no lookup of tags). The keys this process knows may be
  old (another may have written a series with a new key since): the group checks,
  in the same statement, that it knows no key outside ``where``'s, and answers no
  rows if it does; a read of one series that gets no rows asks every group again
  (by tags) and looks the keys up anew. ``read_stats`` counts these.

Reads take ``consistency`` and ``token`` like the cluster's reads (pass the
``token`` of a :class:`WriteResult` to read your writes).

``queries_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

from ...core.causal import Token
from ...core.consistency import Consistency
from ...core.timeseries.aggregate import Agg, exact_percentiles, merge_partials
from ...core.timeseries.batch import series_id, series_key
from ...core.timeseries.layout import MeasurementLayout
from ...core.timeseries.reads import (
    bucket_params,
    buckets,
    group_tags,
    tag_filter,
    typed,
    value_params,
)
from ...core.timeseries.results import Buckets, LastValue, PointRows, ReadStats
from ...core.timeseries.spec import FAMILY, Measurement
from ...core.timeseries.times import EPOCH, aware
from ...engine.cluster_async import AsyncCluster
from ...errors import MetricsError
from ..shared_async import run_all
from .tables_async import AsyncMetricTables
from .writes_async import UNSEEN

__all__ = ["AsyncMetricQueries"]

_LEVELS = {"1m": dt.timedelta(minutes=1), "1h": dt.timedelta(hours=1)}


class AsyncMetricQueries:
    """The reads of :class:`~.store_async.AsyncMetricStore`, which sets the state
    below (see the module docstring)."""

    _cluster: AsyncCluster
    _tables: AsyncMetricTables
    _fields: dict[str, dict[str, int]]  # measurement -> field kinds recorded
    _tag_keys: dict[str, frozenset[str] | None]  # measurement -> tag keys (None: unknown)
    _sql: dict[Hashable, str]  # read statements made, by what they depend on
    _stats: ReadStats
    get: Callable[[str | Measurement], Awaitable[Measurement]]

    async def downsample(
        self,
        measurement: str | Measurement,
        field: str,
        start: dt.datetime,
        end: dt.datetime,
        every: dt.timedelta,
        agg: str = "mean",
        *,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
        consistency: Consistency | str | None = None,
        token: Token = None,
    ) -> Buckets:
        """``field``'s values in ``[start, end)`` of the series matching ``where`` (tag
        equality), in buckets ``every`` wide aligned on the Unix epoch, per value of
        the ``group_by`` tags (none: every matching series together), aggregated by
        ``agg``: mean, min, max, sum, count or a percentile ``pNN`` (linear
        interpolation, as ``percentile_cont``). Exact across groups. Only numeric
        values count (floats, integers, booleans as 0/1): a string field, or one never
        written, has no buckets."""
        m = await self.get(measurement)
        a = Agg.parse(agg)
        params = bucket_params(field, start, end, every, where)
        group_by = group_tags(group_by)
        layout = await self._layout(m, field)
        if not layout.numeric(field):
            return buckets(m, field, a, every, group_by, merge_partials([], len(group_by), a))
        kind = layout.fields[field]

        def statement(one: bool) -> str:
            return self._statement(
                ("downsample", m.table, field, kind, a, group_by, bool(where), one),
                lambda: layout.downsample_sql(field, a, group_by, bool(where), one_series=one),
            )

        results, one = await self._read(m, where, params, statement, consistency, token)
        keys = len(group_by)
        parts = list(results.values())
        if a.percentile and not one:
            parts = await self._exact_percentiles(
                layout, a, group_by, params, results, consistency, token
            )
        return buckets(m, field, a, every, group_by, merge_partials(parts, keys, a))

    async def rollup(
        self,
        measurement: str | Measurement,
        field: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        level: str = "1m",
        every: dt.timedelta | None = None,
        agg: str = "mean",
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
        consistency: Consistency | str | None = None,
        token: Token = None,
    ) -> Buckets:
        """Like :meth:`downsample`, read from the rollup of ``level`` ("1m" or "1h") as of
        the last :meth:`refresh_rollups`: ``every`` (default: the level's width) must
        be a multiple of the level; ``agg`` mean, min, max, sum or count."""
        m = await self.get(measurement)
        if not m.rollups:
            raise MetricsError(f"measurement {m.name!r} keeps no rollups")
        if level not in _LEVELS:
            raise MetricsError(f"rollup level {level!r}: use 1m or 1h")
        width = _LEVELS[level]
        every = every or width
        if every % width:
            raise MetricsError(f"every ({every}) must be a multiple of the rollup level {level}")
        a = Agg.parse(agg)
        params = bucket_params(field, start, end, every, where)
        group_by = group_tags(group_by)

        def statement(one: bool) -> str:
            return self._statement(
                ("rollup", m.table, level, a, group_by, bool(where), one),
                lambda: MeasurementLayout(m).rollup_sql(
                    level, a, group_by, bool(where), one_series=one
                ),
            )

        results, _ = await self._read(m, where, params, statement, consistency, token)
        merged = merge_partials(list(results.values()), len(group_by), a)
        return buckets(m, field, a, every, group_by, merged)

    async def range(
        self,
        measurement: str | Measurement,
        start: dt.datetime,
        end: dt.datetime,
        *,
        field: str | None = None,
        where: Mapping[str, str] | None = None,
        limit: int | None = None,
        consistency: Consistency | str | None = None,
        token: Token = None,
    ) -> PointRows:
        """The field values (of ``field`` if given) in ``[start, end)`` of the series
        matching ``where``, oldest first (at most ``limit``)."""
        m = await self.get(measurement)
        params = value_params(aware(start), aware(end), field, where)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise MetricsError("limit must be a whole number >= 0")
            params["limit"] = limit
        rows = await self._values(
            m, "range", params, limit is not None, field, where, consistency, token
        )
        if limit is not None:
            rows = rows[:limit]
        return PointRows(
            keys=tuple(r[0] for r in rows),
            tags=tuple(r[1] for r in rows),
            fields=tuple(r[2] for r in rows),
            times=tuple(r[3] for r in rows),
            values=tuple(typed(r[4:]) for r in rows),
        )

    async def last(
        self,
        measurement: str | Measurement,
        *,
        field: str | None = None,
        where: Mapping[str, str] | None = None,
        since: dt.datetime | None = None,
        before: dt.datetime | None = None,
        consistency: Consistency | str | None = None,
        token: Token = None,
    ) -> list[LastValue]:
        """The last value of each series' field (``field`` only if given) among the
        series matching ``where``, in ``[since, before)`` (default: any time), by
        series key then field."""
        m = await self.get(measurement)
        start = aware(since) if since else EPOCH.replace(year=1)
        end = None if before is None else aware(before)
        params = value_params(start, end, field, where)
        rows = await self._values(
            m, "last", params, before is not None, field, where, consistency, token
        )
        return [LastValue(r[0], dict(r[1]), r[2], r[3], typed(r[4:])) for r in rows]

    async def _values(
        self,
        m: Measurement,
        what: Literal["range", "last"],
        params: dict[str, Any],
        bounded: bool,
        field: str | None,
        where: Mapping[str, str] | None,
        consistency: Consistency | str | None,
        token: Token,
    ) -> list[Any]:
        """The rows ``(key, tags, field, time, kind, value, ival, sval)`` of the
        ``what`` read ("range": bounded by a limit, rows by time, key, field; "last":
        bounded by ``before``, rows by key, field) of every field (``field`` only if
        given); [] if the measurement has no such field."""
        layout = await self._layout(m, field)
        names = list(layout.fields) if field is None else [field] if field in layout.fields else []
        if not names:
            return []
        kinds = tuple((n, layout.fields[n]) for n in names)
        make = layout.range_sql if what == "range" else layout.last_sql
        results, _ = await self._read(
            m,
            where,
            params,
            lambda one: self._statement(
                (what, m.table, kinds, bool(where), bounded, one),
                lambda: make(names, bool(where), bounded, one_series=one),
            ),
            consistency,
            token,
        )
        rows = (r for rs in results.values() for r in rs)
        if what == "range":
            return sorted(rows, key=lambda r: (r[3], r[0], r[2]))
        return sorted(rows, key=lambda r: (r[0], r[2]))

    async def _exact_percentiles(
        self,
        layout: MeasurementLayout,
        a: Agg,
        group_by: tuple[str, ...],
        params: Mapping[str, Any],
        results: dict[str, list[Any]],
        consistency: Consistency | str | None,
        token: Token,
    ) -> list[list[Any]]:
        """Groups' percentile rows, those of buckets held by more than one group
        recomputed over all their values (see :mod:`~mlscale.core.timeseries.aggregate`)."""
        keys = len(group_by)
        seen = Counter(tuple(r[: keys + 1]) for rows in results.values() for r in rows)
        shared = {k for k, c in seen.items() if c > 1}
        if not shared:
            return list(results.values())
        involved = [
            g for g, rows in results.items() if any(tuple(r[: keys + 1]) in shared for r in rows)
        ]
        raw_sql = layout.downsample_sql(
            params["field"], a, group_by, "tags" in params, raw_values=True
        )
        raw = await self._each_group(raw_sql, params, consistency, token, involved)
        arrays: dict[tuple[Any, ...], list[Any]] = {}
        counts: Counter[tuple[Any, ...]] = Counter()
        for rows in raw.values():
            for r in rows:
                k = tuple(r[: keys + 1])
                if k in shared:
                    arrays.setdefault(k, []).append(r[keys + 2])
                    counts[k] += int(r[keys + 1])
        kept = [
            [r for r in rows if tuple(r[: keys + 1]) not in shared] for rows in results.values()
        ]
        kept.append([(*k, counts[k], exact_percentiles(v, a.q or 0.0)) for k, v in arrays.items()])
        return kept

    # -- where a read goes ----------------------------------------------------------------

    async def _read(
        self,
        m: Measurement,
        where: Mapping[str, str] | None,
        params: dict[str, Any],
        statement: Callable[[bool], str],
        consistency: Consistency | str | None,
        token: Token,
    ) -> tuple[dict[str, list[Any]], bool]:
        """``statement(one_series)`` run: on the group of the one series ``where``
        names if it names every key known here, else (or if that group answers no
        rows) on every group. Each group's rows, and whether one series' were read."""
        sid = await self._one_series(m, where)
        if sid is not None and where:
            pinned = {k: v for k, v in params.items() if k != "tags"}
            pinned.update(sid=sid, keys=sorted(where))
            group = (await self._cluster.shards()).map_of(FAMILY).locate(sid)
            results = await self._each_group(statement(True), pinned, consistency, token, [group])
            if any(results.values()):
                self._stats.one_series += 1
                return results, True
            # No rows: none in the range, or the group knows a key the where lacks.
            self._stats.asked_again += 1
            self._tag_keys.pop(m.name, None)
        return await self._each_group(statement(False), params, consistency, token), False

    async def _one_series(self, m: Measurement, where: Mapping[str, str] | None) -> int | None:
        """The id of the one series ``where`` can match if it names every tag key of
        ``m`` known here (else None: any number of series may match)."""
        if not where:
            return None
        have = self._tag_keys.get(m.name, UNSEEN)
        if have is UNSEEN:
            self._stats.tag_key_lookups += 1
            have = self._tag_keys[m.name] = await self._tables.tag_keys(m)
        if have is None or not have <= where.keys():
            return None  # keys are only ever added: a key missing now stays missing
        # A key no series has had leaves no series to match: that id has no rows.
        return series_id(series_key(m.name, tag_filter(where).items()))

    async def _each_group(
        self,
        query: str,
        params: Mapping[str, Any],
        consistency: Consistency | str | None,
        token: Token,
        groups: Sequence[str] | None = None,
    ) -> dict[str, list[Any]]:
        """``query`` on every group (or ``groups``) at once: each group's rows."""
        out: dict[str, list[Any]] = {}

        def read(group: str) -> Callable[[], Any]:
            async def call() -> None:
                out[group] = await self._cluster.as_written(group).fetch_all(
                    query, dict(params), consistency=consistency, token=token
                )

            return call

        every = self._tables.groups
        asked = list(groups or every)
        self._stats.count(len(asked), len(every))
        await run_all([read(g) for g in asked])
        return out

    def _statement(self, key: Hashable, make: Callable[[], str]) -> str:
        """The read statement of ``key`` (made once: composing it costs about as much
        as a small query's client time)."""
        found = self._sql.get(key)
        if found is None:
            found = self._sql[key] = make()
        return found

    async def _layout(self, m: Measurement, field: str | None = None) -> MeasurementLayout:
        """``m``'s layout with its fields' kinds (from the catalog unless ``field`` is
        one already known here: a field's type never changes)."""
        have = self._fields.get(m.name)
        if have is None or field is None or field not in have:
            have = self._fields[m.name] = await self._tables.fields(m)
        return MeasurementLayout(m, have)
