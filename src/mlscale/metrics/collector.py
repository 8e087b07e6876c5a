"""The single-process exposition: a collector that reads a cluster client at scrape time.

:class:`ClusterCollector` asks ``cluster.stats()``, ``cluster.replica_samples()``
and each cache's ``stats()`` when Prometheus scrapes, so it costs nothing between
scrapes and never goes stale. Register it in any prometheus_client registry
(``prometheus_client.REGISTRY.register(ClusterCollector(cluster))`` adds mlscale to
an application's own ``/metrics``), or use :func:`render_cluster` /
:func:`~mlscale.metrics.start_exporter`.

A custom collector is read in the process that renders; worker processes of a
service need :mod:`mlscale.metrics.multiproc` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .latency import histograms
from .names import METRICS, MetricType
from .samples import CacheReading, Sample, cluster_samples

__all__ = ["ClusterCollector", "cluster_registry", "read_samples", "render_cluster"]

_SPECS = tuple(m for m in METRICS if m.type is not MetricType.HISTOGRAM)


def read_samples(cluster: Any, caches: Iterable[Any] = ()) -> list[Sample]:
    """The samples of ``cluster`` (a Cluster or AsyncCluster: both answer ``stats()``
    and ``replica_samples()`` without I/O) and ``caches`` now."""
    return cluster_samples(
        cluster.stats(), cluster.replica_samples(), [CacheReading.of(c) for c in caches]
    )


def _families(samples: Iterable[Sample] | None) -> list[Metric]:
    families: dict[str, Metric] = {}
    for spec in _SPECS:
        kind = CounterMetricFamily if spec.type is MetricType.COUNTER else GaugeMetricFamily
        families[spec.name] = kind(spec.name, spec.help, labels=spec.labels)
    for s in samples or ():
        families[s.name].add_metric(s.values, s.value)  # type: ignore[attr-defined]
    return list(families.values())


class ClusterCollector(Collector):
    """A prometheus_client collector over one cluster client and its ``caches``
    (:class:`~mlscale.cache.Cache` or ``AsyncCache``), read at each scrape.

    Every metric of :mod:`mlscale.metrics.names` but the latency histograms (those
    are process-wide: :func:`mlscale.metrics.latency.histograms`).
    """

    def __init__(self, cluster: Any, caches: Sequence[Any] = ()) -> None:
        self.cluster = cluster
        self.caches = tuple(caches)

    def describe(self) -> Iterable[Metric]:
        # Names without samples: registering does not read the cluster.
        return _families(None)

    def collect(self) -> Iterator[Metric]:
        yield from _families(read_samples(self.cluster, self.caches))


def cluster_registry(
    cluster: Any, caches: Sequence[Any] = (), *, latency: bool = True
) -> CollectorRegistry:
    """A registry of ``cluster``'s collector and (``latency``) this process's
    latency histograms."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ClusterCollector(cluster, caches))
    if latency:
        for histogram in histograms():
            registry.register(histogram)
    return registry


def render_cluster(cluster: Any, caches: Sequence[Any] = ()) -> str:
    """The text exposition of ``cluster``'s metrics and this process's latency
    histograms (what ``cluster.metrics()`` returns)."""
    return generate_latest(cluster_registry(cluster, caches)).decode()
