# Generated from writes_async.py by scripts/async_to_sync.py: do not edit.
# Change writes_async.py and run the script again.
"""Writes of the metrics store (async source): write_lines, write.

A call parses or collects every point first (a bad one fails the call before
anything is written), makes them rows of the points' table (a row per series and
time, a column per field: :mod:`mlscale.core.timeseries.layout`), checks each
field's type against the one recorded (a new field's column is added first, a clash
refused), places each series on the group its id hashes to, and runs one
transaction per group at once: per measurement one binary COPY of its rows, then one
statement of every measurement's new series (known ones are remembered per process)
and, with rollups, minutes written (the *dirty* minutes). A measurement is made on
its first write (defaults) if not created. Groups commit independently: a call
failing on one group may have written on another. A point of a series and time
already stored takes the stored row's place field by field (the COPY hits the
primary key, and the group's part is sent again through a staging table and an
upsert). Tag keys are recorded before any series that has them is committed (reads
that name every key go to one group: see :mod:`.queries_sync`).

``writes_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from ...core.causal import CausalToken
from ...core.copybinary import CopyColumn, PgType, encode_copy_split
from ...core.sharding import group_indexes
from ...core.timeseries.batch import Point, PointBatch, RowBatch, as_rows, batch_of_points
from ...core.timeseries.layout import MeasurementLayout, folded
from ...core.timeseries.lineproto import parse_lines
from ...core.timeseries.results import WriteResult
from ...core.timeseries.spec import FAMILY, Measurement
from ...core.timeseries.times import days, minutes, to_us
from ...engine.cluster_sync import Cluster
from ...errors import IntegrityViolation, MetricsError
from ..shared_sync import run_all
from .tables_sync import MetricTables

__all__ = ["UNSEEN", "MetricWrites"]

_UNIQUE = "23505"
UNSEEN: Final = frozenset({"\x00unseen"})  # a measurement's tag keys not looked up yet
_PG_TYPE = (PgType.FLOAT8, PgType.INT8, PgType.BOOL, PgType.TEXT)  # by kind


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


class MetricWrites:
    """The writes of :class:`~.store_sync.MetricStore`, which sets the state
    below (see the module docstring)."""

    _cluster: Cluster
    _tables: MetricTables
    _measurements: dict[str, Measurement]
    _known: dict[str, set[int]]  # points table -> series ids stored
    _fields: dict[str, dict[str, int]]  # measurement -> field kinds recorded
    _tag_keys: dict[str, frozenset[str] | None]  # measurement -> tag keys (None: unknown)

    def write_lines(
        self, text: str, precision: str = "ns", *, now: dt.datetime | None = None
    ) -> WriteResult:
        """Write InfluxDB 1.x line protocol (see :mod:`mlscale.core.timeseries.lineproto`):
        ``precision`` of the timestamps (ns, us, ms, s, m, h); lines without one get
        ``now`` (default: the time of the call). A bad line raises LineProtocolError
        naming its number before anything is written."""
        started = time.perf_counter()
        now_ns = None if now is None else to_us(now) * 1000
        batch = parse_lines(text, precision, now_ns)
        return self._write(batch, started)

    def write(self, points: Iterable[Point], *, now: dt.datetime | None = None) -> WriteResult:
        """Write typed :class:`Point` s (those without a time get ``now``, default the
        time of the call). A bad point raises MetricsError before anything is written."""
        started = time.perf_counter()
        now_us = to_us(now or dt.datetime.now(dt.UTC))
        batch = batch_of_points(points, now_us)
        return self._write(batch, started)

    def _write(self, batch: PointBatch, started: float) -> WriteResult:
        if not len(batch):
            return WriteResult(0, 0, 0, {}, CausalToken(), time.perf_counter() - started)
        names = sorted(set(batch.measurements))
        measurements = {n: self._measurement(n) for n in names}
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
            self._ensure_fields(m, {c.name: c.kind for c in rows.fields})
        # Tag keys recorded before any series that has them is committed (reads that
        # name every key go to one group, see the module docstring).
        tag_keys: dict[str, set[str]] = {n: set() for n in names}
        for name, tags in zip(batch.measurements, batch.tags, strict=True):
            tag_keys[name].update(k for k, _ in tags)
        token = CausalToken()
        for m in measurements.values():
            token = token.merge(self._ensure_tag_keys(m, frozenset(tag_keys[m.name])))
        parts, sent = self._parts(batch, made)
        tokens: dict[str, CausalToken] = {}

        def send(group: str) -> Callable[[], Any]:
            def call() -> None:
                try:
                    tokens[group] = self._send(parts[group], staged=False)
                except IntegrityViolation as exc:
                    if exc.sqlstate != _UNIQUE:
                        raise
                    # A series and time written again: its fields replaced, others kept.
                    tokens[group] = self._send(parts[group], staged=True)
                for part in parts[group]:
                    if part.series is not None:
                        self._known.setdefault(part.layout.m.table, set()).update(part.series[0])

            return call

        run_all([send(g) for g in parts if parts[g]])
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

    def _parts(
        self, batch: PointBatch, made: list[tuple[Measurement, RowBatch]]
    ) -> tuple[dict[str, list[_Part]], dict[str, int]]:
        """Each measurement's rows split by the group of their series (the day
        partitions they need made there): each group's parts, and the field values
        sent to each group."""
        shard_map = (self._cluster.shards()).map_of(FAMILY)
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
            self._tables.partitions.ensure(m.partitioned, days(rows.ts), present)
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
                    part.minutes = minutes(rows.ts[where == gi])
                parts[group].append(part)
        return parts, sent

    def _measurement(self, name: str) -> Measurement:
        """The measurement ``name``, created with the defaults if not recorded."""
        found = self._measurements.get(name)
        if found is not None:
            return found
        found = self._tables.find(name)
        if found is None:
            found = self._tables.create(Measurement(name))
        self._measurements[name] = found
        return found

    def _ensure_fields(self, m: Measurement, kinds: dict[str, int]) -> None:
        """The fields of ``kinds`` recorded with those types (new ones' columns added);
        MetricsError if one is recorded with another type."""
        have = self._fields.get(m.name, {})
        if all(have.get(n) == k for n, k in kinds.items()):
            return
        self._fields[m.name] = self._tables.add_fields(m, kinds)

    def _ensure_tag_keys(self, m: Measurement, keys: frozenset[str]) -> CausalToken:
        """Tag ``keys`` recorded among ``m``'s (unless its keys are not known); the
        token of the groups' commits if any were made."""
        have = self._tag_keys.get(m.name, UNSEEN)
        if have is None or (have is not UNSEEN and keys <= have):
            return CausalToken()
        self._tag_keys[m.name], token = self._tables.add_tag_keys(m, keys)
        return token

    def _send(self, parts: list[_Part], staged: bool) -> CausalToken:
        """One group's parts in one transaction: straight COPY, or (``staged``) through
        a staging table and an upsert (a series and time written again: the fields
        given replace the stored ones, the others are kept)."""
        group = parts[0].group
        with self._cluster.transaction(group=group, as_written=True) as tx:
            for part in parts:
                layout = part.layout
                if staged:
                    tx.execute(layout.stage_ddl())
                    tx.copy(layout.copy_sql(part.names, layout.stage), part.payload)
                    tx.execute(layout.upsert_sql(part.names))
                    tx.execute(layout.drop_stage_sql())
                else:
                    tx.copy(layout.copy_sql(part.names), part.payload)
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
                tx.execute(folded(marks), params)
        return tx.token or CausalToken()


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
