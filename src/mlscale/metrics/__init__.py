"""Prometheus metrics of mlscale: names, collector, exporter, multiprocess mode.

- :mod:`mlscale.metrics.names`: every metric, in one table.
- :class:`ClusterCollector` / :func:`render_cluster` (``cluster.metrics()``): one
  client's numbers read at scrape time; :func:`start_exporter` serves them.
- :func:`observe_feature_read` / :func:`observe_registry_lookup`: the latency
  histograms the stores feed.
- :class:`MetricsMirror` / :func:`render_multiprocess`: a service's worker
  processes summed (``PROMETHEUS_MULTIPROC_DIR``), see :mod:`mlscale.metrics.multiproc`.

prometheus-client is imported with this package, never by ``import mlscale``.
"""

from __future__ import annotations

from . import names
from .collector import ClusterCollector, cluster_registry, render_cluster
from .exporter import Exporter, start_exporter
from .latency import histograms, observe_feature_read, observe_registry_lookup
from .multiproc import (
    MetricsMirror,
    multiprocess_enabled,
    prune_dead_workers,
    render_multiprocess,
    start_mirror,
)

__all__ = [
    "ClusterCollector",
    "Exporter",
    "MetricsMirror",
    "cluster_registry",
    "histograms",
    "multiprocess_enabled",
    "names",
    "observe_feature_read",
    "observe_registry_lookup",
    "prune_dead_workers",
    "render_cluster",
    "render_multiprocess",
    "start_exporter",
    "start_mirror",
]
