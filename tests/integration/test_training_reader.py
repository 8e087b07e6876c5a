"""The training-data reader against a real 4-group cluster: every row read exactly
once (counted) across 2 ranks x 3 workers, the same seed giving the same order,
resuming without gaps or repeats, NULLs, text, arrays and a join decoded right.

The map is deliberately uneven so units straddle group boundaries (units read in
two pieces, from two groups).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mlscale import Cluster, LocalCluster
from mlscale.core.shardmaps import KeyFamily, SlotMap, SlotRange
from mlscale.engine.cluster_async import AsyncCluster
from mlscale.errors import ConfigError, RoutingError
from mlscale.local.tempdirs import reachable_tempdir
from mlscale.stores.training import (
    AsyncTrainingReader,
    Batch,
    Split,
    TrainingDataset,
    TrainingReader,
)

ROWS = 6000
FAMILY = "tr_users"
GROUPS = ("g0", "g1", "g2", "g3")
RANGES = ((0, 1000), (1001, 2047), (2048, 3300), (3301, 4095))
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
TEXT_FAMILY = "tr_names"
NAMED = 1500


def _row(i: int) -> tuple[Any, ...]:
    x = None if i % 7 == 0 else float(i % 100) / 4  # exact in float4
    name = None if i % 11 == 0 else f"n{i}é"
    return (i, x, i * 0.5, i % 10, name, EPOCH + dt.timedelta(seconds=i),
            [float(i), float(-i)] if i % 5 else None)


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    base = reachable_tempdir("mlscale-train-")
    cluster = LocalCluster(base / "c")
    try:
        cluster.up(shards=4, replicas=0, redis=False)
        yield cluster
    finally:
        try:
            cluster.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.from_file(local.layout.config) as c:
        ranges = tuple(SlotRange(a, b, g) for (a, b), g in zip(RANGES, GROUPS, strict=True))
        c.create_shard_map(SlotMap(KeyFamily.of(FAMILY, "int8"), GROUPS, ranges))
        c.create_sharded_table(
            "CREATE TABLE tr_items (id int8 PRIMARY KEY, x float4, y float8 NOT NULL, "
            "label int4 NOT NULL, name text, at timestamptz, vec float4[])",
            shard_key="id", family=FAMILY,
        )
        c.create_sharded_table(
            "CREATE TABLE tr_extra (id int8 PRIMARY KEY, z float8)", shard_key="id", family=FAMILY
        )
        c.copy("COPY tr_items (id, x, y, label, name, at, vec) FROM STDIN",
               [_row(i) for i in range(1, ROWS + 1)])
        c.copy("COPY tr_extra (id, z) FROM STDIN", [(i, i * 2.0) for i in range(1, ROWS + 1, 3)])
        c.create_shard_map(SlotMap.even(KeyFamily.of(TEXT_FAMILY, "text"), GROUPS))
        c.create_sharded_table("CREATE TABLE tr_named (name text PRIMARY KEY, v float8)",
                               shard_key="name", family=TEXT_FAMILY)
        c.copy("COPY tr_named (name, v) FROM STDIN",
               [(f"k{i}", None if i % 9 == 0 else i / 2) for i in range(NAMED)])
        yield c


NUMERIC = ["id", "x", "y", "label"]


def _ids(batches: list[Batch]) -> list[int]:
    return [int(v) for b in batches for v in b.columns["id"]]


def test_one_reader_reads_every_row_once_with_the_right_values(cluster: Cluster) -> None:
    batches = list(TrainingReader(cluster, "tr_items", columns=NUMERIC, batch_size=1000))
    ids = _ids(batches)
    assert sorted(ids) == list(range(1, ROWS + 1))
    assert all(b.rows == 1000 for b in batches[:-1])
    for b in batches:
        assert b.columns["x"].dtype == np.float32 and b.columns["label"].dtype == np.int32
        assert set(b.valid) == {"x"}  # id, y, label are NOT NULL
        for i, x, ok, y in zip(b.columns["id"], b.columns["x"], b.valid["x"], b.columns["y"],
                               strict=True):
            want = _row(int(i))
            assert (bool(ok), y) == (want[1] is not None, want[2])
            assert x == (want[1] if want[1] is not None else 0.0)


def test_text_time_and_array_columns_take_the_row_path(cluster: Cluster) -> None:
    reader = TrainingReader(cluster, "tr_items", columns=["id", "name", "at", "vec"],
                            batch_size=4096)
    assert reader.plan().fast is False
    seen = 0
    for b in reader:
        for j, i in enumerate(b.columns["id"].tolist()):
            want = _row(i)
            assert b.columns["name"][j] == want[4]
            assert bool(b.valid["name"][j]) == (want[4] is not None)
            assert b.columns["at"][j] == np.datetime64(want[5].replace(tzinfo=None), "us")
            vec = b.columns["vec"][j]
            assert (vec is None) if want[6] is None else vec.tolist() == want[6]
            seen += 1
    assert seen == ROWS


def test_text_and_time_columns_decode_as_arrays(cluster: Cluster) -> None:
    reader = TrainingReader(cluster, "tr_items", columns=["id", "name", "at"])
    assert reader.plan().fast is True
    got = {}
    for b in reader:
        for j, i in enumerate(b.columns["id"].tolist()):
            got[i] = (b.columns["name"][j], b.columns["at"][j])
    assert len(got) == ROWS
    for i in (1, 11, 77, ROWS):
        want = _row(i)
        assert got[i] == (want[4], np.datetime64(want[5].replace(tzinfo=None), "us"))


@pytest.mark.parametrize("seed", [None, 11])
def test_two_ranks_by_three_workers_read_every_row_exactly_once(
    cluster: Cluster, seed: int | None
) -> None:
    base = TrainingReader(cluster, "tr_items", columns=["id"], batch_size=500, seed=seed)
    counts: Counter[int] = Counter()
    per_reader = []
    for rank in range(2):
        for worker in range(3):
            ids = _ids(list(base.split(rank, 2).worker_split(worker, 3)))
            per_reader.append(len(ids))
            counts.update(ids)
    assert sum(counts.values()) == ROWS
    assert set(counts) == set(range(1, ROWS + 1)) and set(counts.values()) == {1}
    assert min(per_reader) > 0


def test_the_same_seed_gives_the_same_order(cluster: Cluster) -> None:
    def order(seed: int | None) -> list[int]:
        return _ids(list(TrainingReader(cluster, "tr_items", columns=["id"], seed=seed,
                                        batch_size=777)))

    first, again = order(5), order(5)
    assert first == again
    assert sorted(first) == list(range(1, ROWS + 1))
    assert order(6) != first
    natural = order(None)
    assert natural == order(None) and natural != first


@pytest.mark.parametrize("seed", [None, 3])
@pytest.mark.parametrize("stop", [1, 4, 9])
def test_resuming_from_a_saved_position_has_no_gap_and_no_repeat(
    cluster: Cluster, seed: int | None, stop: int
) -> None:
    reader = TrainingReader(cluster, "tr_items", columns=["id", "x"], seed=seed,
                            batch_size=333, split=Split(1, 2))  # 333: cuts units mid-way
    whole = _ids(list(reader))
    head: list[Batch] = []
    for batch in reader:
        head.append(batch)
        if len(head) == stop:
            break
    saved = head[-1].position.to_string()
    rest = _ids(list(reader.resume(saved)))
    assert _ids(head) + rest == whole
    fresh = TrainingReader(cluster, "tr_items", columns=["id", "x"], seed=seed,
                           batch_size=333, split=Split(1, 2), start=saved)
    assert _ids(list(fresh)) == rest


def test_resuming_at_the_end_reads_nothing_and_another_plan_is_refused(cluster: Cluster) -> None:
    reader = TrainingReader(cluster, "tr_items", columns=["id"], batch_size=4096)
    last = list(reader)[-1].position
    assert list(reader.resume(last)) == []
    with pytest.raises(ConfigError, match="resume with the same"):
        list(TrainingReader(cluster, "tr_items", columns=["id"], seed=1).resume(last))


def test_a_join_of_co_located_tables_reads_each_joined_row_once(cluster: Cluster) -> None:
    query = "SELECT a.id, a.y, e.z FROM tr_items a JOIN tr_extra e ON e.id = a.id"
    batches = list(TrainingReader(cluster, query=query, shard_key="id", batch_size=256,
                                  seed=2, split=Split(0, 1, 0, 1)))
    ids = _ids(batches)
    assert sorted(ids) == list(range(1, ROWS + 1, 3))
    for b in batches:
        assert np.array_equal(b.columns["z"], b.columns["id"] * 2.0)
        assert np.array_equal(b.columns["y"], b.columns["id"] * 0.5)


def test_a_query_across_key_families_or_without_a_key_is_refused(cluster: Cluster) -> None:
    with pytest.raises(ConfigError, match="shard_key"):
        TrainingReader(cluster, query="SELECT id FROM tr_items")
    with pytest.raises(RoutingError):
        list(TrainingReader(cluster, query="SELECT a.id FROM tr_items a JOIN tr_extra e "
                            "ON e.z = a.y", shard_key="id"))


def test_the_async_reader_reads_the_same_rows(local: LocalCluster, cluster: Cluster) -> None:
    async def run() -> list[int]:
        async with AsyncCluster.from_file(local.layout.config) as ac:
            reader = AsyncTrainingReader(ac, "tr_items", columns=["id"], seed=9, batch_size=999)
            return [int(v) async for b in reader for v in b.columns["id"]]

    sync = _ids(list(TrainingReader(cluster, "tr_items", columns=["id"], seed=9,
                                    batch_size=999)))
    assert asyncio.run(run()) == sync


def test_progress_goes_to_a_callable_or_stderr(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = []
    list(TrainingReader(cluster, "tr_items", columns=["id"], progress=seen.append))
    assert seen[-1].units_done == seen[-1].units_total and seen[-1].rows == ROWS
    list(TrainingReader(cluster, "tr_items", columns=["id"], progress=True))
    assert f"{ROWS:,} rows" in capsys.readouterr().err


def test_copy_out_streams_raw_bytes_and_refuses_anything_else(cluster: Cluster) -> None:
    scope = cluster.as_written("g0")
    data = b"".join(scope.copy_out("COPY (SELECT 1::int4) TO STDOUT (FORMAT binary)"))
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    with pytest.raises(RoutingError, match=r"COPY \.\.\. TO STDOUT"):
        list(scope.copy_out("SELECT 1"))


def test_the_dataset_splits_by_worker(local: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    counts: Counter[int] = Counter()
    for rank in range(2):
        for worker in range(3):
            info = types.SimpleNamespace(id=worker, num_workers=3)
            data = types.SimpleNamespace(get_worker_info=lambda info=info: info)
            fake = types.SimpleNamespace(utils=types.SimpleNamespace(data=data))
            monkeypatch.setitem(sys.modules, "torch", fake)
            ds = TrainingDataset(local.layout.config, "tr_items", rank=rank, world_size=2,
                                 columns=["id"], transform=lambda b: b.columns["id"])
            try:
                for ids in ds:
                    counts.update(int(v) for v in ids)
            finally:
                ds.close()
    assert sorted(counts) == list(range(1, ROWS + 1)) and set(counts.values()) == {1}


def test_torch_dataloader_reads_every_row_once(local: LocalCluster) -> None:
    torch = pytest.importorskip("torch")
    ds = TrainingDataset(local.layout.config, "tr_items", columns=["id", "y"],
                         transform=lambda b: b.columns["id"])
    loader = torch.utils.data.DataLoader(ds.to_torch(), batch_size=None, num_workers=2)
    ids = [int(v) for t in loader for v in t]
    assert sorted(ids) == list(range(1, ROWS + 1))
    assert math.isfinite(len(ids))


def test_rows_copied_to_a_second_group_are_read_once(cluster: Cluster) -> None:
    """As during a move: some of g0's rows also sit on g1; the map says g0 owns them."""
    with cluster.connection(cluster.primary_node("g0")) as conn:
        copied = conn.execute("SELECT id, y, label FROM tr_items ORDER BY id LIMIT 50").fetchall()
    with (
        cluster.connection(cluster.primary_node("g1")) as conn,
        conn.cursor().copy("COPY tr_items (id, y, label) FROM STDIN") as copy,
    ):
        for row in copied:
            copy.write_row(row)
    try:
        ids = _ids(list(TrainingReader(cluster, "tr_items", columns=["id"])))
        assert sorted(ids) == list(range(1, ROWS + 1))
    finally:
        with cluster.connection(cluster.primary_node("g1")) as conn:
            conn.execute("DELETE FROM tr_items WHERE id = ANY(%s)", ([r[0] for r in copied],))


