"""The vector store on a real cluster of 4 shard groups (a primary and a replica each):
exact search equals numpy's brute force, HNSW recall at the tuned ef_search, filters
that keep k results, upserts and deletes, the filter translation against the server.

Sizes: 20,000 x 128 vectors here (the benchmark, ``mlscale bench vectors``, runs the
acceptance's 100,000 x 128). Exactness: vectors with small integer components make
every float32 sum exact, so pgvector's distances and numpy's (float64 of the same
sums, the same formulas) are equal to the last bit: ids and distances are compared
with ==, ties included (broken by id on both sides). Gaussian float vectors are
compared with a relative tolerance of 1e-5 on distances (pgvector sums in float32).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mlscale import Cluster
from mlscale.core.vectors.filters import matches
from mlscale.errors import CollectionNotFound, VectorError
from mlscale.stores.vectors import VectorCollection, VectorStore
from tests.integration.local_clusters import throwaway_cluster

N, DIM, K = 20_000, 128, 10


@pytest.fixture(scope="module")
def store() -> Iterator[VectorStore]:
    with (
        throwaway_cluster("mlscale-vec-", shards=4, replicas=1, redis=False) as local,
        Cluster.from_file(local.layout.config) as cluster,
    ):
        yield VectorStore(cluster)


def brute(
    data: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    q: npt.NDArray[np.float32],
    metric: str,
) -> npt.NDArray[np.float64]:
    """pgvector's distance of every row to ``q``, computed as it does (float sums
    exact for small integers; then the same float64 steps)."""
    x, v = data.astype(np.float64), q.astype(np.float64)
    if metric == "l2":
        return np.sqrt(((x - v) ** 2).sum(axis=1))
    if metric == "ip":
        return -(x @ v)
    sim = (x @ v) / np.sqrt((x * x).sum(axis=1) * (v @ v))
    return 1.0 - np.clip(sim, -1.0, 1.0)


def topk(d: npt.NDArray[np.float64], ids: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    return np.lexsort((ids, d))[:k]


@pytest.fixture(scope="module")
def int_data() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(18)
    data = rng.integers(-8, 9, size=(N, DIM)).astype(np.float32)
    data[data.sum(axis=1) == 0, 0] = 1.0  # no zero vector (its cosine is NaN)
    return np.arange(1, N + 1, dtype=np.int64) * 7919, data


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_exact_search_equals_numpy_brute_force(
    store: VectorStore, int_data: tuple[Any, Any], metric: str
) -> None:
    ids, data = int_data
    col = store.create_collection(f"exact_{metric}", DIM, metric=metric)
    put = col.upsert(ids, data)
    assert put.rows == N and len(put.groups) == 4
    if metric == "l2":
        col.create_index("hnsw")  # exact=True must not use it
    rng = np.random.default_rng(1)
    for q in rng.integers(-8, 9, size=(12, DIM)).astype(np.float32):
        got = col.query(q, K, exact=True, token=put.token)
        d = brute(data, ids, q, metric)
        want = topk(d, ids, K)
        assert got.how == "exact" and set(got.steps.values()) == {"exact"}
        assert list(got.ids) == ids[want].tolist()
        assert list(got.distances) == d[want].tolist()  # to the last bit
    # ties are real with integer vectors: the k-th distance is shared, ids decide
    q = data[0]
    got = col.query(q, 50, exact=True, token=put.token)
    d = brute(data, ids, q, metric)
    assert list(got.ids) == ids[topk(d, ids, 50)].tolist()


@pytest.fixture(scope="module")
def floats(store: VectorStore) -> tuple[VectorCollection, Any, Any, str]:
    rng = np.random.default_rng(7)
    data = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = np.arange(N, dtype=np.int64)
    meta = [{"bucket": int(i % 100), "lang": ["en", "fr", "de"][i % 3]} for i in range(N)]
    col = store.create_collection("floats", DIM)
    put = col.upsert(ids, data, meta)
    col.create_index("hnsw", m=16, ef_construction=64)
    return col, ids, data, put.token


def test_float_exact_and_hnsw_recall_at_tuned_ef_search(floats: tuple[Any, ...]) -> None:
    col, ids, data, token = floats
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((150, DIM)).astype(np.float32)
    x = data.astype(np.float64)
    for q in queries[:10]:
        got = col.query(q, K, exact=True, token=token)
        d = np.sqrt(((x - q.astype(np.float64)) ** 2).sum(axis=1))
        want = topk(d, ids, K)
        assert list(got.ids) == ids[want].tolist()
        np.testing.assert_allclose(got.distances, d[want], rtol=1e-5)
    tuned = col.tune_ef_search(queries[:50], K, target=0.95)
    assert tuned.reached, tuned.to_dict()
    assert col.spec.ef_search == tuned.ef_search
    measured = col.recall(queries[50:], K)  # held-out queries, the saved default
    print(f"HNSW recall@{K} at ef_search={tuned.ef_search}: {measured.recall:.4f}")
    assert measured.ef_search == tuned.ef_search and measured.recall >= 0.95
    hit = col.query(queries[60], K, token=token)
    assert hit.how == "index" and len(hit) == K
    # a batch: one statement per group, the same answers as one query at a time
    many = col.query_many(queries[:20], K, token=token)
    assert [r.ids for r in many] == [col.query(q, K, token=token).ids for q in queries[:20]]
    exact = col.query_many(queries[:5], K, exact=True, token=token)
    for r, q in zip(exact, queries[:5], strict=True):
        again = col.query(q, K, exact=True, token=token)
        assert (r.ids, r.distances, r.how) == (again.ids, again.distances, "exact")


def test_filter_matching_one_percent_still_returns_k(floats: tuple[Any, ...]) -> None:
    col, ids, data, token = floats
    rng = np.random.default_rng(5)
    x = data.astype(np.float64)
    bucket = ids % 100 == 42  # 200 rows of 20,000
    for q in rng.standard_normal((5, DIM)).astype(np.float32):
        got = col.query(q, K, filter={"bucket": 42}, include_metadata=True, token=token)
        assert len(got) == K, got.to_dict()
        print(f"1% filter: {len(got)} rows, answered by {got.how} ({got.steps})")
        assert got.how in ("index", "iterative_scan", "ef_search_raised", "exact")
        assert all(m["bucket"] == 42 for m in got.metadata or ())
        exact = col.query(q, K, filter={"bucket": 42}, exact=True, token=token)
        d = np.sqrt(((x[bucket] - q.astype(np.float64)) ** 2).sum(axis=1))
        assert list(exact.ids) == ids[bucket][topk(d, ids[bucket], K)].tolist()
    batch = col.query_many(data[:3], K, filter={"bucket": 42}, token=token)
    assert all(len(r) == K for r in batch)
    # fewer matching rows than k: every group answers exactly, and says so
    few = col.query(data[0], K, filter={"bucket": 42, "lang": "zz"}, token=token)
    assert len(few) == 0 and few.how == "exact"


def test_upsert_replaces_and_delete_removes(store: VectorStore) -> None:
    col = store.create_collection("churn", 4, metric="l2")
    put = col.upsert([1, 2, 3, 2], np.eye(4, dtype=np.float32), [{"v": 1}, None, {}, {"v": 9}])
    assert put.rows == 3  # id 2 twice: the last one kept
    got = col.query([0, 0, 0, 1], 1, include_metadata=True, token=put.token)
    assert got.ids == (2,) and got.distances == (0.0,) and got.metadata == ({"v": 9},)
    put = col.upsert([2], np.array([[5, 5, 5, 5]], dtype=np.float32))
    assert col.count() == 3
    got = col.query([5, 5, 5, 5], 1, token=put.token)
    assert got.ids == (2,) and got.distances == (0.0,)
    gone = col.delete([2, 99])
    assert gone.deleted == 1
    assert 2 not in col.query([5, 5, 5, 5], 3, token=gone.token).ids
    with pytest.raises(VectorError, match="must be"):
        col.upsert([7], np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(VectorError, match="finite"):
        col.upsert([7], np.full((1, 4), np.nan, dtype=np.float32))
    with pytest.raises(VectorError, match="exists with dim"):
        store.create_collection("churn", 8)
    store.drop_collection("churn")
    with pytest.raises(CollectionNotFound):
        store.collection("churn")


def test_text_and_uuid_ids(store: VectorStore) -> None:
    for id_type, keys in (
        ("text", [f"doc-{i}" for i in range(200)]),
        ("uuid", [uuid.UUID(int=i + 1) for i in range(200)]),
    ):
        col = store.create_collection(f"keys_{id_type}", 8, metric="cosine", id_type=id_type)
        data = np.random.default_rng(2).standard_normal((200, 8)).astype(np.float32)
        put = col.upsert(keys, data)
        assert put.rows == 200 and len(put.groups) == 4
        got = col.query(data[17], 3, exact=True, token=put.token)
        assert got.ids[0] == keys[17]


FILTERS: list[dict[str, Any]] = [
    {"a": 1},
    {"a": 1.0},
    {"a": True},
    {"s": "x"},
    {"n.b": 2},
    {"n": {"b": 2}},
    {"tags": ["p"]},
    {"tags": ["p", "q"]},
    {"tags": "p"},
    {"a": {"$in": [1, 2]}},
    {"a": {"$nin": [1, 2]}},
    {"a": {"$ne": 1}},
    {"a": {"$gt": 1}},
    {"a": {"$gte": 1, "$lt": 3}},
    {"s": {"$lt": "y"}},
    {"tags": {"$gt": "p"}},
    {"n.b": {"$lte": 2}},
    {"z": {"$exists": True}},
    {"z": {"$exists": False}},
    {"n.b": {"$exists": True}},
    {"$or": [{"a": 1}, {"s": "y"}]},
    {"$and": [{"a": {"$gte": 1}}, {"$not": {"s": "x"}}]},
    {"a": None},
    {"z": None},
]


def test_filters_agree_with_the_python_evaluator(store: VectorStore) -> None:
    rng = np.random.default_rng(11)
    docs: list[dict[str, Any]] = []
    for i in range(400):
        doc: dict[str, Any] = {}
        pick = rng.integers(0, 6)
        if pick < 4:
            doc["a"] = [1, 2, 3, 1.0][pick] if i % 5 else [True, "1", None, [1]][pick]
        if i % 3:
            doc["s"] = ["x", "y", "xx"][i % 3]
        if i % 4 == 0:
            doc["n"] = {"b": int(rng.integers(0, 4))} if i % 8 else [{"b": 2}, {"b": 9}]
        if i % 7 == 0:
            doc["tags"] = [["p"], ["p", "q"], ["q", "r"], []][i % 4]
        if i % 11 == 0:
            doc["z"] = None
        docs.append(doc)
    col = store.create_collection("filters", 2)
    data = rng.standard_normal((400, 2)).astype(np.float32)
    put = col.upsert(np.arange(400), data, docs)
    for flt in FILTERS:
        got = col.query([0, 0], 1000, filter=flt, exact=True, token=put.token)
        want = {i for i, d in enumerate(docs) if matches(flt, d)}
        assert set(got.ids) == want, flt
    with pytest.raises(VectorError, match=r"\$regex"):
        col.query([0, 0], 3, filter={"s": {"$regex": "x"}})
