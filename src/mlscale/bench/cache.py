"""``mlscale bench cache``: the cache tier's hits against the database, and against the
tutorials' cache and cashews, on Zipf-distributed keys (s = 1.1).

One local cluster (one shard group, no replica, its Redis): a table of N rows
(id, name, score, 8 features), read by id. Keys are drawn from a Zipf law over
the rows (rank k has weight 1 / k**1.1; ranks are shuffled over the ids), so a
few rows are hot and most are cold, as in the seeds' workloads.

In alternating rounds (same key draws, same machine state), one client thread,
each operation timed on its own (p50 and p99 of the round, throughput = ops /
round wall time). Every mlscale variant is what an application calls, the façade
(:class:`~mlscale.cache.Cache` / :class:`~mlscale.cache.AsyncCache`) with its
default policy (but for TTLs long enough to keep the warm set for the run):

- ``l1_hit``: ``cache.get(("item", i), lambda: load(i))`` of a key warm in L1 (a
  cache over L1 + L2; the L1 holds decoded values);
- ``l1_hit_decorated``: the same hit through ``@cache.cached`` (``item(i)``);
- ``l2_hit``: ``cache.get(("item", i))`` on a cache with L2 only (one EVALSHA,
  the decode, the counters);
- ``l2_hit_async``: the same through ``AsyncCache`` on an event loop (the
  like-for-like comparison with cashews, which is asyncio only);
- ``db_read``: the raw driver, the machine's ceiling for a database read:
  ``SELECT ... WHERE id = %s`` on a held-open psycopg connection to the primary
  (prepared after its first executions, as psycopg does);
- ``db_read_mlscale``: the same read through mlscale (``cluster.fetch_one``,
  routed);
- ``naive_hit``: the tutorials' cache hit (reference 000 and 003): redis-py
  ``GET`` + ``json.loads``;
- ``cashews_hit``: ``await cache.get`` with cashews' defaults, in a subprocess
  running in its own venv (installed on demand for the benchmark only);
- ``naive_batch_100`` vs ``l2_batch_100``: 100 keys the tutorials' way (the
  cache-aside per key: GET, json.loads, SETEX on a miss) vs ``cache.get_many`` on
  the L2-only cache (one round trip, the decodes);
- ``redis_ping`` and ``db_select_1``: the machine's ceilings: a Redis round trip
  and a database round trip that do no work.

Gates: ``l2_batch_vs_naive_ratio`` (naive per-key loop p50 / batch p50, per 100
keys) >= 3; ``l1_hit_vs_db_ratio`` (raw database read p50 / L1 hit p50) >= 50,
reported beside ``l1_hit_vs_db_mlscale_ratio`` (the read through mlscale);
``db_load_cut`` >= 0.8: the share of database reads ``cache.get(key, loader)``
over L1 + L2 avoids on a Zipf stream of requests, from cold caches, the loader
reading PostgreSQL through mlscale; counted by the façade's stats and by
``pg_stat_statements``. Goal: mlscale's L2 hit p50 <= cashews' on the same Redis
(the async façade against cashews' async client).

Where an L1 hit's time goes is measured too (``l1_hit_profile_ns``: the timer
itself, building the key's name, the L1 lookup, the rest of ``Cache.get``), so a
missed L1 gate comes with its explanation.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import redis

from ..cache.keys import KeyBuilder
from ..cache.local import LocalCache
from ..cache.policy import MISSING, CachePolicy, Versioned
from ..cache.remote import RemoteCache
from ..cache.remote_async import AsyncRemoteCache
from ..cache.tiered import Cache
from ..cache.tiered_async import AsyncCache
from ..config import ClusterConfig
from ..core.topology import find_node, nodes_of
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect, redis_password
from ..errors import MlscaleError
from ..local.cluster import LocalCluster
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .peer_venv import peer_python
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "Plan", "percentile", "run", "zipf_keys"]

ZIPF_S = 1.1
BATCH = 100
BATCH_GATE = 3.0
L1_DB_GATE = 50.0
LOAD_CUT_GATE = 0.8
CASHEWS_GOAL = 1.0
TTL_S = 3600.0

TABLE = "bench_cache_items"
CREATE = (
    f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text NOT NULL, "
    "score double precision NOT NULL, features double precision[] NOT NULL)"
)
LOAD = (
    f"INSERT INTO {TABLE} SELECT g, 'user_' || g, (g %% 1000) / 7.0, "  # noqa: S608
    "ARRAY(SELECT (g * i %% 997) / 997.0 FROM generate_series(1, 8) AS i) "
    "FROM generate_series(1, %s) AS g"
)
READ = f"SELECT id, name, score, features FROM {TABLE} WHERE id = %s"  # noqa: S608
NAIVE_PREFIX = "naive:item:"  # the tutorials' key: f"user_features:{user_id}"
# The façade's defaults but for the TTLs: the warm set must last the whole run (the
# default local_ttl_s of 60 s would expire L1 between rounds) and no jitter, so no
# entry of the warm set expires early.
POLICY = CachePolicy(ttl_s=TTL_S, local_ttl_s=TTL_S, jitter=0.0)

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full)."""

    rows: int
    ops: int  # timed single-key operations per variant per round
    batches: int  # timed batches of BATCH keys per variant per round
    requests: int  # cache-aside requests per load-cut round, from cold caches
    rounds: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(rows=5_000, ops=1_500, batches=40, requests=20_000, rounds=5)
        return cls(rows=100_000, ops=20_000, batches=400, requests=500_000, rounds=7)

    @property
    def l1_entries(self) -> int:
        """The cache-aside's L1 bound: a tenth of the rows, so L2 serves the warm tail."""
        return max(100, self.rows // 10)


@dataclass(frozen=True, slots=True)
class Timing:
    """One round of a variant: latency percentiles (µs) and throughput (ops/s)."""

    p50_us: float
    p99_us: float
    ops_per_s: float


@dataclass(frozen=True, slots=True)
class LoadCut:
    """One cache-aside round: where the requests were served."""

    requests: int
    l1_hits: int
    l2_hits: int
    db_reads: int
    db_reads_server: int | None  # pg_stat_statements' count of READ, if installed

    @property
    def cut(self) -> float:
        """The share of requests that did not read the database."""
        return 1.0 - self.db_reads / self.requests


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of an ascending sequence (at least one)."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def timing_of(latencies_s: list[float], wall_s: float) -> Timing:
    """A round's figures from its per-operation latencies (seconds) and wall time."""
    latencies_s.sort()
    return Timing(
        p50_us=percentile(latencies_s, 50) * 1e6,
        p99_us=percentile(latencies_s, 99) * 1e6,
        ops_per_s=len(latencies_s) / wall_s,
    )


def zipf_keys(rows: int, count: int, rng: np.random.Generator, s: float = ZIPF_S) -> list[int]:
    """``count`` ids in 1..rows drawn from a Zipf law of exponent ``s`` (bounded to the
    rows; the rank order is a random permutation of the ids)."""
    weights = 1.0 / np.arange(1, rows + 1, dtype=np.float64) ** s
    ranks = rng.choice(rows, size=count, p=weights / weights.sum())
    ids = rng.permutation(rows) + 1
    return [int(x) for x in ids[ranks]]


def _timed(op: Callable[[int], object], keys: Sequence[int]) -> Timing:
    perf = time.perf_counter
    lat: list[float] = []
    t0 = perf()
    for k in keys:
        s = perf()
        op(k)
        lat.append(perf() - s)
    return timing_of(lat, perf() - t0)


# -- the cashews side ------------------------------------------------------------------------


def cashews_python() -> tuple[Path | None, str]:
    """The interpreter of a venv holding cashews and redis (``cashews`` under the
    peers' venvs: :func:`~.peer_venv.peer_python`), or ``(None, why)``."""
    return peer_python("cashews", ["cashews", "redis"], "import cashews, redis", timeout_s=300)


class CashewsProbe:
    """The subprocess running :mod:`.cashews_probe` under cashews' venv."""

    def __init__(self, python: Path, host: str, port: int, password: str | None,
                 rows_file: Path) -> None:  # fmt: skip
        script = Path(__file__).with_name("cashews_probe.py")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MLSCALE_BENCH_REDIS_PASSWORD": password or "",
        }
        self.proc = subprocess.Popen(
            [str(python), str(script), host, str(port), str(rows_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip

    def ask(self, line: str) -> dict[str, Any]:
        """Send one command; its JSON answer. MlscaleError if the probe died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        answer = self.proc.stdout.readline()
        if not answer:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            tail = " ".join(err.strip().splitlines()[-3:])
            raise MlscaleError(f"the cashews probe stopped: {tail or 'no output'}")
        out: dict[str, Any] = json.loads(answer)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            with suppress(MlscaleError, ValueError):
                self.ask("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the workload ------------------------------------------------------------------------------


def _row(rec: Sequence[Any]) -> Row:
    return {"id": rec[0], "name": rec[1], "score": rec[2], "features": list(rec[3])}


@dataclass
class Bench:
    """Everything the variants share: the caches, the connections, the key draws."""

    plan: Plan
    db: psycopg.Connection[Any]
    cluster: Cluster
    naive: redis.Redis
    l2: RemoteCache
    loop: asyncio.AbstractEventLoop
    keys: KeyBuilder
    cache: Cache  # L1 + L2, every row warm in both
    l2_cache: Cache  # L2 only
    l2_cache_async: AsyncCache  # L2 only
    rng: np.random.Generator
    cashews: CashewsProbe | None = None

    def db_read(self, i: int) -> Row:
        rec = self.db.execute(READ, (i,)).fetchone()
        if rec is None:
            raise MlscaleError(f"row {i} is missing from {TABLE}")
        return _row(rec)

    def db_read_mlscale(self, i: int) -> Row:
        rec = self.cluster.fetch_one(READ, (i,))
        if rec is None:
            raise MlscaleError(f"row {i} is missing from {TABLE}")
        return _row(rec)

    def naive_get(self, i: int) -> Row:
        """The tutorials' cache-aside (reference 000): GET, json.loads; on a miss the
        database and SETEX of json.dumps."""
        key = f"{NAIVE_PREFIX}{i}"
        cached = self.naive.get(key)
        if cached:
            value: Row = json.loads(cached)
            return value
        row = self.db_read(i)
        self.naive.setex(key, int(TTL_S), json.dumps(row))
        return row

    def fill(self, rows: Mapping[int, Row]) -> None:
        """Every row in L1 and L2 (version 1, by the façade's set_many) and in the
        tutorials' cache."""
        items = list(rows.items())
        for j in range(0, len(items), 500):
            chunk = items[j : j + 500]
            stored = self.cache.set_many({("item", i): Versioned(r, 1) for i, r in chunk})
            if stored != len(chunk):
                raise MlscaleError(f"the cache stored {stored} of {len(chunk)} rows")
            pipe = self.naive.pipeline(transaction=False)
            for i, r in chunk:
                pipe.setex(f"{NAIVE_PREFIX}{i}", int(TTL_S), json.dumps(r))
            pipe.execute()

    def draw(self, count: int) -> list[int]:
        return zipf_keys(self.plan.rows, count, self.rng)

    # -- single-key variants ----------------------------------------------------------------

    def _no_misses(self, cache: Cache | AsyncCache, misses: int, what: str) -> None:
        if cache.stats().misses != misses:
            raise MlscaleError(f"{what}: {cache.stats().misses - misses} warm keys missed")

    def l1_hit(self) -> Timing:
        """``cache.get(key, loader)`` as an application writes it, the key warm in L1.
        Timed inline (no wrapper call between the timer reads)."""
        keys = self.draw(self.plan.ops)
        get, load = self.cache.get, self.db_read
        misses = self.cache.stats().misses
        perf = time.perf_counter
        lat: list[float] = []
        t0 = perf()
        for i in keys:
            s = perf()
            get(("item", i), lambda: load(i))  # noqa: B023 (called at once, if at all)
            lat.append(perf() - s)
        wall = perf() - t0
        self._no_misses(self.cache, misses, "l1_hit")
        return timing_of(lat, wall)

    def l1_hit_decorated(self) -> Timing:
        """The same hit through ``@cache.cached`` (its keys are ``("item", i)`` too)."""
        load = self.db_read

        @self.cache.cached(namespace="item")
        def item(i: int) -> Row:
            return load(i)

        keys = self.draw(self.plan.ops)
        misses = self.cache.stats().misses
        perf = time.perf_counter
        lat: list[float] = []
        t0 = perf()
        for i in keys:
            s = perf()
            item(i)
            lat.append(perf() - s)
        wall = perf() - t0
        self._no_misses(self.cache, misses, "l1_hit_decorated")
        return timing_of(lat, wall)

    def l2_hit(self) -> Timing:
        keys = self.draw(self.plan.ops)
        get = self.l2_cache.get
        misses = self.l2_cache.stats().misses
        perf = time.perf_counter
        lat: list[float] = []
        t0 = perf()
        for i in keys:
            s = perf()
            get(("item", i))
            lat.append(perf() - s)
        wall = perf() - t0
        self._no_misses(self.l2_cache, misses, "l2_hit")
        return timing_of(lat, wall)

    def l2_hit_async(self) -> Timing:
        keys = self.draw(self.plan.ops)
        get = self.l2_cache_async.get
        misses = self.l2_cache_async.stats().misses

        async def rounds() -> Timing:
            perf = time.perf_counter
            lat: list[float] = []
            t0 = perf()
            for i in keys:
                s = perf()
                await get(("item", i))
                lat.append(perf() - s)
            return timing_of(lat, perf() - t0)

        timing = self.loop.run_until_complete(rounds())
        self._no_misses(self.l2_cache_async, misses, "l2_hit_async")
        return timing

    def database(self) -> Timing:
        return _timed(self.db_read, self.draw(self.plan.ops))

    def database_mlscale(self) -> Timing:
        return _timed(self.db_read_mlscale, self.draw(self.plan.ops))

    def naive_hit(self) -> Timing:
        return _timed(self.naive_get, self.draw(self.plan.ops))

    def cashews_hit(self) -> Timing:
        if self.cashews is None:
            raise MlscaleError("cashews is not running")
        got = self.cashews.ask("round " + ",".join(map(str, self.draw(self.plan.ops))))
        if got["misses"]:
            raise MlscaleError(f"cashews missed {got['misses']} warm keys")
        return Timing(got["p50_us"], got["p99_us"], got["ops_per_s"])

    def redis_ping(self) -> Timing:
        return _timed(lambda _: self.naive.ping(), range(self.plan.ops))

    def db_select_1(self) -> Timing:
        return _timed(lambda _: self.db.execute("SELECT 1").fetchone(), range(self.plan.ops))

    # -- batches ------------------------------------------------------------------------------

    def _batches(self, op: Callable[[list[int]], object]) -> Timing:
        draws = self.draw(self.plan.batches * BATCH)
        batches = [draws[j : j + BATCH] for j in range(0, len(draws), BATCH)]
        perf = time.perf_counter
        lat: list[float] = []
        t0 = perf()
        for batch in batches:
            s = perf()
            op(batch)
            lat.append(perf() - s)
        return timing_of(lat, perf() - t0)

    def naive_batch(self) -> Timing:
        return self._batches(lambda ids: [self.naive_get(i) for i in ids])

    def l2_batch(self) -> Timing:
        get_many = self.l2_cache.get_many

        def op(ids: list[int]) -> dict[Any, Any]:
            got = get_many([("item", i) for i in ids])
            if len(got) != len(set(ids)):
                raise MlscaleError("L2 lost warm keys of a batch")
            return got

        return self._batches(op)

    def variants(self) -> dict[str, Callable[[], Timing]]:
        out: dict[str, Callable[[], Timing]] = {
            "l1_hit": self.l1_hit,
            "l1_hit_decorated": self.l1_hit_decorated,
            "l2_hit": self.l2_hit,
            "l2_hit_async": self.l2_hit_async,
            "db_read": self.database,
            "db_read_mlscale": self.database_mlscale,
            "naive_hit": self.naive_hit,
            "naive_batch_100": self.naive_batch,
            "l2_batch_100": self.l2_batch,
            "redis_ping": self.redis_ping,
            "db_select_1": self.db_select_1,
        }
        if self.cashews is not None:
            out["cashews_hit"] = self.cashews_hit
        return out

    # -- where an L1 hit's time goes ----------------------------------------------------------

    def l1_profile(self) -> dict[str, float]:
        """Mean ns per call over the same kind of draws, each step alone: the timer
        pair every timed op pays, building the key's name (remembered), the L1 lookup
        by name, and the whole ``cache.get`` hit (the rest is the façade's call)."""
        keys = self.draw(self.plan.ops)
        cache, core = self.cache, self.cache.core
        local = core.local
        if local is None:
            raise MlscaleError("the L1 cache has no local tier")
        names = [core.name(("item", i)) for i in keys]
        perf = time.perf_counter
        name_of, value_of, get, load = core.name, local.value, cache.get, self.db_read

        def timer() -> None:
            for _ in keys:
                perf()
                perf()

        def name() -> None:
            for i in keys:
                name_of(("item", i))

        def lookup() -> None:
            for n in names:
                value_of(n, MISSING)

        def whole() -> None:
            for i in keys:
                get(("item", i), lambda: load(i))  # noqa: B023

        out = {}
        for label, fn in (("timer", timer), ("name", name), ("lookup", lookup),
                          ("get", whole)):  # fmt: skip
            best = math.inf
            for _ in range(3):
                t0 = perf()
                fn()
                best = min(best, perf() - t0)
            out[label] = best / len(keys) * 1e9
        out["rest_of_get"] = out["get"] - out["name"] - out["lookup"]
        return out

    # -- the load cut -------------------------------------------------------------------------

    def load_cut(self, round_no: int) -> LoadCut:
        """``cache.get(key, loader)`` over L1 + L2 from cold caches (a fresh L1 and a
        key version no entry has yet) serving ``plan.requests`` Zipf requests, the
        loader reading PostgreSQL through mlscale; where each was served, by the
        façade's stats, and the loads also counted by the database."""
        cache = Cache(
            KeyBuilder("bench-cache-aside", version=1000 + round_no),
            local=LocalCache(max_entries=self.plan.l1_entries, max_bytes=1 << 30),
            remote=self.l2,
            policy=POLICY,
        )
        load = self.db_read_mlscale
        before = self._server_reads()
        for i in self.draw(self.plan.requests):
            cache.get(("item", i), lambda: load(i))  # noqa: B023
        after = self._server_reads()
        stats = cache.stats()
        if stats.l1 is None or stats.l2 is None:
            raise MlscaleError("the cache-aside lost a tier")
        server = None if before is None or after is None else after - before
        return LoadCut(self.plan.requests, stats.l1.hits, stats.l2.hits, stats.loads, server)

    def _server_reads(self) -> int | None:
        """How many times the database ran READ, by pg_stat_statements (None without it)."""
        try:
            rec = self.db.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query LIKE %s AND dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())",
                (READ.replace("%s", "$1") + "%",),
            ).fetchone()
        except psycopg.Error:
            return None
        return int(rec[0]) if rec else None


# -- the benchmark -----------------------------------------------------------------------------


@contextmanager
def _bench(config: ClusterConfig, plan: Plan, workdir: Path, notes: list[str]
           ) -> Iterator[tuple[Bench, dict[int, Row]]]:  # fmt: skip
    rc = config.redis
    if rc is None:
        raise MlscaleError("the bench cluster has no Redis")
    password = redis_password(config)
    primary = find_node(nodes_of(config), "g0-primary")
    with ExitStack() as stack:
        db = stack.enter_context(connect(primary, config))
        db.autocommit = True
        db.execute(CREATE)
        db.execute(LOAD, (plan.rows,))
        db.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")
        rows = {int(r[0]): _row(r) for r in db.execute(f"SELECT * FROM {TABLE}")}  # noqa: S608
        naive = redis.Redis(host=rc.host, port=rc.port, password=password)
        stack.callback(naive.close)
        l2 = stack.enter_context(RemoteCache.connect(rc.host, rc.port, password=password))
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)
        l2_async = AsyncRemoteCache.connect(rc.host, rc.port, password=password)
        stack.callback(lambda: loop.run_until_complete(l2_async.aclose()))
        cluster = stack.enter_context(Cluster(config))
        keys = KeyBuilder("bench-cache")
        bench = Bench(
            plan=plan, db=db, cluster=cluster, naive=naive, l2=l2, loop=loop, keys=keys,
            cache=Cache(keys, local=LocalCache(max_entries=plan.rows + 1, max_bytes=1 << 30),
                        remote=l2, policy=POLICY),
            l2_cache=Cache(keys, remote=l2, policy=POLICY),
            l2_cache_async=AsyncCache(keys, remote=l2_async, policy=POLICY),
            rng=np.random.default_rng(20261113),
        )  # fmt: skip
        bench.fill(rows)
        python, how = cashews_python()
        if python is None:
            notes.append(f"cashews could not be installed, so it was not measured: {how}")
        else:
            rows_file = workdir / "cashews-rows.json"
            rows_file.write_text(json.dumps({str(i): r for i, r in rows.items()}))
            probe = CashewsProbe(python, rc.host, rc.port, password, rows_file)
            stack.callback(probe.close)
            try:
                probe.ask("load")
                bench.cashews = probe
                notes.append(f"cashews: {how}; run in its own process and venv")
            except MlscaleError as exc:
                notes.append(f"cashews did not run, so it was not measured: {exc}")
        yield bench, rows


def run(ctx: BenchContext) -> BenchResult:
    """Gates: L2 batch vs naive loop >= 3, L1 hit vs database read >= 50, database load
    cut >= 0.8. Goal: mlscale's L2 hit p50 <= cashews'."""
    plan = Plan.of(ctx.quick)
    result = BenchResult(
        name="cache",
        title=(
            f"Cache tier on Zipf keys (s = {ZIPF_S}) over {plan.rows:,} rows: L1 and L2 hits vs "
            "a database read, a batch of 100 vs the tutorials' per-key cache, vs cashews"
        ),
    )
    result.params = {
        "rows": plan.rows,
        "zipf_s": ZIPF_S,
        "rounds": plan.rounds,
        "ops_per_variant_per_round": plan.ops,
        "batches_per_round": plan.batches,
        "batch_keys": BATCH,
        "load_cut_requests_per_round": plan.requests,
        "load_cut_l1_entries": plan.l1_entries,
        "cluster": "1 shard group, no replica, Redis (appendfsync everysec), all on loopback",
        "client": "one thread (the async variant one task), each operation timed alone",
        "value": "a row: id, name, score, 8 float features (about 150 bytes encoded)",
        "policy": "CachePolicy defaults but ttl_s = local_ttl_s = 3600 s and jitter 0 (the "
        "warm set must last the run)",
        "l1_hit": "Cache.get(('item', i), lambda: load(i)) of a key warm in L1 (cache over "
        "L1 + L2); the L1 holds decoded values; timed inline",
        "l1_hit_decorated": "the same hit through @cache.cached: item(i)",
        "l2_hit": "Cache.get(('item', i)) on a cache with L2 only: one EVALSHA, decode, counters",
        "l2_hit_async": "AsyncCache.get(('item', i)), L2 only, on one event loop",
        "db_read": f"raw psycopg, held-open connection (the ceiling): {READ}",
        "db_read_mlscale": "the same read through mlscale: cluster.fetch_one (routed)",
        "naive_hit": "redis-py GET + json.loads (the tutorials' cache hit)",
        "cashews_hit": "cashews defaults, await cache.get, own process and venv",
        "naive_batch_100": "100 keys, per key GET + json.loads (SETEX on a miss)",
        "l2_batch_100": "Cache.get_many of 100 keys on the L2-only cache (one round trip, "
        "the decodes)",
        "ceilings": "redis_ping (PING), db_select_1 (SELECT 1): round trips doing no work",
        "load_cut": "Cache.get(key, loader) over L1 + L2 from cold caches; the loader reads "
        "PostgreSQL through cluster.fetch_one",
    }
    progress = Progress(quiet=ctx.quiet)
    with ExitStack() as stack:
        with progress.phase("starting PostgreSQL and Redis, loading, filling caches", 2) as phase:
            local = LocalCluster(ctx.workdir / "cache")
            stack.callback(local.destroy)
            local.up(shards=1, replicas=0, redis=True)
            phase.step("up")
            bench, _ = stack.enter_context(_bench(local.config(), plan, ctx.workdir, result.notes))
            phase.step("loaded")
        runs = ab_rounds(
            bench.variants(), rounds=plan.rounds, progress=progress,
            title="L1, L2, database, naive, cashews, batches, ceilings",
        )  # fmt: skip
        profiles = [bench.l1_profile() for _ in range(plan.rounds)]
        counter = iter(range(1_000_000))
        cuts = ab_rounds(
            {"cache_aside": lambda: bench.load_cut(next(counter))},
            rounds=plan.rounds, warmup=False, progress=progress,
            title="cache-aside load cut from cold caches",
        )["cache_aside"]  # fmt: skip
    _report(result, runs, cuts, profiles)
    _print_figures(result)
    return result


def _report(result: BenchResult, runs: Mapping[str, Sequence[Timing]],
            cuts: Sequence[LoadCut], profiles: Sequence[Mapping[str, float]]) -> None:  # fmt: skip
    p50 = {k: Spread.of([t.p50_us for t in v]) for k, v in runs.items()}
    p99 = {k: Spread.of([t.p99_us for t in v]) for k, v in runs.items()}
    rate = {k: Spread.of([t.ops_per_s for t in v]) for k, v in runs.items()}
    batch_ratio = ratio_of_medians(p50["naive_batch_100"], p50["l2_batch_100"])
    l1_ratio = ratio_of_medians(p50["db_read"], p50["l1_hit"])
    l1_mlscale_ratio = ratio_of_medians(p50["db_read_mlscale"], p50["l1_hit"])
    profile = {k: Spread.of([p[k] for p in profiles]) for k in profiles[0]}
    cut = Spread.of([c.cut for c in cuts])
    metrics: dict[str, Any] = {
        **spread_metrics(p50, "_p50_us", with_values=True),
        **spread_metrics(p99, "_p99_us", with_values=True),
        **spread_metrics(rate, "_ops_per_s"),
        "l2_batch_vs_naive_ratio": batch_ratio,
        "l2_batch_vs_naive_ratio_per_round": paired_ratios(
            p50["naive_batch_100"].values, p50["l2_batch_100"].values
        ).as_dict(),
        "l1_hit_vs_db_ratio": l1_ratio,
        "l1_hit_vs_db_ratio_per_round": paired_ratios(
            p50["db_read"].values, p50["l1_hit"].values
        ).as_dict(),
        "l1_hit_vs_db_mlscale_ratio": l1_mlscale_ratio,
        "l1_hit_vs_db_mlscale_ratio_per_round": paired_ratios(
            p50["db_read_mlscale"].values, p50["l1_hit"].values
        ).as_dict(),
        "l1_hit_decorated_vs_db_ratio": ratio_of_medians(p50["db_read"], p50["l1_hit_decorated"]),
        "l1_hit_profile_ns": {k: v.as_dict() for k, v in profile.items()},
        "l2_hit_vs_db_ratio": ratio_of_medians(p50["db_read"], p50["l2_hit"]),
        "l2_hit_vs_naive_hit_ratio": ratio_of_medians(p50["l2_hit"], p50["naive_hit"]),
        "db_load_cut": cut.median,
        "db_load_cut_per_round": cut.as_dict(with_values=True),
        "load_cut_rounds": [
            {
                "requests": c.requests,
                "l1_hits": c.l1_hits,
                "l2_hits": c.l2_hits,
                "db_reads": c.db_reads,
                "db_reads_server": c.db_reads_server,
            }
            for c in cuts
        ],
    }
    result.gates += [
        Verdict("l2_batch_vs_naive_ratio", batch_ratio, ">=", BATCH_GATE, "x"),
        Verdict("l1_hit_vs_db_ratio", l1_ratio, ">=", L1_DB_GATE, "x"),
        Verdict("db_load_cut", cut.median, ">=", LOAD_CUT_GATE, ""),
    ]
    if "cashews_hit" in p50:
        vs = ratio_of_medians(p50["l2_hit_async"], p50["cashews_hit"])
        metrics["l2_hit_vs_cashews_ratio"] = vs
        metrics["l2_hit_vs_cashews_ratio_per_round"] = paired_ratios(
            p50["l2_hit_async"].values, p50["cashews_hit"].values
        ).as_dict()
        metrics["l2_hit_sync_vs_cashews_ratio"] = ratio_of_medians(
            p50["l2_hit"], p50["cashews_hit"]
        )
    else:
        vs = float("nan")
    result.goals.append(Verdict("l2_hit_vs_cashews_ratio", vs, "<=", CASHEWS_GOAL, "x"))
    result.metrics.update(metrics)

    single = [k for k in p50 if not k.endswith("_100")]
    result.charts += [
        chart("Single-key latency, p50 (median of rounds)", "µs",
              {"p50": {k: p50[k] for k in single}}),
        chart("Single-key latency, p99 (median of rounds)", "µs",
              {"p99": {k: p99[k] for k in single}}),
        chart(f"{BATCH} keys: the tutorials' per-key loop vs one get_many, p50", "µs",
              {"per batch": {k: p50[k] for k in ("naive_batch_100", "l2_batch_100")}}),
        chart("Database reads avoided by a cache-aside over L1 + L2, from cold", "share",
              {"per round": {"db_load_cut": cut}}, target=LOAD_CUT_GATE),
    ]  # fmt: skip

    served = cuts[len(cuts) // 2]
    mismatched = [c for c in cuts if c.db_reads_server not in (None, c.db_reads)]
    ping, sel = p50["redis_ping"].median, p50["db_select_1"].median
    result.notes += [
        "every mlscale variant goes through the façade (Cache / AsyncCache) as an application "
        "calls it: key names built from tuples, counters kept, misses checked after each round",
        f"the L1 gate compares an L1 hit ({p50['l1_hit'].median:.2f} µs p50) with the raw "
        f"driver's read ({p50['db_read'].median:.1f} µs, the machine's ceiling for a database "
        f"read): {l1_ratio:.0f}x; with the same read through mlscale "
        f"({p50['db_read_mlscale'].median:.1f} µs) it is {l1_mlscale_ratio:.0f}x",
        "where an L1 hit's time goes (mean ns per call, each step timed alone, median of "
        f"rounds): the timer pair every timed op pays {profile['timer'].median:.0f}, the key's "
        f"name {profile['name'].median:.0f}, the L1 lookup {profile['lookup'].median:.0f}, "
        f"the rest of Cache.get (call, tuple and loader lambda) "
        f"{profile['rest_of_get'].median:.0f}; the whole get {profile['get'].median:.0f}",
        f"db_load_cut counts a cold start: a round of {served.requests:,} Zipf requests served "
        f"{served.l1_hits:,} from L1 (bounded to {result.params['load_cut_l1_entries']:,} "
        f"entries), {served.l2_hits:,} from L2 and {served.db_reads:,} from the database; "
        "a longer run, warm caches, cut more",
        f"the machine's ceilings, p50: a Redis round trip (PING) {ping:.1f} µs, a database "
        f"round trip (SELECT 1) {sel:.1f} µs; an L2 hit takes {p50['l2_hit'].median:.1f} µs "
        f"({p50['l2_hit'].median / ping:.2f}x PING), a database read "
        f"{p50['db_read'].median:.1f} µs ({p50['db_read'].median / sel:.2f}x SELECT 1)",
        f"a batch of {BATCH} keys: the tutorials' loop is {BATCH} round trips "
        f"({p50['naive_batch_100'].median:.0f} µs, about {BATCH} x PING), Cache.get_many one "
        f"({p50['l2_batch_100'].median:.0f} µs)",
        f"all on one {os.cpu_count()}-CPU machine over loopback, client and servers sharing it",
    ]
    if mismatched:
        result.notes.append(
            "the database counted other READ calls than the client in rounds "
            f"{[cuts.index(c) for c in mismatched]}: a bug in the count"
        )
    elif all(c.db_reads_server is not None for c in cuts):
        result.notes.append("every round's database reads were counted by pg_stat_statements "
                            "too, and equal the client's count")  # fmt: skip
    if "cashews_hit" in p50:
        result.notes.append(
            f"the cashews goal compares like with like: mlscale's async L2 hit "
            f"({p50['l2_hit_async'].median:.1f} µs p50) with cashews' async get "
            f"({p50['cashews_hit'].median:.1f} µs p50), same Redis, same keys' distribution; "
            f"mlscale's sync L2 hit is {p50['l2_hit'].median:.1f} µs"
        )
    elif not any("cashews" in n for n in result.notes):
        result.notes.append("cashews was not measured")


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    names = [k.removesuffix("_p50_us") for k in m if k.endswith("_p50_us")]
    lines = [
        f"  {n:<16} p50 {m[f'{n}_p50_us']['median']:9.1f} µs   "
        f"p99 {m[f'{n}_p99_us']['median']:9.1f} µs   "
        f"{m[f'{n}_ops_per_s']['median']:11,.0f} ops/s"
        for n in names
    ]
    lines.append(
        f"  batch/naive {m['l2_batch_vs_naive_ratio']:.1f}x   L1/db {m['l1_hit_vs_db_ratio']:.0f}x"
        f"   db load cut {m['db_load_cut']:.3f}"
        + (
            f"   L2 async/cashews {m['l2_hit_vs_cashews_ratio']:.2f}x"
            if "l2_hit_vs_cashews_ratio" in m
            else "   cashews not measured"
        )
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="cache", title="Cache tier", run=run)
