"""Collection specs, index knobs and the per-group k-nearest SQL (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from mlscale.core.vectors import sql as vsql
from mlscale.core.vectors.filters import to_sql
from mlscale.core.vectors.spec import Collection, IndexKind, IndexSpec, Metric, check_k
from mlscale.errors import VectorError


def test_spec_round_trip_and_defaults() -> None:
    c = Collection("items", 128, metric=Metric.COSINE).with_index(IndexSpec(IndexKind.HNSW))
    assert c.family == "vectors_int8" and c.table == "mlscale_vec_items"
    assert Collection.from_spec(c.to_spec()) == c


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Collection("Items", 3), "collection name"),
        (lambda: Collection("items", 0), "dim"),
        (lambda: Collection("items", 3, metric="dot"), "metric"),  # type: ignore[arg-type]
        (lambda: Collection("items", 3, ef_search=0), "ef_search"),
        (lambda: IndexSpec(IndexKind.HNSW, m=1), "m must"),
        (lambda: IndexSpec(IndexKind.HNSW, m=32, ef_construction=40), "at least 2 m"),
        (lambda: IndexSpec(IndexKind.IVFFLAT, lists=0), "lists"),
        (lambda: check_k(0), "k must"),
        (lambda: check_k(True), "k must"),
    ],
)
def test_refused(make: object, message: str) -> None:
    with pytest.raises(VectorError, match=message):
        make()  # type: ignore[operator]


def test_index_ddl_names_the_metrics_opclass_and_knobs() -> None:
    c = Collection("items", 4, metric=Metric.IP)
    ddl = vsql.index_ddl(c, IndexSpec(IndexKind.HNSW, m=8, ef_construction=32))
    assert ddl == (
        'CREATE INDEX "mlscale_vec_items_ann" ON "mlscale_vec_items" USING hnsw '
        "(embedding vector_ip_ops) WITH (m = 8, ef_construction = 32)"
    )
    assert "WITH (lists = 50)" in vsql.index_ddl(c, IndexSpec(IndexKind.IVFFLAT, lists=50))


def test_knn_forms() -> None:
    c = Collection("items", 2).with_index(IndexSpec(IndexKind.HNSW))
    f = to_sql({"lang": "en"})
    common = {"probes": 1, "with_metadata": False}
    index = vsql.knn(c, "[1,2]", 10, None, exact=False, ef_search=5, iterative=False, **common)
    assert index.sql.endswith("ORDER BY distance LIMIT %s")
    assert index.settings == {"hnsw.ef_search": "10"}  # raised to k
    assert index.params == ("[1,2]", 10)
    it = vsql.knn(c, "[1,2]", 10, f, exact=False, ef_search=40, iterative=True, **common)
    assert it.settings == {"hnsw.ef_search": "40", "hnsw.iterative_scan": "strict_order"}
    assert "WHERE metadata @> %s::jsonb" in it.sql and it.params == ("[1,2]", '{"lang": "en"}', 10)
    exact = vsql.knn(c, "[1,2]", 10, f, exact=True, ef_search=40, iterative=True, **common)
    assert exact.sql.endswith("ORDER BY distance, id LIMIT %s")
    assert exact.settings == {"enable_indexscan": "off"}
    ivf = c.with_index(IndexSpec(IndexKind.IVFFLAT))
    assert vsql.knn(
        ivf, "[1,2]", 3, None, exact=False, ef_search=40, iterative=True, **common
    ).settings == {"ivfflat.probes": "1"}


def test_knn_many_joins_each_query_vector_laterally() -> None:
    c = Collection("items", 2).with_index(IndexSpec(IndexKind.HNSW))
    f = to_sql({"lang": "en"})
    many = vsql.knn_many(
        c, ["[1,2]", "[3,4]"], 5, f, exact=False, ef_search=40, probes=1, iterative=False,
        with_metadata=True,
    )  # fmt: skip
    assert many.sql == (
        "SELECT q.i, r.* FROM unnest(%s::text[]) WITH ORDINALITY AS q(v, i) CROSS JOIN LATERAL "
        '(SELECT id, embedding <-> q.v::vector AS distance, metadata FROM "mlscale_vec_items" '
        "WHERE metadata @> %s::jsonb ORDER BY distance LIMIT %s) AS r ORDER BY q.i"
    )
    assert many.params == (["[1,2]", "[3,4]"], '{"lang": "en"}', 5)
    assert many.settings == {"hnsw.ef_search": "40"}


def test_vector_text_is_exact_for_float32() -> None:
    v = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    text = vsql.vector_text(v.tolist())
    back = np.array([np.float32(float(x)) for x in text[1:-1].split(",")], dtype=np.float32)
    assert back.tobytes() == v.tobytes()
