"""A cluster client's numbers as metric samples: a pure function, no I/O, no prometheus_client.

:func:`cluster_samples` turns ``cluster.stats()``, the monitor's replica samples
and caches' ``stats()`` into :class:`Sample` values named by
:mod:`mlscale.metrics.names`. The single-process collector and the multiprocess
mirror both render these, so the two modes cannot drift apart in what they say.

Counters whose label values are known in advance (every node, every consistency
level, every fallback cause) are given even at zero: a series that appears at a
non-zero value loses its first increments in ``rate()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..core.balance import Cause
from ..core.consistency import Consistency
from ..core.replicas import BanKind
from ..engine.samples import ReplicaSample
from ..engine.stats import ClusterStats

__all__ = ["CacheReading", "Sample", "cluster_samples"]

# psycopg_pool's error counters, by the ``kind`` label they get.
_POOL_ERRORS = {
    "request": "requests_errors",
    "connect": "connections_errors",
    "lost": "connections_lost",
    "bad_return": "returns_bad",
}
_FALLBACK_CAUSES = tuple(c.value for c in Cause if c is not Cause.STRONG)
_LEVELS = tuple(c.value for c in Consistency)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of metric ``name``, its label ``values`` in the metric's label order."""

    name: str
    values: tuple[str, ...]
    value: float


@dataclass(frozen=True, slots=True)
class CacheReading:
    """One cache's counters as metrics need them (a façade's ``stats()`` reduced)."""

    namespace: str
    l1_hits: int | None
    l1_misses: int | None
    l2_hits: int | None
    l2_misses: int | None
    loads: int
    load_errors: int
    load_time_s: float
    invalidations: int

    @classmethod
    def of(cls, cache: object) -> CacheReading:
        """The reading of a :class:`~mlscale.cache.Cache` or ``AsyncCache`` now."""
        stats = cache.stats()  # type: ignore[attr-defined]
        namespace: str = cache.keys.namespace  # type: ignore[attr-defined]
        l1, l2 = stats.l1, stats.l2
        return cls(
            namespace,
            None if l1 is None else l1.hits,
            None if l1 is None else l1.misses,
            None if l2 is None else l2.hits,
            None if l2 is None else l2.misses,
            stats.loads,
            stats.load_errors,
            stats.load_time_s,
            stats.invalidations,
        )


def cluster_samples(
    stats: ClusterStats,
    replicas: Mapping[str, ReplicaSample],
    caches: Iterable[CacheReading] = (),
) -> list[Sample]:
    """Every sample of the cluster and cache metrics of :mod:`~mlscale.metrics.names`
    (all but the latency histograms), from one client's ``stats``, its monitor's
    ``replicas`` samples (lag) and ``caches`` (summed per namespace)."""
    out: list[Sample] = []
    add = out.append
    nodes = stats.nodes
    reads = stats.reads

    # Reads: every (node, level) of the data nodes, zero or not.
    by_pair = reads.reads_by_node_consistency
    for node, info in nodes.items():
        if info.role == "control":
            continue
        for level in _LEVELS:
            add(Sample("mlscale_reads", (info.group, node, info.role, level), by_pair[node, level]))
    for (node, level), n in by_pair.items():
        if node not in nodes or level not in _LEVELS:  # a name unknown to this topology
            add(Sample("mlscale_reads", ("", node, "", level), n))
    for node, info in nodes.items():
        if info.role == "primary":
            add(Sample("mlscale_writes", (info.group, node), stats.writes.get(node, 0)))
    for cause in _FALLBACK_CAUSES:
        add(Sample("mlscale_read_fallbacks", (cause,), reads.fallbacks_by_cause[cause]))
        add(Sample("mlscale_read_refusals", (cause,), reads.refusals_by_cause[cause]))
    add(Sample("mlscale_read_retries", (), reads.retries))
    replayed = reads.token_waits - reads.token_wait_timeouts
    add(Sample("mlscale_token_waits", ("replayed",), replayed))
    add(Sample("mlscale_token_waits", ("timed_out",), reads.token_wait_timeouts))
    add(Sample("mlscale_token_wait_seconds", (), reads.token_wait_ms / 1000))
    add(Sample("mlscale_statement_classifications", ("hit",), stats.classifier.hits))
    add(Sample("mlscale_statement_classifications", ("miss",), stats.classifier.misses))

    # Nodes and replicas.
    for node, info in nodes.items():
        up = 0 if node in stats.down else 1
        add(Sample("mlscale_node_up", (info.group, node, info.role), up))
        if info.role != "replica":
            continue
        ban = stats.bans.get(node)
        for kind in BanKind:
            banned = ban is not None and ban.kind == kind.value
            add(Sample("mlscale_replica_banned", (info.group, node, kind.value), int(banned)))
    for node, s in replicas.items():
        if s.lag_bytes is not None:
            add(Sample("mlscale_replica_lag_bytes", (s.group, node), s.lag_bytes))
        if s.staleness_ms is not None:
            add(Sample("mlscale_replica_lag_seconds", (s.group, node), s.staleness_ms / 1000))
    for node, n in stats.outstanding.items():
        add(Sample("mlscale_reads_outstanding", (_group(nodes, node), node), n))

    # Pools: psycopg_pool gives a counter only once it moved; absent means 0.
    for node, pool in stats.pools.items():
        labels = (_group(nodes, node), node)
        size, available = pool.get("pool_size", 0), pool.get("pool_available", 0)
        add(Sample("mlscale_pool_size", labels, size))
        add(Sample("mlscale_pool_max", labels, pool.get("pool_max", 0)))
        add(Sample("mlscale_pool_available", labels, available))
        add(Sample("mlscale_pool_in_use", labels, max(0, size - available)))
        add(Sample("mlscale_pool_waiting", labels, pool.get("requests_waiting", 0)))
        add(Sample("mlscale_pool_requests", labels, pool.get("requests_num", 0)))
        add(Sample("mlscale_pool_requests_queued", labels, pool.get("requests_queued", 0)))
        add(Sample("mlscale_pool_wait_seconds", labels, pool.get("requests_wait_ms", 0) / 1000))
        for error, key in _POOL_ERRORS.items():
            add(Sample("mlscale_pool_errors", (*labels, error), pool.get(key, 0)))

    out.extend(_cache_samples(caches))
    return out


def _group(nodes: Mapping[str, object], node: str) -> str:
    info = nodes.get(node)
    return str(getattr(info, "group", ""))


def _cache_samples(caches: Iterable[CacheReading]) -> list[Sample]:
    """Cache samples, two caches of one namespace summed (their series would clash)."""
    sums: dict[tuple[str, tuple[str, ...]], float] = {}

    def put(name: str, values: tuple[str, ...], value: float | None) -> None:
        if value is not None:
            sums[name, values] = sums.get((name, values), 0) + value

    for c in caches:
        ns = (c.namespace,)
        put("mlscale_cache_hits", (*ns, "l1"), c.l1_hits)
        put("mlscale_cache_misses", (*ns, "l1"), c.l1_misses)
        put("mlscale_cache_hits", (*ns, "l2"), c.l2_hits)
        put("mlscale_cache_misses", (*ns, "l2"), c.l2_misses)
        put("mlscale_cache_loads", ns, c.loads)
        put("mlscale_cache_load_errors", ns, c.load_errors)
        put("mlscale_cache_load_seconds", ns, c.load_time_s)
        put("mlscale_cache_invalidations", ns, c.invalidations)
    return [Sample(name, values, v) for (name, values), v in sums.items()]
