"""``mlscale features list|describe|materialize`` against the session cluster, run as a
user runs them (a subprocess): what they print, their JSON, and their errors."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlscale import Cluster, LocalCluster
from mlscale.stores.features import Entity, Feature, FeatureStore, FeatureType, FeatureView
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

ROWS = 1_000
# An hour a row, the newest 2 days old: within the view's TTL of 60 days, over 2 or 3 months.
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
T0 = NOW - dt.timedelta(hours=ROWS + 48)
TTL_S = 60 * 86400.0


@pytest.fixture()
def view(cluster: Cluster, sharding_restored: None) -> Iterator[FeatureView]:
    """A registered view of its own name, dropped after the test."""
    name = f"cli_{uuid.uuid4().hex[:8]}"
    fv = FeatureView(
        name,
        entities=(Entity("user_id", "int8"),),
        features=(
            Feature("clicks"),
            Feature("spend", description="30 days, EUR"),
            Feature("visits", FeatureType.INT),
            Feature("vip", FeatureType.BOOL),
        ),
        ttl_s=TTL_S,
        owner="cli-test",
        description="the CLI's test view",
    )
    store = FeatureStore(cluster)
    store.register(fv)
    try:
        yield fv
    finally:
        store.drop(fv.name, fv.version)


def _frame(n: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "event_ts": [T0 + dt.timedelta(hours=i) for i in range(n)],
            "clicks": rng.random(n, dtype=np.float32),
            "spend": rng.random(n, dtype=np.float32),
            "visits": rng.integers(0, 100, n),
            "vip": rng.random(n) < 0.1,
        }
    )


def _cli(local_cluster: LocalCluster, *args: str) -> tuple[int, str, str]:
    res = run_cli("features", *args, "--config", str(local_cluster.layout.config), timeout=120)
    return res.returncode, res.stdout, res.stderr


def test_list_and_describe(local_cluster: LocalCluster, view: FeatureView) -> None:
    rc, out, err = _cli(local_cluster, "list")
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith(view.name + " "))
    assert line.split()[:5] == [view.name, "1", "user_id:int8", "4", "60d"], line
    assert "cli-test" in line

    rc, out, err = _cli(local_cluster, "list", "--json")
    assert rc == 0, err
    mine = [v for v in json.loads(out) if v["name"] == view.name]
    assert mine == [
        {
            "name": view.name,
            "version": 1,
            "entities": ["user_id:int8"],
            "features": 4,
            "ttl_s": TTL_S,
            "owner": "cli-test",
            "family": view.name,
        }
    ]

    rc, out, err = _cli(local_cluster, "describe", view.name)
    assert rc == 0, err
    for text in (
        f"feature view {view.name} version 1",
        "owner: cli-test; ttl: 60d",
        "user_id (int8)",
        "spend: float - 30 days, EUR",
        "visits: int",
        "vip: bool",
        f"online fv_{view.name}_v1, history fvh_{view.name}_v1",
    ):
        assert text in out, out
    for group in (g.name for g in local_cluster.config().shard_groups):
        assert any(x.strip().startswith(group + " ") for x in out.splitlines()), out

    rc, out, err = _cli(local_cluster, "describe", view.name, "--version", "1", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert FeatureView.from_spec(doc["view"]) == view
    assert doc["online_table"] == f"fv_{view.name}_v1"
    assert sum(doc["online_rows"].values()) == 0


def test_materialize_parquet_then_table(
    local_cluster: LocalCluster, cluster: Cluster, view: FeatureView, tmp_path: Path
) -> None:
    frame = _frame()
    path = tmp_path / "stats.parquet"
    frame.to_parquet(path)
    # [start, end) keeps hours 100..599 of the 1,000.
    start, end = T0 + dt.timedelta(hours=100), T0 + dt.timedelta(hours=600)
    rc, out, err = _cli(
        local_cluster,
        "materialize",
        view.name,
        str(path),
        "--start",
        start.isoformat(),
        "--end",
        end.replace(tzinfo=None).isoformat(),  # naive: UTC
        "--batch-rows",
        "150",
    )
    assert rc == 0, err
    assert f"materialized 500 rows into {view.name} in 4 batches" in out, out
    assert "rows/s" in out
    progress = [x for x in err.splitlines() if x.startswith(f"materialize {view.name}:")]
    assert len(progress) == 4 and "500 rows in 4 batches" in progress[-1], err

    store = FeatureStore(cluster)
    info = store.describe(view.name)
    assert sum(info.online_rows.values()) == 500
    assert sum(info.history_rows.values()) == 500
    got = store.get_online_features(
        [f"{view.name}:clicks", f"{view.name}:visits"], [99, 100, 599, 600], consistency="strong"
    )
    assert got.present["clicks"].tolist() == [False, True, True, False]
    assert got.values["visits"][1] == frame["visits"][100]

    # From a table on the cluster, as JSON; all of it.
    table = f"src_{view.name}"
    cluster.execute(
        f"CREATE TABLE {table} (user_id bigint, event_ts timestamptz, clicks real, "
        "spend real, visits bigint, vip boolean)"
    )
    try:
        cluster.copy(f"COPY {table} FROM STDIN", frame.itertuples(index=False, name=None))
        rc, out, err = _cli(local_cluster, "materialize", view.name, table, "--json", "--quiet")
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["rows"] == ROWS and doc["view"] == view.name and doc["rows_per_s"] > 0
        assert err.strip() == ""
    finally:
        cluster.execute(f"DROP TABLE IF EXISTS {table}")
    info = store.describe(view.name)
    assert sum(info.online_rows.values()) == ROWS
    assert sum(info.history_rows.values()) == ROWS  # the same events again: replaced


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("describe", "no_such_view"), 2, "unknown feature view 'no_such_view'"),
        (("materialize", "no_such_view", "x.parquet"), 2, "unknown feature view"),
        (("materialize", "{view}", "/nonexistent/x.parquet"), 2, "no Parquet file"),
        (("describe", "{view}", "--version", "7"), 2, "version 7"),
        (("materialize", "{view}", "x.parquet", "--start", "yesterday"), 2, "ISO 8601"),
        (
            ("materialize", "{view}", "x.parquet", "--start", "2024-05-01", "--end", "2024-04-01"),
            2,
            "is not before --end",
        ),
    ],
)
def test_errors_are_one_line_and_exit_2(
    local_cluster: LocalCluster, view: FeatureView, args: tuple[str, ...], code: int, fragment: str
) -> None:
    rc, out, err = _cli(local_cluster, *(a.format(view=view.name) for a in args))
    assert rc == code, (out, err)
    assert fragment in err, err
    if err.startswith("mlscale: error:"):
        assert len(err.strip().splitlines()) == 1, err
