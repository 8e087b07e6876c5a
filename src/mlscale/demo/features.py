"""Chapter 6, feature serving: the tutorials' entity-attribute-value table vs the feature store.

The tutorials' online store (Feast's PostgreSQL one, simplified): one row per
(entity, feature) in a plain table on one node, primary key (entity, feature name),
read with ``WHERE entity_id = ANY(%s)`` through psycopg and pivoted in Python into
an entities x features matrix. Simpler than Feast's (a ``real`` value, not a protobuf
to parse; a ``bigint`` key, not a serialized one), so if anything faster than it.

mlscale's: a :class:`~mlscale.stores.features.FeatureView` of the same 50 float
features, sharded over every group, one packed ``float4[]`` per entity, read with
:meth:`~mlscale.stores.features.FeatureStore.get_online_features` with the cache
off and on (L1 in this process, L2 on the cluster's Redis).

Measured: the load (entities/s) of both; batches of 100 entities (Zipf draws, the
same for every variant) in alternating rounds, one client thread (entities/s and
batch p50/p99); table bytes per entity; a push followed by a read with its token
(the pushed values, from replicas); and a point-in-time training set of 10k
(entity, time) rows, checked against pandas ``merge_asof``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from psycopg import sql

from ..bench.cache import zipf_keys
from ..bench.compare import ab_rounds, spread
from ..bench.histogram import Histogram
from ..cache import Cache, CachePolicy, KeyBuilder, LocalCache, RemoteCache
from ..core.features.arrays import PG_EPOCH_US
from ..core.slots import KeyType
from ..engine.cluster_sync import Cluster
from ..engine.connect import redis_password
from ..errors import MlscaleError
from ..stores.features import Entity, Feature, FeatureStore, FeatureView
from .foundation import ChapterResult, Params, Row

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["drop_features", "needs", "run_features"]

VIEW: Final = "demo_user_stats"
FEATURES: Final = 50
BATCH: Final = 100
ZIPF_S: Final = 1.1
TTL_S: Final = 86400.0
PIT_ROWS: Final = 10_000
EAV: Final = "mlscale_demo.feature_eav"
# The tutorials' table: Feast's PostgreSQL online store's shape, with plain values.
EAV_DDL: Final = (
    "CREATE SCHEMA IF NOT EXISTS mlscale_demo",
    f"DROP TABLE IF EXISTS {EAV}",
    f"CREATE TABLE {EAV} (entity_id bigint NOT NULL, feature_name text NOT NULL, "
    "value real, event_ts timestamptz NOT NULL, created_ts timestamptz DEFAULT now(), "
    "PRIMARY KEY (entity_id, feature_name))",
)
EAV_COPY: Final = (
    f"COPY {EAV} (entity_id, feature_name, value, event_ts) FROM STDIN (FORMAT binary)"
)
EAV_READ: Final = (
    "SELECT entity_id, feature_name, value FROM mlscale_demo.feature_eav WHERE entity_id = ANY(%s)"
)
NEXT_VERSION: Final = (
    "SELECT coalesce(max(version), 0) + 1 FROM mlscale_catalog.feature_views WHERE name = %s"
)
NAMES: Final = tuple(f"f{i:02d}" for i in range(FEATURES))  # fixed width: COPY in numpy


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if config.redis is None:
        return "the feature-serving chapter needs the cluster's Redis (its cache on)"
    if any(not g.replicas for g in config.shard_groups):
        return "the feature-serving chapter needs a replica in every shard group"
    return None


def entity_count(params: Params) -> int:
    """Entities of the chapter's view: 100k, or 10k for a quick run."""
    return 10_000 if params.users < 20_000 else 100_000


def drop_features(cluster: Cluster) -> None:
    """Remove the chapter's view (every version) and the tutorials' table."""
    store = FeatureStore(cluster)
    for v in store.views():
        if v.name == VIEW:
            store.drop(v.name, v.version)
    with cluster.connection(cluster.primary_node()) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {EAV}")


# -- the tutorials' table --------------------------------------------------------------


