"""The metrics store's façade (async source): points of measurements written as
binary COPY, read as ranges, last values and buckets merged exactly across shard
groups, rolled up incrementally and kept a whole day at a time.

- Writes (:meth:`write_lines`, :meth:`write`) parse or collect every point first
  (a bad one fails the call before anything is written), make them rows of the
  points' table (a row per series and time, a column per field:
  :mod:`mlscale.core.timeseries.layout`), check each field's type against the one
  recorded (a new field's column is added first, a clash refused), place each
  series on the group its id hashes to, and run one transaction per group at once:
  per measurement one binary COPY of its rows, then one statement of every
  measurement's new series (known ones are remembered per process) and, with
  rollups, minutes written (the *dirty* minutes). A measurement is made on its
  first write (defaults) if not created. Groups commit independently: a call
  failing on one group may have written on another. A point of a series and time
  already stored takes the stored row's place field by field (the COPY hits the
  primary key, and the group's part is sent again through a staging table and an
  upsert).
- :meth:`downsample` runs one statement per group (primary key on series and time,
  the field's column read; bound parameters) and merges the groups' partials
  exactly (:mod:`mlscale.core.timeseries.aggregate`).
- A read whose ``where`` names every tag key the measurement's series have had (the
  catalog and every group record them, see :mod:`.tables_async`) matches one series
  at most: its id is the hash of the key ``where`` makes, so only the group that id
  maps to is asked, by id (no lookup of tags). The keys this process knows may be
  old (another may have written a series with a new key since): the group checks,
  in the same statement, that it knows no key outside ``where``'s, and answers no
  rows if it does; a read of one series that gets no rows asks every group again
  (by tags) and looks the keys up anew. :meth:`read_stats` counts these.
- :meth:`refresh_rollups` recomputes, per group, the 1-minute rollup of its dirty
  minutes from the points, then the 1-hour rollup of their hours from the 1-minute
  one, and forgets those minutes, all in one transaction: a late point makes its
  minute dirty again, so the rollups equal a recomputation after every refresh.
- :meth:`apply_retention` drops whole day partitions, never deletes rows.

Reads take ``consistency`` and ``token`` like the cluster's reads (pass the
``token`` of a :class:`WriteResult` to read your writes).

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from psycopg.types.json import Jsonb

from ...core.causal import CausalToken, Token
from ...core.consistency import Consistency
from ...core.copybinary import CopyColumn, PgType, encode_copy_split
from ...core.sharding import group_indexes
from ...core.timeseries.aggregate import Agg, exact_percentiles, merge_partials
from ...core.timeseries.batch import (
    KIND_BOOL,
    KIND_INT,
    KIND_STR,
    Point,
    PointBatch,
    RowBatch,
    as_rows,
    batch_of_points,
    series_id,
    series_key,
)
from ...core.timeseries.layout import MeasurementLayout, folded
from ...core.timeseries.lineproto import parse_lines
from ...core.timeseries.results import (
    Buckets,
    LastValue,
    PointRows,
    ReadStats,
    RefreshResult,
    RetentionResult,
    WriteResult,
)
from ...core.timeseries.spec import FAMILY, Measurement
from ...engine.cluster_async import AsyncCluster
from ...errors import IntegrityViolation, MetricsError
from ..shared_async import run_all
from .tables_async import AsyncMetricTables

__all__ = ["AsyncMetricStore"]

_UNIQUE = "23505"
_US_MINUTE = 60_000_000
_US_HOUR = 3_600_000_000
_US_DAY = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LEVELS = {"1m": dt.timedelta(minutes=1), "1h": dt.timedelta(hours=1)}
_UNSEEN: Final = frozenset({"\x00unseen"})  # a measurement's tag keys not looked up yet


class _Part:
    """One measurement's rows of one group in a write: the COPY payload (of fields
    ``names``), the new series and the dirty minutes."""

    __slots__ = ("group", "layout", "minutes", "names", "payload", "series")

    def __init__(
        self, group: str, layout: MeasurementLayout, names: list[str], payload: bytes
    ) -> None:
        self.group = group
        self.layout = layout
        self.names = names
        self.payload = payload
        self.series: tuple[list[int], list[str], list[str]] | None = None
        self.minutes: list[dt.datetime] = []


class AsyncMetricStore:
    """Measurements of points on a cluster (see the module docstring)."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster
        self._tables = AsyncMetricTables(cluster)
        self._measurements: dict[str, Measurement] = {}
        self._known: dict[str, set[int]] = {}  # points table -> series ids stored
        self._fields: dict[str, dict[str, int]] = {}  # measurement -> field kinds recorded
        # measurement -> tag keys recorded as last seen (None: never recorded, unknown)
        self._tag_keys: dict[str, frozenset[str] | None] = {}
        self._sql: dict[Hashable, str] = {}  # read statements made, by what they depend on
        self._stats = ReadStats()

    @property
    def cluster(self) -> AsyncCluster:
        """The cluster the store runs on."""
        return self._cluster

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return self._tables.groups

    # -- measurements ---------------------------------------------------------------------

    async def create(self, measurement: Measurement) -> Measurement:
        """Make ``measurement``'s tables (if missing) and record it; an equal one again is
        a no-op, another definition under its name a MetricsError."""
        made = await self._tables.create(measurement)
        self._measurements[made.name] = made
        return made

    async def get(self, name: str | Measurement) -> Measurement:
        """The recorded measurement ``name`` (MeasurementNotFound if none)."""
        if isinstance(name, Measurement):
            return name
        found = self._measurements.get(name)
        if found is None:
            found = self._measurements[name] = await self._tables.get(name)
        return found

    async def measurements(self) -> list[Measurement]:
        """Every recorded measurement."""
        return await self._tables.load()

    async def drop(self, name: str | Measurement) -> None:
        """Drop a measurement's tables on every group and forget it: its data is gone."""
        m = await self.get(name)
        await self._tables.drop(m)
        self._measurements.pop(m.name, None)
        self._known.pop(m.table, None)
        self._fields.pop(m.name, None)
        self._tag_keys.pop(m.name, None)
        self._sql.clear()

    async def _measurement(self, name: str) -> Measurement:
        """The measurement ``name``, created with the defaults if not recorded."""
        found = self._measurements.get(name)
        if found is not None:
            return found
        found = await self._tables.find(name)
        if found is None:
            found = await self._tables.create(Measurement(name))
        self._measurements[name] = found
        return found

    # -- writes ---------------------------------------------------------------------------

    async def write_lines(
        self, text: str, precision: str = "ns", *, now: dt.datetime | None = None
    ) -> WriteResult:
        """Write InfluxDB 1.x line protocol (see :mod:`mlscale.core.timeseries.lineproto`):
        ``precision`` of the timestamps (ns, us, ms, s, m, h); lines without one get
        ``now`` (default: the time of the call). A bad line raises LineProtocolError
        naming its number before anything is written."""
        started = time.perf_counter()
        now_ns = None if now is None else _us(now) * 1000
        batch = parse_lines(text, precision, now_ns)
        return await self._write(batch, started)

    async def write(
        self, points: Iterable[Point], *, now: dt.datetime | None = None
    ) -> WriteResult:
        """Write typed :class:`Point` s (those without a time get ``now``, default the
        time of the call). A bad point raises MetricsError before anything is written."""
        started = time.perf_counter()
        now_us = _us(now or dt.datetime.now(dt.UTC))
        batch = batch_of_points(points, now_us)
        return await self._write(batch, started)

    async def _write(self, batch: PointBatch, started: float) -> WriteResult:
        if not len(batch):
            return WriteResult(0, 0, 0, {}, CausalToken(), time.perf_counter() - started)
        names = sorted(set(batch.measurements))
        measurements = {n: await self._measurement(n) for n in names}
        codes, uniques = pd.factorize(np.asarray(batch.measurements, dtype=object))
        row_meas = codes[batch.series] if len(uniques) > 1 else None
        # Every measurement's rows made (mixed types refused) before any field is added.
        made: list[tuple[Measurement, RowBatch]] = []
        for i, name in enumerate(uniques.tolist()):
            sub = batch if row_meas is None else batch.take(row_meas == i)
            try:
                made.append((measurements[name], as_rows(sub)))
            except MetricsError as exc:
                raise MetricsError(f"measurement {name!r}: {exc}") from None
        for m, rows in made:
            await self._ensure_fields(m, {c.name: c.kind for c in rows.fields})
        # Tag keys recorded before any series that has them is committed (reads that
        # name every key go to one group, see the module docstring).
        tag_keys: dict[str, set[str]] = {n: set() for n in names}
        for name, tags in zip(batch.measurements, batch.tags, strict=True):
            tag_keys[name].update(k for k, _ in tags)
        keys_token = CausalToken()
        for m in measurements.values():
            keys_token = keys_token.merge(
                await self._ensure_tag_keys(m, frozenset(tag_keys[m.name]))
            )
        shard_map = (await self._cluster.shards()).map_of(FAMILY)
        groups = list(shard_map.groups)
        series_group = group_indexes(shard_map, batch.sids.tolist())
        parts: dict[str, list[_Part]] = {g: [] for g in groups}
        sent = dict.fromkeys(groups, 0)
        for m, rows in made:
            where = series_group[rows.series]
            payloads = encode_copy_split(_columns(batch, rows), where, len(groups))
            counts = np.bincount(where, minlength=len(groups))
            values = np.bincount(where, weights=_values_per_row(rows), minlength=len(groups))
            present = [g for g, c in zip(groups, counts.tolist(), strict=True) if c]
            await self._tables.partitions.ensure(m.partitioned, _days(rows.ts), present)
            known = self._known.setdefault(m.table, set())
            layout = MeasurementLayout(m, self._fields[m.name])
            fields = [c.name for c in rows.fields]
            mine_of = np.unique(rows.series)
            for gi, group in enumerate(groups):
                if not counts[gi]:
                    continue
                part = _Part(group, layout, fields, payloads[gi])
                sent[group] += int(values[gi])
                mine = mine_of[series_group[mine_of] == gi]
                new = [int(s) for s in mine.tolist() if int(batch.sids[s]) not in known]
                if new:
                    part.series = (
                        [int(batch.sids[s]) for s in new],
                        [batch.keys[s] for s in new],
                        [json.dumps(dict(batch.tags[s])) for s in new],
                    )
                if m.rollups:
                    part.minutes = _minutes(rows.ts[where == gi])
                parts[group].append(part)
        tokens: dict[str, CausalToken] = {}

        def send(group: str) -> Callable[[], Any]:
            async def call() -> None:
                try:
                    tokens[group] = await self._send(parts[group], staged=False)
                except IntegrityViolation as exc:
                    if exc.sqlstate != _UNIQUE:
                        raise
                    # A series and time written again: its fields replaced, others kept.
                    tokens[group] = await self._send(parts[group], staged=True)
                for part in parts[group]:
                    if part.series is not None:
                        self._known.setdefault(part.layout.m.table, set()).update(part.series[0])

            return call

        await run_all([send(g) for g in groups if parts[g]])
        token = keys_token
        for t in tokens.values():
            token = token.merge(t)
        return WriteResult(
            points=batch.points,
            values=len(batch),
            series=len(batch.keys),
            groups={g: n for g, n in sent.items() if n},
            token=token,
            seconds=time.perf_counter() - started,
        )

    async def _ensure_fields(self, m: Measurement, kinds: dict[str, int]) -> None:
        """The fields of ``kinds`` recorded with those types (new ones' columns added);
        MetricsError if one is recorded with another type."""
        have = self._fields.get(m.name, {})
        if all(have.get(n) == k for n, k in kinds.items()):
            return
        self._fields[m.name] = await self._tables.add_fields(m, kinds)

    async def _ensure_tag_keys(self, m: Measurement, keys: frozenset[str]) -> CausalToken:
        """Tag ``keys`` recorded among ``m``'s (unless its keys are not known); the
        token of the groups' commits if any were made."""
        have = self._tag_keys.get(m.name, _UNSEEN)
        if have is None or (have is not _UNSEEN and keys <= have):
            return CausalToken()
        self._tag_keys[m.name], token = await self._tables.add_tag_keys(m, keys)
        return token

    async def _one_series(self, m: Measurement, where: Mapping[str, str] | None) -> int | None:
        """The id of the one series ``where`` can match if it names every tag key of
        ``m`` known here (else None: any number of series may match)."""
        if not where:
            return None
        have = self._tag_keys.get(m.name, _UNSEEN)
        if have is _UNSEEN:
            self._stats.tag_key_lookups += 1
            have = self._tag_keys[m.name] = await self._tables.tag_keys(m)
        if have is None or not have <= where.keys():
            return None  # keys are only ever added: a key missing now stays missing
        # A key no series has had leaves no series to match: that id has no rows.
        return series_id(series_key(m.name, _tag_filter(where).items()))

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

    def _statement(self, key: Hashable, make: Callable[[], str]) -> str:
        """The read statement of ``key`` (made once: composing it costs about as much
        as a small query's client time)."""
        found = self._sql.get(key)
        if found is None:
            found = self._sql[key] = make()
        return found

    def read_stats(self) -> ReadStats:
        """Counts of this store's reads so far (see :class:`ReadStats`)."""
        return self._stats.copy()

    async def _layout(self, m: Measurement, field: str | None = None) -> MeasurementLayout:
        """``m``'s layout with its fields' kinds (from the catalog unless ``field`` is
        one already known here: a field's type never changes)."""
        have = self._fields.get(m.name)
        if have is None or field is None or field not in have:
            have = self._fields[m.name] = await self._tables.fields(m)
        return MeasurementLayout(m, have)

    async def _send(self, parts: list[_Part], staged: bool) -> CausalToken:
        """One group's parts in one transaction: straight COPY, or (``staged``) through
        a staging table and an upsert (a series and time written again: the fields
        given replace the stored ones, the others are kept)."""
        group = parts[0].group
        async with self._cluster.transaction(group=group, as_written=True) as tx:
            for part in parts:
                layout = part.layout
                if staged:
                    await tx.execute(layout.stage_ddl())
                    await tx.copy(layout.copy_sql(part.names, layout.stage), part.payload)
                    await tx.execute(layout.upsert_sql(part.names))
                    await tx.execute(layout.drop_stage_sql())
                else:
                    await tx.copy(layout.copy_sql(part.names), part.payload)
            # Every part's new series and dirty minutes in one statement.
            marks: list[str] = []
            params: list[Any] = []
            for part in parts:
                if part.series is not None:
                    marks.append(part.layout.add_series_sql())
                    params.extend(part.series)
                if part.minutes:
                    marks.append(part.layout.mark_dirty_sql())
                    params.append(part.minutes)
            if marks:
                await tx.execute(folded(marks), params)
        return tx.token or CausalToken()

    # -- reads ----------------------------------------------------------------------------

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

        asked = list(groups or self.groups)
        self._stats.count(len(asked), len(self.groups))
        await run_all([read(g) for g in asked])
        return out

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
        params = _params(field, start, end, every, where)
        group_by = _tags(group_by)
        layout = await self._layout(m, field)
        if not layout.numeric(field):
            return _buckets(m, field, a, every, group_by, merge_partials([], len(group_by), a))
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
        return _buckets(m, field, a, every, group_by, merge_partials(parts, keys, a))

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
        params = _params(field, start, end, every, where)
        group_by = _tags(group_by)

        def statement(one: bool) -> str:
            return self._statement(
                ("rollup", m.table, level, a, group_by, bool(where), one),
                lambda: MeasurementLayout(m).rollup_sql(
                    level, a, group_by, bool(where), one_series=one
                ),
            )

        results, _ = await self._read(m, where, params, statement, consistency, token)
        merged = merge_partials(list(results.values()), len(group_by), a)
        return _buckets(m, field, a, every, group_by, merged)

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
        params: dict[str, Any] = {"start": _aware(start), "end": _aware(end)}
        if field is not None:
            params["field"] = field
        if where:
            params["tags"] = Jsonb(dict(_tag_filter(where)))
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise MetricsError("limit must be a whole number >= 0")
            params["limit"] = limit
        layout = await self._layout(m, field)
        names = list(layout.fields) if field is None else [field] if field in layout.fields else []
        if not names:
            return PointRows((), (), (), (), ())
        kinds = tuple((n, layout.fields[n]) for n in names)
        results, _ = await self._read(
            m,
            where,
            params,
            lambda one: self._statement(
                ("range", m.table, kinds, bool(where), limit is not None, one),
                lambda: layout.range_sql(names, bool(where), limit is not None, one_series=one),
            ),
            consistency,
            token,
        )
        rows = sorted((r for rs in results.values() for r in rs), key=lambda r: (r[3], r[0], r[2]))
        if limit is not None:
            rows = rows[:limit]
        return PointRows(
            keys=tuple(r[0] for r in rows),
            tags=tuple(r[1] for r in rows),
            fields=tuple(r[2] for r in rows),
            times=tuple(r[3] for r in rows),
            values=tuple(_typed(r[4:]) for r in rows),
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
        params: dict[str, Any] = {"start": _aware(since) if since else _EPOCH.replace(year=1)}
        if before is not None:
            params["end"] = _aware(before)
        if field is not None:
            params["field"] = field
        if where:
            params["tags"] = Jsonb(dict(_tag_filter(where)))
        layout = await self._layout(m, field)
        names = list(layout.fields) if field is None else [field] if field in layout.fields else []
        if not names:
            return []
        kinds = tuple((n, layout.fields[n]) for n in names)
        results, _ = await self._read(
            m,
            where,
            params,
            lambda one: self._statement(
                ("last", m.table, kinds, bool(where), before is not None, one),
                lambda: layout.last_sql(names, bool(where), before is not None, one_series=one),
            ),
            consistency,
            token,
        )
        rows = sorted((r for rs in results.values() for r in rs), key=lambda r: (r[0], r[2]))
        return [LastValue(r[0], dict(r[1]), r[2], r[3], _typed(r[4:])) for r in rows]

    # -- rollups and retention ------------------------------------------------------------

    async def refresh_rollups(self, measurement: str | Measurement | None = None) -> RefreshResult:
        """Recompute the rollups of the minutes written since the last refresh (of
        ``measurement``, default every measurement with rollups), group by group."""
        started = time.perf_counter()
        targets = (
            [await self.get(measurement)]
            if measurement is not None
            else [m for m in await self._tables.load() if m.rollups]
        )
        minutes: dict[str, dict[str, int]] = {}
        hours: dict[str, dict[str, int]] = {}
        for m in targets:
            if not m.rollups:
                raise MetricsError(f"measurement {m.name!r} keeps no rollups")
            layout = MeasurementLayout(m)
            minutes[m.name] = {}
            hours[m.name] = {}

            def refresh(
                group: str, m: Measurement = m, layout: MeasurementLayout = layout
            ) -> Callable[[], Any]:
                async def call() -> None:
                    async with self._cluster.transaction(group=group, as_written=True) as tx:
                        dirty = [r[0] for r in await tx.fetch_all(layout.take_dirty_sql())]
                        if dirty:
                            # The fields read after the minutes are taken: a writer
                            # records its new fields before it commits its minutes.
                            kinds = await self._tables.fields(m)
                            fill = MeasurementLayout(m, kinds).fill_minutes_sql()
                            lo, hi = _ranges(dirty, dt.timedelta(minutes=1))
                            await tx.execute(layout.clear_rollup_sql("1m"), (lo, hi))
                            if fill is not None:
                                await tx.execute(fill, (lo, hi))
                            hour_starts = sorted({_floor(d, _US_HOUR) for d in dirty})
                            hlo, hhi = _ranges(hour_starts, dt.timedelta(hours=1))
                            await tx.execute(layout.clear_rollup_sql("1h"), (hlo, hhi))
                            await tx.execute(layout.fill_hours_sql(), (hlo, hhi))
                            hours[m.name][group] = len(hour_starts)
                    minutes[m.name][group] = len(dirty)

                return call

            await run_all([refresh(g) for g in self.groups])
        return RefreshResult(minutes, hours, time.perf_counter() - started)

    async def apply_retention(
        self, *, now: dt.datetime | None = None, measurement: str | Measurement | None = None
    ) -> RetentionResult:
        """Drop, on every group, the day partitions (points and rollups) older than each
        measurement's ``retention_days`` (today by ``now`` included; default: every
        measurement with a retention)."""
        when = _aware(now or dt.datetime.now(dt.UTC))
        targets = (
            [await self.get(measurement)] if measurement is not None else await self._tables.load()
        )
        before: dict[str, dt.date] = {}
        days: dict[str, tuple[dt.date, ...]] = {}
        dropped: dict[str, dict[str, tuple[str, ...]]] = {}
        for m in targets:
            if m.retention_days is None:
                continue
            got = await self._tables.retain(m, when)
            before.update(got.before)
            days.update(got.days)
            dropped.update(got.dropped)
        return RetentionResult(before, days, dropped)

    async def partition_days(self, measurement: str | Measurement) -> dict[str, list[dt.date]]:
        """Per group, the days whose points partitions exist."""
        m = await self.get(measurement)
        return await self._tables.partitions.days(m.table)


# -- helpers ---------------------------------------------------------------------------------


def _aware(when: dt.datetime) -> dt.datetime:
    if not isinstance(when, dt.datetime):
        raise MetricsError(f"a time must be a datetime, not {type(when).__name__}")
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _us(when: dt.datetime) -> int:
    delta = _aware(when) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _floor(when: dt.datetime, unit_us: int) -> dt.datetime:
    us = _us(when)
    return _from_us(us - us % unit_us)


def _ranges(
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


def _days(ts: npt.NDArray[np.int64]) -> list[dt.date]:
    days = pd.unique(ts // _US_DAY)
    return [(_EPOCH + dt.timedelta(days=int(d))).date() for d in days.tolist()]


def _minutes(ts: npt.NDArray[np.int64]) -> list[dt.datetime]:
    return [_from_us(int(m) * _US_MINUTE) for m in pd.unique(ts // _US_MINUTE).tolist()]


_PG_TYPE = (PgType.FLOAT8, PgType.INT8, PgType.BOOL, PgType.TEXT)  # by kind


def _columns(b: PointBatch, rows: RowBatch) -> list[CopyColumn]:
    """The rows as the points' COPY columns: sid, ts, then each field's."""
    return [
        CopyColumn(PgType.INT8, b.sids[rows.series]),
        CopyColumn(PgType.TIMESTAMPTZ, rows.ts),
        *(CopyColumn(_PG_TYPE[c.kind], c.values, c.valid) for c in rows.fields),
    ]


def _values_per_row(rows: RowBatch) -> npt.NDArray[np.float64]:
    """How many field values each row holds."""
    out = np.zeros(len(rows), dtype=np.float64)
    for c in rows.fields:
        out += 1.0 if c.valid is None else c.valid
    return out


def _typed(row: Sequence[Any]) -> float | int | bool | str:
    kind, value, ival, sval = row
    if kind == KIND_INT:
        return int(ival)
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STR:
        return str(sval)
    return float(value)


def _tags(group_by: Sequence[str]) -> tuple[str, ...]:
    if isinstance(group_by, str):
        group_by = (group_by,)
    out = tuple(group_by)
    if any(not isinstance(t, str) or not t for t in out) or len(set(out)) != len(out):
        raise MetricsError(f"group_by must be distinct tag names, got {group_by!r}")
    return out


def _tag_filter(where: Mapping[str, str]) -> dict[str, str]:
    for k, v in where.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise MetricsError(f"where: tags and values are str, got {k!r}={v!r}")
    return dict(where)


def _params(
    field: str,
    start: dt.datetime,
    end: dt.datetime,
    every: dt.timedelta,
    where: Mapping[str, str] | None,
) -> dict[str, Any]:
    if not isinstance(every, dt.timedelta) or every <= dt.timedelta(0):
        raise MetricsError(f"every must be a positive timedelta, not {every!r}")
    if not isinstance(field, str) or not field:
        raise MetricsError("field must be a non-empty str")
    params: dict[str, Any] = {
        "field": field,
        "start": _aware(start),
        "end": _aware(end),
        "every": every,
    }
    if params["end"] <= params["start"]:
        raise MetricsError("end must be after start")
    if where:
        params["tags"] = Jsonb(_tag_filter(where))
    return params


def _buckets(
    m: Measurement,
    field: str,
    a: Agg,
    every: dt.timedelta,
    group_by: tuple[str, ...],
    merged: tuple[list[tuple[Any, ...]], list[Any], npt.NDArray[Any], npt.NDArray[Any]],
) -> Buckets:
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
