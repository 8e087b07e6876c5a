"""Chapter 10, experiments, metrics, embeddings, checkpoints: the systems the tutorials
add beside PostgreSQL (``../shared/reference/000``: MongoDB for experiment metadata,
InfluxDB for metrics, Pinecone for embeddings), each done on the sharded cluster.

- Experiments: the tutorial's documents (hyperparameters, metrics, artifacts, status)
  as runs of one experiment; its query ``find({'metrics.accuracy': {'$gte': 0.90}})
  .sort('metrics.accuracy', -1).limit(10)`` checked against Python over the same
  documents and timed, and an equality find on a hyperparameter with and without a
  path index.
- Metrics: the tutorial's ``inference_metrics`` points (tag ``model``, fields
  ``latency_ms`` and ``batch_size``) written as InfluxDB line protocol, its Flux query
  (mean latency of one model over the last hour) and a 24-hour downsample checked
  against numpy.
- Embeddings: the tutorial's Pinecone index (cosine, 768 dimensions, metadata
  ``text``) as a vector collection over the groups with an HNSW index; recall@10
  measured against exact search, query latency and throughput.
- Checkpoints: a checkpoint saved as content-addressed chunks over the groups, loaded
  back and checked bit for bit, a second version that shares most chunks, MB/s beside
  writing and reading the same bytes as a local file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from psycopg import sql

from ..core.experiments import sql as experiments_sql
from ..engine.cluster_sync import Cluster
from ..stores.checkpoints import Checkpoints
from ..stores.experiments import ExperimentStore
from ..stores.metrics import MetricStore
from ..stores.vectors import VectorStore
from .foundation import ChapterResult, Echo, Params, Row

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["drop_mlstores", "needs", "run_mlstores"]

EXPERIMENT: Final = "demo-bert-sweep"
COLLECTION: Final = "demo_ml_embeddings"
RUN: Final = "demo-bert-checkpoints"
MEASUREMENT: Final = "demo_inference_metrics"
MODELS: Final = ("bert-classifier", "resnet-50", "xgb-ranker", "gpt-small")
DIM: Final = 768  # the tutorial's Pinecone index
STATUSES: Final = ("completed", "running", "failed")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much the chapter does (quick runs are test-sized)."""

    runs: int  # experiment documents
    embeddings: int  # vectors in the collection
    queries: int  # timed vector queries (and finds)
    recall_queries: int  # queries checked against exact search
    checkpoint_mib: int  # size of the checkpoint saved and loaded
    points_per_model: int  # inference_metrics points per model over 24 hours

    @classmethod
    def of(cls, params: Params) -> Sizes:
        """The sizes of a quick run (``params`` of ``quick=True``) or a full one."""
        if params.users < 20_000:
            return cls(
                runs=3_000,
                embeddings=3_000,
                queries=50,
                recall_queries=20,
                checkpoint_mib=48,
                points_per_model=5_000,
            )
        return cls(
            runs=30_000,
            embeddings=30_000,
            queries=300,
            recall_queries=100,
            checkpoint_mib=512,
            points_per_model=50_000,
        )


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if not config.shard_groups:
        return "the ML stores chapter needs shard groups"
    return None


def drop_mlstores(cluster: Cluster) -> None:
    """Remove what the chapter wrote: its experiment's documents, its collection and its
    checkpoints."""
    metrics = MetricStore(cluster)
    if any(m.name == MEASUREMENT for m in metrics.measurements()):
        metrics.drop(MEASUREMENT)
    ckpts = Checkpoints(cluster)
    for saved in ckpts.list_checkpoints(RUN, consistency="strong"):
        ckpts.delete(RUN, saved.step, grace_s=0)
    store = VectorStore(cluster)
    if any(c.name == COLLECTION for c in store.list_collections()):
        store.drop_collection(COLLECTION)
    tables = cluster.shards().tables
    if not all(t in tables for t in experiments_sql.DDL):
        return
    group = cluster.locate(experiments_sql.FAMILY, EXPERIMENT)
    with cluster.connection(cluster.primary_node(group)) as conn:
        for table in experiments_sql.DDL:
            delete = sql.SQL("DELETE FROM {} WHERE experiment = %s").format(sql.Identifier(table))
            conn.execute(delete, (EXPERIMENT,))


