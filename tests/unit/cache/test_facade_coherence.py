"""The façade driving an L1 coherence broadcast (a fake one: no Redis): L1 served and
filled only while trusted, fills stamped with the broadcast's epoch and L1's
generation read before loading, and the listener's invalidations going through
``Cache.forget_local``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from mlscale.cache import AsyncCache, Cache, KeyBuilder, LocalCache
from mlscale.cache.broadcast import L1Broadcast
from mlscale.cache.policy import CoherentBroadcaster, L1Coherence


class FakeBroadcast:
    """What L1Broadcast offers the façade, driven by the test."""

    def __init__(self, local: LocalCache) -> None:
        self.local = local
        self.l1_trusted = True
        self.epoch = 1
        self.published: list[list[str]] = []
        self.on_invalidate: Any = None

    def publish(self, keys: Sequence[str]) -> None:
        self.published.append(list(keys))

    def drop(self) -> None:
        """What the listener does when its subscription drops."""
        self.l1_trusted = False
        self.epoch += 1
        self.local.retire_epochs_below(self.epoch)
        self.local.clear()

    def resubscribe(self) -> None:
        self.epoch += 1
        self.local.retire_epochs_below(self.epoch)
        self.local.clear()
        self.l1_trusted = True

    def heard(self, names: Sequence[str]) -> int:
        """Another process's invalidation, as the listener applies it."""
        forget = self.on_invalidate
        return forget(names) if forget is not None else self.local.invalidate_many(names)


class Loader:
    def __init__(self, value: Any = "v", during: Any = None) -> None:
        self.value, self.during, self.calls = value, during, 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.during is not None:
            self.during()
        return self.value


def make() -> tuple[Cache, LocalCache, FakeBroadcast]:
    local = LocalCache()
    bc = FakeBroadcast(local)
    assert isinstance(bc, CoherentBroadcaster) and isinstance(bc, L1Coherence)
    return Cache("unit", local=local, broadcast=bc), local, bc


def test_l1_is_neither_served_nor_filled_while_untrusted() -> None:
    cache, local, bc = make()
    load = Loader("a")
    assert cache.get("k", load) == "a" and cache.get("k", load) == "a"
    assert load.calls == 1  # the second get was an L1 hit
    local.set(cache.name("k"), "kept", ttl=60, version=1, pin=True)  # kept by the clear
    bc.drop()
    untrusted = Loader("b")
    assert [cache.get("k", untrusted) for _ in range(3)] == ["b"] * 3
    assert untrusted.calls == 3  # every call loaded: L1 not read, not filled
    assert cache.get_many(["k"]) == {} and cache.get("k") is None
    assert local.get(cache.name("k")) is not None  # the pinned entry is there, unserved
    local.delete(cache.name("k"))
    bc.resubscribe()
    again = Loader("c")
    assert cache.get("k", again) == "c" and cache.get("k", again) == "c"
    assert again.calls == 1


def test_a_fill_that_raced_a_drop_is_refused() -> None:
    cache, local, bc = make()

    def gap() -> None:  # Redis restarted while the value was loaded
        bc.drop()
        bc.resubscribe()

    load = Loader("old", during=gap)
    assert cache.get("k", load) == "old"
    assert local.stats().sets_ignored_epoch == 1 and len(local) == 0
    fresh = Loader("new")
    assert cache.get("k", fresh) == "new" and fresh.calls == 1


def test_a_fill_that_raced_another_process_invalidation_is_refused() -> None:
    cache, local, bc = make()
    assert bc.on_invalidate == cache.forget_local  # set by Cache.__init__
    name = cache.name("k")
    load = Loader("old", during=lambda: bc.heard([name]))
    assert cache.get("k", load) == "old"
    assert len(local) == 0 and cache.get("k", Loader("new")) == "new"
    # Heard for a key in L1: dropped, and the façade's counters voided too.
    assert bc.heard([name]) == 1 and local.get(name) is None


def test_the_hook_also_refuses_a_fill_that_was_stamped_by_an_l1_only_listener() -> None:
    # The since-guard holds for a listener that only calls LocalCache.invalidate_many.
    cache, local, bc = make()
    bc.on_invalidate = None
    name = cache.name("k")
    assert cache.get("k", Loader("old", during=lambda: bc.heard([name]))) == "old"
    assert local.stats().sets_ignored_invalidated == 1 and len(local) == 0


def test_the_broadcast_must_keep_the_caches_l1() -> None:
    other = FakeBroadcast(LocalCache())
    with pytest.raises(ValueError, match="another L1"):
        Cache("unit", local=LocalCache(), broadcast=other)


def test_l1broadcast_hook_is_set_by_a_cache_only() -> None:
    client = redis.Redis(port=1)  # never connected: nothing here does I/O
    local = LocalCache()
    alone = L1Broadcast(client, KeyBuilder("unit"), local)
    assert alone.on_invalidate is None and not alone.l1_trusted
    cache = Cache("unit", local=local, broadcast=alone)
    assert alone.on_invalidate == cache.forget_local
    cache.set("k", 1)
    assert cache.get("k", Loader(2)) == 2  # not subscribed: untrusted, L1 bypassed
    client.close()


def test_async_cache_follows_the_same_rules() -> None:
    local = LocalCache()
    bc = FakeBroadcast(local)
    cache = AsyncCache("unit", local=local, broadcast=bc)
    assert bc.on_invalidate == cache.forget_local

    async def run() -> None:
        load = Loader("a")
        assert await cache.get("k", load) == "a" and await cache.get("k", load) == "a"
        assert load.calls == 1
        bc.drop()
        untrusted = Loader("b")
        assert [await cache.get("k", untrusted) for _ in range(2)] == ["b", "b"]
        assert untrusted.calls == 2 and len(local) == 0
        bc.resubscribe()
        name = cache.name("k")
        raced = Loader("old", during=lambda: bc.heard([name]))
        assert await cache.get("k", raced) == "old" and len(local) == 0

    asyncio.run(run())
