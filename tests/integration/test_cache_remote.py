"""The Redis tier (mlscale.cache.remote) against real Redis: a standalone server and a
3-master Redis Cluster on free loopback ports (fixtures in conftest.py).

Counted: leases granted among concurrent callers, refused stale sets, cached versions
after racing writers, script calls per batch (INFO commandstats), time to fail.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import uuid

import pytest
import redis

from mlscale.cache.remote import (
    CacheUnavailable,
    Entry,
    EntryState,
    LeaseOutcome,
    Refusal,
    RemoteCache,
    RemoteSettings,
)
from mlscale.cache.remote_async import AsyncRemoteCache
from mlscale.errors import CacheValueTooLarge
from tests.integration.redis_servers import Server

pytestmark = pytest.mark.integration


@pytest.fixture()
def cache(server: Server) -> RemoteCache:
    return server.cache()


def fresh(prefix: str = "k") -> str:
    return f"it:{prefix}:{uuid.uuid4().hex}"


# -- leases -----------------------------------------------------------------------------


def test_one_lease_among_200_concurrent_callers(server: Server) -> None:
    cache = server.cache()
    key = fresh("stampede")
    start = threading.Barrier(200)
    outcomes: list[LeaseOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def caller() -> None:
        try:
            start.wait()
            got = cache.lease_get(key, lease_ttl_ms=10_000)
            with lock:
                outcomes.append(got.outcome)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert outcomes.count(LeaseOutcome.GRANTED) == 1
    assert outcomes.count(LeaseOutcome.WAIT) == 199


def test_stale_set_is_refused_after_invalidation(cache: RemoteCache) -> None:
    """Reader misses and loads v1; writer writes v2 and invalidates; the reader's
    set of v1 is refused; the next read misses and a new fill stores v2."""
    key = fresh("stale")
    reader = cache.lease_get(key)
    assert reader.outcome is LeaseOutcome.GRANTED and reader.token
    old = b"row v1"  # the reader's (now old) database read
    assert cache.invalidate([key], "lsn:0/AA", version=2) == 0
    refused = cache.lease_set(key, reader.token, old, 1)
    assert not refused and refused.refusal is Refusal.NO_LEASE
    assert cache.get(key).state is EntryState.MISS
    again = cache.lease_get(key)
    assert again.outcome is LeaseOutcome.GRANTED and again.token
    assert again.causal_token == "lsn:0/AA"
    assert cache.lease_set(key, again.token, b"row v2", 2)
    got = cache.get(key)
    assert (got.value, got.version) == (b"row v2", 2)


def test_a_fill_older_than_the_floor_is_refused(cache: RemoteCache) -> None:
    key = fresh("floor")
    cache.invalidate([key], None, version=7)
    lease = cache.lease_get(key)
    assert lease.token and lease.tombstone and lease.causal_token is None
    refused = cache.lease_set(key, lease.token, b"v6", 6)
    assert refused.refusal is Refusal.OLDER_VERSION
    # The refusal gave the lease back: the next caller gets one at once.
    lease = cache.lease_get(key)
    assert lease.token is not None
    assert cache.lease_set(key, lease.token, b"v7", 7)
    assert cache.get(key).version == 7


def test_write_through_voids_a_lease_and_a_wrong_token_is_refused(cache: RemoteCache) -> None:
    key = fresh("void")
    lease = cache.lease_get(key)
    assert lease.token
    assert cache.lease_set(key, "not-the-token", b"x", 1).refusal is Refusal.NO_LEASE
    assert cache.set(key, b"v5", 5)
    assert cache.lease_set(key, lease.token, b"v4", 4).refusal is Refusal.NO_LEASE
    assert cache.get(key).value == b"v5"


def test_an_expired_lease_is_granted_again_and_its_token_refused(cache: RemoteCache) -> None:
    key = fresh("expire")
    first = cache.lease_get(key, lease_ttl_ms=100)
    assert cache.lease_get(key, lease_ttl_ms=100).outcome is LeaseOutcome.WAIT
    time.sleep(0.2)
    second = cache.lease_get(key, lease_ttl_ms=5_000)
    assert second.outcome is LeaseOutcome.GRANTED and second.token != first.token
    assert first.token
    assert cache.lease_set(key, first.token, b"late", 1).refusal is Refusal.NO_LEASE


def test_waiters_get_the_stale_value_only_when_they_allow_it(server: Server) -> None:
    cache = server.cache(RemoteSettings(stale_ms=5_000))
    key = fresh("staleserve")
    assert cache.set(key, b"old", 1)
    cache.invalidate([key], "tok")
    holder = cache.lease_get(key, allow_stale=True)
    assert holder.outcome is LeaseOutcome.GRANTED
    assert (holder.value, holder.version, holder.stale) == (b"old", 1, True)
    waiter = cache.lease_get(key, allow_stale=True)
    assert waiter.outcome is LeaseOutcome.WAIT and waiter.value == b"old" and waiter.stale
    strict = cache.lease_get(key)
    assert strict.outcome is LeaseOutcome.WAIT and strict.value is None and not strict.stale
    assert cache.get(key).state is EntryState.MISS  # stale is never a hit


def test_tombstone_carries_the_causal_token_and_ends(cache: RemoteCache) -> None:
    key = fresh("tomb")
    assert cache.set(key, b"v1", 1)
    assert cache.invalidate([key], "0/16B3748@shard-1", tombstone_ttl_ms=300) == 1
    lease = cache.lease_get(key, lease_ttl_ms=100)
    assert lease.outcome is LeaseOutcome.GRANTED
    assert lease.tombstone and lease.causal_token == "0/16B3748@shard-1"
    time.sleep(0.4)
    after = cache.lease_get(key)
    assert after.outcome is LeaseOutcome.GRANTED
    assert not after.tombstone and after.causal_token is None


# -- write-through ------------------------------------------------------------------------


def test_racing_write_through_never_leaves_an_older_version(server: Server) -> None:
    cache = server.cache()
    key = fresh("race")
    rng = random.Random(13)
    older_cached = 0
    refused = 0
    for rnd in range(500):
        versions = [2 * rnd + 1, 2 * rnd + 2]
        rng.shuffle(versions)
        delays = [rng.random() * 0.001, rng.random() * 0.001]
        start = threading.Barrier(2)
        results: list[bool] = []

        def writer(
            i: int,
            versions: list[int] = versions,
            delays: list[float] = delays,
            start: threading.Barrier = start,
            results: list[bool] = results,
        ) -> None:
            start.wait()
            time.sleep(delays[i])
            v = versions[i]
            results.append(cache.set(key, f"value {v}".encode(), v).ok)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused += results.count(False)
        got = cache.get(key)
        newest = max(versions)
        if got.version != newest or got.value != f"value {newest}".encode():
            older_cached += 1
    assert older_cached == 0
    assert refused > 0  # the older writer did come second in some rounds


# -- tags ---------------------------------------------------------------------------------


def test_tag_invalidation_removes_members_only(cache: RemoteCache) -> None:
    tag = f"user:{uuid.uuid4().hex}"
    a, b, c = fresh("a"), fresh("b"), fresh("c")
    assert cache.set(a, b"A", 1, tags=[tag])
    stored = cache.set_many([Entry(b, b"B", 1, tags=[tag, "other"]), Entry(c, b"C", 1)])
    assert all(stored)
    assert cache.invalidate_tag(tag, "tok") == 2
    assert [g.state for g in cache.get_many([a, b, c])] == [
        EntryState.MISS,
        EntryState.MISS,
        EntryState.VALUE,
    ]
    assert cache.lease_get(a).causal_token == "tok"


def test_tag_invalidation_voids_a_fill_in_flight(cache: RemoteCache) -> None:
    tag = f"model:{uuid.uuid4().hex}"
    key = fresh("tagfill")
    lease = cache.lease_get(key, tags=[tag])
    assert lease.token
    assert cache.invalidate_tag(tag) == 0  # no value yet, but the lease is voided
    assert cache.lease_set(key, lease.token, b"old", 1, tags=[tag]).refusal is Refusal.NO_LEASE


# -- batches ------------------------------------------------------------------------------


def test_get_many_of_100_keys_is_one_script_call(server: Server, cache: RemoteCache) -> None:
    # One hash tag: on a cluster all 100 keys are in one slot, so one call there too.
    group = uuid.uuid4().hex
    keys = [f"it:{{{group}}}:{i}" for i in range(100)]
    assert all(cache.set_many([Entry(k, f"v{i}".encode(), i) for i, k in enumerate(keys[::2])]))
    cache.get(keys[0])  # scripts loaded before counting
    server.reset_stats()
    got = cache.get_many(keys)
    assert server.calls("evalsha") == 1
    for i, g in enumerate(got):
        assert g.key == keys[i]
        if i % 2 == 0:
            assert (g.state, g.value, g.version) == (
                EntryState.VALUE,
                f"v{i // 2}".encode(),
                i // 2,
            )
        else:
            assert g.state is EntryState.MISS


def test_get_many_without_hash_tags_is_one_call_per_slot(
    server: Server, cache: RemoteCache
) -> None:
    from redis.crc import key_slot

    keys = [fresh("spread") for _ in range(100)]
    assert all(cache.set_many([Entry(k, k.encode(), 1) for k in keys]))
    server.reset_stats()
    got = cache.get_many(keys)
    slots = {key_slot(k.encode()) for k in keys}
    expected = 1 if server.kind == "standalone" else len(slots)
    assert server.calls("evalsha") == expected
    assert [g.value for g in got] == [k.encode() for k in keys]


# -- negative entries, bad input ----------------------------------------------------------


def test_negative_entries_are_distinct_with_their_own_ttl(server: Server) -> None:
    cache = server.cache(RemoteSettings(negative_ttl_ms=200, default_ttl_ms=60_000))
    missing, present = fresh("neg"), fresh("pos")
    assert cache.set(missing, None, 3)
    assert cache.set(present, b"", 3)  # an empty value is a value, not an absence
    g = cache.get(missing)
    assert (g.state, g.value, g.version, g.hit) == (EntryState.ABSENT, None, 3, True)
    assert cache.get(present).state is EntryState.VALUE
    hit = cache.lease_get(missing)
    assert hit.outcome is LeaseOutcome.HIT and hit.state is EntryState.ABSENT
    time.sleep(0.3)
    assert cache.get(missing).state is EntryState.MISS
    assert cache.get(present).state is EntryState.VALUE


def test_oversize_value_is_refused_and_nothing_stored(server: Server) -> None:
    cache = server.cache(RemoteSettings(max_value_bytes=1024))
    key = fresh("big")
    with pytest.raises(CacheValueTooLarge, match="over the cache's limit of 1024 bytes"):
        cache.set(key, b"x" * 1025, 1)
    assert cache.get(key).state is EntryState.MISS


# -- faults -------------------------------------------------------------------------------


def test_redis_stopped_raises_cache_unavailable_quickly(own_redis: Server) -> None:
    cache = own_redis.cache()
    key = fresh("down")
    assert cache.set(key, b"v", 1)
    own_redis.stop()
    for call in (
        lambda: cache.get(key),
        lambda: cache.lease_get(key),
        lambda: cache.get_many([key, fresh()]),
        lambda: cache.invalidate([key]),
    ):
        t0 = time.monotonic()
        with pytest.raises(CacheUnavailable):
            call()
        assert time.monotonic() - t0 < 1.0


def test_a_frozen_redis_times_out_instead_of_hanging(own_redis: Server) -> None:
    cache = own_redis.cache(timeout_s=0.2)
    key = fresh("frozen")
    assert cache.set(key, b"v", 1)
    pid = own_redis.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(CacheUnavailable):
            cache.get(key)
        # The call and its one retry, each bounded by the socket timeout.
        assert time.monotonic() - t0 < 1.0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert cache.get(key).value == b"v"  # and it recovers once Redis answers again


# -- asyncio --------------------------------------------------------------------------------


def _async_cache(server: Server) -> AsyncRemoteCache:
    return AsyncRemoteCache.connect(
        "127.0.0.1", server.ports[0], password=server.password, cluster=server.kind == "cluster"
    )


def test_async_one_lease_among_200_tasks_and_the_stale_set(server: Server) -> None:
    async def scenario() -> tuple[list[LeaseOutcome], bool, bool]:
        async with _async_cache(server) as cache:
            key = fresh("astampede")
            got = await asyncio.gather(*[cache.lease_get(key) for _ in range(200)])
            outcomes = [g.outcome for g in got]
            token = next(g.token for g in got if g.token)
            await cache.invalidate([key], "tok")
            refused = not await cache.lease_set(key, token, b"old", 1)
            again = await cache.lease_get(key)
            assert again.token and again.causal_token == "tok"
            stored = bool(await cache.lease_set(key, again.token, b"new", 2))
            return outcomes, refused, stored

    outcomes, refused, stored = asyncio.run(scenario())
    assert outcomes.count(LeaseOutcome.GRANTED) == 1
    assert outcomes.count(LeaseOutcome.WAIT) == 199
    assert refused and stored


def test_async_batches_and_tags(server: Server) -> None:
    async def scenario() -> list[EntryState]:
        async with _async_cache(server) as cache:
            tag = f"t:{uuid.uuid4().hex}"
            keys = [fresh("abatch") for _ in range(50)]
            stored = await cache.set_many(
                [Entry(k, k.encode(), 1, tags=[tag] if i < 10 else ()) for i, k in enumerate(keys)]
            )
            assert all(stored)
            assert await cache.invalidate_tag(tag) == 10
            return [g.state for g in await cache.get_many(keys)]

    states = asyncio.run(scenario())
    assert states == [EntryState.MISS] * 10 + [EntryState.VALUE] * 40


def test_async_redis_stopped_raises_cache_unavailable_quickly(own_redis: Server) -> None:
    async def scenario() -> float:
        async with _async_cache(own_redis) as cache:
            assert await cache.set(fresh("adown"), b"v", 1)
            own_redis.stop()
            t0 = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await cache.get(fresh("adown"))
            return time.monotonic() - t0

    assert asyncio.run(scenario()) < 1.0


def test_async_callers_beyond_the_bound_queue_then_give_up_in_time(own_redis: Server) -> None:
    """``connect`` bounds calls in flight to ``max_connections``: 200 tasks share 2
    connections (none fails); with Redis frozen, the 2 in flight time out on their
    sockets and the third gives up waiting for a connection after ``timeout_s``."""
    pid = own_redis.pid()
    assert pid is not None
    counter = redis.Redis(port=own_redis.ports[0], password=own_redis.password)

    async def scenario() -> tuple[int, list[str], float]:
        cache = AsyncRemoteCache.connect(
            "127.0.0.1", own_redis.ports[0], password=own_redis.password,
            max_connections=2, timeout_s=0.3,
        )  # fmt: skip
        async with cache:
            key = fresh("abound")
            assert await cache.set(key, b"v", 1)
            got = await asyncio.gather(*[cache.get(key) for _ in range(200)])
            assert all(g.value == b"v" for g in got)
            clients = int(counter.info("clients")["connected_clients"]) - 1  # less our own
            os.kill(pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                errors = await asyncio.gather(
                    *[cache.get(key) for _ in range(3)], return_exceptions=True
                )
                spent = time.monotonic() - t0
            finally:
                os.kill(pid, signal.SIGCONT)
            assert (await cache.get(key)).value == b"v"  # recovers
        return clients, [str(e) for e in errors if isinstance(e, CacheUnavailable)], spent

    try:
        clients, errors, spent = asyncio.run(scenario())
    finally:
        counter.close()
    assert clients <= 2
    assert len(errors) == 3
    assert sum("no Redis connection came free" in e for e in errors) == 1
    assert spent < 2.0  # socket timeout and one retry, not a hang
