"""Chapter 5, caching: the tutorials' cache vs mlscale's, on the demo's user features.

The tutorials' cache (references 000 and 003): cache-aside by hand with redis-py,
the row as JSON under ``user_features:{id}``, ``GET`` then on a miss the database
and ``SETEX`` with a TTL; a write updates the row, then ``DELETE``s the key.
mlscale's: :class:`~mlscale.cache.Cache` with an L1 in this process and an L2 on
the demo's Redis, filled through leases, invalidated after the commit.

Measured on the same Zipf-distributed requests (s = 1.1, as ``mlscale bench
cache``), in alternating rounds, each from cold caches (keys of its own), several
threads: read latency, and the database queries each cache let through, counted
by the database (``pg_stat_statements`` on every node of the table's shard group;
the loader's own count where the extension is missing).

Then the stale read, made to happen deterministically: a reader misses and reads
the old row, a writer updates the row and invalidates the key, then the slow
reader's fill lands. The tutorials' ``SETEX`` puts the old row back and it is
served until its TTL; mlscale's lease was voided by the invalidation, so the fill
is refused and the next read loads the new row.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import psycopg
import redis

from ..bench.cache import zipf_keys
from ..bench.compare import ab_rounds, spread
from ..bench.histogram import Histogram
from ..cache import Cache, CachePolicy, KeyBuilder, LocalCache, RemoteCache
from ..engine.cluster_sync import Cluster
from ..engine.connect import redis_password
from ..errors import MlscaleError
from .foundation import READ_USER, ChapterResult, Params, Row

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["StaleRead", "TutorialCache", "needs", "read_user", "run_caching"]

TTL_S: Final = 300  # reference 003's default TTL; the same for both caches
ZIPF_S: Final = 1.1
UPDATE_CTR: Final = (
    "UPDATE mlscale_demo.user_features SET ctr = %s, updated_at = now() WHERE user_id = %s"
)
# pg_stat_statements normalizes %s (sent as $1) and keeps the text otherwise.
COUNT_READS: Final = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query = %s "
    "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
SLOW_READER_WAIT_S: Final = 10.0

Features = dict[str, Any]
Loader = Callable[[int, str | None], Features | None]  # (user id, causal token)


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if config.redis is None:
        return "the caching chapter needs the cluster's Redis ([redis] in its config)"
    return None


def read_user(cluster: Cluster, user_id: int, token: str | None = None) -> Features | None:
    """One user's features from the database (a replica unless ``token`` asks for
    a fresher read): what both caches load on a miss."""
    row = cluster.fetch_one(READ_USER, (user_id,), as_dict=True, token=token)
    return dict(row) if row is not None else None


class TutorialCache:
    """The tutorials' cache, as references 000 and 003 write it: the row as JSON,
    ``GET`` and on a miss the database then ``SETEX``; ``DELETE`` after a write.
    ``prefix`` keeps each run's keys apart (a run starts cold)."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int = TTL_S) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def key(self, user_id: int) -> str:
        return f"{self.prefix}user_features:{user_id}"

    def get_user_features(
        self, user_id: int, load: Callable[[int], Features | None]
    ) -> Features | None:
        key = self.key(user_id)
        cached = self.client.get(key)
        if cached:
            value: Features = json.loads(cached)
            return value
        features = load(user_id)
        self.client.setex(key, self.ttl_s, json.dumps(features))
        return features

    def invalidate(self, user_id: int) -> None:
        self.client.delete(self.key(user_id))

    def drop(self) -> int:
        """Delete every key under this cache's prefix; how many there were."""
        names = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
        for i in range(0, len(names), 500):
            self.client.delete(*names[i : i + 500])
        return len(names)


