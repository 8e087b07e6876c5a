"""The model registry on the session cluster (2 shard groups x 2 replicas, Redis):
CRUD and history, lineage, bad input, concurrent registrations, racing promotions,
the async twin, and every process seeing each transition through the cache.

Reads after writes pass the write's token or consistency="strong". The module puts
the sharding catalog back as it found it (the registry's tables are dropped)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from mlscale import AsyncCluster, Cluster, LocalCluster
from mlscale.errors import ModelNotFound, RegistryConflict, RegistryError
from mlscale.stores.features import Entity, Feature, FeatureView
from mlscale.stores.registry import AsyncModelRegistry, ModelRegistry
from mlscale.stores.registry.caching import registry_cache
from mlscale.stores.registry.visibility import measure_visibility
from tests.integration.features_help import scratch_store
from tests.integration.sharding_cleanup import restore_sharding

pytestmark = pytest.mark.integration


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def registry(cluster: Cluster) -> Iterator[ModelRegistry]:
    before = cluster.refresh_shards()
    try:
        yield ModelRegistry(cluster)
    finally:
        restore_sharding(cluster, before)


def test_models_versions_aliases_history(registry: ModelRegistry) -> None:
    name = unique("ranker")
    model = registry.create_model(name, description="search", tags={"team": "s"}, actor="ana")
    assert (model.latest_version, dict(model.aliases), model.created_by) == (0, {}, "ana")
    again = registry.create_model(name, description="search", tags={"team": "s"}, actor="bob")
    assert again.created_by == "ana"  # the same model: a no-op
    with pytest.raises(RegistryError, match="another description"):
        registry.create_model(name, description="other", actor="bob")

    v1 = registry.register_version(
        name,
        artifact_uri="s3://m/1",
        metadata={"framework": "xgboost", "params": {"depth": 6}},
        metrics={"auc": 0.91, "n": 10},
        run_id="run-1",
        actor="ana",
    )
    v2 = registry.register_version(name, artifact_uri="s3://m/2", actor="bob")
    assert (v1.version, v2.version) == (1, 2)
    got = registry.get_version(name, 1, token=v1.token)
    assert dict(got.metadata) == {"framework": "xgboost", "params": {"depth": 6}}
    assert dict(got.metrics) == {"auc": 0.91, "n": 10.0} and got.run_id == "run-1"

    state = registry.alias_state(name, "production", consistency="strong")
    assert (state.version, state.revision) == (None, 0)
    t1 = registry.transition(name, 1, "production", expected_revision=0, actor="ana", reason="a")
    assert (t1.version, t1.previous_version, t1.revision, t1.changed) == (1, None, 1, True)
    assert registry.get_production_model(name, token=t1.token).version == 1
    t2 = registry.transition(name, 2, "production", expected_revision=1, actor="bob", reason="b")
    assert (t2.previous_version, t2.revision) == (1, 2)
    same = registry.transition(name, 2, "production", actor="bob")
    assert not same.changed and same.revision == 2 and same.token == ""
    registry.transition(name, 1, "staging", actor="cy", reason="try")
    t4 = registry.transition(name, None, "staging", actor="cy", reason="cleared")
    assert (t4.version, t4.previous_version, t4.revision) == (None, 1, 2)
    with pytest.raises(ModelNotFound, match="no version at alias 'staging'"):
        registry.get_by_alias(name, "staging", token=t4.token)

    history = registry.history(name, token=t4.token)
    assert [
        (h.alias, h.revision, h.from_version, h.to_version, h.actor, h.reason) for h in history
    ] == [
        ("production", 1, None, 1, "ana", "a"),
        ("production", 2, 1, 2, "bob", "b"),
        ("staging", 1, None, 1, "cy", "try"),
        ("staging", 2, 1, None, "cy", "cleared"),
    ]
    assert [h.revision for h in registry.history(name, "production", token=t4.token)] == [1, 2]
    shown = registry.get_model(name, token=t4.token)
    assert dict(shown.aliases) == {"production": 2} and shown.latest_version == 2
    assert [v.aliases for v in registry.versions(name, token=t4.token)] == [(), ("production",)]
    assert name in [m.name for m in registry.list_models(consistency="strong")]
    assert registry.get_production_model(name, token=t4.token).to_dict()["version"] == 2


def test_lineage_and_bad_input_write_nothing(cluster: Cluster, registry: ModelRegistry) -> None:
    name = unique("fraud")
    registry.create_model(name, actor="ana")
    with scratch_store(cluster) as store:
        view = f"reg_{uuid.uuid4().hex[:6]}"
        store.register(
            FeatureView(view, entities=(Entity("user_id", "int8"),), features=(Feature("a"),))
        )
        v = registry.register_version(
            name, artifact_uri="s3://f/1", feature_views=[view, f"{view}:1"], actor="ana"
        )
        assert v.feature_views == (view, f"{view}:1")
        bad_calls = {
            "no feature view": lambda: registry.register_version(
                name, artifact_uri="s3://f/x", feature_views=["nope_view"], actor="a"
            ),
            "has no version 9": lambda: registry.register_version(
                name, artifact_uri="s3://f/x", feature_views=[f"{view}:9"], actor="a"
            ),
            "not JSON": lambda: registry.register_version(
                name, artifact_uri="s3://f/x", metadata={"x": {1, 2}}, actor="a"
            ),
            "finite": lambda: registry.register_version(
                name, artifact_uri="s3://f/x", metrics={"auc": float("nan")}, actor="a"
            ),
            "actor": lambda: registry.register_version(name, artifact_uri="s3://f/x", actor=""),
            "model name": lambda: registry.create_model("bad/name", actor="a"),
            "reserved": lambda: registry.transition(name, 1, "latest", actor="a"),
            "has no version 5": lambda: registry.transition(name, 5, "production", actor="a"),
            "no model": lambda: registry.register_version(
                unique("absent"), artifact_uri="s3://x", actor="a"
            ),
        }
        for message, call in bad_calls.items():
            with pytest.raises(RegistryError, match=message):
                call()
    # Recorded anyway when asked: the view is gone now.
    v2 = registry.register_version(
        name, artifact_uri="s3://f/2", feature_views=[view], actor="a", check_lineage=False
    )
    assert v2.version == 2  # no number was used by the refused calls
    assert [v.version for v in registry.versions(name, token=v2.token)] == [1, 2]
    assert registry.history(name, token=v2.token) == []
    assert registry.alias_state(name, "production", token=v2.token).revision == 0


def test_concurrent_registrations_number_without_gaps(registry: ModelRegistry) -> None:
    name = unique("busy")
    registry.create_model(name, actor="ana")
    threads, per = 8, 10
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per):
                v = registry.register_version(name, artifact_uri=f"s3://b/{t}/{i}", actor=f"t{t}")
                with lock:
                    got.append(v.version)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    assert sorted(got) == list(range(1, threads * per + 1))
    stored = registry.versions(name, consistency="strong")
    assert [v.version for v in stored] == list(range(1, threads * per + 1))
    assert registry.get_model(name, consistency="strong").latest_version == threads * per


def test_racing_promotions_one_winner_per_round(registry: ModelRegistry) -> None:
    name = unique("race")
    registry.create_model(name, actor="ana")
    for _ in range(4):
        registry.register_version(name, artifact_uri="s3://r", actor="ana")
    rounds = 100
    barrier = threading.Barrier(2)
    outcomes: list[list[tuple[str, int | None]]] = [[] for _ in range(rounds)]
    errors: list[BaseException] = []

    def racer(me: int) -> None:
        try:
            for r in range(rounds):
                state = registry.alias_state(name, "production", consistency="strong")
                target = 1 + (2 * r + me) % 4  # the two racers always want different versions
                barrier.wait(10)  # both have read the same revision before either writes
                try:
                    res = registry.transition(
                        name,
                        target,
                        "production",
                        expected_revision=state.revision,
                        actor=f"racer{me}",
                        reason=f"round {r}",
                    )
                    outcomes[r].append(("won", res.version))
                except RegistryConflict as exc:
                    assert exc.expected_revision == state.revision
                    assert f"revision {exc.current_revision}" in str(exc)
                    outcomes[r].append(("lost", exc.current_version))
                barrier.wait(10)  # the round is over for both
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=racer, args=(me,)) for me in (0, 1)]
    started = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    winners = []
    for r, outcome in enumerate(outcomes):
        kinds = sorted(k for k, _ in outcome)
        assert kinds == ["lost", "won"], (r, outcome)
        won = next(v for k, v in outcome if k == "won")
        lost_saw = next(v for k, v in outcome if k == "lost")
        assert lost_saw == won  # the loser's error names the winner's version
        winners.append(won)
    history = registry.history(name, "production", consistency="strong")
    assert [h.to_version for h in history] == winners
    assert [h.revision for h in history] == list(range(1, rounds + 1))
    print(
        f"{rounds} rounds: {rounds} winners, {rounds} conflicts, "
        f"{time.perf_counter() - started:.1f} s"
    )


def test_cache_serves_and_forgets(cluster: Cluster, registry: ModelRegistry) -> None:
    name = unique("cached")
    with registry_cache(cluster.config, unique("reg-ns")) as cache:
        cached = ModelRegistry(cluster, cache=cache)
        cached.create_model(name, actor="ana")
        for _ in range(3):
            cached.register_version(name, artifact_uri="s3://c", actor="ana")
        with pytest.raises(ModelNotFound):
            cached.get_production_model(name)  # cached as absence ...
        cached.transition(name, 1, "production", actor="ana")
        assert cached.get_production_model(name).version == 1  # ... and forgotten
        hits = cache.stats().hits
        first = cached.get_production_model(name)
        assert cached.get_production_model(name) is first  # L1 hit, same frozen result
        assert cache.stats().hits >= hits + 2
        cached.transition(name, 2, "staging", actor="ana")
        assert cached.get_by_alias(name, "staging").aliases == ("staging",)
        cached.transition(name, 2, "production", actor="ana")
        got = cached.get_production_model(name)
        assert got.version == 2 and got.aliases == ("production", "staging")
        # Another registry object over the same cache (another component of this
        # process) moves the alias: the shared cache forgets it too.
        other = ModelRegistry(cluster, cache=cache)
        other.transition(name, 3, "production", actor="bob")
        assert cached.get_production_model(name).version == 3
        # Each successful lookup is timed in the registry-lookup histogram, by model.
        count = f'mlscale_registry_lookup_seconds_count{{model="{name}"}}'
        observed = [ln for ln in cluster.metrics().splitlines() if ln.startswith(count)]
        assert observed and float(observed[0].split()[-1]) >= 5


def test_async_twin(local_cluster: LocalCluster, registry: ModelRegistry) -> None:
    name = unique("async")

    async def run() -> None:
        async with AsyncCluster.from_file(local_cluster.layout.config) as acluster:
            areg = AsyncModelRegistry(acluster)
            await areg.create_model(name, actor="ana")
            versions = await asyncio.gather(
                *(
                    areg.register_version(name, artifact_uri=f"s3://a/{i}", actor="ana")
                    for i in range(10)
                )
            )
            assert sorted(v.version for v in versions) == list(range(1, 11))
            t = await areg.transition(name, 3, "production", expected_revision=0, actor="ana")
            assert (await areg.get_production_model(name, token=t.token)).version == 3
            with pytest.raises(RegistryConflict):
                await areg.transition(name, 4, "production", expected_revision=0, actor="bob")
            assert len(await areg.history(name, token=t.token)) == 1
            assert (await areg.alias_state(name, "production", token=t.token)).revision == 1

    asyncio.run(run())
    assert registry.get_production_model(name, consistency="strong").version == 3


def test_every_process_sees_every_transition(
    local_cluster: LocalCluster, registry: ModelRegistry
) -> None:
    result = measure_visibility(
        local_cluster.layout.config, processes=3, transitions=50, interval_s=0.02, timeout_s=2.0
    )
    print(
        f"visibility over {result.processes} processes x {result.transitions} transitions: "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms"
    )
    assert result.regressions == 0
    assert result.missed == 0
    assert result.observations == 150
    assert result.max_ms < 2000.0
