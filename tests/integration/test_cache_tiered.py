"""The cache façade (mlscale.cache.Cache / AsyncCache) against real servers: Redis
standalone and Redis Cluster (fixtures in conftest.py) and the session's PostgreSQL.

Counted: database reads of a cold key under 1,000 callers in 2 processes (on the
database side, by a counter row the loader's SQL bumps), fills refused after an
invalidation, cached versions behind the database after racing write-throughs,
reads served from the database while Redis is down, corrupt entries.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.cache import (
    AsyncCache,
    AsyncRemoteCache,
    Cache,
    CachePolicy,
    CacheUnavailable,
    LocalCache,
    OnUnavailable,
    RemoteSettings,
    Versioned,
)
from mlscale.cache.remote import EntryState
from mlscale.errors import CacheError
from tests.integration import cache_stampede_worker
from tests.integration.redis_servers import Server

pytestmark = pytest.mark.integration


def ns() -> str:
    return f"it-{uuid.uuid4().hex[:12]}"


def facade(server: Server, *, local: bool = True, **policy: Any) -> Cache:
    remote = server.cache(RemoteSettings(stale_ms=5_000))
    return Cache(
        policy.pop("namespace", None) or "it-shared",
        local=LocalCache() if local else None,
        remote=remote,
        policy=CachePolicy(**policy),
    )


# -- Redis only, on both topologies -----------------------------------------------------------


def test_cache_aside_across_two_processes_loads_once(server: Server) -> None:
    name = ns()
    a, b = facade(server, namespace=name), facade(server, namespace=name)
    loads: list[int] = []

    def load() -> dict[str, int]:
        loads.append(1)
        return {"n": 1}

    assert a.get(("row", 1), load) == {"n": 1}
    assert b.get(("row", 1), load) == {"n": 1}  # from L2
    assert b.get(("row", 1), load) == {"n": 1}  # from b's L1
    assert len(loads) == 1
    sb = b.stats()
    assert sb.l2 is not None and sb.l2.hits == 1 and sb.l1 is not None and sb.l1.hits == 1


def test_one_load_among_400_threads_over_two_caches(server: Server) -> None:
    name = ns()
    caches = [facade(server, namespace=name, local=i == 0) for i in range(2)]
    loads: list[int] = []
    start = threading.Barrier(400)
    results: list[Any] = []

    def load() -> str:
        loads.append(1)
        time.sleep(0.2)
        return "v"

    def caller(i: int) -> None:
        start.wait()
        results.append(caches[i % 2].get("cold", load))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(400)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["v"] * 400
    assert len(loads) == 1
    assert sum(c.stats().lease_wait_timeouts for c in caches) == 0


def test_stale_set_is_refused_and_the_fill_reads_at_the_invalidation_token(
    server: Server,
) -> None:
    cache = facade(server, namespace=ns())
    db = {"v": "old"}
    loading, release = threading.Event(), threading.Event()
    tokens: list[str | None] = []
    got: list[Any] = []

    def slow_load(token: str | None = None) -> str:
        tokens.append(token)
        value = db["v"]  # the reader reads the old row ...
        loading.set()
        release.wait(5)  # ... and is slow to fill
        return value

    reader = threading.Thread(target=lambda: got.append(cache.get("item", slow_load)))
    reader.start()
    assert loading.wait(5)
    db["v"] = "new"  # the writer updates the database, then invalidates
    cache.invalidate(["item"], token="writer-token")
    release.set()
    reader.join()
    assert got == ["old"]  # the reader's caller gets what it read; nothing cached
    assert cache.stats().fills_refused == 1

    def load(token: str | None = None) -> str:
        tokens.append(token)
        return db["v"]

    assert cache.get("item", load) == "new"
    assert tokens == [None, "writer-token"]  # the fill after the write got its token
    assert cache.get("item", load) == "new" and len(tokens) == 2


def test_waiters_take_the_stale_value_only_when_allowed(server: Server) -> None:
    cache = facade(server, namespace=ns(), local=False)
    cache.set("k", "v1")
    cache.invalidate(["k"])  # kept 5 s as stale (stale_ms)
    holder_in, release = threading.Event(), threading.Event()

    def slow() -> str:
        holder_in.set()
        release.wait(5)
        return "v2"

    holder = threading.Thread(target=lambda: cache.get("k", slow))
    holder.start()
    assert holder_in.wait(5)
    other = facade(server, namespace=cache.keys.namespace, local=False, lease_wait_s=0.2)
    assert other.get("k", lambda: "mine", allow_stale=True) == "v1"
    assert other.stats().stale_serves == 1
    assert other.get("k", lambda: "mine") == "mine"  # waited 0.2 s, then loaded itself
    assert other.stats().lease_wait_timeouts == 1
    release.set()
    holder.join()
    assert other.get("k") == "v2"


def test_tags_invalidate_members_in_both_tiers(server: Server) -> None:
    cache = facade(server, namespace=ns())
    for i in range(5):
        cache.get(("u", i), lambda i=i: f"u{i}", tags=["users"] if i < 3 else ["other"])
    assert cache.invalidate_tag("users") == 3
    loads: list[int] = []
    for i in range(5):
        cache.get(("u", i), lambda i=i: loads.append(i) or f"u{i}")
    assert loads == [0, 1, 2]


def test_namespaces_keep_two_applications_apart(server: Server) -> None:
    a, b = facade(server, namespace=ns()), facade(server, namespace=ns())
    a.set(("user", 1), "from a", tags=["t"])
    b.set(("user", 1), "from b", tags=["t"])
    assert a.get(("user", 1)) == "from a" and b.get(("user", 1)) == "from b"
    a.invalidate_tag("t")
    assert a.get(("user", 1)) is None and b.get(("user", 1)) == "from b"


def test_a_corrupt_entry_is_a_counted_miss_and_is_replaced(server: Server) -> None:
    cache = facade(server, namespace=ns(), local=False)
    cache.set("k", "good")
    raw = server.cache()
    raw.client.hset(cache.name("k"), "v", b"\x00 not an mlscale entry")
    assert cache.get("k") is None  # a miss, not an error
    assert cache.get("k", lambda: "reloaded") == "reloaded"
    assert cache.stats().corrupt_entries == 2
    assert raw.get(cache.name("k")).state is EntryState.VALUE
    assert cache.get("k") == "reloaded"


def test_decorator_over_l2(server: Server) -> None:
    cache = facade(server, namespace=ns())
    calls: list[int] = []

    @cache.cached(namespace="square", ttl=60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    other = facade(server, namespace=cache.keys.namespace)
    assert other.get(square.cache_key(3)) == 9  # type: ignore[attr-defined]
    assert calls == [3, 4]


# -- with PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture()
def table(cluster: Cluster) -> Iterator[str]:
    """The items table and load counter of this test (cache_it_items, cache_it_loads),
    dropped after it."""
    cluster.execute("DROP TABLE IF EXISTS cache_it_items, cache_it_loads")
    cluster.execute(
        "CREATE TABLE cache_it_items "
        "(id int PRIMARY KEY, value text NOT NULL, version bigint NOT NULL)"
    )
    cluster.execute("CREATE TABLE cache_it_loads (id int PRIMARY KEY, n int NOT NULL)")
    try:
        yield "cache_it_items"
    finally:
        cluster.execute("DROP TABLE cache_it_items, cache_it_loads")


def test_stampede_1000_callers_in_two_processes_make_one_database_read(
    server: Server, local_cluster: LocalCluster, cluster: Cluster, table: str
) -> None:
    cluster.execute("INSERT INTO cache_it_items VALUES (1, 'hot', 1)")
    cluster.execute("INSERT INTO cache_it_loads VALUES (1, 0)")
    # The loader's read bumps the counter in the same statement, and is slow.
    sql = (
        "WITH bump AS (UPDATE cache_it_loads SET n = n + 1 WHERE id = 1 RETURNING n) "
        "SELECT value FROM cache_it_items, bump, pg_sleep(0.3) WHERE id = %s"
    )
    spec = {
        "config": str(local_cluster.layout.config),
        "port": server.ports[0],
        "password": server.password,
        "kind": server.kind,
        "namespace": ns(),
        "key": "hot",
        "item": 1,
        "sql": sql,
        "threads": 250,
        "tasks": 250,
        "start_at": time.time() + 4.0,
    }
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=cache_stampede_worker.run, args=(spec, out)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    values = [v for vals, _ in results for v in vals]
    assert len(values) == 1000 and set(values) == {"hot"}
    reads = cluster.primary().fetch_value("SELECT n FROM cache_it_loads WHERE id = 1")
    assert reads == 1
    stats = [s for _, per_process in results for s in per_process]
    assert sum(s["loads"] for s in stats) == 1
    assert sum(s["lease_wait_timeouts"] for s in stats) == 0


def test_racing_write_through_never_leaves_an_older_value_cached(
    server: Server, cluster: Cluster, table: str
) -> None:
    cluster.execute("INSERT INTO cache_it_items VALUES (1, 'v0', 0)")
    shared = facade(server, namespace=ns())  # both writers in one process: L1 races too
    l2_only = facade(server, namespace=shared.keys.namespace, local=False)
    rounds = 1000
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    older: list[tuple[int, str, Any, Any]] = []  # rounds a tier served an older value after

    def check(r: int) -> None:
        row = cluster.primary().fetch_one("SELECT value FROM cache_it_items WHERE id = 1")
        assert row == (f"v{2 * r + 2}",)  # the database kept the newer write
        for tier, cached in (("L1+L2", shared.get(("item", 1))), ("L2", l2_only.get(("item", 1)))):
            if cached != row[0]:
                older.append((r, tier, cached, row[0]))

    def writer(i: int) -> None:
        try:
            for r in range(rounds):
                version = 2 * r + 1 + (i + r) % 2  # who writes the newer version alternates
                barrier.wait()
                shared.write_through(
                    ("item", 1),
                    f"v{version}",
                    version,
                    write=lambda v=version: cluster.primary().execute(
                        "UPDATE cache_it_items SET value = %s, version = %s "
                        "WHERE id = 1 AND version < %s",
                        (f"v{v}", v, v),
                    ),
                )
                barrier.wait()
                if i == 0:
                    check(r)  # both writes of the round are done; the next waits for us
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert older == []
    # The race did happen: some rounds' older write reached Redis second and was refused.
    assert shared.stats().fills_refused > 0


def test_redis_down_reads_are_served_from_the_database_and_counted(
    own_redis: Server, cluster: Cluster, table: str
) -> None:
    cluster.execute("INSERT INTO cache_it_items VALUES (1, 'db', 1)")
    cache = Cache(ns(), local=LocalCache(), remote=own_redis.cache())
    strict = Cache(
        cache.keys, remote=own_redis.cache(), policy=CachePolicy(on_unavailable=OnUnavailable.RAISE)
    )

    def load() -> str:
        return cluster.primary().fetch_value("SELECT value FROM cache_it_items WHERE id = 1")

    own_redis.stop()
    t0 = time.monotonic()
    assert [cache.get(("item", i), load) for i in range(5)] == ["db"] * 5
    assert time.monotonic() - t0 < 5.0
    s = cache.stats()
    assert s.unavailable == 5 and s.loads == 5
    assert s.local is not None and s.local.entries == 0  # nothing cached meanwhile
    with pytest.raises(CacheError) as err:
        strict.get(("item", 1), load)
    assert isinstance(err.value, CacheUnavailable)


def test_writes_through_the_cluster_invalidate_after_commit_with_their_token(
    server: Server, cluster: Cluster, table: str
) -> None:
    cluster.execute("INSERT INTO cache_it_items VALUES (1, 'old', 1)")
    cache = facade(server, namespace=ns())
    cache.watch(cluster)
    tokens: list[str | None] = []

    def load(token: str | None = None) -> Versioned:
        tokens.append(token)
        row = cluster.fetch_one(
            "SELECT value, version FROM cache_it_items WHERE id = 1",
            token=token,
            consistency="strong",
        )
        return Versioned(row[0], row[1])

    try:
        assert cache.get(("item", 1), load) == "old"
        with cache.invalidates(keys=[("item", 1)]), cluster.transaction() as tx:
            tx.execute("UPDATE cache_it_items SET value = 'new', version = 2 WHERE id = 1")
            assert cache.get(("item", 1), load) == "old"  # not committed yet
        assert tx.token is not None
        assert cache.get(("item", 1), load) == "new"
        assert tokens == [None, tx.token.to_string()]
        # A write outside any declaration invalidates nothing.
        cluster.execute("UPDATE cache_it_items SET value = 'newer', version = 3 WHERE id = 1")
        assert cache.get(("item", 1), load) == "new"
    finally:
        cache.close()


def test_async_cache_over_l2_read_through_stale_set_and_write_through(server: Server) -> None:
    async def scenario() -> None:
        async with AsyncRemoteCache.connect(
            "127.0.0.1",
            server.ports[0],
            password=server.password,
            cluster=server.kind == "cluster",
        ) as remote:
            cache = AsyncCache(ns(), local=LocalCache(), remote=remote)
            loading, release = asyncio.Event(), asyncio.Event()
            tokens: list[str | None] = []

            async def slow(token: str | None = None) -> str:
                tokens.append(token)
                loading.set()
                await release.wait()
                return "old"

            reader = asyncio.create_task(cache.get("k", slow))
            await loading.wait()
            await cache.invalidate(["k"], token="tok")
            release.set()
            assert await reader == "old"
            assert cache.stats().fills_refused == 1

            async def fresh(token: str | None = None) -> str:
                tokens.append(token)
                return "new"

            assert await cache.get("k", fresh) == "new"
            assert tokens == [None, "tok"]
            assert (await cache.write_through("k", "v9", 9)).cached
            assert not (await cache.write_through("k", "v8", 8)).cached
            assert await cache.get("k") == "v9"

    asyncio.run(scenario())