def _ms(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples`` (seconds) in milliseconds."""
    arr = np.asarray(samples) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _timed(call: Callable[[], Any], times: int) -> tuple[list[float], Any]:
    """``call`` run ``times`` times: (each run's seconds, the last result)."""
    spent: list[float] = []
    out: Any = None
    for _ in range(times):
        t0 = time.perf_counter()
        out = call()
        spent.append(time.perf_counter() - t0)
    return spent, out


# -- experiments -------------------------------------------------------------------------


def _documents(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    accuracy = np.round(rng.uniform(0.70, 0.99, n), 6)
    f1 = np.round(accuracy - rng.uniform(0.0, 0.02, n), 6)
    lr = rng.choice([1e-4, 3e-4, 1e-3, 3e-3], n)
    batch = rng.choice([16, 32, 64, 128], n)
    epochs = rng.integers(3, 20, n)
    status = rng.integers(0, len(STATUSES), n)
    return [
        {
            "experiment": EXPERIMENT,
            "_id": f"exp_{i:06d}",
            "model_type": "bert-classifier",
            "hyperparameters": {
                "learning_rate": float(lr[i]),
                "batch_size": int(batch[i]),
                "epochs": int(epochs[i]),
            },
            "metrics": {"accuracy": float(accuracy[i]), "f1_score": float(f1[i])},
            "artifacts": {"model_path": f"s3://models/exp_{i:06d}/model.pt"},
            "status": STATUSES[int(status[i])],
        }
        for i in range(n)
    ]


def _experiments(
    cluster: Cluster, sizes: Sizes, rng: np.random.Generator, echo: Echo, result: ChapterResult
) -> None:
    store = ExperimentStore(cluster)
    docs = _documents(sizes.runs, rng)
    echo(f"experiments: {sizes.runs:,} run documents of the tutorial's shape ...")
    t0 = time.perf_counter()
    store.insert_runs(docs)
    insert_s = time.perf_counter() - t0

    # The tutorial's query, and the same answer computed in Python.
    best = sorted(
        (d for d in docs if d["metrics"]["accuracy"] >= 0.90),
        key=lambda d: (-d["metrics"]["accuracy"], d["_id"]),
    )[:10]
    spent, found = _timed(
        lambda: store.find(
            {"metrics.accuracy": {"$gte": 0.90}},
            sort={"metrics.accuracy": -1},
            limit=10,
            experiment=EXPERIMENT,
            consistency="strong",
        ),
        sizes.queries,
    )
    top_ok = [d["_id"] for d in found] == [d["_id"] for d in best]
    top_p50, top_p99 = _ms(spent)

    # An equality on a hyperparameter: a scan, then the GIN path index.
    wanted = {"hyperparameters.batch_size": 32, "status": "completed"}
    expect = sum(
        1 for d in docs if d["hyperparameters"]["batch_size"] == 32 and d["status"] == "completed"
    )

    def by_param() -> int:
        return store.count(wanted, consistency="strong")

    scan, scan_count = _timed(by_param, sizes.queries)
    store.create_index("hyperparameters.batch_size")
    indexed, indexed_count = _timed(by_param, sizes.queries)
    counts_ok = scan_count == expect == indexed_count
    scan_p50, _ = _ms(scan)
    index_p50, index_p99 = _ms(indexed)
    result.metrics.update(
        {
            "experiments_runs": sizes.runs,
            "experiments_insert_per_s": sizes.runs / insert_s,
            "experiments_top10_equal_python": top_ok,
            "experiments_top10_p50_ms": top_p50,
            "experiments_top10_p99_ms": top_p99,
            "experiments_param_counts_equal_python": counts_ok,
            "experiments_param_scan_p50_ms": scan_p50,
            "experiments_param_index_p50_ms": index_p50,
            "experiments_param_index_p99_ms": index_p99,
        }
    )
    how = f"{sizes.runs:,} runs, {sizes.queries} timed queries"
    result.rows += [
        Row(
            "experiment runs inserted",
            f"{sizes.runs / insert_s:,.0f}",
            "docs/s",
            "insert_runs: one COPY per group",
        ),
        Row(
            "tutorial's top-10 by accuracy (p50|p99)",
            f"{top_p50:.1f} | {top_p99:.1f}",
            "ms",
            f"{how}; equal to Python: {'yes' if top_ok else 'NO'}",
        ),
        Row(
            "find by hyperparameter, scan | index",
            f"{scan_p50:.1f} | {index_p50:.1f}",
            "ms",
            f"p50, {how}; GIN path index; counts equal Python: {'yes' if counts_ok else 'NO'}",
        ),
    ]
    if not (top_ok and counts_ok):
        result.notes.append("an experiment query differed from Python's answer: that is a bug")


# -- metrics ---------------------------------------------------------------------------


def _metrics(
    cluster: Cluster, sizes: Sizes, rng: np.random.Generator, echo: Echo, result: ChapterResult
) -> None:
    store = MetricStore(cluster)
    per_model = sizes.points_per_model
    n = per_model * len(MODELS)
    echo(f"metrics: {n:,} inference_metrics points (4 models, 24 h) as line protocol ...")
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    end_ns = int(hour.timestamp()) * 10**9
    span_ns = 24 * 3600 * 10**9
    model = np.repeat(np.arange(len(MODELS)), per_model)
    # Distinct times per series (a point written again at its time replaces the old one).
    offsets = np.concatenate(
        [np.sort(rng.choice(span_ns // 1000, per_model, replace=False)) for _ in MODELS]
    )
    ts = end_ns - span_ns + offsets * 1000
    latency = np.round(rng.gamma(4.0, 5.0, n) + 3.0 * model, 3)
    batch = rng.choice([1, 8, 32, 64], n)
    lines = [
        f"{MEASUREMENT},model={MODELS[m]} latency_ms={lat!r},batch_size={b}i {t}"
        for m, lat, b, t in zip(
            model.tolist(), latency.tolist(), batch.tolist(), ts.tolist(), strict=True
        )
    ]
    t0 = time.perf_counter()
    for lo in range(0, n, 5_000):
        store.write_lines("\n".join(lines[lo : lo + 5_000]))
    ingest_s = time.perf_counter() - t0

    # The tutorial's Flux query: the mean latency of one model over the last (full) hour.
    start = hour - dt.timedelta(hours=1)
    bert = model == 0
    last_hour = bert & (ts >= end_ns - 3600 * 10**9)
    mean_spent, hourly = _timed(
        lambda: store.downsample(
            MEASUREMENT,
            "latency_ms",
            start,
            hour,
            dt.timedelta(hours=1),
            "mean",
            where={"model": MODELS[0]},
            consistency="strong",
        ),
        sizes.queries,
    )
    want_mean = float(latency[last_hour].mean())
    mean_ok = len(hourly) == 1 and abs(float(hourly.values[0]) - want_mean) <= 1e-9 * want_mean

    # A 24-hour dashboard panel: p99 latency per 5 minutes, every model.
    day_spent, panel = _timed(
        lambda: store.downsample(
            MEASUREMENT,
            "latency_ms",
            hour - dt.timedelta(hours=24),
            hour,
            dt.timedelta(minutes=5),
            "p99",
            group_by=("model",),
            consistency="strong",
        ),
        max(5, sizes.queries // 5),
    )
    bucket = (ts // (300 * 10**9)).astype(np.int64)
    expect = {}
    for m in range(len(MODELS)):
        mine = model == m
        for b in np.unique(bucket[mine]):
            expect[(MODELS[m], int(b))] = float(np.percentile(latency[mine & (bucket == b)], 99))
    got = {
        (str(tags[0]), int(t.astype("datetime64[s]").astype(np.int64) // 300)): float(v)
        for tags, t, v in zip(panel.tags, panel.times, panel.values, strict=True)
    }
    panel_ok = got.keys() == expect.keys() and all(
        abs(got[k] - expect[k]) <= 1e-9 * max(1.0, abs(expect[k])) for k in expect
    )
    mean_p50, _ = _ms(mean_spent)
    day_p50, day_p99 = _ms(day_spent)
    result.metrics.update(
        {
            "metrics_points": n,
            "metrics_ingest_points_per_s": n / ingest_s,
            "metrics_hour_mean_equal_numpy": mean_ok,
            "metrics_hour_mean_p50_ms": mean_p50,
            "metrics_day_p99_panel_equal_numpy": panel_ok,
            "metrics_day_p99_panel_p50_ms": day_p50,
            "metrics_day_p99_panel_p99_ms": day_p99,
        }
    )
    result.rows += [
        Row(
            "inference metrics ingested",
            f"{n / ingest_s:,.0f}",
            "points/s",
            f"{n:,} InfluxDB line-protocol points, 5,000 per write_lines call",
        ),
        Row(
            "tutorial's mean latency, last hour",
            f"{mean_p50:.1f}",
            "ms",
            f"p50 of {sizes.queries}; equal to numpy: {'yes' if mean_ok else 'NO'}",
        ),
        Row(
            "24 h p99 latency per 5 min, 4 models",
            f"{day_p50:.1f} | {day_p99:.1f}",
            "ms",
            f"p50 | p99, {len(panel)} buckets; equal to numpy: {'yes' if panel_ok else 'NO'}",
        ),
    ]
    if not (mean_ok and panel_ok):
        result.notes.append("a metrics query differed from numpy's answer: that is a bug")


# -- embeddings --------------------------------------------------------------------------


def _embeddings(
    cluster: Cluster, sizes: Sizes, rng: np.random.Generator, echo: Echo, result: ChapterResult
) -> None:
    store = VectorStore(cluster)
    n = sizes.embeddings
    echo(f"embeddings: {n:,} x {DIM} cosine vectors (the tutorial's Pinecone index) ...")
    # Clustered data, as embeddings are: 50 centres, points scattered around them.
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(
        np.float32
    )
    ids = np.arange(1, n + 1, dtype=np.int64)
    topics = ("ML infrastructure", "Model serving", "Feature stores", "Training data")
    metadata = [{"text": topics[i % len(topics)]} for i in range(n)]
    items = store.create_collection(COLLECTION, dim=DIM, metric="cosine")
    t0 = time.perf_counter()
    items.upsert(ids, vectors, metadata=metadata)
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    items.create_index("hnsw", m=16, ef_construction=64)
    index_s = time.perf_counter() - t0
    queries = vectors[rng.integers(0, n, sizes.recall_queries)] + 0.3 * rng.standard_normal(
        (sizes.recall_queries, DIM)
    ).astype(np.float32)
    tuned = items.tune_ef_search(queries, k=10, target=0.95)
    timed = vectors[rng.integers(0, n, sizes.queries)]
    spent: list[float] = []
    for row in timed:
        t0 = time.perf_counter()
        items.query(row, 10, include_metadata=True)
        spent.append(time.perf_counter() - t0)
    exact, _ = _timed(lambda: items.query(timed[0], 10, exact=True), max(5, sizes.queries // 10))
    p50, p99 = _ms(spent)
    exact_p50, _ = _ms(exact)
    qps = len(spent) / sum(spent)
    result.metrics.update(
        {
            "embeddings": n,
            "embeddings_dim": DIM,
            "embeddings_upsert_per_s": n / upsert_s,
            "embeddings_index_build_s": index_s,
            "embeddings_ef_search": tuned.ef_search,
            "embeddings_recall_at_10": tuned.recall,
            "embeddings_query_p50_ms": p50,
            "embeddings_query_p99_ms": p99,
            "embeddings_query_per_s": qps,
            "embeddings_exact_p50_ms": exact_p50,
        }
    )
    result.rows += [
        Row(
            "embeddings upserted",
            f"{n / upsert_s:,.0f}",
            "vectors/s",
            f"{n:,} x {DIM}, binary COPY per group; HNSW built in {index_s:.1f} s",
        ),
        Row(
            "vector query top-10 (p50|p99)",
            f"{p50:.1f} | {p99:.1f}",
            "ms",
            f"one client, {len(spent)} queries, {qps:,.0f}/s; exact search p50 {exact_p50:.1f} ms",
        ),
        Row(
            "recall@10 at the tuned ef_search",
            f"{tuned.recall:.3f}",
            "",
            f"ef_search {tuned.ef_search}, {sizes.recall_queries} queries vs exact search",
        ),
    ]
    if not tuned.reached:
        result.notes.append(f"recall@10 stayed below 0.95 ({tuned.recall:.3f})")


# -- checkpoints -------------------------------------------------------------------------


def _write_file(path: str, mib: int, rng: np.random.Generator, patch: int | None) -> str:
    """A checkpoint-like file of ``mib`` MiB of random bytes; with ``patch`` the same file
    (same seed) with that MiB changed. Its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as out:
        for i in range(mib):
            block = rng.bytes(1 << 20)
            if i == patch:
                block = bytes(b ^ 0xFF for b in block[:64]) + block[64:]
            h.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _checkpoints(cluster: Cluster, sizes: Sizes, echo: Echo, result: ChapterResult) -> None:
    store = Checkpoints(cluster)
    mib = sizes.checkpoint_mib
    echo(f"checkpoints: a {mib} MiB checkpoint saved, loaded, saved again changed a little ...")
    with tempfile.TemporaryDirectory(prefix="mlscale-demo-ckpt-") as tmp:
        src, back, local = (os.path.join(tmp, n) for n in ("model.bin", "back.bin", "copy.bin"))
        want = _write_file(src, mib, np.random.default_rng(11), None)
        first = store.save(RUN, 1, src)
        loaded = store.load(RUN, back, step=1, token=first.token)  # read on a replica
        exact = _sha256(back) == want
        t0 = time.perf_counter()
        with open(src, "rb") as inp, open(local, "wb") as out:  # the local file's rate
            while block := inp.read(1 << 22):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        local_s = time.perf_counter() - t0
        _write_file(src, mib, np.random.default_rng(11), patch=mib // 2)
        second = store.save(RUN, 2, src)
    mb = mib * (1 << 20) / 1e6
    save_mbs, load_mbs, local_mbs = (mb / first.elapsed_s, mb / loaded.elapsed_s, mb / local_s)
    result.metrics.update(
        {
            "checkpoint_mib": mib,
            "checkpoint_save_mb_per_s": save_mbs,
            "checkpoint_load_mb_per_s": load_mbs,
            "checkpoint_local_copy_mb_per_s": local_mbs,
            "checkpoint_bit_exact": exact,
            "checkpoint_second_version_chunks": second.chunks,
            "checkpoint_second_version_sent": second.sent,
        }
    )
    result.rows += [
        Row(
            "checkpoint save | load",
            f"{save_mbs:,.0f} | {load_mbs:,.0f}",
            "MB/s",
            f"{mib} MiB in {first.chunks} BLAKE3-addressed chunks over {len(first.groups)} groups; "
            f"load verified every chunk, bit-exact: {'yes' if exact else 'NO'}",
        ),
        Row(
            "same bytes as a local file (copy + fsync)",
            f"{local_mbs:,.0f}",
            "MB/s",
            "the machine's own file rate, for scale",
        ),
        Row(
            "second version: chunks sent",
            f"{second.sent} of {second.chunks}",
            "chunks",
            "1 MiB changed: only the chunk holding it is sent (dedup by hash)",
        ),
    ]
    if not exact:
        result.notes.append("the checkpoint did not load back bit-exactly: that is a bug")


def run_mlstores(cluster: Cluster, params: Params, echo: Echo) -> ChapterResult:
    """Experiments, metrics, embeddings and checkpoints on the sharded cluster."""
    sizes = Sizes.of(params)
    rng = np.random.default_rng(params.seed)
    result = ChapterResult()
    _experiments(cluster, sizes, rng, echo, result)
    _metrics(cluster, sizes, rng, echo, result)
    _embeddings(cluster, sizes, rng, echo, result)
    _checkpoints(cluster, sizes, echo, result)
    return result