def test_a_query_with_nulls_sends_them_as_masks(cluster: Cluster) -> None:
    reader = TrainingReader(cluster, query="SELECT id, x, label FROM tr_items WHERE label < 5",
                            shard_key="id", batch_size=1000)
    got = {}
    for b in reader:
        for j, i in enumerate(b.columns["id"].tolist()):
            got[i] = (bool(b.valid["x"][j]), float(b.columns["x"][j]))
    want = {i: _row(i) for i in range(1, ROWS + 1) if i % 10 < 5}
    assert set(got) == set(want)
    assert all(got[i] == ((w[1] is not None), w[1] or 0.0) for i, w in want.items())


def test_a_text_key_table_splits_and_orders_by_its_text_key(cluster: Cluster) -> None:
    base = TrainingReader(cluster, "tr_named", batch_size=100, seed=4)
    assert _named(base) == _named(base)
    counts: Counter[str] = Counter()
    for rank in range(2):
        for b in base.split(rank, 2):
            counts.update(b.columns["name"].tolist())
            for name, v, ok in zip(b.columns["name"], b.columns["v"], b.valid["v"], strict=True):
                i = int(name[1:])
                assert bool(ok) == (i % 9 != 0) and (not ok or v == i / 2)
    assert set(counts) == {f"k{i}" for i in range(NAMED)} and set(counts.values()) == {1}


def _named(reader: TrainingReader) -> list[str]:
    return [str(v) for b in reader for v in b.columns["name"]]
