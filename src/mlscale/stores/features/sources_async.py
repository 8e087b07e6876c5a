"""Where :meth:`AsyncFeatureStore.materialize` reads from: Parquet files or a table (async source).

Both yield pandas DataFrames of at most ``batch_rows`` rows with the view's columns,
event times in [start, end). A table is read in keyset order of the entity keys and
the event time (a total order of the rows a push takes: one per entity and time),
one page per statement, so a large table never sits in memory and a sharded one is
merged across its groups by the cluster. Not by every column: a float read back
through text is not the stored value, so a page's last row would compare greater
than itself and be read again.

``sources_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from psycopg import sql

from ...engine.cluster_async import AsyncCluster
from ...errors import FeatureError, QueryError

__all__ = ["batches_of"]


async def batches_of(
    cluster: AsyncCluster,
    source: str,
    columns: Sequence[str],
    timestamp_column: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    batch_rows: int,
    keys: Sequence[str],
) -> AsyncIterator[Any]:
    """DataFrames of ``source``'s ``columns`` (see the module docstring); ``keys``: the
    entity key columns (a table is paged by them and ``timestamp_column``)."""
    if batch_rows < 1:
        raise FeatureError("materialize: batch_rows must be at least 1")
    if source.endswith(".parquet") or os.path.isdir(source):
        for frame in _parquet(source, columns, timestamp_column, start, end, batch_rows):
            yield frame
        return
    async for frame in _table(
        cluster, source, columns, timestamp_column, start, end, batch_rows, keys
    ):
        yield frame


def _parquet(
    path: str,
    columns: Sequence[str],
    ts: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    batch_rows: int,
) -> Any:
    import pyarrow.dataset as ds

    if not os.path.exists(path):
        raise FeatureError(f"materialize: no Parquet file or directory at {path}")
    data = ds.dataset(path, format="parquet")
    missing = [c for c in columns if c not in data.schema.names]
    if missing:
        raise FeatureError(f"materialize: {path} lacks column(s) {', '.join(missing)}")
    cond = None
    if start is not None:
        cond = ds.field(ts) >= _utc(start)
    if end is not None:
        upper = ds.field(ts) < _utc(end)
        cond = upper if cond is None else cond & upper
    for batch in data.to_batches(columns=list(columns), filter=cond, batch_size=batch_rows):
        if batch.num_rows:
            yield batch.to_pandas()


def _utc(t: dt.datetime) -> Any:
    import pyarrow as pa

    aware = t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
    return pa.scalar(aware.astimezone(dt.UTC), type=pa.timestamp("us", tz="UTC"))


async def _table(
    cluster: AsyncCluster,
    table: str,
    columns: Sequence[str],
    ts: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    batch_rows: int,
    keys: Sequence[str],
) -> AsyncIterator[Any]:
    import pandas as pd

    name = sql.Identifier(*table.split(".", 1))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    # Keyset order: entity keys and event time (exact types, unique per pushed row).
    order_by = [*keys, ts]
    at = [columns.index(c) for c in order_by]
    order = sql.SQL(", ").join(map(sql.Identifier, order_by))
    bounds: list[sql.Composable] = []
    args: list[Any] = []
    if start is not None:
        bounds.append(sql.SQL("{} >= %s").format(sql.Identifier(ts)))
        args.append(start)
    if end is not None:
        bounds.append(sql.SQL("{} < %s").format(sql.Identifier(ts)))
        args.append(end)
    last: tuple[Any, ...] | None = None
    while True:
        where = list(bounds)
        params = list(args)
        if last is not None:
            where.append(
                sql.SQL("({}) > ({})").format(
                    order, sql.SQL(", ").join([sql.Placeholder()] * len(order_by))
                )
            )
            params += list(last)
        text = sql.SQL("SELECT {cols} FROM {t}{w} ORDER BY {order} LIMIT {n}").format(
            cols=cols,
            order=order,
            t=name,
            w=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
            n=sql.Literal(batch_rows),
        )
        try:
            rows = await cluster.fetch_all(text.as_string(None), params, consistency="strong")
        except QueryError as exc:
            if exc.sqlstate in ("42P01", "42703"):  # no such table / column
                raise FeatureError(f"materialize: source {table!r}: {exc}") from exc
            raise
        if not rows:
            return
        yield pd.DataFrame.from_records(rows, columns=list(columns))
        if len(rows) < batch_rows:
            return
        last = tuple(rows[-1][i] for i in at)
