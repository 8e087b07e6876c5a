# Generated from maintenance_async.py by scripts/async_to_sync.py: do not edit.
# Change maintenance_async.py and run the script again.
"""Upkeep of the metrics store (async source): refresh_rollups, apply_retention,
partition_days.

- :meth:`~MetricMaintenance.refresh_rollups` recomputes, per group, the
  1-minute rollup of its dirty minutes from the points, then the 1-hour rollup of
  their hours from the 1-minute one, and forgets those minutes, all in one
  transaction: a late point makes its minute dirty again, so the rollups equal a
  recomputation after every refresh.
- :meth:`~MetricMaintenance.apply_retention` drops whole day partitions, never
  deletes rows.

``maintenance_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from ...core.timeseries.layout import MeasurementLayout
from ...core.timeseries.results import RefreshResult, RetentionResult
from ...core.timeseries.spec import Measurement
from ...core.timeseries.times import US_HOUR, aware, floor, ranges
from ...engine.cluster_sync import Cluster
from ...errors import MetricsError
from ..shared_sync import run_all
from .tables_sync import MetricTables

__all__ = ["MetricMaintenance"]


class MetricMaintenance:
    """The rollups, retention and partitions of :class:`~.store_sync.MetricStore`,
    which sets the state below (see the module docstring)."""

    _cluster: Cluster
    _tables: MetricTables
    get: Callable[[str | Measurement], Measurement]

    def refresh_rollups(self, measurement: str | Measurement | None = None) -> RefreshResult:
        """Recompute the rollups of the minutes written since the last refresh (of
        ``measurement``, default every measurement with rollups), group by group."""
        started = time.perf_counter()
        targets = (
            [self.get(measurement)]
            if measurement is not None
            else [m for m in self._tables.load() if m.rollups]
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
                def call() -> None:
                    with self._cluster.transaction(group=group, as_written=True) as tx:
                        dirty = [r[0] for r in tx.fetch_all(layout.take_dirty_sql())]
                        if dirty:
                            # The fields read after the minutes are taken: a writer
                            # records its new fields before it commits its minutes.
                            kinds = self._tables.fields(m)
                            fill = MeasurementLayout(m, kinds).fill_minutes_sql()
                            lo, hi = ranges(dirty, dt.timedelta(minutes=1))
                            tx.execute(layout.clear_rollup_sql("1m"), (lo, hi))
                            if fill is not None:
                                tx.execute(fill, (lo, hi))
                            hour_starts = sorted({floor(d, US_HOUR) for d in dirty})
                            hlo, hhi = ranges(hour_starts, dt.timedelta(hours=1))
                            tx.execute(layout.clear_rollup_sql("1h"), (hlo, hhi))
                            tx.execute(layout.fill_hours_sql(), (hlo, hhi))
                            hours[m.name][group] = len(hour_starts)
                    minutes[m.name][group] = len(dirty)

                return call

            run_all([refresh(g) for g in self._tables.groups])
        return RefreshResult(minutes, hours, time.perf_counter() - started)

    def apply_retention(
        self, *, now: dt.datetime | None = None, measurement: str | Measurement | None = None
    ) -> RetentionResult:
        """Drop, on every group, the day partitions (points and rollups) older than each
        measurement's ``retention_days`` (today by ``now`` included; default: every
        measurement with a retention)."""
        when = aware(now or dt.datetime.now(dt.UTC))
        targets = [self.get(measurement)] if measurement is not None else self._tables.load()
        before: dict[str, dt.date] = {}
        days: dict[str, tuple[dt.date, ...]] = {}
        dropped: dict[str, dict[str, tuple[str, ...]]] = {}
        for m in targets:
            if m.retention_days is None:
                continue
            got = self._tables.retain(m, when)
            before.update(got.before)
            days.update(got.days)
            dropped.update(got.dropped)
        return RetentionResult(before, days, dropped)

    def partition_days(self, measurement: str | Measurement) -> dict[str, list[dt.date]]:
        """Per group, the days whose points partitions exist."""
        m = self.get(measurement)
        return self._tables.partitions.days(m.table)