def _eav_payload(ids: npt.NDArray[np.int64], values: npt.NDArray[np.float32], ts_us: int) -> bytes:
    """Binary COPY rows (entity_id, feature_name, value, event_ts), one per (entity,
    feature), built in numpy (the names are all 3 bytes, so every row is fixed width)."""
    n = ids.shape[0] * FEATURES
    row = np.dtype(
        [
            ("nf", ">i2"),
            ("l0", ">i4"),
            ("id", ">i8"),
            ("l1", ">i4"),
            ("name", "S3"),
            ("l2", ">i4"),
            ("v", ">f4"),
            ("l3", ">i4"),
            ("t", ">i8"),
        ]
    )
    rows = np.empty(n, dtype=row)
    rows["nf"], rows["l0"], rows["l1"], rows["l2"], rows["l3"] = 4, 8, 3, 4, 8
    rows["id"] = np.repeat(ids, FEATURES)
    rows["name"] = np.tile(np.array(NAMES, dtype="S3"), ids.shape[0])
    rows["v"] = values.reshape(-1)
    rows["t"] = ts_us - PG_EPOCH_US
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") * 2
    return header + rows.tobytes() + (-1).to_bytes(2, "big", signed=True)


def _load_eav(
    cluster: Cluster, ids: npt.NDArray[np.int64], values: npt.NDArray[np.float32], ts_us: int
) -> float:
    """Create and fill the tutorials' table on the first primary; seconds taken."""
    started = time.perf_counter()
    with cluster.connection(cluster.primary_node()) as conn:
        for statement in EAV_DDL:
            conn.execute(statement)
        step = 10_000
        for at in range(0, ids.shape[0], step):
            payload = _eav_payload(ids[at : at + step], values[at : at + step], ts_us)
            with conn.cursor().copy(EAV_COPY) as copy:
                copy.write(payload)
        conn.execute(f"ANALYZE {EAV}")
    return time.perf_counter() - started


def eav_read(conn: Any, ids: Sequence[int]) -> npt.NDArray[np.float32]:
    """The tutorials' read: every (entity, feature) row of ``ids``, pivoted in Python
    into a matrix in request order (NaN where missing)."""
    rows = conn.execute(EAV_READ, (list(ids),)).fetchall()
    by_entity: dict[int, dict[str, float]] = {}
    for entity_id, name, value in rows:
        by_entity.setdefault(entity_id, {})[name] = value
    out = np.full((len(ids), FEATURES), np.nan, dtype=np.float32)
    for r, entity_id in enumerate(ids):
        found = by_entity.get(entity_id)
        if found:
            out[r] = [found.get(n, np.nan) for n in NAMES]
    return out


# -- the read rounds ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadRound:
    """One round of one variant: ``batches`` of ``BATCH`` entities, one after another."""

    batches: int
    wall_s: float
    latencies_s: tuple[float, ...]
    cache_hit_share: float | None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "ops": self.batches,
            "entities": self.batches * BATCH,
            "wall_s": self.wall_s,
            "per_s": self.batches / self.wall_s,
            "entities_per_s": self.batches * BATCH / self.wall_s,
            "latency_ms": Histogram.of(self.latencies_s).summary_ms((50, 99)),
        }
        if self.cache_hit_share is not None:
            out["cache_hit_share"] = self.cache_hit_share
        return out


def _timed(batches: Sequence[list[int]], read: Callable[[list[int]], object]) -> ReadRound:
    lat = []
    perf = time.perf_counter
    t0 = perf()
    for ids in batches:
        s = perf()
        read(ids)
        lat.append(perf() - s)
    return ReadRound(len(batches), perf() - t0, tuple(lat), None)


# -- the chapter ---------------------------------------------------------------------------


def _next_version(cluster: Cluster) -> int:
    """The view's next version: a dropped version's number is not registered again, so
    each run registers one more (read from the catalog, which keeps dropped versions)."""
    with cluster.connection("control") as conn:
        row = conn.execute(NEXT_VERSION, (VIEW,)).fetchone()
    return int(row[0]) if row else 1


def _view(version: int) -> FeatureView:
    return FeatureView(
        VIEW,
        version=version,
        entities=(Entity("user_id", KeyType.INT8),),
        features=tuple(Feature(n) for n in NAMES),
        ttl_s=TTL_S,
        family=VIEW,
        owner="mlscale-demo",
        description="the demo's user statistics: 50 float features",
    )


def _frame(ids: npt.NDArray[np.int64], values: npt.NDArray[np.float32], ts_us: int) -> Any:
    import pandas as pd

    cols: dict[str, Any] = {
        "user_id": ids,
        "event_ts": pd.to_datetime(np.full(ids.shape[0], ts_us), unit="us", utc=True),
    }
    cols.update({n: values[:, j] for j, n in enumerate(NAMES)})
    return pd.DataFrame(cols)


