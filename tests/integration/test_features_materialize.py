"""materialize() from Parquet (a file, a directory) and from a table on the cluster.

Source rows: 1,000 entities x 3 events (day 0, 1, 2, each plus ``id`` seconds). The
window [day 1 + 100 s, day 2 + 500 s) takes 900 rows of day 1 and 500 of day 2: its
edges fall on rows (the start's row in, the end's out). Counted against the
result, the progress callback, the history's rows, and read back online.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from mlscale import Cluster
from mlscale.errors import FeatureError
from mlscale.stores.features import Entity, Feature, FeatureStore, FeatureType, FeatureView
from tests.integration.features_help import row_counts, scratch_store, unique

pytestmark = pytest.mark.integration

IDS = 1_000
EVENTS = 3
BATCH_ROWS = 300
BASE = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=5)
START = BASE + dt.timedelta(days=1, seconds=100)
END = BASE + dt.timedelta(days=2, seconds=500)


@pytest.fixture(scope="module")
def store(cluster: Cluster) -> Iterator[FeatureStore]:
    with scratch_store(cluster) as s:
        yield s


def _source() -> pd.DataFrame:
    rng = np.random.default_rng(15)
    ids = np.tile(np.arange(IDS, dtype=np.int64), EVENTS)
    day = np.repeat(np.arange(EVENTS), IDS)
    return pd.DataFrame(
        {
            "user_id": ids,
            "event_ts": pd.to_datetime(BASE)
            + pd.to_timedelta(day, unit="D")
            + pd.to_timedelta(ids, unit="s"),
            "x": rng.standard_normal(ids.size).astype(np.float32),
            "n": rng.integers(0, 100, ids.size),
        }
    )


def _view(store: FeatureStore, prefix: str) -> FeatureView:
    return store.register(
        FeatureView(
            name=unique(prefix),
            entities=(Entity("user_id", "int8"),),
            features=(Feature("x"), Feature("n", FeatureType.INT)),
        )
    )


def _check(
    store: FeatureStore,
    view: FeatureView,
    source: str,
    frame: pd.DataFrame,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> int:
    """Materialize ``source`` in [start, end) and check it wrote exactly ``frame``'s rows
    in the window; the rows written."""
    ts = frame["event_ts"]
    lo, hi = (
        None if t is None else pd.Timestamp(t, tz="UTC") if t.tzinfo is None else pd.Timestamp(t)
        for t in (start, end)
    )
    keep = np.ones(len(frame), dtype=bool)
    if lo is not None:
        keep &= (ts >= lo).to_numpy()
    if hi is not None:
        keep &= (ts < hi).to_numpy()
    inside = frame[keep]
    assert row_counts(store, view.name) == (0, 0)
    seen: list[tuple[int, int]] = []
    res = store.materialize(
        view.name,
        source,
        start,
        end,
        batch_rows=BATCH_ROWS,
        progress=lambda rows, batches: seen.append((rows, batches)),
    )
    assert res.rows == len(inside)
    assert res.batches >= -(-len(inside) // BATCH_ROWS)
    assert seen and seen[-1] == (res.rows, res.batches) and len(seen) == res.batches
    online = inside["user_id"].nunique()
    assert row_counts(store, view.name) == (online, len(inside))
    # Online: each entity's newest event inside the window.
    newest = inside.sort_values("event_ts").groupby("user_id").tail(1).set_index("user_id")
    ids = np.arange(-5, IDS + 5, dtype=np.int64)
    got = store.get_online_features(f"{view.name}:*", ids, token=res.token)
    ok = np.isin(ids, newest.index)
    assert np.array_equal(got.present["x"], ok)
    np.testing.assert_array_equal(got.values["x"][ok], newest.loc[ids[ok], "x"].to_numpy())
    np.testing.assert_array_equal(got.values["n"][ok], newest.loc[ids[ok], "n"].to_numpy())
    return res.rows


def test_from_a_parquet_file(store: FeatureStore, tmp_path: Path) -> None:
    frame = _source()
    path = tmp_path / "features.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=700)
    assert _check(store, _view(store, "mat_file"), str(path), frame, START, END) == 1_400


def test_from_a_parquet_directory(store: FeatureStore, tmp_path: Path) -> None:
    frame = _source()
    folder = tmp_path / "parts"
    folder.mkdir()
    shuffled = frame.sample(frac=1.0, random_state=1)
    for k in range(4):
        part = shuffled.iloc[k * 750 : (k + 1) * 750]
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), folder / f"part-{k}.parquet"
        )
    assert _check(store, _view(store, "mat_dir"), str(folder), frame, START, END) == 1_400
    # Naive bounds are UTC; no bounds: everything.
    naive = (START.replace(tzinfo=None), END.replace(tzinfo=None))
    assert _check(store, _view(store, "mat_naive"), str(folder), frame, *naive) == 1_400
    assert _check(store, _view(store, "mat_all"), str(folder), frame, None, None) == 3_000


def test_from_a_table_on_the_cluster(store: FeatureStore, cluster: Cluster) -> None:
    frame = _source()
    view = _view(store, "mat_tab")
    table = unique("mat_src")
    cluster.create_sharded_table(
        f"CREATE TABLE {table} (user_id bigint NOT NULL, event_ts timestamptz NOT NULL, "
        "x real NOT NULL, n bigint NOT NULL, PRIMARY KEY (user_id, event_ts))",
        shard_key="user_id",
        family=view.family,
    )
    try:
        where = np.array([cluster.locate(view.family, int(k)) for k in frame["user_id"]])
        insert = (
            sql.SQL(
                "INSERT INTO {} SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::real[], "
                "%s::bigint[])"
            )
            .format(sql.Identifier(table))
            .as_string(None)
        )
        for group in sorted(set(where)):
            part = frame[where == group]
            cluster.as_written(group).execute(
                insert,
                (
                    part["user_id"].tolist(),
                    [t.to_pydatetime() for t in part["event_ts"]],
                    part["x"].tolist(),
                    part["n"].tolist(),
                ),
            )
        assert len(set(where)) == 2
        assert _check(store, view, table, frame, START, END) == 1_400
    finally:
        cluster.drop_sharded_table(table)


def test_bad_sources(store: FeatureStore, tmp_path: Path) -> None:
    view = _view(store, "mat_bad")
    with pytest.raises(FeatureError, match="no Parquet file or directory"):
        store.materialize(view.name, str(tmp_path / "absent.parquet"))
    path = tmp_path / "short.parquet"
    pq.write_table(pa.Table.from_pandas(_source().drop(columns=["n"]), preserve_index=False), path)
    with pytest.raises(FeatureError, match=r"lacks column\(s\) n"):
        store.materialize(view.name, str(path))
    assert row_counts(store, view.name) == (0, 0)
