"""Every metric of the table is rendered from a cluster's stats, with the right values."""

from __future__ import annotations

import math
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from mlscale.core.balance import Cause, RouterMetrics, UsePrimary, UseReplica
from mlscale.core.consistency import Consistency
from mlscale.metrics import observe_feature_read, observe_registry_lookup, render_cluster
from mlscale.metrics.names import METRICS
from tests.unit.metrics.fixtures import FakeCluster, l1_cache, stats


def parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Series name -> {sorted labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_every_metric_of_the_table_is_produced() -> None:
    observe_feature_read("user_stats", 0.0004)
    observe_registry_lookup("churn", 0.00007)
    series = parsed(render_cluster(FakeCluster(), [l1_cache()]))
    for m in METRICS:
        for name in m.series_names:
            assert name in series, f"{name} missing from the exposition"
            for labels in series[name]:
                assert {k for k, _ in labels} - {"le"} == set(m.labels), (name, labels)


def test_values_follow_the_stats() -> None:
    s = parsed(render_cluster(FakeCluster(stats(reads=7, writes=3)), [l1_cache()]))
    reads = s["mlscale_reads_total"]
    key = (("consistency", "eventual"), ("group", "g0"), ("node", "g0-replica1"),
           ("role", "replica"))
    assert reads[key] == 7
    assert sum(reads.values()) == 10
    # Every data node and level, zeros included: 3 nodes x 4 levels (not the control node).
    assert len(reads) == 12
    assert s["mlscale_writes_total"] == {(("group", "g0"), ("node", "g0-primary")): 3}
    assert s["mlscale_read_fallbacks_total"][(("cause", "too stale"),)] == 1
    assert s["mlscale_read_refusals_total"][(("cause", "all banned"),)] == 4
    assert s["mlscale_token_waits_total"] == {
        (("outcome", "replayed"),): 3, (("outcome", "timed_out"),): 2}
    assert math.isclose(s["mlscale_token_wait_seconds_total"][()], 0.25)
    lag = s["mlscale_replica_lag_seconds"]
    assert lag == {(("group", "g0"), ("node", "g0-replica1")): 0.12}  # replica2 unsampled
    banned = {dict(k)["kind"]: v for k, v in s["mlscale_replica_banned"].items()
              if dict(k)["node"] == "g0-replica2"}
    assert banned == {"lag": 1, "error": 0, "manual": 0}
    up = {dict(k)["node"]: v for k, v in s["mlscale_node_up"].items()}
    assert up == {"control": 1, "g0-primary": 1, "g0-replica1": 1, "g0-replica2": 0}
    pool = (("group", "g0"), ("node", "g0-primary"))
    assert s["mlscale_pool_in_use"][pool] == 2 and s["mlscale_pool_waiting"][pool] == 2
    assert s["mlscale_pool_wait_seconds_total"][pool] == 1.5
    errors = {dict(k)["kind"]: v for k, v in s["mlscale_pool_errors_total"].items()
              if dict(k)["node"] == "g0-primary"}
    assert errors == {"request": 1, "connect": 2, "lost": 3, "bad_return": 4}
    l1 = (("namespace", "models"), ("tier", "l1"))
    assert s["mlscale_cache_hits_total"][l1] == 1 and s["mlscale_cache_misses_total"][l1] == 1
    assert s["mlscale_cache_loads_total"][(("namespace", "models"),)] == 1


def test_two_caches_of_one_namespace_are_summed() -> None:
    s = parsed(render_cluster(FakeCluster(), [l1_cache(), l1_cache()]))
    assert s["mlscale_cache_loads_total"] == {(("namespace", "models"),): 2}


def test_router_metrics_count_node_and_level_together() -> None:
    m = RouterMetrics()
    m.record(UseReplica("g0-replica1", ""), Consistency.EVENTUAL, primary="g0-primary")
    m.record(UsePrimary(Cause.TOO_STALE, ""), Consistency.BOUNDED_STALENESS, primary="g0-primary")
    m.record(UsePrimary(Cause.STRONG, ""), Consistency.STRONG, primary="g0-primary")
    assert m.reads_by_node_consistency == Counter({
        ("g0-replica1", "eventual"): 1, ("g0-primary", "bounded_staleness"): 1,
        ("g0-primary", "strong"): 1})
    assert "reads_by_node_consistency" not in m.snapshot()  # its keys stay as they were
    m.pop()
    assert not m.reads_by_node_consistency


def test_quick_path_reads_are_folded_by_node_and_level() -> None:
    from mlscale.engine.balancer import ReplicaBalancer
    from tests.unit.test_balancer import NAMES, config, sample

    router = ReplicaBalancer(config())
    samples = {n: sample(n) for n in NAMES}
    for _ in range(6):
        router.quick_pick("g0", NAMES, lambda: samples, 1)
    pairs = router.metrics_now()[0].reads_by_node_consistency
    assert pairs == Counter({("g0-replica1", "eventual"): 3, ("g0-replica2", "eventual"): 3})


def test_stats_to_dict_keeps_its_keys_and_adds_new_ones() -> None:
    d = stats().to_dict()
    for key in ("primaries", "down", "pools", "cluster", "classifier", "reads", "bans"):
        assert key in d
    for key in ("reads_by_node", "reads_by_consistency", "fallbacks_by_cause", "retries",
                "outstanding"):
        assert key in d["reads"]
    assert d["writes"] == {"g0-primary": 3}
    assert d["nodes"]["g0-replica1"] == {"group": "g0", "role": "replica"}
    assert d["reads"]["reads_by_node_consistency"]["g0-replica1"] == {"eventual": 7}


def test_a_cluster_counts_its_writes_by_primary() -> None:
    """Without servers: the façade's write counter and stats() agree."""
    from mlscale import Cluster
    from tests.unit.test_balancer import config

    with Cluster(config()) as cluster:
        cluster._context.record_write(None, "g0")
        cluster._context.record_write(None, "g0")
        assert cluster.stats().writes == {"g0-primary": 2}
        text = cluster.metrics()
    assert 'mlscale_writes_total{group="g0",node="g0-primary"} 2.0' in text


def test_label_values_past_the_cap_go_to_other(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mlscale.metrics import latency

    monkeypatch.setattr(latency, "MAX_LABEL_VALUES", 0)
    observer = latency._Observed.__new__(latency._Observed)
    observer.histogram = latency._REGISTRY_LOOKUP.histogram
    observer._children, observer._lock = {}, __import__("threading").Lock()
    observer.observe("some-new-model", 0.001)
    assert not observer._children
    s = parsed(render_cluster(FakeCluster()))
    assert (("model", "_other"),) in s["mlscale_registry_lookup_seconds_count"]


def test_an_async_cluster_renders_too() -> None:
    import asyncio

    from mlscale import AsyncCluster
    from tests.unit.test_balancer import config

    async def main() -> str:
        async with AsyncCluster(config()) as cluster:
            cluster._context.record_write(None, "g0")
            return cluster.metrics()

    assert 'mlscale_writes_total{group="g0",node="g0-primary"} 1.0' in asyncio.run(main())
