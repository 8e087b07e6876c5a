"""Metrics as time series (InfluxDB-style) on the sharded cluster: measurements of
points (tags, fields, time), written at COPY speed or as InfluxDB line protocol,
read as ranges, last values and exact downsampled buckets, rolled up incrementally
and dropped a whole day at a time. Not :mod:`mlscale.metrics` (mlscale's own
Prometheus counters).

    from mlscale.stores.metrics import Measurement, MetricStore

    store = MetricStore(cluster)
    store.create(Measurement("train", retention_days=30))
    store.write_lines("train,run=a loss=0.5,step=10i 1700000000000000000")
    b = store.downsample("train", "loss", start, end, timedelta(minutes=5), "p99",
                         where={"run": "a"})
    b.to_frame()
"""

from ...core.timeseries.batch import Point
from ...core.timeseries.results import (
    Buckets,
    LastValue,
    PointRows,
    ReadStats,
    RefreshResult,
    RetentionResult,
    WriteResult,
)
from ...core.timeseries.spec import Measurement
from .store_async import AsyncMetricStore
from .store_sync import MetricStore

__all__ = [
    "AsyncMetricStore",
    "Buckets",
    "LastValue",
    "Measurement",
    "MetricStore",
    "Point",
    "PointRows",
    "ReadStats",
    "RefreshResult",
    "RetentionResult",
    "WriteResult",
]