# -- the read workload ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheRound:
    """One round of one cache: Zipf requests from cold caches, over some threads."""

    threads: int
    requests: int
    wall_s: float
    latencies_s: tuple[float, ...]
    db_queries: int  # counted by the database (or the loader, see ``counted_by``)
    loads: int  # the loader's own count
    counted_by: str

    def as_dict(self) -> dict[str, Any]:
        hist = Histogram.of(self.latencies_s)
        return {
            "threads": self.threads,
            "ops": self.requests,
            "wall_s": self.wall_s,
            "per_s": self.requests / self.wall_s,
            "latency_ms": hist.summary_ms((50, 99)),
            "db_queries": self.db_queries,
            "db_queries_saved": 1 - self.db_queries / self.requests,
            "loader_calls": self.loads,
        }


def _run_threads(
    keys: Sequence[Sequence[int]], op: Callable[[int], object]
) -> tuple[list[float], float]:
    """Each thread runs ``op`` on its list of keys, all starting together; every
    op's latency (seconds) and the wall time. The first error is raised."""
    barrier = threading.Barrier(len(keys) + 1)
    lat: list[list[float]] = [[] for _ in keys]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        perf, mine = time.perf_counter, lat[i]
        barrier.wait()
        try:
            for k in keys[i]:
                s = perf()
                op(k)
                mine.append(perf() - s)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(keys))]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return [x for part in lat for x in part], wall


