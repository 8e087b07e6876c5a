"""Online feature reads, checked against numpy (issue 14's acceptance, correctness).

A cluster of its own: 4 shard groups of a primary and one replica, and Redis. View
``user_stats`` holds ``E`` entities x 50 FLOAT features, pushed in batches of 100k
(the issue's 1M entities: the load takes about 20 s on this 2-core machine). The
expected values live in a numpy matrix; every read is compared with it exactly
(NaN where an entity is absent), through the sync store, the cache tier and the
async twin. Read-your-writes runs with the replicas replaying WAL late
(``recovery_min_apply_delay``): a control without the token goes stale, so the
token's 0 stale reads mean something.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from mlscale import AsyncCluster, Cluster, LocalCluster
from mlscale.cache import AsyncCache, Cache, LocalCache, RemoteCache
from mlscale.cache.remote_async import AsyncRemoteCache
from mlscale.core.causal import CausalToken
from mlscale.local.tempdirs import reachable_tempdir
from mlscale.stores.features import (
    AsyncFeatureStore,
    Entity,
    Feature,
    FeatureStore,
    FeatureType,
    FeatureView,
)

pytestmark = pytest.mark.integration

E = 1_000_000  # entities of user_stats: the figure (load measured at ~20 s here)
F = 50
LOAD_ROWS = 100_000  # rows per push while loading
BATCHES = 1_000
BATCH = 100
ABSENT = 20_000  # ids drawn from [-ABSENT, E + ABSENT): ~4% absent
DELAY_MS = 150  # the replicas' replay delay during the read-your-writes test
RYW_ROUNDS = 200
NAMES = [f"f{i}" for i in range(F)]

STATS = FeatureView(
    name="user_stats",
    entities=(Entity("user_id", "int8"),),
    features=tuple(Feature(n, FeatureType.FLOAT) for n in NAMES),
    ttl_s=None,
    family="users",
    owner="tests",
    description="the big view",
)


@dataclass
class Bed:
    local: LocalCluster
    cluster: Cluster
    store: FeatureStore
    values: npt.NDArray[np.float32]  # (E, F): what user_stats holds online
    token: CausalToken  # the load's commits
    redis_port: int
    password: str
    load_s: float


def _frame(ids: npt.NDArray[np.int64], values: npt.NDArray[np.float32], ts: object) -> pd.DataFrame:
    df = pd.DataFrame(values, columns=NAMES)
    df.insert(0, "user_id", ids)
    df.insert(1, "event_ts", ts)
    return df


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    base = reachable_tempdir("mlscale-features-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=4, replicas=1, redis=True)
        config = local.config()
        assert config.redis is not None
        with Cluster.from_file(local.layout.config) as cluster:
            store = FeatureStore(cluster)
            store.register(STATS)
            values = np.random.default_rng(14).standard_normal((E, F), dtype=np.float32)
            loaded_at = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=1)
            token = CausalToken()
            started = time.perf_counter()
            for at in range(0, E, LOAD_ROWS):
                ids = np.arange(at, min(E, at + LOAD_ROWS), dtype=np.int64)
                res = store.push("user_stats", _frame(ids, values[ids], loaded_at))
                assert res.rows == ids.size
                token = token.merge(res.token)
            load_s = time.perf_counter() - started
            print(
                f"loaded {E:,} entities x {F} features in {load_s:.1f} s "
                f"({E / load_s:,.0f} entities/s)"
            )
            info = store.describe("user_stats")
            assert sum(info.online_rows.values()) == E
            assert len(info.online_rows) == 4 and all(n > 0 for n in info.online_rows.values())
            yield Bed(
                local,
                cluster,
                store,
                values,
                token,
                config.redis.port,
                local.layout.secret.read_text().strip(),
                load_s,
            )
    finally:
        try:
            local.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _expected(
    values: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    out = np.full((ids.size, values.shape[1]), np.nan, dtype=np.float32)
    ok = (ids >= 0) & (ids < values.shape[0])
    out[ok] = values[ids[ok]]
    return out


def _batches(seed: int, count: int) -> Iterator[npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    for b in range(count):
        ids = rng.integers(-ABSENT, E + ABSENT, BATCH).astype(np.int64)
        if b % 10 == 0:
            ids[1] = ids[0]  # a duplicate id is answered twice
        yield ids


def test_random_batches_return_the_expected_matrix(bed: Bed) -> None:
    took = []
    absent = 0
    for ids in _batches(seed=1, count=BATCHES):
        started = time.perf_counter()
        got = bed.store.get_online_features(["user_stats:*"], ids, token=bed.token)
        took.append(time.perf_counter() - started)
        matrix, columns = got.to_numpy()
        assert columns == {n: j for j, n in enumerate(NAMES)}
        assert matrix.dtype == np.float32 and matrix.shape == (BATCH, F)
        want = _expected(bed.values, ids)
        np.testing.assert_array_equal(matrix, want)  # NaN == NaN here
        ok = (ids >= 0) & (ids < E)
        assert np.array_equal(got.present["f0"], ok)
        assert np.array_equal(got.keys["user_id"], ids)
        absent += int((~ok).sum())
    assert absent > 0
    p50, p99 = np.percentile(np.array(took) * 1000, [50, 99])
    print(f"{BATCHES} batches of {BATCH}: {absent} absent ids, p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def test_features_by_name_and_other_outputs(bed: Bed) -> None:
    ids = np.array([5, E - 1, -3, 5, 77], dtype=np.int64)
    got = bed.store.get_online_features(["user_stats:f7", "user_stats:f0"], ids, token=bed.token)
    want = _expected(bed.values, ids)[:, [7, 0]]
    matrix, columns = got.to_numpy()
    assert columns == {"f7": 0, "f0": 1}
    np.testing.assert_array_equal(matrix, want)
    d = got.to_dict()
    assert list(d) == ["user_id", "f7", "f0"]
    np.testing.assert_array_equal(d["f0"], want[:, 1])
    frame = got.to_pandas()
    np.testing.assert_array_equal(frame["f7"].to_numpy(), want[:, 0])
    table = got.to_arrow()
    assert table.column("f0").null_count == 1  # the absent id, as a null
    assert table.column("f0").to_pylist()[1] == pytest.approx(float(want[1, 1]))


def test_several_views_in_one_call(bed: Bed) -> None:
    extra = FeatureView(
        name="user_extra",
        entities=(Entity("user_id", "int8"),),
        features=(Feature("f0"), Feature("spend"), Feature("visits", FeatureType.INT)),
        family="users",
    )
    bed.store.register(extra)
    n = 50_000
    ids = np.arange(0, 2 * n, 2, dtype=np.int64)  # even ids below 100k only
    rng = np.random.default_rng(2)
    vals = rng.standard_normal((n, 2), dtype=np.float32)
    visits = rng.integers(0, 1000, n)
    frame = pd.DataFrame(
        {
            "user_id": ids,
            "event_ts": pd.Timestamp.now(tz="UTC"),
            "f0": vals[:, 0],
            "spend": vals[:, 1],
            "visits": visits,
        }
    )
    token = bed.store.push("user_extra", frame).token
    dense = np.full((2 * n, 3), np.nan, dtype=np.float32)
    dense[ids, :2] = vals
    dense[ids, 2] = visits
    for ids_b in (np.random.default_rng(3).integers(-10, 2 * n + 10, 200) for _ in range(20)):
        got = bed.store.get_online_features(
            ["user_stats:f3", "user_stats:f0", "user_extra:*"], ids_b, token=token.merge(bed.token)
        )
        matrix, columns = got.to_numpy()
        # f0 is in both views: named view__feature; the others keep their plain names.
        assert columns == {
            "f3": 0,
            "user_stats__f0": 1,
            "user_extra__f0": 2,
            "spend": 3,
            "visits": 4,
        }
        want = np.full((ids_b.size, 5), np.nan, dtype=np.float32)
        want[:, :2] = _expected(bed.values, ids_b)[:, [3, 0]]
        ok = (ids_b >= 0) & (ids_b < 2 * n)
        want[ok, 2:] = dense[ids_b[ok]]
        np.testing.assert_array_equal(matrix, want)
        assert np.array_equal(got.present["visits"], ok & (ids_b % 2 == 0))
        assert got.values["visits"].dtype == np.int64


def test_ttl_expired_values_come_back_missing(bed: Bed) -> None:
    recent = FeatureView(
        name="recent",
        entities=(Entity("user_id", "int8"),),
        features=(Feature("a"), Feature("b")),
        ttl_s=3600.0,
    )
    bed.store.register(recent)
    now = pd.Timestamp.now(tz="UTC")
    ids = np.arange(1000, dtype=np.int64)
    vals = np.random.default_rng(4).standard_normal((1000, 2), dtype=np.float32)
    old = ids % 2 == 0
    ts = np.where(old, now - pd.Timedelta(hours=2), now - pd.Timedelta(seconds=10))
    frame = pd.DataFrame(
        {"user_id": ids, "event_ts": pd.to_datetime(ts, utc=True), "a": vals[:, 0], "b": vals[:, 1]}
    )
    token = bed.store.push("recent", frame).token
    got = bed.store.get_online_features("recent:*", ids, token=token)
    assert np.array_equal(got.present["a"], ~old)
    want = np.where(old[:, None], np.nan, vals).astype(np.float32)
    np.testing.assert_array_equal(got.to_numpy()[0], want)

    # And a value expires while it sits there: 2 s of TTL, read before and after.
    short = FeatureView(
        name="short", entities=(Entity("user_id", "int8"),), features=(Feature("a"),), ttl_s=2.0
    )
    bed.store.register(short)
    pushed = time.time()
    stamp = pd.Timestamp.now(tz="UTC")
    records = [
        {"user_id": 1, "event_ts": stamp, "a": 1.5},
        {"user_id": 2, "event_ts": stamp, "a": 2.5},
    ]
    token = bed.store.push("short", records).token
    got = bed.store.get_online_features("short:a", [1, 2, 3], token=token)
    assert time.time() - pushed < 2.0, "too slow to see the value before its TTL"
    assert got.present["a"].tolist() == [True, True, False]
    assert got.values["a"][:2].tolist() == [1.5, 2.5]
    time.sleep(max(0.0, pushed + 2.5 - time.time()))
    got = bed.store.get_online_features("short:a", [1, 2, 3], token=token)
    assert got.present["a"].tolist() == [False, False, False]
    assert np.isnan(got.values["a"]).all()


def test_an_older_event_never_overwrites_a_newer_one(bed: Bed) -> None:
    ids = np.arange(200_000, 200_010, dtype=np.int64)
    before = bed.store.describe("user_stats")
    now = pd.Timestamp.now(tz="UTC")
    t_new, t_old = now - pd.Timedelta(seconds=5), now - pd.Timedelta(minutes=30)
    newer = np.full((ids.size, F), 7.0, dtype=np.float32)
    older = np.full((ids.size, F), -7.0, dtype=np.float32)
    t1 = bed.store.push("user_stats", _frame(ids, newer, t_new)).token
    t2 = bed.store.push("user_stats", _frame(ids, older, t_old)).token
    token = t1.merge(t2)
    got = bed.store.get_online_features("user_stats:*", ids, token=token)
    np.testing.assert_array_equal(got.to_numpy()[0], newer)
    times = got.event_time["user_stats"]
    assert (times == np.datetime64(t_new.tz_convert(None), "us")).all()
    bed.values[ids] = newer
    # Online: the same rows; history: both events kept.
    after = bed.store.describe("user_stats")
    assert sum(after.online_rows.values()) == sum(before.online_rows.values())
    assert sum(after.history_rows.values()) == sum(before.history_rows.values()) + 2 * ids.size
    entity_df = pd.DataFrame(
        {
            "user_id": np.concatenate([ids, ids, ids]),
            "event_ts": [t_old] * ids.size
            + [t_old + pd.Timedelta(seconds=1)] * ids.size
            + [t_new] * ids.size,
        }
    )
    hist = bed.store.get_historical_features(
        entity_df, ["user_stats:f0", "user_stats:f49"], token=token
    )
    assert hist["f0"].tolist() == [-7.0] * (2 * ids.size) + [7.0] * ids.size
    assert hist["f49"].tolist() == [-7.0] * (2 * ids.size) + [7.0] * ids.size


def _set_delay(bed: Bed, ms: int) -> None:
    for g in range(4):
        with bed.cluster.connection(f"g{g}-replica1") as conn:
            conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{ms}ms'")
            conn.execute("SELECT pg_reload_conf()")


def test_read_your_writes_from_lagging_replicas(bed: Bed) -> None:
    rng = np.random.default_rng(5)
    _set_delay(bed, DELAY_MS)
    try:
        time.sleep(0.5)  # the setting is live on every replica
        before = bed.cluster.stats().reads
        stale = 0
        for r in range(RYW_ROUNDS):
            ids = rng.choice(E, 20, replace=False).astype(np.int64)
            new = rng.standard_normal((ids.size, F), dtype=np.float32)
            res = bed.store.push("user_stats", _frame(ids, new, pd.Timestamp.now(tz="UTC")))
            if r % 4 == 0:  # a quarter read later: the replica may have caught up, or not
                time.sleep(rng.uniform(0, 2 * DELAY_MS / 1000))
            got = bed.store.get_online_features("user_stats:*", ids, token=res.token)
            if not np.array_equal(got.to_numpy()[0], new):
                stale += 1
            bed.values[ids] = new
            if r == 0:
                assert res.token != CausalToken()
        after = bed.cluster.stats().reads
        by_node = {n: c - before.reads_by_node.get(n, 0) for n, c in after.reads_by_node.items()}
        waits = after.token_waits - before.token_waits
        # The control: the same pushes read without the token go stale on the replicas.
        control_stale = 0
        for _ in range(30):
            ids = rng.choice(E, 20, replace=False).astype(np.int64)
            new = rng.standard_normal((ids.size, F), dtype=np.float32)
            res = bed.store.push("user_stats", _frame(ids, new, pd.Timestamp.now(tz="UTC")))
            got = bed.store.get_online_features("user_stats:*", ids, consistency="eventual")
            if not np.array_equal(got.to_numpy()[0], new):
                control_stale += 1
            bed.values[ids] = new
    finally:
        _set_delay(bed, 0)
    replica_reads = sum(c for n, c in by_node.items() if "replica" in n)
    print(
        f"read-your-writes: {stale} stale of {RYW_ROUNDS} (replica reads {replica_reads}, "
        f"token waits {waits}, {by_node}); without the token: {control_stale} stale of 30"
    )
    assert stale == 0
    assert replica_reads > 0, f"no token read was served by a replica: {by_node}"
    assert control_stale > 0, "no stale read without the token: the replica lag is not real"
    # Reading everything back (after the replicas caught up) still matches.
    time.sleep(0.5)
    ids = np.arange(0, E, 997, dtype=np.int64)
    got = bed.store.get_online_features("user_stats:*", ids, consistency="strong")
    np.testing.assert_array_equal(got.to_numpy()[0], bed.values[ids])


def _cache(bed: Bed) -> Cache:
    remote = RemoteCache.connect("127.0.0.1", bed.redis_port, password=bed.password)
    return Cache(f"fs-{uuid.uuid4().hex[:8]}", local=LocalCache(), remote=remote)


def test_the_cache_tier_answers_the_same_and_is_invalidated(bed: Bed) -> None:
    cache = _cache(bed)
    try:
        cached = FeatureStore(bed.cluster, cache=cache)
        for ids in _batches(seed=6, count=100):
            cold = cached.get_online_features("user_stats:*", ids, token=bed.token)
            warm = cached.get_online_features("user_stats:*", ids, token=bed.token)
            off = bed.store.get_online_features(
                "user_stats:*", ids, token=bed.token, use_cache=False
            )
            want = _expected(bed.values, ids)
            for got in (cold, warm, off):
                np.testing.assert_array_equal(got.to_numpy()[0], want)
                assert np.array_equal(got.present["f0"], ~np.isnan(want[:, 0]))
        stats = cache.stats()
        assert stats.hits > 0, stats

        # A push through the cached store invalidates what it wrote: read back, cached.
        rng = np.random.default_rng(7)
        for _ in range(20):
            ids = rng.integers(0, E, 50).astype(np.int64)
            ids = np.unique(ids)
            cached.get_online_features("user_stats:*", ids, token=bed.token)  # warm
            new = rng.standard_normal((ids.size, F), dtype=np.float32)
            res = cached.push("user_stats", _frame(ids, new, pd.Timestamp.now(tz="UTC")))
            bed.values[ids] = new
            for _ in range(2):  # the miss, then the refilled entry
                got = cached.get_online_features("user_stats:*", ids, token=res.token)
                np.testing.assert_array_equal(got.to_numpy()[0], new)

        # TTL holds on cached entries too.
        short = FeatureView(
            name="short_c",
            entities=(Entity("user_id", "int8"),),
            features=(Feature("a"),),
            ttl_s=2.0,
        )
        cached.register(short)
        pushed = time.time()
        t = cached.push(
            "short_c", [{"user_id": 1, "event_ts": pd.Timestamp.now(tz="UTC"), "a": 3.0}]
        ).token
        for _ in range(2):  # the miss that fills, then the cached entry
            got = cached.get_online_features("short_c:a", [1], token=t)
            assert got.present["a"].tolist() == [True]
        assert time.time() - pushed < 2.0, "too slow to see the value before its TTL"
        time.sleep(max(0.0, pushed + 2.5 - time.time()))  # the cached entry outlives the TTL
        assert cached.get_online_features("short_c:a", [1], token=t).present["a"].tolist() == [
            False
        ]
    finally:
        cache.close()


def test_async_store_and_cache(bed: Bed) -> None:
    async def run() -> None:
        async with (
            AsyncCluster.from_file(bed.local.layout.config) as acluster,
            AsyncRemoteCache.connect("127.0.0.1", bed.redis_port, password=bed.password) as remote,
        ):
            acache = AsyncCache(f"afs-{uuid.uuid4().hex[:8]}", local=LocalCache(), remote=remote)
            plain = AsyncFeatureStore(acluster)
            cached = AsyncFeatureStore(acluster, cache=acache)
            for ids in _batches(seed=8, count=100):
                want = _expected(bed.values, ids)
                got = await asyncio.gather(
                    plain.get_online_features("user_stats:*", ids, token=bed.token),
                    cached.get_online_features("user_stats:*", ids, token=bed.token),
                )
                for g in got:
                    np.testing.assert_array_equal(g.to_numpy()[0], want)
            rng = np.random.default_rng(9)
            for _ in range(20):
                ids = np.unique(rng.integers(0, E, 30).astype(np.int64))
                new = rng.standard_normal((ids.size, F), dtype=np.float32)
                res = await cached.push("user_stats", _frame(ids, new, pd.Timestamp.now(tz="UTC")))
                bed.values[ids] = new
                for store in (cached, cached, plain):
                    back = await store.get_online_features("user_stats:*", ids, token=res.token)
                    np.testing.assert_array_equal(back.to_numpy()[0], new)

    asyncio.run(run())
