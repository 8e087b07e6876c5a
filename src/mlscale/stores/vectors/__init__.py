"""Embeddings with vector search on pgvector, sharded by id over the shard groups;
every group answers its own k nearest and the client merges them exactly.

    from mlscale.stores.vectors import VectorStore

    store = VectorStore(cluster)
    items = store.create_collection("items", dim=128, metric="cosine")
    items.upsert(ids, vectors, metadata=[{"lang": "en"}, ...])   # binary COPY + upsert
    items.create_index("hnsw", m=16, ef_construction=64)
    items.tune_ef_search(sample_queries, k=10, target=0.95)       # measured recall
    hits = items.query(v, k=10, filter={"lang": "en"})
    hits.ids, hits.distances, hits.how                            # how: index, exact, ...

See :mod:`.store_async` for the guarantees and the rooms, :mod:`mlscale.core.vectors.filters` for
filters, :mod:`mlscale.core.vectors.merge` for the merge and the retry ladder.
"""

from ...core.vectors.merge import Step
from ...core.vectors.results import (
    DeleteResult,
    QueryResult,
    RecallResult,
    TuneResult,
    UpsertResult,
)
from ...core.vectors.spec import Collection, IdType, IndexKind, IndexSpec, Metric
from .collection_async import AsyncVectorCollection
from .collection_sync import VectorCollection
from .store_async import AsyncVectorStore
from .store_sync import VectorStore

__all__ = [
    "AsyncVectorCollection",
    "AsyncVectorStore",
    "Collection",
    "DeleteResult",
    "IdType",
    "IndexKind",
    "IndexSpec",
    "Metric",
    "QueryResult",
    "RecallResult",
    "Step",
    "TuneResult",
    "UpsertResult",
    "VectorCollection",
    "VectorStore",
]
