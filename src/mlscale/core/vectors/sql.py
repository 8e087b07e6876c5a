"""The SQL of the vector store, built from a :class:`Collection` (no I/O): DDL, the
binary COPY stage and upsert, deletes, and the per-group k-nearest query in its three
forms (index, index with settings raised, exact).

Every identifier is quoted by psycopg.sql; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import sql

from .filters import SqlFilter
from .spec import Collection, IndexKind, IndexSpec

__all__ = [
    "SPECS_DDL",
    "SPECS_TABLE",
    "SPEC_ADD",
    "SPEC_DELETE",
    "SPEC_GET",
    "SPEC_LIST",
    "SPEC_REPLACE",
    "STAGE",
    "Knn",
    "copy_sql",
    "count_sql",
    "delete_sql",
    "drop_index_ddl",
    "index_ddl",
    "knn",
    "knn_many",
    "metadata_index_ddl",
    "stage_ddl",
    "table_ddl",
    "upsert_sql",
    "vector_text",
]

# Each group keeps the specs of the collections (the same rows on every group): the
# collection's table lives there too, so a group alone says what its table is.
SPECS_TABLE = "mlscale_vector_collections"
SPECS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SPECS_TABLE} ("
    "name text PRIMARY KEY, spec jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)
SPEC_LIST = "SELECT spec FROM mlscale_vector_collections ORDER BY name"
SPEC_GET = "SELECT spec FROM mlscale_vector_collections WHERE name = %s"
SPEC_DELETE = "DELETE FROM mlscale_vector_collections WHERE name = %s"
SPEC_ADD = (
    "INSERT INTO mlscale_vector_collections (name, spec) VALUES (%s, %s) "
    "ON CONFLICT (name) DO NOTHING"
)
SPEC_REPLACE = (
    "INSERT INTO mlscale_vector_collections (name, spec) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec"
)
STAGE = "mlscale_vstage"


def _s(composed: sql.Composable) -> str:
    return composed.as_string(None)


def table_ddl(c: Collection) -> str:
    """The collection's table (one CREATE TABLE, sharded on ``id``)."""
    return _s(
        sql.SQL(
            "CREATE TABLE {t} (id {idt} PRIMARY KEY, embedding vector({dim}) NOT NULL, "
            "metadata jsonb NOT NULL DEFAULT '{{}}', updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(t=sql.Identifier(c.table), idt=sql.SQL(c.id_type.value), dim=sql.Literal(c.dim))
    )


def index_ddl(c: Collection, index: IndexSpec) -> str:
    """The vector index on the collection's table (run on every group's primary)."""
    options = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v))
        for k, v in index.with_options().items()
    )
    return _s(
        sql.SQL("CREATE INDEX {i} ON {t} USING {kind} (embedding {ops}) WITH ({o})").format(
            i=sql.Identifier(c.index_name),
            t=sql.Identifier(c.table),
            kind=sql.SQL(index.kind.value),
            ops=sql.SQL(c.metric.opclass),
            o=options,
        )
    )


def drop_index_ddl(c: Collection) -> str:
    """Drop the collection's vector index."""
    return _s(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(c.index_name)))


def metadata_index_ddl(c: Collection) -> str:
    """A GIN index on ``metadata`` (jsonb_path_ops: containment and jsonpath)."""
    return _s(
        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} USING gin (metadata jsonb_path_ops)").format(
            i=sql.Identifier(f"{c.table}_meta"), t=sql.Identifier(c.table)
        )
    )


def stage_ddl(c: Collection) -> str:
    """A temporary stage for one upsert transaction (dropped at commit)."""
    return _s(
        sql.SQL(
            "CREATE TEMP TABLE {s} (id {idt}, embedding vector({dim}), metadata jsonb) "
            "ON COMMIT DROP"
        ).format(s=sql.Identifier(STAGE), idt=sql.SQL(c.id_type.value), dim=sql.Literal(c.dim))
    )


def copy_sql() -> str:
    """The binary COPY into the stage."""
    return _s(
        sql.SQL("COPY {} (id, embedding, metadata) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(STAGE)
        )
    )


def upsert_sql(c: Collection) -> str:
    """Staged rows into the collection: new ids inserted, existing ones replaced (the
    stage holds each id once: the caller keeps the last of duplicates)."""
    return _s(
        sql.SQL(
            "INSERT INTO {t} (id, embedding, metadata) "
            "SELECT id, embedding, coalesce(metadata, '{{}}') FROM {s} "
            "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, "
            "metadata = EXCLUDED.metadata, updated_at = now()"
        ).format(t=sql.Identifier(c.table), s=sql.Identifier(STAGE))
    )


