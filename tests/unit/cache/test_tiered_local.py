"""The cache façade with an L1 tier only (no Redis): decisions made in process.

Counted: loader calls under concurrent threads and tasks, stats, refused values.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from mlscale.cache import (
    AsyncCache,
    Cache,
    CachePolicy,
    KeyBuilder,
    LocalCache,
    OnUnavailable,
    Versioned,
)
from mlscale.cache.policy import LeaseWait, call_key, takes_token
from mlscale.core.causal import CausalToken, GroupPosition
from mlscale.engine.hooks import CommitHooks, Committed
from mlscale.errors import CacheValueTooLarge


def make(**policy: Any) -> Cache:
    return Cache("unit", local=LocalCache(max_entries=1000), policy=CachePolicy(**policy))


def test_a_cache_needs_a_tier_and_a_valid_policy() -> None:
    with pytest.raises(ValueError, match="needs a local"):
        Cache("x")
    with pytest.raises(ValueError, match="jitter"):
        CachePolicy(jitter=1.0)
    with pytest.raises(ValueError, match="ttl_s"):
        CachePolicy(ttl_s=0)
    assert CachePolicy(on_unavailable="raise").on_unavailable is OnUnavailable.RAISE  # type: ignore[arg-type]


def test_read_through_loads_once_then_hits() -> None:
    cache = make()
    calls: list[int] = []

    def load() -> dict[str, int]:
        calls.append(1)
        return {"id": 7}

    assert cache.get(("user", 7), load) == {"id": 7}
    assert cache.get(("user", 7), load) == {"id": 7}
    assert len(calls) == 1
    s = cache.stats()
    assert (s.hits, s.misses, s.loads) == (1, 1, 1)
    assert s.l1 is not None and s.l1.hits == 1 and s.l2 is None
    assert s.hit_ratio == 0.5 and s.to_dict()["hit_ratio"] == 0.5


def test_negative_results_are_cached_with_their_own_ttl() -> None:
    now = [0.0]
    cache = Cache(
        "unit",
        local=LocalCache(clock=lambda: now[0]),
        policy=CachePolicy(ttl_s=100, negative_ttl_s=5, local_ttl_s=100, jitter=0.0),
    )
    calls: list[int] = []

    def load() -> None:
        calls.append(1)

    assert cache.get("missing", load) is None
    assert cache.get("missing", load) is None
    assert len(calls) == 1  # the None was cached
    now[0] = 6.0
    assert cache.get("missing", load) is None
    assert len(calls) == 2  # past the negative TTL: loaded again
    assert cache.get("absent-no-loader", default="d") == "d"


def test_ttl_jitter_only_shortens() -> None:
    local = LocalCache(max_entries=5000)
    cache = Cache("unit", local=local, policy=CachePolicy(ttl_s=100, local_ttl_s=100, jitter=0.5))
    t0 = time.monotonic()
    for i in range(200):
        cache.set(("k", i), i)
    lives = [local.get(cache.name(("k", i))).expires_at - t0 for i in range(200)]  # type: ignore[union-attr]
    assert min(lives) >= 50 - 1 and max(lives) <= 100 + 1
    assert max(lives) - min(lives) > 10  # spread, not one deadline


def test_one_load_among_200_threads_on_a_cold_key() -> None:
    cache = make()
    loads: list[int] = []
    start = threading.Barrier(200)
    results: list[Any] = []

    def load() -> str:
        loads.append(1)
        time.sleep(0.1)
        return "v"

    def caller() -> None:
        start.wait()
        results.append(cache.get("cold", load))

    threads = [threading.Thread(target=caller) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["v"] * 200
    assert len(loads) == 1
    assert cache.stats().loads == 1


def test_one_load_among_200_tasks_on_a_cold_key() -> None:
    cache = AsyncCache("unit", local=LocalCache())
    loads: list[int] = []

    async def load() -> str:
        loads.append(1)
        await asyncio.sleep(0.05)
        return "v"

    async def scenario() -> list[Any]:
        return await asyncio.gather(*[cache.get("cold", load) for _ in range(200)])

    assert asyncio.run(scenario()) == ["v"] * 200
    assert len(loads) == 1


def test_waiters_past_the_bound_load_themselves_and_are_counted() -> None:
    cache = make(lease_wait_s=0.05)
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        return "slow"

    first = threading.Thread(target=lambda: cache.get("k", slow))
    first.start()
    time.sleep(0.02)
    assert cache.get("k", lambda: "mine") == "mine"
    release.set()
    first.join()
    s = cache.stats()
    assert s.lease_wait_timeouts == 1 and s.loads == 2


def test_an_invalidation_during_a_load_keeps_the_loaded_value_out_of_l1() -> None:
    cache = make()
    loading = threading.Event()
    release = threading.Event()

    def old() -> str:
        loading.set()
        release.wait(5)
        return "old"

    reader = threading.Thread(target=lambda: cache.get("k", old))
    reader.start()
    loading.wait(5)
    cache.invalidate(["k"])  # the writer's invalidation lands mid-load
    release.set()
    reader.join()
    assert cache.get("k", lambda: "new") == "new"


def test_versions_guard_l1_and_loaders_may_version_values() -> None:
    cache = make()
    assert cache.write_through("k", "v2", 2, write=lambda: "db").result == "db"
    assert not cache.set("k", "v1", version=1)  # older: ignored
    assert cache.get("k") == "v2"
    cache.invalidate(["k"])
    assert cache.get("k", lambda: Versioned("v3", 3)) == "v3"


def test_oversize_values_are_refused_before_anything_is_written() -> None:
    cache = make(max_value_bytes=1024)
    wrote: list[int] = []
    with pytest.raises(CacheValueTooLarge):
        cache.write_through("big", b"x" * 2048, 1, write=lambda: wrote.append(1))
    assert wrote == []
    with pytest.raises(CacheValueTooLarge):
        cache.set("big", b"x" * 2048)
    assert cache.get("big", default="none") == "none"


def test_tags_and_namespaces() -> None:
    local = LocalCache()
    a = Cache("app-a", local=local)
    b = Cache(KeyBuilder("app-b"), local=local)
    a.set(("u", 1), "a1", tags=["users"])
    a.set(("u", 2), "a2", tags=["users"])
    a.set(("p", 1), "p1")
    b.set(("u", 1), "b1", tags=["users"])
    assert b.get(("u", 1)) == "b1" and a.get(("u", 1)) == "a1"
    assert a.invalidate_tag("users") == 2
    assert a.get_many([("u", 1), ("u", 2), ("p", 1)]) == {("p", 1): "p1"}
    assert b.get(("u", 1)) == "b1"  # the other namespace's tag is its own


def test_decorator_keys_from_arguments_sync_and_async() -> None:
    cache = make()
    calls: list[Any] = []

    @cache.cached(namespace="user")
    def user(uid: int, field: str = "name") -> str:
        calls.append((uid, field))
        return f"{uid}:{field}"

    @cache.cached(namespace="auser")
    async def auser(uid: int) -> str:
        calls.append(("a", uid))
        return f"a{uid}"

    assert user(1) == user(1) == "1:name"
    assert user(1, "mail") == "1:mail"
    assert user.cache_key(1) == ("user", 1, "name")  # type: ignore[attr-defined]
    assert asyncio.run(auser(3)) == asyncio.run(auser(3)) == "a3"
    assert calls == [(1, "name"), (1, "mail"), ("a", 3)]
    assert user.invalidate(1)  # type: ignore[attr-defined]
    assert user(1) == "1:name" and len(calls) == 4

    @cache.cached()
    def bad(x: float) -> float:
        return x

    with pytest.raises(TypeError, match="key="):
        bad(1.5)
    with pytest.raises(TypeError, match="async functions"):
        AsyncCache("u", local=LocalCache()).cached()(user)


def test_call_keys_are_injective_over_kwargs() -> None:
    def f(*args: int, **kw: int) -> None:
        pass

    assert call_key(f, "f", None, (1, 2), {}) == ("f", 1, 2)
    assert call_key(f, "f", None, (), {"a": 1}) != call_key(f, "f", None, (), {"b": 1})
    assert call_key(f, "f", lambda *a, **k: ("x", 9), (1,), {}) == ("f", "x", 9)


def test_loaders_get_the_token_only_when_they_take_it() -> None:
    def plain() -> None: ...
    def kw(*, token: str | None = None) -> None: ...
    def anykw(**kw: Any) -> None: ...

    assert not takes_token(plain) and takes_token(kw) and takes_token(anykw)


def test_lease_wait_backs_off_up_to_the_bound() -> None:
    wait = LeaseWait(0.01, 0.04, time.monotonic() + 10)
    delays = [wait.next() for _ in range(6)]
    assert all(d is not None for d in delays)
    assert delays[0] < 0.015 and max(d for d in delays if d) <= 0.04 * 1.25 + 1e-9
    assert LeaseWait(0.01, 0.04, time.monotonic() - 1).next() is None


class FakeCluster:
    """Delivers Committed events to hooks, as Cluster.on_commit does."""

    def __init__(self) -> None:
        self.hooks = CommitHooks()

    def on_commit(self, hook: Any) -> None:
        self.hooks.add(hook)

    def remove_commit_hook(self, hook: Any) -> None:
        self.hooks.remove(hook)


def _token(lsn: int) -> CausalToken:
    return CausalToken({"g1": GroupPosition(1, 1, lsn)})


def test_declared_invalidations_apply_after_commit_only() -> None:
    cache = make()
    cluster = FakeCluster()
    cache.watch(cluster)
    cache.set(("item", 1), "old")
    cache.set(("item", 2), "keep")
    with cache.invalidates(keys=[("item", 1)]) as decl:
        assert cache.get(("item", 1)) == "old"  # nothing committed yet
        cluster.hooks.fire(Committed(("g1",), "UPDATE", _token(5)))
        assert cache.get(("item", 1)) is None
    assert decl.token_text == _token(5).to_string()
    cache.set(("item", 1), "again")
    cluster.hooks.fire(Committed(("g1",), "UPDATE", None))  # outside any declaration
    assert cache.get(("item", 1)) == "again" and cache.get(("item", 2)) == "keep"
    cache.close()
    assert not cluster.hooks


def test_async_declared_invalidations_apply_when_the_block_ends() -> None:
    cache = AsyncCache("unit", local=LocalCache())
    cluster = FakeCluster()
    cache.watch(cluster)

    async def scenario() -> tuple[Any, Any]:
        await cache.set("k", "old")
        async with cache.invalidates(keys=["k"]):
            cluster.hooks.fire(Committed(("g1",), "UPDATE", _token(3)))
            during = await cache.get("k")
        return during, await cache.get("k", default="gone")

    assert asyncio.run(scenario()) == ("old", "gone")
