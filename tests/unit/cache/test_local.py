"""The L1 cache: TTL, LRU, both bounds, pins, the version guard, counters, threads."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter

import pytest

from mlscale.cache.codec import encode
from mlscale.cache.local import (
    Hit,
    LocalCache,
    LocalCacheFull,
    SetOutcome,
)
from mlscale.errors import CacheError, CacheValueTooLarge


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def cache(clock: FakeClock, **kw: object) -> LocalCache:
    return LocalCache(clock=clock, **kw)  # type: ignore[arg-type]


# -- TTL -------------------------------------------------------------------------------


def test_entries_expire_after_their_ttl(clock: FakeClock) -> None:
    c = cache(clock)
    c.set("a", 1, ttl=10, size=1)
    c.set("b", 2, ttl=20, size=1)
    clock.advance(9.999)
    assert c.get("a") == Hit(1, None, 1010.0, 1)
    clock.advance(0.001)
    assert c.get("a") is None
    assert c.get("b") is not None
    clock.advance(10)
    assert c.get("b") is None
    s = c.stats()
    assert (s.hits, s.misses, s.evicted_expired, s.entries, s.bytes) == (2, 2, 2, 0, 0)


def test_jitter_only_shortens_the_ttl(clock: FakeClock) -> None:
    draws = iter([0.0, 0.5, 0.999])
    c = cache(clock, jitter=0.2, rng=lambda: next(draws))
    expiries = [c.set(k, 1, ttl=100, size=1) and c.get(k) for k in "abc"]
    assert [h.expires_at - clock.now for h in expiries if isinstance(h, Hit)] == pytest.approx(
        [100.0, 90.0, 80.02]
    )
    # A per-entry jitter overrides the cache's; zero means exactly the ttl.
    c.set("d", 1, ttl=100, size=1, jitter=0.0)
    hit = c.get("d")
    assert hit is not None and hit.expires_at == clock.now + 100


def test_infinite_ttl_never_expires(clock: FakeClock) -> None:
    c = cache(clock, jitter=0.5)
    c.set("a", 1, ttl=math.inf, size=1)
    clock.advance(1e12)
    assert c.get("a") is not None


@pytest.mark.parametrize("ttl", [0, -1, math.nan, True, "10"])
def test_bad_ttls_are_refused(clock: FakeClock, ttl: object) -> None:
    with pytest.raises(ValueError, match="ttl"):
        cache(clock).set("a", 1, ttl=ttl, size=1)  # type: ignore[arg-type]


# -- negative caching -----------------------------------------------------------------


def test_a_cached_none_is_a_hit_not_a_miss(clock: FakeClock) -> None:
    c = cache(clock, negative_ttl=5)
    c.set("none", None, ttl=60)
    hit = c.get("none")
    assert hit is not None and hit.negative and hit.value is None
    assert c.get("absent") is None
    clock.advance(5)  # the negative TTL caps the 60 s asked for
    assert c.get("none") is None
    s = c.stats()
    assert (s.hits, s.negative_hits, s.misses) == (1, 1, 2)


def test_negative_ttl_does_not_touch_real_values(clock: FakeClock) -> None:
    c = cache(clock, negative_ttl=5)
    c.set("zero", 0, ttl=60)
    clock.advance(59)
    hit = c.get("zero")
    assert hit is not None and not hit.negative and hit.value == 0


# -- LRU and bounds ---------------------------------------------------------------


def test_lru_evicts_the_least_recently_used(clock: FakeClock) -> None:
    c = cache(clock, max_entries=3)
    for k in "abc":
        c.set(k, k, ttl=60, size=1)
    assert c.get("a") is not None  # a is now the most recent; b the least
    result = c.set("d", "d", ttl=60, size=1)
    assert result.stored and result.evicted == 1
    assert c.get("b") is None
    assert {k for k in "acd" if c.get(k)} == set("acd")
    assert c.stats().evicted_entries == 1


def test_byte_bound_evicts_as_many_as_needed(clock: FakeClock) -> None:
    c = cache(clock, max_bytes=100)
    for k in "abcd":
        c.set(k, k, ttl=60, size=25)
    c.get("a")
    result = c.set("e", "e", ttl=60, size=60)  # needs 3 evictions: b, c, d
    assert result.evicted == 3
    assert set(c.get_many("abcde")) == {"a", "e"}
    s = c.stats()
    assert (s.bytes, s.entries, s.evicted_bytes) == (85, 2, 3)


def test_expired_entries_found_by_eviction_count_as_expired(clock: FakeClock) -> None:
    c = cache(clock, max_entries=2)
    c.set("a", 1, ttl=1, size=1)
    c.set("b", 1, ttl=60, size=1)
    clock.advance(2)
    c.set("c", 1, ttl=60, size=1)
    s = c.stats()
    assert (s.evicted_expired, s.evicted_entries) == (1, 0)


def test_default_size_is_the_encoded_length(clock: FakeClock) -> None:
    c = cache(clock)
    value = {"embedding": list(range(100))}
    c.set("a", value, ttl=60)
    hit = c.get("a")
    assert hit is not None and hit.size == len(encode(value))
    assert c.stats().bytes == hit.size


def test_a_value_over_max_bytes_is_refused_and_the_old_one_dropped(clock: FakeClock) -> None:
    c = cache(clock, max_bytes=100)
    c.set("a", "old", ttl=60, size=10)
    with pytest.raises(CacheValueTooLarge, match="101"):
        c.set("a", "new", ttl=60, size=101)
    assert c.get("a") is None  # "old" must not be served in place of "new"
    assert c.stats().sets_refused == 1


# -- version guard -------------------------------------------------------------------


def test_an_older_version_is_ignored_and_says_so(clock: FakeClock) -> None:
    c = cache(clock)
    assert c.set("a", "v5", ttl=60, version=5, size=1).outcome is SetOutcome.STORED
    result = c.set("a", "v4", ttl=60, version=4, size=1)
    assert (result.outcome, result.stored, result.version) == (SetOutcome.OLDER_VERSION, False, 5)
    unversioned = c.set("a", "v?", ttl=60, size=1)
    assert unversioned.outcome is SetOutcome.OLDER_VERSION
    assert c.set("a", "v5'", ttl=60, version=5, size=1).stored  # equal: a refresh
    assert c.set("a", "v6", ttl=60, version=6, size=1).stored
    hit = c.get("a")
    assert hit is not None and (hit.value, hit.version) == ("v6", 6)
    assert c.stats().sets_ignored_older == 2


def test_the_guard_ends_with_the_entry(clock: FakeClock) -> None:
    c = cache(clock)
    c.set("a", "v5", ttl=1, version=5, size=1)
    clock.advance(1)
    assert c.set("a", "v4", ttl=60, version=4, size=1).stored  # v5 had expired
    c.delete("a")
    assert c.set("a", "v3", ttl=60, version=3, size=1).stored


# -- pins ------------------------------------------------------------------------------


def test_pinned_entries_are_neither_evicted_nor_expired(clock: FakeClock) -> None:
    c = cache(clock, max_entries=2)
    c.set("dirty", "d", ttl=1, size=1, pin=True)
    for i in range(10):
        c.set(f"k{i}", i, ttl=60, size=1)
    clock.advance(100)
    hit = c.get("dirty")
    assert hit is not None and hit.value == "d"
    assert c.stats().evicted_entries == 9
    assert c.unpin("dirty")
    assert c.get("dirty") is None  # unpinned and past its TTL
    assert c.stats().evicted_expired >= 1


def test_pins_nest(clock: FakeClock) -> None:
    c = cache(clock, max_entries=1)
    c.set("a", 1, ttl=60, size=1)
    assert c.pin("a") and c.pin("a")
    assert c.unpin("a")
    with pytest.raises(LocalCacheFull):
        c.set("b", 1, ttl=60, size=1)  # a is still pinned once
    assert c.unpin("a") and not c.unpin("a")
    assert c.set("b", 1, ttl=60, size=1).evicted == 1


def test_replacing_a_pinned_entry_keeps_its_pins(clock: FakeClock) -> None:
    c = cache(clock, max_entries=1)
    c.set("a", 1, ttl=60, size=1, pin=True)
    c.set("a", 2, ttl=60, size=1)
    assert c.stats().pinned_entries == 1
    with pytest.raises(LocalCacheFull):
        c.set("b", 1, ttl=60, size=1)


def test_a_set_is_refused_rather_than_evicting_dirty_data(clock: FakeClock) -> None:
    c = cache(clock, max_entries=10, max_bytes=100)
    c.set("p1", 1, ttl=60, size=40, pin=True)
    c.set("p2", 2, ttl=60, size=40, pin=True)
    c.set("clean", 3, ttl=60, size=10)
    assert c.set("x", 4, ttl=60, size=20).evicted == 1  # the clean entry may go
    with pytest.raises(LocalCacheFull) as info:
        c.set("y", 5, ttl=60, size=21)
    assert isinstance(info.value, CacheError)
    assert "pinned" in str(info.value) and "80" in str(info.value)
    assert set(c.get_many(["p1", "p2", "x", "y"])) == {"p1", "p2", "x"}
    s = c.stats()
    assert (s.pinned_entries, s.pinned_bytes, s.bytes, s.sets_refused) == (2, 80, 100, 1)


def test_pin_of_a_missing_or_expired_entry_fails(clock: FakeClock) -> None:
    c = cache(clock)
    assert not c.pin("nope")
    c.set("a", 1, ttl=1, size=1)
    clock.advance(1)
    assert not c.pin("a")


def test_delete_removes_pinned_entries_but_clear_keeps_them(clock: FakeClock) -> None:
    c = cache(clock)
    c.set("p", 1, ttl=60, size=3, pin=True)
    c.set("q", 1, ttl=60, size=3, pin=True)
    c.set("u", 1, ttl=60, size=3)
    assert c.clear() == 1
    assert set(c.get_many("pqu")) == {"p", "q"} and c.stats().bytes == 6
    assert c.delete("p") and not c.delete("p")
    assert not c.unpin("p")
    assert c.clear(keep_pinned=False) == 1
    s = c.stats()
    assert (s.entries, s.bytes, s.pinned_entries, s.pinned_bytes) == (0, 0, 0, 0)


def test_delete_many_and_get_many(clock: FakeClock) -> None:
    c = cache(clock)
    for k in "abc":
        c.set(k, k.upper(), ttl=60, size=1)
    assert {k: h.value for k, h in c.get_many(["a", "x", "c"]).items()} == {"a": "A", "c": "C"}
    assert c.delete_many(["a", "b", "x"]) == 2
    assert list(c.get_many("abc")) == ["c"]
    s = c.stats()
    assert (s.hits, s.misses, s.deletes) == (3, 3, 2)


def test_stats_to_dict_is_flat_and_derived_fields_add_up(clock: FakeClock) -> None:
    c = cache(clock)
    c.set("a", 1, ttl=60, size=1)
    c.get("a")
    c.get("b")
    d = c.stats().to_dict()
    assert d["lookups"] == 2 and d["hit_ratio"] == 0.5 and d["evictions"] == 0
    assert all(isinstance(v, int | float) for v in d.values())


# -- threads -------------------------------------------------------------------------


def test_many_threads_keep_the_bounds_and_the_counters_add_up() -> None:
    max_entries, max_bytes = 50, 2_000
    c = LocalCache(max_entries=max_entries, max_bytes=max_bytes)
    keys = [f"k{i}" for i in range(200)]
    done = threading.Event()
    violations: list[str] = []
    tallies: list[Counter[str]] = []
    lock = threading.Lock()

    def watch() -> None:
        while not done.is_set():
            s = c.stats()
            if s.bytes > max_bytes or s.entries > max_entries or s.pinned_bytes > s.bytes:
                violations.append(repr(s))

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        tally: Counter[str] = Counter()
        pinned: list[str] = []
        for _ in range(4_000):
            key = rnd.choice(keys)
            op = rnd.random()
            if op < 0.5:
                tally["lookups"] += 1
                c.get(key)
            elif op < 0.55:
                tally["lookups"] += 10
                c.get_many(rnd.sample(keys, 10))
            elif op < 0.9:
                try:
                    result = c.set(key, op, ttl=60, size=rnd.randrange(0, 200), pin=op < 0.56)
                except LocalCacheFull:
                    tally["refused"] += 1
                else:
                    tally["stored" if result.stored else "ignored"] += 1
                    if result.stored and op < 0.56:
                        pinned.append(key)
            elif op < 0.95:
                c.delete(key)
            elif pinned:
                c.unpin(pinned.pop())
        for key in pinned:
            c.unpin(key)
        with lock:
            tallies.append(tally)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    watcher.join()

    assert not violations, violations[:3]
    total = sum(tallies, Counter())
    s = c.stats()
    assert s.lookups == total["lookups"]
    assert s.sets == total["stored"] and s.sets_refused == total["refused"]
    assert s.sets_ignored_older == total["ignored"] == 0  # no versions were used
    # What is left is what the counters say, byte for byte.
    left = c.get_many(keys)
    assert len(left) == s.entries and sum(h.size for h in left.values()) == s.bytes
    assert s.bytes <= max_bytes and s.entries <= max_entries
    # Deleted pins went with their entries; every surviving pin was undone.
    assert c.stats().pinned_entries == 0