class _Workload:
    """Both caches over the demo's user features, the same key draws for each."""

    def __init__(
        self, cluster: Cluster, params: Params, client: redis.Redis, remote: RemoteCache, run: str
    ) -> None:
        self.cluster = cluster
        self.params = params
        self.client = client
        self.remote = remote
        self.run = run
        self.requests = 2_000 if params.users < 20_000 else 5_000
        self.calls = {"tutorial": 0, "mlscale": 0}
        self.tutorials: list[TutorialCache] = []
        self.nodes = [cluster.primary_node(), *cluster.replica_nodes()]
        self.server_counts = self._server_reads() is not None

    def drop(self) -> None:
        """Delete the tutorials' caches' keys (mlscale's expire with their TTL)."""
        for cache in self.tutorials:
            cache.drop()

    def draws(self, call: int) -> list[list[int]]:
        """The ``call``-th round's requests, dealt over the threads (same for both caches)."""
        rng = np.random.default_rng(self.params.seed * 1000 + call)
        keys = zipf_keys(self.params.users, self.requests, rng, ZIPF_S)
        n = self.params.threads
        return [keys[i::n] for i in range(n)]

    def _server_reads(self) -> int | None:
        """The database's count of user reads over the group's nodes (None without
        pg_stat_statements)."""
        text = READ_USER.replace("%s", "$1")
        total = 0
        try:
            for node in self.nodes:
                with self.cluster.connection(node) as conn:
                    row = conn.execute(COUNT_READS, (text,)).fetchone()
                total += int(row[0]) if row else 0
        except psycopg.Error:
            return None
        return total

    def _round(self, name: str, op_of: Callable[[Loader], Callable[[int], object]]) -> CacheRound:
        call = self.calls[name]
        self.calls[name] += 1
        loads = [0]
        lock = threading.Lock()

        def load(user_id: int, token: str | None = None) -> Features | None:
            with lock:
                loads[0] += 1
            return read_user(self.cluster, user_id, token)

        keys = self.draws(call)
        before = self._server_reads() if self.server_counts else None
        lat, wall = _run_threads(keys, op_of(load))
        after = self._server_reads() if self.server_counts else None
        if before is not None and after is not None:
            queries, by = after - before, "pg_stat_statements"
        else:
            queries, by = loads[0], "loader calls"
        return CacheRound(len(keys), len(lat), wall, tuple(lat), queries, loads[0], by)

    def tutorial(self) -> CacheRound:
        cache = TutorialCache(self.client, f"demo-tutorial:{self.run}:{self.calls['tutorial']}:")
        self.tutorials.append(cache)

        def op_of(load: Loader) -> Callable[[int], object]:
            return lambda user_id: cache.get_user_features(user_id, lambda u: load(u, None))

        return self._round("tutorial", op_of)

    def mlscale(self) -> CacheRound:
        cache = Cache(
            KeyBuilder(f"mlscale-demo-{self.run}", version=self.calls["mlscale"] + 1),
            local=LocalCache(max_entries=max(100, self.params.users // 10)),
            remote=self.remote,
            policy=CachePolicy(ttl_s=TTL_S),
        )

        def op_of(load: Loader) -> Callable[[int], object]:
            def op(user_id: int) -> object:
                def loader(token: str | None = None) -> Features | None:
                    return load(user_id, token)

                return cache.get(("user", user_id), loader)

            return op

        return self._round("mlscale", op_of)


# -- the stale read ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaleRead:
    """One run of the race: the row before and after the write, and what the cache
    served after the slow reader's fill."""

    user_id: int
    old_ctr: float
    new_ctr: float
    served_ctr: float
    fills_refused: int | None  # mlscale's count (None for the tutorials' cache)

    @property
    def served_old(self) -> bool:
        return self.served_ctr == self.old_ctr != self.new_ctr


def _ctr(cluster: Cluster, user_id: int) -> float:
    row = cluster.fetch_one(READ_USER, (user_id,), as_dict=True, consistency="strong")
    if row is None:
        raise MlscaleError(f"user {user_id} is missing from mlscale_demo.user_features")
    return float(row["ctr"])


@contextmanager
def _slow_reader(read: Callable[[Callable[..., Features | None]], object]) -> Iterator[None]:
    """Start ``read(loader)`` in a thread whose loader reads the row, then waits;
    the block runs once the row was read (the writer's turn); the reader's fill
    lands when the block ends."""
    loaded, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow(load: Callable[[], Features | None]) -> Features | None:
        row = load()
        loaded.set()
        if not release.wait(SLOW_READER_WAIT_S):
            raise MlscaleError("the writer did not finish in time")
        return row

    def run() -> None:
        try:
            read(slow)
        except BaseException as exc:  # re-raised below
            errors.append(exc)
            loaded.set()

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    try:
        if not loaded.wait(SLOW_READER_WAIT_S) or errors:
            raise MlscaleError(f"the slow reader did not read the row: {errors[:1]}")
        yield
    finally:
        release.set()
        reader.join(SLOW_READER_WAIT_S)
    if errors:
        raise errors[0]


def stale_tutorial(cluster: Cluster, cache: TutorialCache, user_id: int) -> StaleRead:
    """The race on the tutorials' cache: the reader's SETEX lands after the writer's DELETE."""
    old = _ctr(cluster, user_id)
    new = round(old + 0.5, 4)

    def read(slow: Callable[..., Features | None]) -> object:
        return cache.get_user_features(user_id, lambda u: slow(lambda: read_user(cluster, u)))

    with _slow_reader(read):
        cluster.execute(UPDATE_CTR, (new, user_id))  # reference 000's update_user_features
        cache.invalidate(user_id)
    served = cache.get_user_features(user_id, lambda u: read_user(cluster, u))
    if served is None:
        raise MlscaleError(f"user {user_id} vanished")
    return StaleRead(user_id, old, _ctr(cluster, user_id), float(served["ctr"]), None)


def stale_mlscale(cluster: Cluster, cache: Cache, user_id: int) -> StaleRead:
    """The same race on mlscale's Cache: the writer's invalidation (after its commit,
    through ``watch``) voids the reader's lease, so its fill is refused."""
    old = _ctr(cluster, user_id)
    new = round(old + 0.5, 4)
    key = ("user", user_id)
    refused = cache.stats().fills_refused

    def read(slow: Callable[..., Features | None]) -> object:
        return cache.get(key, lambda token=None: slow(lambda: read_user(cluster, user_id, token)))

    cache.watch(cluster)
    try:
        with _slow_reader(read), cache.invalidates(keys=[key]), cluster.transaction() as tx:
            tx.execute(UPDATE_CTR, (new, user_id))
    finally:
        cache.unwatch(cluster)
    served = cache.get(key, lambda token=None: read_user(cluster, user_id, token))
    if served is None:
        raise MlscaleError(f"user {user_id} vanished")
    refused = cache.stats().fills_refused - refused
    return StaleRead(user_id, old, _ctr(cluster, user_id), float(served["ctr"]), refused)


# -- the chapter --------------------------------------------------------------------------


def _latency_rows(
    result: ChapterResult, rounds: dict[str, list[CacheRound]], labels: dict[str, str], how: str
) -> None:
    p50s, p99s, rates = {}, [], []
    for name, rs in rounds.items():
        dicts = [r.as_dict() for r in rs]
        result.rounds[f"cache_{name}"] = dicts
        p50 = spread([d["latency_ms"]["p50"] for d in dicts])
        p99 = spread([d["latency_ms"]["p99"] for d in dicts])
        rate = spread([d["per_s"] for d in dicts])
        p50s[name] = p50.median
        p99s.append(f"{p99.median:.2f}")
        rates.append(f"{rate.median:,.0f}")
        result.metrics[f"cache_{name}_read_p50_ms"] = p50.as_dict()
        result.metrics[f"cache_{name}_read_p99_ms"] = p99.as_dict()
        result.metrics[f"cache_{name}_reads_per_s"] = rate.as_dict()
        value = f"{p50.median:.3f} ({p50.low:.3f}..{p50.high:.3f})"
        result.rows.append(Row(f"user read p50, {labels[name]}", value, "ms", how))
    ratio = p50s["tutorial"] / p50s["mlscale"]
    result.metrics["cache_read_p50_tutorial_over_mlscale"] = ratio
    result.rows += [
        Row("read p50, tutorials' / mlscale", f"{ratio:.1f}", "x", "ratio of medians, same rounds"),
        Row("  p99 in those rounds", " | ".join(p99s), "ms", "median of rounds, same order"),
        Row(
            "  reads/s in those rounds",
            " | ".join(rates),
            "reads/s",
            "median of requests / round wall time, same order; misses included",
        ),
    ]


def _query_rows(
    result: ChapterResult, rounds: dict[str, list[CacheRound]], labels: dict[str, str], nodes: int
) -> None:
    by = rounds["mlscale"][0].counted_by
    where = (
        f"requests minus pg_stat_statements calls of the user read on the group's {nodes} nodes"
        if by == "pg_stat_statements"
        else "requests minus the loader's calls (pg_stat_statements is not installed)"
    )
    for name, rs in rounds.items():
        queries = spread([r.db_queries for r in rs])
        saved = spread([r.requests - r.db_queries for r in rs])
        requests = rs[0].requests
        result.metrics[f"cache_{name}_db_queries"] = queries.as_dict()
        result.metrics[f"cache_{name}_db_queries_saved"] = saved.as_dict()
        result.metrics[f"cache_{name}_db_queries_saved_share"] = saved.median / requests
        result.rows.append(
            Row(
                f"database queries saved, {labels[name]}",
                f"{saved.median:,.0f} of {requests:,} ({saved.median / requests:.1%})",
                "queries",
                f"{where}, median of rounds",
            )
        )
    if by != "pg_stat_statements":
        result.notes.append("caching: pg_stat_statements is missing, so the loader counted queries")


def _stale_rows(result: ChapterResult, tutorial: StaleRead, mine: StaleRead) -> None:
    how = "reader misses and reads the row; writer updates it, invalidates; reader's fill lands"

    def said(s: StaleRead) -> str:
        old = "old" if s.served_old else "new"
        return f"served {old}: ctr {s.served_ctr:.4f}, database {s.new_ctr:.4f}"

    result.rows += [
        Row("stale read after a write, tutorials' cache", said(tutorial), "", how),
        Row(
            "stale read after a write, mlscale Cache",
            said(mine),
            "",
            f"same; the invalidation voided the lease: {mine.fills_refused} fill refused",
        ),
    ]
    result.metrics.update(
        {
            "cache_stale_tutorial_served_old": tutorial.served_old,
            "cache_stale_mlscale_served_old": mine.served_old,
            "cache_stale_mlscale_fills_refused": mine.fills_refused,
            "cache_stale_read": {
                name: {
                    "user_id": s.user_id,
                    "old_ctr": s.old_ctr,
                    "new_ctr": s.new_ctr,
                    "served_ctr": s.served_ctr,
                }
                for name, s in (("tutorial", tutorial), ("mlscale", mine))
            },
        }
    )
    if tutorial.served_old:
        result.notes.append(
            f"caching: the tutorials' cache serves user {tutorial.user_id}'s old ctr "
            f"{tutorial.old_ctr:.4f} until its TTL ({TTL_S} s) runs out, though the database "
            f"holds {tutorial.new_ctr:.4f} and the writer deleted the key"
        )
    else:
        result.notes.append("caching: the tutorials' cache did not serve the old row this time")
    if mine.served_old or not mine.fills_refused:
        result.notes.append(
            "caching: mlscale's Cache kept or stored the slow reader's old row: a bug"
        )


def run_caching(cluster: Cluster, params: Params, echo: Callable[[str], None]) -> ChapterResult:
    """The tutorials' cache vs mlscale's Cache: latency, queries saved, a stale read."""
    rc = cluster.config.redis
    if rc is None:
        raise MlscaleError("the caching chapter needs the cluster's Redis")
    result = ChapterResult()
    password = redis_password(cluster.config)
    run = uuid.uuid4().hex[:8]
    labels = {"tutorial": "tutorials' cache (GET/SETEX)", "mlscale": "mlscale Cache (L1 + L2)"}
    with ExitStack() as stack:
        client = redis.Redis(host=rc.host, port=rc.port, db=rc.db, password=password)
        stack.callback(client.close)
        remote = stack.enter_context(RemoteCache.connect(rc.host, rc.port, password=password))
        work = _Workload(cluster, params, client, remote, run)
        stack.callback(work.drop)
        echo(
            f"caching: the tutorials' cache vs mlscale's on {work.requests:,} Zipf requests "
            f"a round, {params.threads} threads ..."
        )
        rounds = ab_rounds(
            {"tutorial": work.tutorial, "mlscale": work.mlscale}, rounds=params.rounds
        )
        how = (
            f"median (min..max) of {params.rounds} alternating rounds of {work.requests:,} "
            f"requests (Zipf s = {ZIPF_S} over {params.users:,} users), cold caches, "
            f"{params.threads} threads"
        )
        _latency_rows(result, rounds, labels, how)
        _query_rows(result, rounds, labels, len(work.nodes))

        echo("caching: a slow reader's fill after a write, on both caches ...")
        tutorial_cache = TutorialCache(client, f"demo-tutorial:{run}:stale:")
        work.tutorials.append(tutorial_cache)
        mine = Cache(
            KeyBuilder(f"mlscale-demo-{run}-stale"),
            local=LocalCache(max_entries=100),
            remote=remote,
            policy=CachePolicy(ttl_s=TTL_S),
        )
        _stale_rows(
            result,
            stale_tutorial(cluster, tutorial_cache, params.users),
            stale_mlscale(cluster, mine, params.users - 1),
        )
    naive_rate = result.metrics["cache_tutorial_reads_per_s"]["median"]
    our_rate = result.metrics["cache_mlscale_reads_per_s"]["median"]
    if our_rate < naive_rate:
        result.notes.append(
            f"caching: from cold caches mlscale's Cache served {our_rate:,.0f} reads/s to the "
            f"tutorials' {naive_rate:,.0f}: its hits are faster, but each miss takes a lease and "
            "fills through it (two Lua scripts on Redis) where the tutorials' cache runs a "
            "plain GET and SETEX, and these rounds start cold"
        )
    result.notes.append(
        f"caching: both caches read the same rows through the same pool, {TTL_S} s TTL; "
        f"mlscale's L1 holds a tenth of the users in this process ({os.cpu_count()} CPUs "
        "shared with the servers), so its hot keys skip Redis; from cold caches both "
        "load each distinct key once, except that concurrent misses of one key all reach "
        "the database with the tutorials' cache and once with mlscale's leases"
    )
    return result
