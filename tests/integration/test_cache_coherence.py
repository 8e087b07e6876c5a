"""Stale values after invalidations, counted (issue 13's acceptance, second half).

One shard group: a primary and one replica that replays WAL ``DELAY_MS`` late
(``recovery_min_apply_delay``), and Redis. A :class:`Cache` over L1 + L2 watches
the cluster. Writers run ``with cache.invalidates(keys=[k]): cluster.execute(UPDATE
... v = v + 1)``: a plain write, invalidated after its commit with its causal token.
Readers (threads) call ``cache.get(k, loader)``; the loader reads with
``consistency="eventual"`` (so mostly from the lagging replica) unless the cache
hands it the tombstone's token, which it passes on (read-your-writes).

Every invalidation's completion (the ``with`` block has exited) is recorded with
the version it wrote, and every read with its start time and the version it got.
A read that started after an invalidation of its key completed and returned an
older version is stale. With the token: 0 over 1,000+ rounds, while the race is
exercised (fills refused, loads served by the delayed replica, with and without a
token: counted and > 0). Without it (the control, same workload): stale reads, so
the test can fail; so does the first test run against an engine whose plain
writes give their hooks no token (thousands of stale reads then).
"""

from __future__ import annotations

import bisect
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from mlscale import Cluster, LocalCluster
from mlscale.cache import Cache, CachePolicy, LocalCache, RemoteCache
from mlscale.local.tempdirs import reachable_tempdir

pytestmark = pytest.mark.integration

DELAY_MS = 200
KEYS = 32
WRITERS = 4  # each owns KEYS / WRITERS keys, so it knows the version it wrote
READERS = 6
ROUNDS = 1_000  # invalidations with the token; the control runs fewer
CONTROL_ROUNDS = 300


