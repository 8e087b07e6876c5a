"""The L1 hit's fast path: remembered key names (typed), ``LocalCache.value``, counters
kept under L1's lock, decorator keys without binding. Each shortcut must give what the
long way gives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from mlscale.cache import Cache, CachePolicy, KeyBuilder, LocalCache
from mlscale.cache.local import LookupTally
from mlscale.cache.policy import MISSING, CallKeys


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Str(str):
    """A str subclass equal (and hashing equal) to its str: not a key part."""


@pytest.mark.parametrize("key_names", [0, 2, 16_384])
def test_remembered_names_are_the_built_names_and_stay_typed(key_names: int) -> None:
    cache = Cache("unit", local=LocalCache(), policy=CachePolicy(key_names=key_names))
    kb = KeyBuilder("unit")
    for _ in range(2):
        for i in range(5):
            assert cache.name(("user", i)) == kb.key("user", i)
            assert cache.name(f"k:{i}") == kb.key(f"k:{i}")
    # 1 == True == 1.0 and "a" == Str("a") as dict keys: a remembered name must not
    # make a refused key acceptable.
    cache.set(1, "one")
    cache.set(("a", 1), "a1")
    for bad in (True, 1.0, ("a", True), (Str("a"), 1), (Str("a"), 1.0)):
        with pytest.raises(TypeError, match="str or int"):
            cache.get(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache.get(["a", 1])  # type: ignore[arg-type]
    assert cache.get(1) == "one" and cache.get(("a", 1)) == "a1"
    with pytest.raises(ValueError, match="key_names"):
        CachePolicy(key_names=-1)


def test_value_agrees_with_get_and_counts_the_same() -> None:
    clock = FakeClock()
    a, b = LocalCache(clock=clock), LocalCache(clock=clock)
    for c in (a, b):
        c.set("live", {"x": 1}, ttl=10)
        c.set("none", None, ttl=10)
        c.set("old", 1, ttl=1)
        c.set("dirty", 2, ttl=1, pin=True)
    clock.now += 5  # "old" expired; "dirty" is pinned, so served past its TTL
    tally = LookupTally()
    for key in ("live", "none", "old", "dirty", "absent", "live"):
        hit = a.get(key)
        got = b.value(key, MISSING, tally)
        assert got == (MISSING if hit is None else hit.value), key
    assert (tally.hits, tally.misses) == (4, 2)
    assert a.stats() == b.stats()
    assert b.stats().negative_hits == 1 and b.stats().evicted_expired == 1


def test_hot_path_counters_are_exact_across_threads() -> None:
    cache = Cache("unit", local=LocalCache(max_entries=100))
    for i in range(50):
        cache.set(("k", i), i)
    threads, per = 8, 5_000
    start = threading.Barrier(threads)

    def work(seed: int) -> None:
        start.wait()
        for j in range(per):
            i = (seed * 7 + j) % 60  # 50 hits, 10 misses in every 60
            cache.get(("k", i))

    ts = [threading.Thread(target=work, args=(s,)) for s in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s = cache.stats()
    assert s.l1 is not None and s.local is not None
    assert s.l1.hits + s.l1.misses == threads * per
    assert s.hits == s.l1.hits == s.local.hits
    assert s.misses == s.l1.misses == s.local.misses
    expected_misses = sum(
        1 for seed in range(threads) for j in range(per) if (seed * 7 + j) % 60 >= 50
    )
    assert s.misses == expected_misses


class Svc:
    def m(self, uid: int, kind: str = "a") -> None: ...

    @classmethod
    def c(cls, uid: int) -> None: ...


def f_plain(a: int, b: str) -> None: ...
def f_defaults(a: int, b: str = "x") -> None: ...
def f_posonly(a: int, /, b: int) -> None: ...
def f_star(a: int, *rest: int, **kw: int) -> None: ...
def f_kwonly(a: int, *, b: int = 2) -> None: ...


CALLS: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
    (f_plain, (1, "b"), {}),
    (f_plain, (1,), {"b": "b"}),
    (f_plain, (), {"b": "b", "a": 1}),
    (f_defaults, (1,), {}),
    (f_defaults, (1, "y"), {}),
    (f_posonly, (1, 2), {}),
    (f_star, (1, 2, 3), {"z": 4}),
    (f_star, (1,), {}),
    (f_kwonly, (1,), {}),
    (f_kwonly, (1,), {"b": 3}),
    (Svc.m, (Svc(), 1, "b"), {}),
    (Svc.m, (Svc(), 1), {}),
    (Svc.c, (1,), {}),
]


@pytest.mark.parametrize(("fn", "args", "kwargs"), CALLS)
def test_decorator_keys_without_binding_equal_the_bound_keys(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    keys = CallKeys(fn, "ns", None)
    assert keys(args, kwargs) == keys._bound(args, kwargs)


def test_decorator_fast_path_refuses_what_binding_refuses() -> None:
    keys = CallKeys(f_plain, "ns", None)
    for args in ((True, "b"), (1, Str("b")), (1.0, "b")):
        with pytest.raises(TypeError, match="argument"):
            keys(args, {})
    assert keys((1, "b"), {}) == ("ns", 1, "b")


def test_sync_cache_on_an_async_function_answers_l1_hits_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = Cache("unit", local=LocalCache())
    hops: list[int] = []
    to_thread = asyncio.to_thread

    async def counting(fn: Callable[..., Any], *a: Any, **k: Any) -> Any:
        hops.append(1)
        return await to_thread(fn, *a, **k)

    monkeypatch.setattr(asyncio, "to_thread", counting)

    @cache.cached(namespace="af")
    async def af(uid: int) -> str:
        return f"v{uid}"

    async def main() -> list[str]:
        return [await af(1) for _ in range(5)]

    assert asyncio.run(main()) == ["v1"] * 5
    assert hops == [1]  # the miss went to a thread; the 4 hits did not
    s = cache.stats()
    assert s.l1 is not None
    assert (s.hits, s.misses, s.l1.hits, s.l1.misses, s.loads) == (4, 1, 4, 1, 1)
