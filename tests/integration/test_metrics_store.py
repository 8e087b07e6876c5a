"""The metrics store on the session cluster (2 shard groups x 2 replicas): downsampled
buckets equal a pandas reference (several aggregates and bucket widths, series on
both groups, grouped and filtered by tags), rollups equal a recomputation after late
out-of-order points, retention drops whole partitions (gone from pg_inherits), and
line protocol round-trips with its types and escapes; a bad line writes nothing; a
point written again merges field by field; a field's type is fixed. A read whose
``where`` names every tag key asks one group (counted by the store's read stats), a
``where`` matching series of both groups asks both, a tag key another store adds
since is seen, and a measurement whose keys were never recorded asks every group.

Reads pass consistency="strong" (the points were just written). The module puts the
sharding catalog back as it found it and drops its measurements."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from mlscale import AsyncCluster, Cluster
from mlscale.core.dayparts import PARTITIONS_SQL, partition_name
from mlscale.core.timeseries.batch import series_id, series_key
from mlscale.core.timeseries.spec import FAMILY
from mlscale.errors import LineProtocolError, MeasurementNotFound, MetricsError
from mlscale.stores.metrics import (
    AsyncMetricStore,
    Measurement,
    MetricStore,
    Point,
    ReadStats,
)
from tests.integration.sharding_cleanup import restore_sharding

pytestmark = pytest.mark.integration

STRONG = {"consistency": "strong"}
DAY = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
RUNS = ("r0", "r1", "r2", "r3")
HOSTS = ("h0", "h1")
N = 6_000  # points per series


@pytest.fixture(scope="module")
def store(cluster: Cluster) -> Iterator[MetricStore]:
    before = cluster.refresh_shards()
    s = MetricStore(cluster)
    try:
        yield s
    finally:
        try:
            for m in s.measurements():
                if m.name.startswith("it_"):
                    s.drop(m)
        finally:
            restore_sharding(cluster, before)


@pytest.fixture(scope="module")
def curves(store: MetricStore) -> pd.DataFrame:
    """Training curves of 8 series (4 runs x 2 hosts) over 2 days, written as line
    protocol in shuffled order; the reference frame of what was written."""
    rng = np.random.default_rng(18)
    frames = []
    for run in RUNS:
        for host in HOSTS:
            # irregular times over two days, microsecond resolution
            offsets = np.sort(rng.choice(2 * 86_400_000_000, N, replace=False))
            frames.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "host": host,
                        "ts_us": int(DAY.timestamp()) * 1_000_000 + offsets,
                        "loss": np.round(rng.gamma(2.0, 0.5, N), 6),
                        "step": np.arange(N),
                    }
                )
            )
    df = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)
    lines = [
        f"it_train,run={r},host={h} loss={loss!r},step={step}i {ts}000"
        for r, h, ts, loss, step in zip(
            df.run, df.host, df.ts_us.tolist(), df.loss.tolist(), df.step.tolist(), strict=True
        )
    ]
    got = store.write_lines("\n".join(lines))
    assert got.points == len(df) and got.values == 2 * len(df) and got.series == 8
    assert len(got.groups) == 2, "the series should land on both groups"
    return df.reset_index(drop=True)


def _reference(
    df: pd.DataFrame,
    every: dt.timedelta,
    agg: str,
    group_by: tuple[str, ...],
    start: dt.datetime,
    end: dt.datetime,
) -> pd.DataFrame:
    width = int(every.total_seconds() * 1_000_000)
    lo, hi = int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)
    part = df[(df.ts_us >= lo) & (df.ts_us < hi)].copy()
    part["bucket"] = (part.ts_us // width) * width
    keys = [*group_by, "bucket"]
    grouped = part.groupby(keys, sort=True)["loss"]
    # quantile: linear interpolation, as percentile_cont
    value = grouped.quantile(float(agg[1:]) / 100) if agg.startswith("p") else grouped.agg(agg)
    out = pd.DataFrame({"value": value, "count": grouped.size()}).reset_index()
    out["time"] = pd.to_datetime(out.bucket, unit="us", utc=True)
    return out[[*group_by, "time", "value", "count"]]


@pytest.mark.parametrize("every_s", [60, 7 * 60, 3_600])
@pytest.mark.parametrize("agg", ["mean", "min", "max", "sum", "count", "p50", "p95"])
@pytest.mark.parametrize("group_by", [(), ("run",), ("run", "host")])
def test_downsample_equals_pandas(
    store: MetricStore, curves: pd.DataFrame, every_s: int, agg: str, group_by: tuple[str, ...]
) -> None:
    every = dt.timedelta(seconds=every_s)
    start, end = DAY + dt.timedelta(hours=3, seconds=17), DAY + dt.timedelta(hours=40)
    got = store.downsample(
        "it_train", "loss", start, end, every, agg, group_by=group_by, **STRONG
    ).to_frame()
    want = _reference(curves, every, agg, group_by, start, end)
    assert len(got) == len(want)
    for tag in group_by:
        assert got[tag].tolist() == want[tag].tolist()
    assert (got.time.values == want.time.values).all()
    assert got["count"].tolist() == want["count"].tolist()
    np.testing.assert_allclose(got.value.to_numpy(), want.value.to_numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("agg", ["mean", "p90"])
def test_downsample_filtered_by_tags(store: MetricStore, curves: pd.DataFrame, agg: str) -> None:
    every = dt.timedelta(minutes=10)
    start, end = DAY, DAY + dt.timedelta(days=2)
    got = store.downsample(
        "it_train", "loss", start, end, every, agg, where={"run": "r2", "host": "h1"}, **STRONG
    ).to_frame()
    sub = curves[(curves.run == "r2") & (curves.host == "h1")]
    want = _reference(sub, every, agg, (), start, end)
    assert got["count"].tolist() == want["count"].tolist()
    np.testing.assert_allclose(got.value.to_numpy(), want.value.to_numpy(), rtol=1e-9)
    none = store.downsample("it_train", "loss", start, end, every, where={"run": "nope"}, **STRONG)
    assert len(none) == 0


def test_rollups_equal_a_recomputation_after_late_points(store: MetricStore) -> None:
    store.create(Measurement("it_sys", retention_days=None))
    base = DAY + dt.timedelta(hours=5)
    rng = np.random.default_rng(3)
    first = [
        Point("it_sys", {"cpu": float(rng.uniform(0, 100))}, {"host": f"h{i % 5}"},
              base + dt.timedelta(seconds=int(s)))
        for i, s in enumerate(rng.integers(0, 4 * 3600, 4_000))
    ]  # fmt: skip
    store.write(first)
    refreshed = store.refresh_rollups("it_sys")
    assert sum(refreshed.minutes["it_sys"].values()) > 0
    start, end = base - dt.timedelta(hours=1), base + dt.timedelta(hours=6)

    def check() -> None:
        for level, every in (("1m", dt.timedelta(minutes=1)), ("1h", dt.timedelta(hours=1))):
            for agg in ("mean", "min", "max", "sum", "count"):
                for group_by in ((), ("host",)):
                    roll = store.rollup(
                        "it_sys",
                        "cpu",
                        start,
                        end,
                        level=level,
                        agg=agg,
                        group_by=group_by,
                        **STRONG,
                    )
                    raw = store.downsample(
                        "it_sys", "cpu", start, end, every, agg, group_by=group_by, **STRONG
                    )
                    assert roll.tags == raw.tags and (roll.times == raw.times).all()
                    assert (roll.counts == raw.counts).all()
                    np.testing.assert_allclose(roll.values, raw.values, rtol=1e-9)

    check()
    # Late points, out of order, into minutes and hours already rolled up, one of them
    # a new value for a time already written (it replaces the old one).
    late = [
        Point("it_sys", {"cpu": 1000.0 + i}, {"host": f"h{i % 7}"},
              base + dt.timedelta(seconds=int(s)))
        for i, s in enumerate(rng.integers(0, 4 * 3600, 300)[::-1])
    ]  # fmt: skip
    late.append(Point("it_sys", {"cpu": -5.0}, dict(first[0].tags), first[0].time))
    store.write(late)
    stale = store.rollup("it_sys", "cpu", start, end, level="1h", agg="max", **STRONG)
    assert stale.values.max() < 1000  # not refreshed yet
    refreshed = store.refresh_rollups("it_sys")
    assert 0 < sum(refreshed.minutes["it_sys"].values()) <= 301  # only the dirty minutes
    check()
    assert (
        store.rollup("it_sys", "cpu", start, end, level="1h", agg="min", **STRONG).values.min()
        == -5.0
    )
    again = store.refresh_rollups("it_sys")
    assert sum(again.minutes["it_sys"].values()) == 0


def test_retention_drops_whole_partitions(store: MetricStore, cluster: Cluster) -> None:
    m = store.create(Measurement("it_retained", retention_days=2, days_ahead=0))
    today = DAY + dt.timedelta(days=10)
    days = [today - dt.timedelta(days=d) for d in range(5)]
    written = store.write(
        [Point("it_retained", {"v": float(i)}, {"host": f"h{j}"}, d + dt.timedelta(hours=1))
         for i, d in enumerate(days) for j in range(16)]
    )  # fmt: skip
    assert len(written.groups) == 2

    def partitions(table: str) -> dict[str, set[str]]:
        return {
            g: {r[0] for r in cluster.as_written(g).fetch_all(PARTITIONS_SQL, (table,), **STRONG)}
            for g in store.groups
        }

    old = [partition_name(t, (today - dt.timedelta(days=d)).date()) for t in m.partitioned
           for d in (2, 3, 4)]  # fmt: skip
    for names in partitions(m.table).values():
        assert {n for n in old if n.startswith(m.table + "_d")} <= names
    got = store.apply_retention(now=today + dt.timedelta(hours=12))
    assert got.before["it_retained"] == (today - dt.timedelta(days=1)).date()
    assert got.days["it_retained"] == tuple(sorted(d.date() for d in days[2:]))
    for group in store.groups:
        assert set(old) <= set(got.dropped["it_retained"][group])
    for table in m.partitioned:
        for names in partitions(table).values():
            assert not set(old) & names  # gone from pg_inherits
            assert partition_name(table, today.date()) in names
    rows = store.range("it_retained", days[-1], today + dt.timedelta(days=1), **STRONG)
    assert sorted({t.date() for t in rows.times}) == [days[1].date(), today.date()]
    assert len(rows) == 32


def test_line_protocol_round_trip(store: MetricStore) -> None:
    t0 = int((DAY + dt.timedelta(hours=2)).timestamp())
    head = "it_lp\\ x,host=a\\ b,path=C:\\dir,k\\=1=v\\,2"
    text = "\n".join(
        [
            f'{head} f=1.5,i=-3i,b=t,s="say \\"hi\\", ok" {t0}',
            f"{head} f=2e-3,i=9223372036854775807i {t0 + 1}",
            "",
            f"it_lp\\ x,host=z f=-0.25,b=FALSE {t0 + 2}",
        ]
    )
    got = store.write_lines(text, precision="s")
    assert (got.points, got.values) == (3, 8)
    rows = store.range("it_lp x", DAY, DAY + dt.timedelta(days=1), **STRONG)
    both = zip(rows.keys, rows.fields, rows.times, rows.values, strict=True)
    seen = {(k, f, t, v if not isinstance(v, bool) else ("bool", v)) for k, f, t, v in both}
    # the canonical key: tags sorted, escaped (a literal backslash too)
    key_a = "it_lp\\ x,host=a\\ b,k\\=1=v\\,2,path=C:\\\\dir"
    ts = [dt.datetime.fromtimestamp(t0 + i, dt.UTC) for i in range(3)]
    assert seen == {
        (key_a, "f", ts[0], 1.5),
        (key_a, "i", ts[0], -3),
        (key_a, "b", ts[0], ("bool", True)),
        (key_a, "s", ts[0], 'say "hi", ok'),
        (key_a, "f", ts[1], 0.002),
        (key_a, "i", ts[1], 2**63 - 1),
        ("it_lp\\ x,host=z", "f", ts[2], -0.25),
        ("it_lp\\ x,host=z", "b", ts[2], ("bool", False)),
    }
    assert rows.tags[0]["host"] in ("a b", "z")
    assert {type(v) for v in rows.values} == {float, int, bool, str}
    last = store.last("it_lp x", field="f", **STRONG)
    assert [(x.key, x.value) for x in last] == [(key_a, 0.002), ("it_lp\\ x,host=z", -0.25)]


def test_a_bad_line_writes_nothing(store: MetricStore) -> None:
    t0 = int(DAY.timestamp())
    good = "\n".join(f"it_bad,host=h{i} v={i} {t0 + i}" for i in range(50))
    with pytest.raises(LineProtocolError, match="line 51: invalid field value") as info:
        store.write_lines(good + "\nit_bad,host=x v=oops", precision="s")
    assert info.value.line == 51
    with pytest.raises(MeasurementNotFound):
        store.range("it_bad", DAY, DAY + dt.timedelta(days=1))


def test_points_merge_by_field_and_types_are_fixed(store: MetricStore) -> None:
    t0 = int((DAY + dt.timedelta(hours=3)).timestamp())
    store.write_lines(f"it_merge,host=a x=1,y=2i {t0}\nit_merge,host=a x=5 {t0 + 1}", "s")
    # Again at t0: x replaced, y kept, a new field z (its column added on every group).
    store.write_lines(f"it_merge,host=a x=3,z=true {t0}", "s")
    rows = store.range("it_merge", DAY, DAY + dt.timedelta(days=1), **STRONG)
    ts = [dt.datetime.fromtimestamp(t0 + i, dt.UTC) for i in range(2)]
    got = set(zip(rows.fields, rows.times, rows.values, strict=True))
    assert got == {("x", ts[0], 3.0), ("y", ts[0], 2), ("z", ts[0], True), ("x", ts[1], 5.0)}
    last = store.last("it_merge", **STRONG)
    assert [(x.field, x.time, x.value) for x in last] == [
        ("x", ts[1], 5.0), ("y", ts[0], 2), ("z", ts[0], True)
    ]  # fmt: skip
    with pytest.raises(MetricsError, match="'y' of 'it_merge' is integer"):
        store.write_lines(f"it_merge,host=b y=1.5 {t0}", "s")
    with pytest.raises(MetricsError, match="both float and integer"):
        store.write_lines(f"it_merge,host=b w=1 {t0}\nit_merge,host=b w=1i {t0 + 1}", "s")
    assert len(store.range("it_merge", DAY, DAY + dt.timedelta(days=1), **STRONG)) == 4
    other = MetricStore(store.cluster)  # another process's view: types from the catalog
    with pytest.raises(MetricsError, match="is integer"):
        other.write_lines(f"it_merge,host=c y=2.5 {t0}", "s")
    assert len(other.downsample("it_merge", "z", DAY, DAY + dt.timedelta(days=1),
                                dt.timedelta(days=1), "sum", **STRONG)) == 1  # fmt: skip


def test_async_store(cluster: Cluster, curves: pd.DataFrame) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncCluster(cluster.config) as ac:
            s = AsyncMetricStore(ac)
            await s.write_lines(f"it_train,run=r9,host=h9 loss=1.0 {int(DAY.timestamp())}", "s")
            b = await s.downsample(
                "it_train",
                "loss",
                DAY,
                DAY + dt.timedelta(days=2),
                dt.timedelta(days=1),
                "count",
                **STRONG,
            )
            return len(b), int(b.counts.sum())

    buckets, count = asyncio.run(main())
    assert buckets == 2 and count == len(curves) + 1


T0 = int((DAY + dt.timedelta(hours=2)).timestamp())  # seconds
WHOLE = (DAY, DAY + dt.timedelta(days=1))


def _pin_data(store: MetricStore, name: str) -> None:
    """8 series (run r0..r3 x host h0, h1), two points each; x = 10 run + host + 0.5."""
    store.write_lines(
        "\n".join(
            f"{name},run=r{r},host=h{h} x={10 * r + h + 0.5},n={r}i {t}"
            for r in range(4)
            for h in range(2)
            for t in (T0, T0 + 60)
        ),
        "s",
    )


def _asked(before: ReadStats, after: ReadStats) -> tuple[int, int, int, int]:
    """Statements sent, groups asked, reads answered by one series' group and reads
    of one series asked again of every group, between two stats."""
    return (
        after.reads - before.reads,
        after.groups_asked - before.groups_asked,
        after.one_series - before.one_series,
        after.asked_again - before.asked_again,
    )


def _groups_of(store: MetricStore, name: str, tag_sets: list[dict[str, str]]) -> set[str]:
    shard_map = store.cluster.shards().map_of(FAMILY)
    return {shard_map.locate(series_id(series_key(name, t.items()))) for t in tag_sets}


def test_where_naming_every_tag_key_asks_one_group(store: MetricStore) -> None:
    _pin_data(store, "it_pin")
    day = dt.timedelta(days=1)
    where = {"run": "r1", "host": "h0"}
    for agg, want in (("sum", 21.0), ("mean", 10.5), ("count", 2.0), ("p50", 10.5)):
        before = store.read_stats()
        got = store.downsample("it_pin", "x", *WHOLE, day, agg, where=where, **STRONG)
        assert _asked(before, store.read_stats()) == (1, 1, 1, 0)
        assert got.values.tolist() == [want] and got.counts.tolist() == [2]
    before = store.read_stats()
    rows = store.range("it_pin", *WHOLE, where=where, **STRONG)
    last = store.last("it_pin", where=where, **STRONG)
    assert _asked(before, store.read_stats()) == (2, 2, 2, 0)
    assert sorted(set(rows.values)) == [1, 10.5] and len(rows) == 4
    assert [(x.field, x.value) for x in last] == [("n", 1), ("x", 10.5)]
    assert set(rows.keys) == {"it_pin,host=h0,run=r1"}
    store.refresh_rollups("it_pin")
    before = store.read_stats()
    roll = store.rollup("it_pin", "x", *WHOLE, level="1h", agg="sum", where=where, **STRONG)
    assert _asked(before, store.read_stats()) == (1, 1, 1, 0)
    assert roll.values.tolist() == [21.0]
    # A key no series has: one series' id, no rows there -- so every group asked again.
    before = store.read_stats()
    none = store.downsample("it_pin", "x", *WHOLE, day, where={**where, "zone": "z"}, **STRONG)
    total = len(store.groups)
    assert len(none) == 0 and _asked(before, store.read_stats()) == (2, 1 + total, 0, 1)


def test_where_matching_series_of_both_groups_asks_both(store: MetricStore) -> None:
    _pin_data(store, "it_pin2")
    candidates = [{"host": f"h{h}"} for h in range(2)] + [{"run": f"r{r}"} for r in range(4)]
    total = len(store.groups)

    def series(where: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"run": f"r{r}", "host": f"h{h}"}
            for r in range(4)
            for h in range(2)
            if all({"run": f"r{r}", "host": f"h{h}"}[k] == v for k, v in where.items())
        ]

    spread = [w for w in candidates if len(_groups_of(store, "it_pin2", series(w))) == total]
    assert spread, "some tag value should match series of both groups"
    for where in spread:
        before = store.read_stats()
        got = store.downsample(
            "it_pin2", "x", *WHOLE, dt.timedelta(days=1), "sum", where=where, **STRONG
        )
        assert _asked(before, store.read_stats()) == (1, total, 0, 0)
        want = sum(2 * (10 * int(t["run"][1]) + int(t["host"][1]) + 0.5) for t in series(where))
        assert got.values.tolist() == [pytest.approx(want, rel=1e-12)]
        assert got.counts.tolist() == [2 * len(series(where))]


def test_a_tag_key_added_elsewhere_is_seen(store: MetricStore) -> None:
    _pin_data(store, "it_pin3")
    where = {"run": "r2", "host": "h1"}
    day = dt.timedelta(days=1)
    got = store.downsample("it_pin3", "x", *WHOLE, day, "count", where=where, **STRONG)
    assert got.counts.tolist() == [2]  # this store now knows the keys run, host
    other = MetricStore(store.cluster)  # another process: a series with one more key
    other.write_lines(f"it_pin3,run=r2,host=h1,zone=z x=7 {T0}", "s")
    total = len(store.groups)
    # This store's keys are old: the group refuses (no rows), every group is asked.
    before = store.read_stats()
    got = store.downsample("it_pin3", "x", *WHOLE, day, "count", where=where, **STRONG)
    assert got.counts.tolist() == [3]
    assert _asked(before, store.read_stats()) == (2, 1 + total, 0, 1)
    before = store.read_stats()
    both = store.downsample(
        "it_pin3", "x", *WHOLE, day, "sum", where={**where, "zone": "z"}, **STRONG
    )
    assert both.values.tolist() == [7.0]
    after = store.read_stats()  # the keys looked up again, then one group asked
    assert _asked(before, after) == (1, 1, 1, 0)
    assert after.tag_key_lookups == before.tag_key_lookups + 1
    # Missing a key known here: every group, without looking the keys up again.
    before = store.read_stats()
    store.downsample("it_pin3", "x", *WHOLE, day, "count", where=where, **STRONG)
    after = store.read_stats()
    assert after.tag_key_lookups == before.tag_key_lookups
    assert _asked(before, after) == (1, total, 0, 0)


def test_keys_never_recorded_ask_every_group(store: MetricStore) -> None:
    store.create(Measurement("it_pin4"))
    with store.cluster.connection("control") as conn:
        # as a measurement recorded before tag keys were kept
        conn.execute(
            "UPDATE mlscale_catalog.metric_measurements SET spec = spec - 'tag_keys' "
            "WHERE name = %s",
            ("it_pin4",),
        )
    fresh = MetricStore(store.cluster)
    _pin_data(fresh, "it_pin4")
    with store.cluster.connection("control") as conn:
        spec = conn.execute(
            "SELECT spec FROM mlscale_catalog.metric_measurements WHERE name = %s", ("it_pin4",)
        ).fetchone()
    assert spec is not None and "tag_keys" not in spec[0]  # a write does not make it up
    before = fresh.read_stats()
    got = fresh.downsample(
        "it_pin4", "x", *WHOLE, dt.timedelta(days=1), "sum",
        where={"run": "r3", "host": "h1"}, **STRONG,
    )  # fmt: skip
    assert got.values.tolist() == [63.0]
    assert _asked(before, fresh.read_stats()) == (1, len(fresh.groups), 0, 0)