def run_features(cluster: Cluster, params: Params, echo: Callable[[str], None]) -> ChapterResult:
    """The tutorials' EAV table vs the feature store: load, online reads, a push read
    back with its token, a point-in-time training set."""
    rc = cluster.config.redis
    if rc is None:
        raise MlscaleError("the feature-serving chapter needs the cluster's Redis")
    result = ChapterResult()
    n = entity_count(params)
    rng = np.random.default_rng(params.seed)
    ids = np.arange(1, n + 1, dtype=np.int64)
    values = rng.random((n, FEATURES), dtype=np.float32)
    t1_us = (time.time_ns() // 1000) - 2 * 3600 * 1_000_000  # two hours ago

    drop_features(cluster)
    echo(f"features: loading {n:,} entities x {FEATURES} float features, both ways ...")
    store = FeatureStore(cluster)
    store.register(_view(_next_version(cluster)))
    pushed = store.push(VIEW, _frame(ids, values, t1_us))
    eav_s = _load_eav(cluster, ids, values, t1_us)
    store_rate, eav_rate = n / pushed.seconds, n / eav_s
    info = store.describe(VIEW)
    with cluster.connection(cluster.primary_node()) as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (EAV,)).fetchone()
    eav_bytes = int(row[0]) if row else 0
    online_bytes = sum(info.bytes_on_disk.values())
    result.metrics.update(
        {
            "features_entities": n,
            "features_per_entity": FEATURES,
            "features_load_store_entities_per_s": store_rate,
            "features_load_eav_entities_per_s": eav_rate,
            "features_bytes_per_entity_store": online_bytes / n,
            "features_bytes_per_entity_eav": eav_bytes / n,
        }
    )
    result.rows += [
        Row(
            "feature load, mlscale push",
            f"{store_rate:,.0f}",
            "entities/s",
            f"{n:,} x {FEATURES} floats, one push (binary COPY + upsert + history, per group)",
        ),
        Row(
            "feature load, tutorials' EAV table",
            f"{eav_rate:,.0f}",
            "entities/s",
            f"{n * FEATURES:,} (entity, feature) rows by binary COPY built in numpy, one node",
        ),
        Row(
            "bytes on disk per entity, mlscale | EAV",
            f"{online_bytes / n:,.0f} | {eav_bytes / n:,.0f}",
            "bytes",
            "online + history tables, all groups | the EAV table with its primary key",
        ),
    ]

    password = redis_password(cluster.config)
    run = uuid.uuid4().hex[:8]
    with RemoteCache.connect(rc.host, rc.port, password=password) as remote:
        cache = Cache(
            KeyBuilder(f"mlscale-demo-features-{run}"),
            local=LocalCache(max_entries=n),
            remote=remote,
            policy=CachePolicy(ttl_s=300),
        )
        cached = FeatureStore(cluster, cache=cache)
        _reads(result, cluster, store, cached, cache, params, n, values, echo)
        _token_read(result, cluster, cached, params, n, echo)
    _training_set(result, store, params, n, t1_us, echo)
    return result