def count_sql(c: Collection) -> str:
    """The rows of the collection on one group."""
    return _s(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(c.table)))


def delete_sql(c: Collection) -> str:
    """Delete rows by id (one array parameter)."""
    return _s(
        sql.SQL("DELETE FROM {t} WHERE id = ANY(%s::{idt}[])").format(
            t=sql.Identifier(c.table), idt=sql.SQL(c.id_type.value)
        )
    )


@dataclass(frozen=True, slots=True)
class Knn:
    """One group's k-nearest statement: its text, parameters and transaction-local
    settings (``fetch_all(settings=...)``)."""

    sql: str
    params: tuple[object, ...]
    settings: Mapping[str, str]


def knn(
    c: Collection,
    vector_text: str,
    k: int,
    flt: SqlFilter | None,
    *,
    exact: bool,
    ef_search: int,
    probes: int,
    iterative: bool,
    with_metadata: bool,
) -> Knn:
    """The k nearest rows of one group to the vector (pgvector's text form).

    Index form: ``ORDER BY distance LIMIT k`` (the planner walks the HNSW or IVFFlat
    index), with ``ef_search`` (raised to k: a scan returns at most ef_search rows)
    or ``probes`` set for the statement, and, with ``iterative`` (pgvector >= 0.8),
    ``hnsw.iterative_scan = strict_order`` so a filter does not cut the scan short.
    Exact form: ``ORDER BY distance, id`` with index scans off: a full scan, ties
    broken by id, which the client's merge repeats -- the answer is exact."""
    columns = sql.SQL("id, embedding {op} %s::vector AS distance{meta}").format(
        op=sql.SQL(c.metric.operator),
        meta=sql.SQL(", metadata") if with_metadata else sql.SQL(""),
    )
    where = sql.SQL(" WHERE " + flt.sql) if flt is not None else sql.SQL("")
    order = sql.SQL("distance, id") if exact else sql.SQL("distance")
    text = _s(
        sql.SQL("SELECT {cols} FROM {t}{where} ORDER BY {order} LIMIT %s").format(
            cols=columns, t=sql.Identifier(c.table), where=where, order=order
        )
    )
    params: tuple[object, ...] = (vector_text, *(flt.params if flt else ()), k)
    settings: dict[str, str] = {}
    if exact:
        settings["enable_indexscan"] = "off"
    elif c.index is not None and c.index.kind is IndexKind.IVFFLAT:
        # (IVFFlat's iterative scan has only a relaxed order, which LIMIT could cut
        # wrongly: a short answer falls back to exact instead.)
        settings["ivfflat.probes"] = str(probes)
    else:
        settings["hnsw.ef_search"] = str(max(ef_search, k))
        if iterative and flt is not None:
            settings["hnsw.iterative_scan"] = "strict_order"
    return Knn(text, params, settings)


def knn_many(
    c: Collection,
    vector_texts: list[str],
    k: int,
    flt: SqlFilter | None,
    *,
    exact: bool,
    ef_search: int,
    probes: int,
    iterative: bool,
    with_metadata: bool,
) -> Knn:
    """:func:`knn` for many query vectors in one statement: each row of
    ``unnest(vectors) WITH ORDINALITY`` (1-based ``i``) joined LATERAL to its own k
    nearest rows (a parameterized index scan per query vector). Rows: (i, id,
    distance[, metadata])."""
    one = knn(
        c,
        "",
        k,
        flt,
        exact=exact,
        ef_search=ef_search,
        probes=probes,
        iterative=iterative,
        with_metadata=with_metadata,
    )
    # The single query's text (identifiers quoted there), its vector taken from the row.
    inner = one.sql.replace("%s::vector", "q.v::vector", 1)
    text = _s(
        sql.SQL(
            "SELECT q.i, r.* FROM unnest(%s::text[]) WITH ORDINALITY AS q(v, i) "
            "CROSS JOIN LATERAL ({}) AS r ORDER BY q.i"
        ).format(sql.SQL(inner))
    )
    return Knn(text, (vector_texts, *one.params[1:]), one.settings)


def vector_text(values: object) -> str:
    """A float32 vector as pgvector's text form, exactly: each float32 widened to a
    Python float prints its shortest repr, which parses back to the same float32."""
    return "[" + ",".join(map(repr, values)) + "]"  # type: ignore[call-overload]
