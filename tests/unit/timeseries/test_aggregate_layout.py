"""Aggregates parsed and merged across groups exactly (against numpy over all the
values), measurement names made table names, and the SQL built: identifiers
quoted, values bound, one statement per group; field columns named by kind."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from mlscale.core import dayparts
from mlscale.core.timeseries.aggregate import Agg, exact_percentiles, merge_partials
from mlscale.core.timeseries.batch import KIND_BOOL, KIND_FLOAT, KIND_INT, KIND_STR
from mlscale.core.timeseries.layout import MeasurementLayout
from mlscale.core.timeseries.spec import Measurement, field_column
from mlscale.errors import MetricsError


def test_aggregates_parse() -> None:
    assert Agg.parse("mean").kind == "mean"
    assert Agg.parse("p99").q == pytest.approx(0.99)
    assert Agg.parse("p99.9").q == pytest.approx(0.999)
    assert Agg.parse("p0").q == 0 and Agg.parse("p100").q == 1
    for bad in ("avg", "p", "p101", "p-1", "P50", "median"):
        with pytest.raises(MetricsError, match=r"unknown aggregate|outside"):
            Agg.parse(bad)


def _partials(values: list[float], agg: Agg) -> tuple[int, float | None]:
    a = np.asarray(values)
    extra = {"mean": a.sum(), "sum": a.sum(), "min": a.min(), "max": a.max(), "count": None}
    return len(values), extra[agg.kind]


@pytest.mark.parametrize("name", ["mean", "sum", "min", "max", "count"])
def test_partials_of_several_groups_merge_to_the_whole(name: str) -> None:
    agg = Agg.parse(name)
    rng = random.Random(5)
    # values of (tag, bucket) spread over three groups, some buckets on one group only
    whole: dict[tuple[str, int], list[float]] = {}
    parts: list[list[tuple[object, ...]]] = [[], [], []]
    for tag in ("a", "b"):
        for bucket in range(6):
            groups = rng.sample(range(3), rng.randint(1, 3))
            for g in groups:
                vals = [rng.uniform(-5, 5) for _ in range(rng.randint(1, 9))]
                whole.setdefault((tag, bucket), []).extend(vals)
                n, x = _partials(vals, agg)
                parts[g].append((tag, bucket, n) if x is None else (tag, bucket, n, x))
    tags, buckets, values, counts = merge_partials(parts, 1, agg)
    assert list(zip([t[0] for t in tags], buckets, strict=True)) == sorted(whole)
    for i, key in enumerate(sorted(whole)):
        vals = np.asarray(whole[key])
        want = {
            "mean": vals.mean(),
            "sum": vals.sum(),
            "min": vals.min(),
            "max": vals.max(),
            "count": len(vals),
        }[name]
        assert values[i] == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert counts[i] == len(vals)


@pytest.mark.parametrize("name", ["mean", "sum", "min", "max", "count", "p50"])
@pytest.mark.parametrize("keys", [0, 1])
def test_one_group_answering_is_read_as_merging_would(name: str, keys: int) -> None:
    agg = Agg.parse(name)
    rng = random.Random(7)
    rows: list[tuple[object, ...]] = []
    for tag in ("b", None, "a") if keys else ((),):
        for bucket in rng.sample(range(50), 20):
            n = rng.randint(1, 9)
            x = None if name == "count" else rng.uniform(-5, 5)
            head = (tag,) if keys else ()
            rows.append((*head, bucket, n) if x is None else (*head, bucket, n, x))
    fast = merge_partials([[], rows, []], keys, agg)  # one group answered: not merged
    # the general path: the same rows split over two groups, no bucket on both
    slow = merge_partials([rows[::2], rows[1::2]], keys, agg)
    assert fast[0] == slow[0] and fast[1] == slow[1]
    assert (fast[2] == slow[2]).all() and (fast[3] == slow[3]).all()
    assert fast[3].dtype == np.int64 and fast[2].dtype == np.float64
    empty = merge_partials([[], []], keys, agg)
    assert empty[0] == [] and len(empty[2]) == 0 and empty[3].dtype == np.int64


def test_percentiles_are_exact_over_arrays() -> None:
    a, b = [1.0, 5.0, 2.0], [10.0, 3.0]
    assert exact_percentiles([a, b], 0.5) == 3.0
    assert exact_percentiles([a, b], 0.9) == pytest.approx(np.percentile(a + b, 90))
    with pytest.raises(AssertionError, match="recomputed"):
        merge_partials([[("x", 1, 2, 0.5)], [("x", 1, 3, 0.7)]], 1, Agg.parse("p50"))


def test_measurement_tables() -> None:
    m = Measurement("CPU load, %")
    assert m.table.startswith("mlm_cpu_load_") and len(m.table) <= 36
    assert Measurement("x" * 200).table != Measurement("x" * 199 + "y").table
    assert m.partitioned == (m.table, f"{m.table}_1m", f"{m.table}_1h")
    assert Measurement("m", rollups=False).partitioned == (Measurement("m").table,)
    longest = dayparts.partition_name(Measurement("x" * 200).rollup_table("1m"), dt.date.today())
    assert len(longest) <= 63
    assert Measurement.from_spec(m.to_spec()) == m
    for bad in ({"name": ""}, {"name": "m", "retention_days": 0}, {"name": "m", "days_ahead": -1}):
        with pytest.raises(MetricsError):
            Measurement(**bad)  # type: ignore[arg-type]


def test_sql_quotes_identifiers_and_binds_values() -> None:
    m = Measurement('we"ird')
    layout = MeasurementLayout(m, {'lo"ss': KIND_FLOAT, "step": KIND_INT, "ok": KIND_BOOL})
    q = layout.downsample_sql('lo"ss', Agg.parse("mean"), ("run", "ho'st"), where=True)
    assert f'"{m.table}"' in q and "JOIN" in q
    assert "s.tags ->> 'ho''st'" in q  # a tag name is a quoted literal
    for param in ("%(start)s", "%(end)s", "%(every)s", "%(tags)s"):
        assert param in q
    # grouped on the tags and the bucket's timestamp, the bucket sent as microseconds
    assert "GROUP BY 1, 2, date_bin(%(every)s::interval" in q
    assert "(extract(epoch FROM date_bin(" in q and ")) * 1000000)::int8 AS bucket" in q
    one = layout.downsample_sql('lo"ss', Agg.parse("mean"), (), where=True, one_series=True)
    assert (
        'p".sid = ANY(ARRAY(SELECT %(sid)s::int8 WHERE NOT EXISTS' in one
        and "%(tags)s" not in one
        and "_series" not in one
    )
    assert f'"{m.tag_keys_table}" WHERE key <> ALL(%(keys)s::text[])' in one
    for read in (
        layout.range_sql(['lo"ss'], True, False, one_series=True),
        layout.last_sql(['lo"ss'], True, False, one_series=True),
        layout.rollup_sql("1m", Agg.parse("sum"), (), True, one_series=True),
    ):
        assert 'p".sid = ANY(ARRAY(SELECT %(sid)s::int8' in read and "%(tags)s" not in read
    col = '"p"."{}"'.format(field_column('lo"ss', KIND_FLOAT))
    plain = layout.downsample_sql('lo"ss', Agg.parse("max"), (), where=False)
    assert "JOIN" not in plain and "%(tags)s" not in plain and f"max({col})" in plain
    step = layout.downsample_sql("step", Agg.parse("sum"), (), where=False)
    assert f'"p"."{field_column("step", KIND_INT)}"::float8' in step
    pct = layout.downsample_sql('lo"ss', Agg.parse("p90"), (), where=False)
    assert "percentile_cont(0.9)" in pct
    raw = layout.downsample_sql('lo"ss', Agg.parse("p90"), (), where=False, raw_values=True)
    assert f"array_agg({col})" in raw
    with pytest.raises(MetricsError, match="cannot be read from a rollup"):
        layout.rollup_sql("1m", Agg.parse("p50"), (), False)
    assert "%(field)s" in layout.rollup_sql("1m", Agg.parse("sum"), (), False)
    assert "PRIMARY KEY (sid, ts)" in layout.points_ddl()
    assert "PARTITION BY RANGE (ts)" in layout.points_ddl()
    assert "ADD COLUMN IF NOT EXISTS" in layout.add_field_sql("x", KIND_STR)
    fill = layout.fill_minutes_sql()
    assert fill is not None and "'lo\"ss'" in fill and "'ok'" in fill
    assert MeasurementLayout(m, {"s": KIND_STR}).fill_minutes_sql() is None
    assert "COALESCE(EXCLUDED." in layout.upsert_sql(["step"])
    assert any("brin" in ddl for ddl in layout.index_ddl())
    assert set(layout.sharded_ddl()) == {
        m.table,
        m.series_table,
        m.rollup_table("1m"),
        m.rollup_table("1h"),
    }


def test_field_columns_fit_and_differ_by_kind() -> None:
    long = "x" * 300
    names = {field_column(n, k) for n in ("loss", "Loss", long, "é") for k in range(4)}
    assert len(names) == 16 and max(map(len, names)) <= 51