def _reads(
    result: ChapterResult,
    cluster: Cluster,
    store: FeatureStore,
    cached: FeatureStore,
    cache: Cache,
    params: Params,
    n: int,
    values: npt.NDArray[np.float32],
    echo: Callable[[str], None],
) -> None:
    per_round = 100 if params.users < 20_000 else 400
    echo(
        f"features: batches of {BATCH} entities, {per_round} a round, the tutorials' EAV "
        "read vs the feature store, cache off and on ..."
    )
    calls = {"eav": 0, "store_cache_off": 0, "store_cache_on": 0}
    refs = [f"{VIEW}:*"]

    def draws(name: str) -> list[list[int]]:
        call = calls[name]
        calls[name] += 1
        r = np.random.default_rng(params.seed * 1000 + call)
        keys = zipf_keys(n, per_round * BATCH, r, ZIPF_S)
        return [keys[i : i + BATCH] for i in range(0, len(keys), BATCH)]

    with cluster.connection(cluster.primary_node()) as conn:

        def eav() -> ReadRound:
            return _timed(draws("eav"), lambda b: eav_read(conn, b))

        def off() -> ReadRound:
            return _timed(
                draws("store_cache_off"),
                lambda b: store.get_online_features(refs, b, use_cache=False).to_numpy(),
            )

        def on() -> ReadRound:
            before = cache.stats()
            done = _timed(
                draws("store_cache_on"),
                lambda b: cached.get_online_features(refs, b, use_cache=True).to_numpy(),
            )
            after = cache.stats()
            hits, misses = after.hits - before.hits, after.misses - before.misses
            share = hits / (hits + misses) if hits + misses else 0.0
            return ReadRound(done.batches, done.wall_s, done.latencies_s, share)

        variants = {"eav": eav, "store_cache_off": off, "store_cache_on": on}
        rounds = ab_rounds(variants, rounds=params.rounds)

        # The same batch, three ways, against the values loaded.
        check = [int(x) for x in np.random.default_rng(params.seed).choice(n, BATCH) + 1]
        want = values[np.array(check) - 1]
        got = {
            "eav": eav_read(conn, check),
            "store_cache_off": store.get_online_features(refs, check, use_cache=False).to_numpy()[
                0
            ],
            "store_cache_on": cached.get_online_features(refs, check).to_numpy()[0],
        }
    equal = {k: bool(np.array_equal(v, want)) for k, v in got.items()}

    labels = {
        "eav": "tutorials' EAV + pivot",
        "store_cache_off": "mlscale, cache off",
        "store_cache_on": "mlscale, cache on",
    }
    how = (
        f"median (min..max) of {params.rounds} alternating rounds of {per_round} batches, "
        f"Zipf s = {ZIPF_S} over {n:,} entities, one client thread"
    )
    medians = {}
    for name, rs in rounds.items():
        dicts = [r.as_dict() for r in rs]
        result.rounds[f"features_{name}"] = dicts
        rate = spread([d["entities_per_s"] for d in dicts])
        p50 = spread([d["latency_ms"]["p50"] for d in dicts])
        p99 = spread([d["latency_ms"]["p99"] for d in dicts])
        medians[name] = rate.median
        result.metrics[f"features_{name}_entities_per_s"] = rate.as_dict()
        result.metrics[f"features_{name}_batch_p50_ms"] = p50.as_dict()
        result.metrics[f"features_{name}_batch_p99_ms"] = p99.as_dict()
        result.rows += [
            Row(
                f"online read, {labels[name]}",
                f"{rate.median:,.0f} ({rate.low:,.0f}..{rate.high:,.0f})",
                "entities/s",
                how,
            ),
            Row(
                f"  batch of {BATCH} p50 | p99",
                f"{p50.median:.2f} | {p99.median:.2f}",
                "ms",
                "median of rounds",
            ),
        ]
        if name == "store_cache_on":
            hit = spread([d["cache_hit_share"] for d in dicts])
            result.metrics["features_cache_hit_share"] = hit.as_dict()
            result.rows.append(
                Row("  cache hits", f"{hit.median:.0%}", "", "of entity lookups, median of rounds")
            )
    off_ratio = medians["store_cache_off"] / medians["eav"]
    on_ratio = medians["store_cache_on"] / medians["eav"]
    result.metrics.update(
        {
            "features_cache_off_over_eav": off_ratio,
            "features_cache_on_over_eav": on_ratio,
            "features_answers_equal": equal,
        }
    )
    result.rows += [
        Row(
            "online read, mlscale / EAV",
            f"{off_ratio:.1f} | {on_ratio:.1f}",
            "x",
            "ratio of median entities/s: cache off | cache on",
        ),
        Row(
            "same batch, same matrix",
            " | ".join("yes" if equal[k] else "NO" for k in labels),
            "",
            "EAV | cache off | cache on, each against the loaded values",
        ),
    ]
    if not all(equal.values()):
        result.notes.append(f"features: a read did not return the loaded values: {equal}")