@dataclass
class Bed:
    cluster: Cluster
    redis_port: int
    password: str


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    base = reachable_tempdir("mlscale-coherence-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=1, replicas=1, redis=True)
        config = local.config()
        assert config.redis is not None
        with Cluster.from_file(local.layout.config) as cluster:
            with cluster.connection("g0-replica1") as conn:
                conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{DELAY_MS}ms'")
                conn.execute("SELECT pg_reload_conf()")
            cluster.execute("CREATE TABLE coh (id int PRIMARY KEY, v bigint NOT NULL)")
            cluster.execute(
                "INSERT INTO coh SELECT i, 0 FROM generate_series(0, %s) AS i", (KEYS - 1,)
            )
            _until_replayed(cluster)
            yield Bed(cluster, config.redis.port, local.layout.secret.read_text().strip())
    finally:
        try:
            local.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _until_replayed(cluster: Cluster) -> None:
    """Wait until the delayed replica has the table's rows."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with cluster.connection("g0-replica1") as conn:
                row = conn.execute("SELECT count(*) FROM coh").fetchone()
            if row is not None and row[0] == KEYS:
                return
        except psycopg.Error:  # the table is not there yet
            pass
        time.sleep(0.05)
    raise AssertionError("the delayed replica never replayed the table")


@dataclass
class Outcome:
    rounds: int
    reads: int
    stale: int
    fills_refused: int
    replica_loads: int
    token_loads: int
    token_replica_loads: int
    examples: list[tuple[int, int, int]] = field(default_factory=list)


def _run(bed: Bed, *, pass_token: bool, rounds: int, seed: int) -> Outcome:
    """``rounds`` invalidating writes against continuous reads; see the module docstring."""
    cluster = bed.cluster
    remote = RemoteCache.connect("127.0.0.1", bed.redis_port, password=bed.password)
    cache = Cache(
        f"coh-{uuid.uuid4().hex[:8]}",
        local=LocalCache(),
        remote=remote,
        policy=CachePolicy(jitter=0.0),
    )
    cache.watch(cluster)
    lock = threading.Lock()
    completed: dict[int, list[tuple[float, int]]] = {k: [] for k in range(KEYS)}
    reads: list[tuple[int, float, int]] = []  # key, start, version
    counts = {"replica": 0, "token": 0, "token_replica": 0}
    stop = threading.Event()
    errors: list[BaseException] = []

    def read_row(key: int, token: str | None) -> int:
        row = cluster.fetch_one(
            "SELECT v, pg_is_in_recovery() FROM coh WHERE id = %s",
            (key,),
            consistency="eventual" if token is None else "read_your_writes",
            token=token,
        )
        time.sleep(random.random() * 0.004)  # a slow fill: races its invalidation
        with lock:
            counts["replica"] += bool(row[1])
            counts["token"] += token is not None
            counts["token_replica"] += bool(row[1]) and token is not None
        return int(row[0])

    def loader_for(key: int) -> Callable[..., Any]:
        if pass_token:

            def load(token: str | None = None) -> int:
                return read_row(key, token)

            return load
        return lambda: read_row(key, None)  # the control: no token, eventual

    def guarded(fn: Callable[[random.Random], None], rng: random.Random) -> None:
        try:
            fn(rng)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    def reader(rng: random.Random) -> None:
        while not stop.is_set():
            key = rng.randrange(KEYS)
            started = time.monotonic()
            version = cache.get(("coh", key), loader_for(key))
            with lock:
                reads.append((key, started, version))
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.002)

    def writer(w: int, share: int, rng: random.Random) -> None:
        owned = [k for k in range(KEYS) if k % WRITERS == w]
        versions = {
            k: cluster.primary().fetch_value("SELECT v FROM coh WHERE id = %s", (k,)) for k in owned
        }
        for _ in range(share):
            if stop.is_set():
                return
            key = rng.choice(owned)
            with cache.invalidates(keys=[("coh", key)]):
                n = cluster.execute("UPDATE coh SET v = v + 1 WHERE id = %s", (key,))
            done = time.monotonic()
            assert n == 1
            versions[key] += 1
            with lock:
                completed[key].append((done, versions[key]))
            time.sleep(rng.random() * 0.01)

    shares = [rounds // WRITERS + (w < rounds % WRITERS) for w in range(WRITERS)]
    readers = [
        threading.Thread(target=guarded, args=(reader, random.Random(seed * 100 + i)))
        for i in range(READERS)
    ]
    writers = [
        threading.Thread(
            target=guarded,
            args=(lambda rng, w=w: writer(w, shares[w], rng), random.Random(seed * 100 + 50 + w)),
        )
        for w in range(WRITERS)
    ]
    try:
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(120)
        time.sleep(DELAY_MS / 1000 * 2)  # reads go on past the last invalidation
    finally:
        stop.set()
        for t in readers:
            t.join(30)
        cache.close()
        stats = cache.stats()
        remote.close()
    assert not errors, errors
    assert not any(t.is_alive() for t in readers + writers)

    stale = 0
    examples: list[tuple[int, int, int]] = []
    done_at = {k: [c[0] for c in completed[k]] for k in completed}
    for key, started, version in reads:
        # The newest invalidation of the key that completed before this read began.
        i = bisect.bisect_left(done_at[key], started)
        if i and version < completed[key][i - 1][1]:
            stale += 1
            if len(examples) < 5:
                examples.append((key, version, completed[key][i - 1][1]))
    return Outcome(
        rounds=sum(len(c) for c in completed.values()),
        reads=len(reads),
        stale=stale,
        fills_refused=stats.fills_refused,
        replica_loads=counts["replica"],
        token_loads=counts["token"],
        token_replica_loads=counts["token_replica"],
        examples=examples,
    )


def test_no_stale_value_is_readable_after_an_invalidation_completed(bed: Bed) -> None:
    out = _run(bed, pass_token=True, rounds=ROUNDS, seed=1)
    print(f"with the token: {out}")
    assert out.rounds >= ROUNDS
    assert out.reads > out.rounds  # readers kept reading through every round
    # The race was exercised: fills that began before an invalidation were refused,
    # fills after one were handed its token, and the delayed replica served loads.
    assert out.fills_refused > 0
    assert out.token_loads > 0
    assert out.replica_loads > 0
    # Token fills too, once the replica had replayed past the token: the router's check.
    assert out.token_replica_loads > 0
    assert out.stale == 0, f"stale reads (key, read, written): {out.examples}"


def test_without_the_token_the_lagging_replica_puts_old_values_back(bed: Bed) -> None:
    """The control: the same workload whose loader ignores the token serves stale
    values, so the test above can fail."""
    out = _run(bed, pass_token=False, rounds=CONTROL_ROUNDS, seed=2)
    print(f"without the token: {out}")
    assert out.rounds >= CONTROL_ROUNDS
    assert out.token_loads == 0 and out.replica_loads > 0
    assert out.stale > 0
