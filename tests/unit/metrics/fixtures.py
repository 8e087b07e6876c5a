"""A cluster client's numbers without servers: what the metrics tests render."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mlscale.cache.local import LocalCache
from mlscale.cache.tiered import Cache
from mlscale.core.balance import RouterMetrics
from mlscale.engine.samples import ReplicaSample
from mlscale.engine.stats import BanInfo, ClassifierStats, ClusterStats, NodeInfo

NODES = {
    "control": NodeInfo("", "control"),
    "g0-primary": NodeInfo("g0", "primary"),
    "g0-replica1": NodeInfo("g0", "replica"),
    "g0-replica2": NodeInfo("g0", "replica"),
}

POOL = {
    "pool_min": 1, "pool_max": 4, "pool_size": 3, "pool_available": 1, "requests_waiting": 2,
    "requests_num": 50, "requests_queued": 5, "requests_wait_ms": 1500, "requests_errors": 1,
    "connections_errors": 2, "connections_lost": 3, "returns_bad": 4,
}


def stats(reads: int = 7, writes: int = 3) -> ClusterStats:
    """Reads: ``reads`` eventual on replica1, 2 strong and 1 fallback on the primary."""
    m = RouterMetrics()
    m.reads_by_node_consistency = Counter({
        ("g0-replica1", "eventual"): reads,
        ("g0-primary", "strong"): 2,
        ("g0-primary", "bounded_staleness"): 1,
    })
    m.reads_by_node = Counter({"g0-replica1": reads, "g0-primary": 3})
    m.reads_by_consistency = Counter({"eventual": reads, "strong": 2, "bounded_staleness": 1})
    m.fallbacks_by_cause = Counter({"too stale": 1})
    m.refusals_by_cause = Counter({"all banned": 4})
    m.token_waits, m.token_wait_timeouts, m.token_wait_ms, m.retries = 5, 2, 250.0, 6
    return ClusterStats(
        pools={"g0-primary": dict(POOL), "g0-replica1": dict(POOL)},
        cluster={"pools_opened": 2},
        classifier=ClassifierStats(10, 2),
        reads=m,
        outstanding={"g0-replica1": 1},
        bans={"g0-replica2": BanInfo("lag", "too far behind", None)},
        down={"g0-replica2": "connection refused"},
        writes={"g0-primary": writes},
        nodes=dict(NODES),
    )


REPLICAS = {
    "g0-replica1": ReplicaSample("g0-replica1", "g0", up=True, at=0.0, lag_bytes=4096,
                                 staleness_ms=120.0),
    "g0-replica2": ReplicaSample("g0-replica2", "g0", up=False, at=0.0),
}


class FakeCluster:
    """What the collector reads of a cluster: ``stats()`` and ``replica_samples()``."""

    def __init__(self, s: ClusterStats | None = None) -> None:
        self.s = s if s is not None else stats()

    def stats(self) -> ClusterStats:
        return self.s

    def replica_samples(self) -> dict[str, ReplicaSample]:
        return dict(REPLICAS)


def l1_cache(namespace: str = "models") -> Any:
    """An L1-only cache with one hit, one miss and one load."""
    cache = Cache(namespace, local=LocalCache(max_entries=10))
    cache.get("a", lambda: 1)
    cache.get("a", lambda: 1)
    return cache
