"""The metrics store's façade (async source): points of measurements written as
binary COPY, read as ranges, last values and buckets merged exactly across shard
groups, rolled up incrementally and kept a whole day at a time. The rooms:

- this file: the store, its measurements (create, get, list, drop) and its read
  counts;
- :mod:`.writes_async`: write_lines, write (binary COPY per group, new series and
  dirty minutes in the same transaction; groups commit independently);
- :mod:`.queries_async`: downsample, rollup, range, last (merged exactly across
  groups; a read of one series asks its group only);
- :mod:`.maintenance_async`: refresh_rollups, apply_retention, partition_days;
- :mod:`.tables_async`: the catalog of measurements and their tables on every group;
- pure halves in :mod:`mlscale.core.timeseries`: rows and COPY layout, SQL, exact
  merges, read parameters (:mod:`~mlscale.core.timeseries.reads`) and times
  (:mod:`~mlscale.core.timeseries.times`).

Reads take ``consistency`` and ``token`` like the cluster's reads (pass the
``token`` of a :class:`WriteResult` to read your writes).

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Hashable

from ...core.timeseries.results import ReadStats
from ...core.timeseries.spec import Measurement
from ...engine.cluster_async import AsyncCluster
from .maintenance_async import AsyncMetricMaintenance
from .queries_async import AsyncMetricQueries
from .tables_async import AsyncMetricTables
from .writes_async import AsyncMetricWrites

__all__ = ["AsyncMetricStore"]


class AsyncMetricStore(AsyncMetricWrites, AsyncMetricQueries, AsyncMetricMaintenance):
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

    def read_stats(self) -> ReadStats:
        """Counts of this store's reads so far (see :class:`ReadStats`)."""
        return self._stats.copy()