def _token_read(
    result: ChapterResult,
    cluster: Cluster,
    cached: FeatureStore,
    params: Params,
    n: int,
    echo: Callable[[str], None],
) -> None:
    echo("features: a push read back at once with its causal token ...")
    rng = np.random.default_rng(params.seed + 1)
    ids = np.arange(1, BATCH + 1, dtype=np.int64)  # the hottest keys: cached by now
    new = rng.random((BATCH, FEATURES), dtype=np.float32) + 10.0
    pushed = cached.push(VIEW, _frame(ids, new, time.time_ns() // 1000))
    before = cluster.stats().reads.reads_by_node
    started = time.perf_counter()
    got, _ = cached.get_online_features([f"{VIEW}:*"], ids.tolist(), token=pushed.token).to_numpy()
    read_ms = (time.perf_counter() - started) * 1000
    after = cluster.stats().reads.reads_by_node
    served = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(served.values())
    on_replicas = sum(v for k, v in served.items() if "replica" in k)
    fresh = bool(np.array_equal(got, new))
    result.metrics.update(
        {
            "features_token_read_fresh": fresh,
            "features_token_read_ms": read_ms,
            "features_token_reads_by_node": {k: v for k, v in served.items() if v},
            "features_token_reads_on_replicas": on_replicas,
        }
    )
    result.rows.append(
        Row(
            "push, then read with its token",
            f"{'pushed values' if fresh else 'STALE values'}, {read_ms:.1f} ms",
            "",
            f"{BATCH} cached entities pushed anew, read at once with the push's token; "
            f"{on_replicas} of {total} group reads on replicas",
        )
    )
    if not fresh:
        result.notes.append("features: a read with the push's token missed the pushed values")


def _training_set(
    result: ChapterResult,
    store: FeatureStore,
    params: Params,
    n: int,
    t1_us: int,
    echo: Callable[[str], None],
) -> None:
    import pandas as pd

    rows = PIT_ROWS
    echo(f"features: a point-in-time training set of {rows:,} rows ...")
    rng = np.random.default_rng(params.seed + 2)
    now_us = time.time_ns() // 1000
    # From an hour before the first load (no value yet) to now (after the push above).
    times = rng.integers(t1_us - 3600 * 1_000_000, now_us, rows)
    entity_df = pd.DataFrame(
        {
            "user_id": rng.integers(1, n + 1, rows),
            "event_ts": pd.to_datetime(times, unit="us", utc=True),
        }
    )
    started = time.perf_counter()
    got = store.get_historical_features(entity_df, [f"{VIEW}:{NAMES[0]}", f"{VIEW}:{NAMES[-1]}"])
    took = time.perf_counter() - started
    ref = _reference(store, entity_df)
    equal = bool(
        np.allclose(
            got[[NAMES[0], NAMES[-1]]].to_numpy(dtype=np.float64),
            ref[[NAMES[0], NAMES[-1]]].to_numpy(dtype=np.float64),
            equal_nan=True,
        )
    )
    missing = int(got[NAMES[0]].isna().sum())
    result.metrics.update(
        {
            "features_training_rows": rows,
            "features_training_s": took,
            "features_training_rows_per_s": rows / took,
            "features_training_equals_merge_asof": equal,
            "features_training_missing": missing,
        }
    )
    result.rows += [
        Row(
            "point-in-time training set",
            f"{took:.2f}",
            "s",
            f"{rows:,} (entity, time) rows, 2 features, as of each time within the TTL, "
            "per group in SQL",
        ),
        Row(
            "  equals pandas merge_asof",
            "yes" if equal else "NO",
            "",
            f"on the same history; {missing:,} rows before any value come back missing",
        ),
    ]
    if not equal:
        result.notes.append("features: the training set differs from pandas merge_asof")


def _reference(store: FeatureStore, entity_df: Any) -> Any:
    """pandas ``merge_asof`` of ``entity_df`` on the view's history, read whole (small)."""
    import pandas as pd

    info = store.describe(VIEW)
    frames = []
    for group in sorted(info.history_rows):
        rows = store.cluster.as_written(group).fetch_all(
            sql.SQL("SELECT user_id, event_ts, f4[1], f4[{}] FROM {}")
            .format(sql.Literal(FEATURES), sql.Identifier(info.history_table))
            .as_string(None),
            consistency="strong",
        )
        frames.append(pd.DataFrame(rows, columns=["user_id", "hist_ts", NAMES[0], NAMES[-1]]))
    hist = pd.concat(frames).sort_values("hist_ts")
    hist["hist_ts"] = pd.to_datetime(hist["hist_ts"], utc=True)
    left = entity_df.reset_index().sort_values("event_ts")
    merged = pd.merge_asof(
        left,
        hist,
        left_on="event_ts",
        right_on="hist_ts",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(seconds=TTL_S),
    )
    return merged.sort_values("index").set_index("index")
