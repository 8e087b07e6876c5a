"""Every metric mlscale exports, in one table: name, type, help, labels.

The collector, the multiprocess mirror, the latency histograms and the Grafana
dashboard (``dashboards/grafana-mlscale.json``) all read their names from here, and
a test checks that each query of the dashboard names a metric of this table.

Names carry the prefix ``mlscale_`` and their unit (``_seconds``, ``_bytes``).
A counter is named without its ``_total``: Prometheus's exposition adds it, so
``mlscale_reads`` is queried as ``mlscale_reads_total``. Histograms are queried
through ``_bucket``, ``_sum`` and ``_count``.

``multiprocess_mode`` says how prometheus_client merges a gauge over the worker
processes of a service (see :mod:`mlscale.metrics.multiproc`): ``livesum`` for what
each process owns (its pools), ``livemax`` / ``livemin`` for what every process
observes of the same server (lag, bans, a node up).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "BUCKETS_S",
    "FEATURE_READ_SECONDS",
    "METRICS",
    "PREFIX",
    "REGISTRY_LOOKUP_SECONDS",
    "MetricSpec",
    "MetricType",
    "by_name",
]

PREFIX = "mlscale_"

# Latency buckets in seconds, 50 us .. 1 s: an L1 hit takes tens of us, a replica
# read about a millisecond, a cold path or a wait for a token tens to hundreds.
BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class MetricType(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: ``name`` (a counter's without ``_total``), ``type``, ``help``,
    ``labels`` in the order samples give their values, and for gauges how worker
    processes' values merge (``multiprocess_mode``, prometheus_client's word)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    multiprocess_mode: str = ""

    @property
    def series_names(self) -> tuple[str, ...]:
        """The names its samples carry in an exposition (and in PromQL)."""
        if self.type is MetricType.COUNTER:
            return (f"{self.name}_total",)
        if self.type is MetricType.HISTOGRAM:
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)


C, G, H = MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM
_NODE = ("group", "node")

METRICS: tuple[MetricSpec, ...] = (
    # -- reads and writes, as routed by this client ---------------------------------------
    MetricSpec(
        "mlscale_reads",
        C,
        "Routed reads by the node that served them, its group and role, and the read's "
        "consistency level (reads in a primary scope or transaction are not routed).",
        ("group", "node", "role", "consistency"),
    ),
    MetricSpec(
        "mlscale_writes",
        C,
        "Write statements sent to a group's primary (counted when sent: a statement of a "
        "transaction rolled back later counts too).",
        _NODE,
    ),
    MetricSpec(
        "mlscale_read_fallbacks",
        C,
        "Reads that asked for less than strong but went to the primary, by cause.",
        ("cause",),
    ),
    MetricSpec(
        "mlscale_read_refusals",
        C,
        "Reads refused: no node could serve them (primary reads off, or a replica scope).",
        ("cause",),
    ),
    MetricSpec("mlscale_read_retries", C, "Reads retried once elsewhere after their node failed."),
    MetricSpec(
        "mlscale_token_waits",
        C,
        "Waits for a replica to replay a causal token, by outcome (replayed, timed_out).",
        ("outcome",),
    ),
    MetricSpec(
        "mlscale_token_wait_seconds",
        C,
        "Total time spent waiting for replicas to replay causal tokens, in seconds.",
    ),
    MetricSpec(
        "mlscale_statement_classifications",
        C,
        "Statements classified, answered from the classifier's cache (hit) or parsed (miss).",
        ("result",),
    ),
    # -- nodes and replicas -----------------------------------------------------------------
    MetricSpec(
        "mlscale_node_up",
        G,
        "1 unless this client has seen the node down.",
        ("group", "node", "role"),
        "livemin",
    ),
    MetricSpec(
        "mlscale_replica_lag_bytes",
        G,
        "WAL bytes a replica has yet to replay, as last sampled.",
        _NODE,
        "livemax",
    ),
    MetricSpec(
        "mlscale_replica_lag_seconds",
        G,
        "How old a replica's data is, in seconds (from the primary's heartbeat row).",
        _NODE,
        "livemax",
    ),
    MetricSpec(
        "mlscale_replica_banned",
        G,
        "1 while the replica is out of read rotation for a ban of this kind "
        "(manual, error, lag), else 0.",
        ("group", "node", "kind"),
        "livemax",
    ),
    MetricSpec(
        "mlscale_reads_outstanding",
        G,
        "Reads in flight by node (tracked under least-outstanding balancing only).",
        _NODE,
        "livesum",
    ),
    # -- pools (one per node per process) ---------------------------------------------------
    MetricSpec("mlscale_pool_size", G, "Connections open in the node's pool.", _NODE, "livesum"),
    MetricSpec("mlscale_pool_max", G, "The node's pool's maximum size.", _NODE, "livesum"),
    MetricSpec(
        "mlscale_pool_in_use", G, "Connections lent out by the node's pool.", _NODE, "livesum"
    ),
    MetricSpec(
        "mlscale_pool_available",
        G,
        "Idle connections ready in the node's pool.",
        _NODE,
        "livesum",
    ),
    MetricSpec(
        "mlscale_pool_waiting",
        G,
        "Requests waiting now for a connection of the node's pool.",
        _NODE,
        "livesum",
    ),
    MetricSpec("mlscale_pool_requests", C, "Connections asked of the node's pool.", _NODE),
    MetricSpec(
        "mlscale_pool_requests_queued",
        C,
        "Requests that found no idle connection and had to wait.",
        _NODE,
    ),
    MetricSpec(
        "mlscale_pool_wait_seconds",
        C,
        "Total time requests waited for a connection of the node's pool, in seconds.",
        _NODE,
    ),
    MetricSpec(
        "mlscale_pool_errors",
        C,
        "Pool errors by kind: request (no connection in time), connect (a connection "
        "attempt failed), lost (a connection found broken), bad_return (returned unusable).",
        ("group", "node", "kind"),
    ),
    # -- caches --------------------------------------------------------------------------------
    MetricSpec(
        "mlscale_cache_hits", C, "Cache lookups answered by a tier (l1, l2).", ("namespace", "tier")
    ),
    MetricSpec(
        "mlscale_cache_misses", C, "Cache lookups a tier (l1, l2) missed.", ("namespace", "tier")
    ),
    MetricSpec("mlscale_cache_loads", C, "Loader calls after a cache miss.", ("namespace",)),
    MetricSpec("mlscale_cache_load_errors", C, "Loader calls that raised.", ("namespace",)),
    MetricSpec("mlscale_cache_load_seconds", C, "Total loader time, in seconds.", ("namespace",)),
    MetricSpec("mlscale_cache_invalidations", C, "Cache keys invalidated.", ("namespace",)),
    # -- latency histograms, observed by the stores ------------------------------------------
    MetricSpec(
        "mlscale_feature_read_seconds",
        H,
        "Online feature reads, by feature view, in seconds.",
        ("view",),
    ),
    MetricSpec(
        "mlscale_registry_lookup_seconds",
        H,
        "Model registry lookups (a model by alias or version), by model, in seconds.",
        ("model",),
    ),
)

_BY_NAME = {m.name: m for m in METRICS}
FEATURE_READ_SECONDS = _BY_NAME["mlscale_feature_read_seconds"]
REGISTRY_LOOKUP_SECONDS = _BY_NAME["mlscale_registry_lookup_seconds"]


def by_name(name: str) -> MetricSpec:
    """The metric named ``name`` (a KeyError names the unknown metric)."""
    return _BY_NAME[name]
