"""The engine's read bookkeeping without servers: weights, bans, the quick path."""

from __future__ import annotations

from collections import Counter

import pytest

from mlscale import parse_config
from mlscale.core.balance import UsePrimary, UseReplica
from mlscale.core.causal import CausalToken, GroupPosition
from mlscale.core.consistency import Consistency
from mlscale.engine.balancer import ReadOptions, ReplicaBalancer
from mlscale.engine.samples import ReplicaSample


def config(weights: tuple[float, float] = (1.0, 1.0), balance: str = "round_robin"):  # type: ignore[no-untyped-def]
    return parse_config({
        "auth": {"password_env": "HOME"},
        "control": {"port": 1},
        "shard_groups": [{"name": "g0", "primary": {"port": 2}, "replicas": [
            {"port": 3, "weight": weights[0]}, {"port": 4, "weight": weights[1]}]}],
        "policies": {"balance": balance, "max_replica_lag_ms": 1000},
    })


NAMES = ["g0-replica1", "g0-replica2"]


def sample(name: str, replay: int = 100, staleness: float = 5.0, up: bool = True) -> ReplicaSample:
    return ReplicaSample(name, "g0", up=up, at=0.0, receive_lsn=replay, replay_lsn=replay,
                         lag_bytes=0, staleness_ms=staleness, system_identifier=7, timeline=1)


def test_weights_share_reads() -> None:
    router = ReplicaBalancer(config((3.0, 1.0)))
    assert not router.quick
    samples = {n: sample(n) for n in NAMES}
    req = router.requirement(ReadOptions(), "g0", None)
    picks = Counter()
    for _ in range(400):
        d = router.decide(router.states("g0", NAMES, samples), req)
        assert isinstance(d, UseReplica)
        picks[d.name] += 1
    # The weighted round robin matches the weights exactly in the long run (golden-ratio
    # sequence): within one read of 3:1 over 400.
    assert abs(picks["g0-replica1"] - 300) <= 1 and abs(picks["g0-replica2"] - 100) <= 1


def test_quick_path_skips_down_and_banned_replicas() -> None:
    router = ReplicaBalancer(config())
    assert router.quick
    samples = {"g0-replica1": sample("g0-replica1", up=False), "g0-replica2": sample("g0-replica2")}
    assert {router.quick_pick("g0", NAMES, lambda: samples, 1) for _ in range(4)} == {"g0-replica2"}
    both = {n: sample(n) for n in NAMES}
    assert {router.quick_pick("g0", NAMES, lambda: both, 2) for _ in range(4)} == set(NAMES)
    router.ban("g0-replica2", "maintenance")  # a ban is seen even within the same round
    assert {router.quick_pick("g0", NAMES, lambda: both, 2) for _ in range(4)} == {"g0-replica1"}
    router.ban("g0-replica1", "too")
    assert router.quick_pick("g0", NAMES, lambda: both, 2) is None


def test_lagging_replica_is_banned_and_manual_bans_follow_the_catalog() -> None:
    router = ReplicaBalancer(config())
    samples = {"g0-replica1": sample("g0-replica1", staleness=5000.0),
               "g0-replica2": sample("g0-replica2")}
    states = router.states("g0", NAMES, samples)
    assert states[0].ban is not None and "lag" in states[0].ban.reason
    catalog = {"g0-replica2": "disk"}
    router.sync_manual(catalog)
    assert router.bans["g0-replica2"].manual
    router.sync_manual({})
    assert "g0-replica2" not in router.bans
    router.end("g0-replica2", failed="connection refused")
    assert router.bans_now()["g0-replica2"].kind == "error"


def test_tokens_route_to_a_replica_that_has_replayed_or_to_the_primary() -> None:
    router = ReplicaBalancer(config())
    samples = {"g0-replica1": sample("g0-replica1", replay=100),
               "g0-replica2": sample("g0-replica2", replay=500)}
    token = CausalToken({"g0": GroupPosition(7, 1, 400)})
    options = ReadOptions.of(None, token.to_string())
    assert options.consistency is Consistency.READ_YOUR_WRITES
    d = router.decide(router.states("g0", NAMES, samples), router.requirement(options, "g0", None))
    assert d == UseReplica("g0-replica2", d.reason)
    far = ReadOptions.of(None, CausalToken({"g0": GroupPosition(7, 1, 10_000)}))
    req = router.requirement(far, "g0", None).without_wait()
    assert isinstance(router.decide(router.states("g0", NAMES, samples), req), UsePrimary)
    other = ReadOptions.of(None, CausalToken({"g0": GroupPosition(8, 1, 1)}))
    req = router.requirement(other, "g0", None)
    assert isinstance(router.decide(router.states("g0", NAMES, samples), req), UsePrimary)


def test_quick_reads_of_ended_threads_are_folded_not_kept() -> None:
    import threading

    router = ReplicaBalancer(config())
    samples = {n: sample(n) for n in NAMES}

    def reads() -> None:
        for _ in range(10):
            router.quick_pick("g0", NAMES, lambda: samples, 1)

    for _ in range(50):
        t = threading.Thread(target=reads)
        t.start()
        t.join()
    reads()  # registering this thread folds the ended ones
    assert len(router._quick_counts) <= 2
    assert sum(router.metrics_now()[0].reads_by_node.values()) == 510


def test_read_options_refuse_nonsense_in_the_packages_terms() -> None:
    from mlscale import Cluster, MlscaleError, RoutingError

    with pytest.raises(RoutingError) as info:
        ReadOptions.of("bogus", None)
    message = str(info.value)
    assert "'bogus'" in message
    for level in ("strong", "read_your_writes", "bounded_staleness", "eventual"):
        assert level in message, message
    with pytest.raises(RoutingError, match="max_lag_ms must be >= 0"):
        ReadOptions.of("bounded_staleness", None, max_lag_ms=-1.0)
    assert ReadOptions.of("strong", None).consistency is Consistency.STRONG
    # A bounded-staleness read needs a bound: refused when its requirement is made.
    no_bound = ReadOptions.of("bounded_staleness", None)
    with pytest.raises(RoutingError, match="needs max_lag_ms or max_lag_bytes"):
        ReplicaBalancer(config()).requirement(no_bound, "g0", None)
    # Through the public API: refused before anything is sent (no server here).
    with Cluster(config()) as cluster:
        with pytest.raises(MlscaleError, match="unknown consistency 'bogus'"):
            cluster.fetch_value("SELECT 1", consistency="bogus")
        with pytest.raises(RoutingError, match="unknown consistency"), cluster.session(
            consistency="sometimes"
        ):
            pass
