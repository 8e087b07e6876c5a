"""The prediction writer against real servers, sync and async alike (one suite run
through an adapter in each world): flushes by size, time and close; a full queue
blocking or raising (counted, nothing dropped); ids stored once within a batch and
across resends; partitions made on demand; values round-tripped through binary COPY
for every entity key type; a group's primary stopped mid-write and its rows written
once it is back; rows the server refuses for good (a CHECK the test adds) set aside
while the rest is written, and rows PostgreSQL cannot store refused at the door.
Rows are always counted on the servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlscale import AsyncCluster, Cluster, LocalCluster
from mlscale.core.predictions.queueing import Backoff
from mlscale.core.predictions.spec import PredictionLog
from mlscale.core.slots import KeyType
from mlscale.errors import NodeUnavailableError, PredictionError, WriterQueueFull
from mlscale.local.tempdirs import reachable_tempdir
from mlscale.stores.predictions.tables_async import AsyncPredictionTables
from mlscale.stores.predictions.tables_sync import PredictionTables
from mlscale.stores.predictions.writer_async import AsyncPredictionWriter
from mlscale.stores.predictions.writer_sync import PredictionWriter

FAST = Backoff(first_s=0.02, max_s=0.2)
DAY_US = int(dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
             .timestamp()) * 1_000_000  # fmt: skip


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    """Two shard groups, no replicas: the suite stops a primary, so it has its own."""
    base = reachable_tempdir("mlscale-pwriter-")
    cluster = LocalCluster(base / "c")
    try:
        cluster.up(shards=2, replicas=0, redis=False)
        yield cluster
    finally:
        try:
            cluster.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.from_file(local.layout.config) as c:
        yield c


class _Sync:
    """Runs an async object's coroutines on one loop (see test_api.py)."""

    def __init__(self, obj: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._obj = obj
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            value = attr(*a, **k)
            return self._loop.run_until_complete(value) if inspect.isawaitable(value) else value

        return call


@dataclass
class World:
    """One world's writers, tables and sleep (the async loop runs while it sleeps)."""

    name: str
    tables: Any
    writer: Callable[..., Any]
    sleep: Callable[[float], None]


@pytest.fixture(scope="module", params=["sync", "async"])
def world(request: pytest.FixtureRequest, local: LocalCluster) -> Iterator[World]:
    path = local.layout.config
    if request.param == "sync":
        with Cluster.from_file(path) as c:
            tables = PredictionTables(c)
            yield World(
                "sync",
                tables,
                lambda log, **o: PredictionWriter(c, tables, log, backoff=FAST, **o),
                time.sleep,
            )
        return
    loop = asyncio.new_event_loop()
    ac = AsyncCluster.from_file(path)
    atables = AsyncPredictionTables(ac)
    try:
        yield World(
            "async",
            _Sync(atables, loop),
            lambda log, **o: _Sync(
                AsyncPredictionWriter(ac, atables, log, backoff=FAST, **o), loop
            ),
            lambda s: loop.run_until_complete(asyncio.sleep(s)),
        )
    finally:
        loop.run_until_complete(ac.close())
        loop.close()


def _log(world: World, name: str, **kw: Any) -> PredictionLog:
    log = PredictionLog(name=f"{name}_{world.name}_{uuid.uuid4().hex[:4]}", **kw)
    world.tables.create(log)
    return log


def _count(cluster: Cluster, log: PredictionLog, where: str = "") -> int:
    return sum(
        int(cluster.as_written(g).fetch_value(
            f"SELECT count(*) FROM {log.name} {where}", consistency="strong"))  # noqa: S608
        for g in _groups(cluster)
    )  # fmt: skip


def _distinct(cluster: Cluster, log: PredictionLog) -> int:
    return sum(
        int(cluster.as_written(g).fetch_value(
            f"SELECT count(DISTINCT prediction_id) FROM {log.name}",  # noqa: S608
            consistency="strong"))
        for g in _groups(cluster)
    )  # fmt: skip


def _frame(n: int, start: int = 0, **extra: Any) -> pd.DataFrame:
    i = np.arange(start, start + n)
    # A resend carries the same time: the key is (entity, ts, prediction_id).
    ts = pd.to_datetime(DAY_US + i, unit="us", utc=True)
    return pd.DataFrame(
        {"entity_id": i * 7919, "prediction_id": [uuid.UUID(int=int(k) + 1) for k in i],
         "ts": ts, "score": i / max(1, n), "model": "m", "model_version": "v1", **extra}
    )  # fmt: skip


def _until(world: World, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        world.sleep(0.05)


def test_flush_by_size_then_close(world: World, cluster: Cluster) -> None:
    log = _log(world, "bysize")
    w = world.writer(log, batch_rows=1_000, flush_interval_s=60.0)
    assert w.log_many(_frame(2_500)) == 2_500
    # Two full batches are written without a flush; the rest waits for its time.
    _until(world, lambda: w.stats().written >= 2_000)
    world.sleep(0.2)
    assert _count(cluster, log) == 2_000 == w.stats().written
    assert w.stats().queued == 500
    w.close()
    assert _count(cluster, log) == 2_500
    stats = w.stats()
    assert (stats.written, stats.queued, stats.duplicates, stats.flushes) == (2_500, 0, 0, 3)
    with pytest.raises(PredictionError, match="closed"):
        w.log(1, "m", "v1", score=0.5)
    with pytest.raises(PredictionError, match="closed"):
        w.flush()
    w.close()  # again: nothing


def test_flush_by_time_and_single_rows(world: World, cluster: Cluster) -> None:
    log = _log(world, "bytime")
    w = world.writer(log, flush_interval_s=0.3)
    ids = [w.log(k, "m", "v1", score=0.1 * k) for k in range(10)]
    assert len(set(ids)) == 10
    _until(world, lambda: w.stats().written == 10)
    assert _count(cluster, log) == 10
    assert w.stats().flush_p50_ms >= 250  # written by time, not by size
    # A bad row is refused at once and nothing of it is queued.
    with pytest.raises(PredictionError, match="score, a predicted class or both"):
        w.log(1, "m", "v1")
    with pytest.raises(PredictionError, match="model"):
        w.log_many(pd.DataFrame({"entity_id": [1, 2], "model": ["m", None],
                                 "model_version": "v", "score": 0.5}))  # fmt: skip
    assert w.stats().queued == 0
    result = w.flush()
    assert result.rows == 10 and result.duplicates == 0
    assert sum(result.groups.values()) == 10 and result.token
    w.close()


def test_duplicates_within_a_batch_and_across_resends_are_stored_once(
    world: World, cluster: Cluster
) -> None:
    log = _log(world, "dups")
    w = world.writer(log)
    frame = _frame(1_000)
    twice = pd.concat([frame, frame.iloc[:10]], ignore_index=True)
    w.log_many(twice)
    first = w.flush()
    assert (first.rows, first.duplicates) == (1_000, 10)
    w.log_many(frame)
    w.log_many(_frame(5, start=1_000))
    again = w.flush()
    assert (again.rows, again.duplicates) == (5, 1_000)
    w.close()
    assert _count(cluster, log) == 1_005 == _distinct(cluster, log)
    assert w.stats().duplicates == 1_010


def test_a_day_far_from_today_gets_its_partition(world: World, cluster: Cluster) -> None:
    log = _log(world, "farday")
    day = dt.date(2031, 3, 4)
    w = world.writer(log)
    w.log(42, "m", "v1", score=1.0, ts=dt.datetime(2031, 3, 4, 23, 59, tzinfo=dt.UTC))
    w.log(43, "m", "v1", score=1.0, ts="2019-01-02T03:04:05+00:00")
    w.flush()
    w.close()
    assert _count(cluster, log) == 2
    days = world.tables.days(log)
    assert any(day in d for d in days.values())
    assert any(dt.date(2019, 1, 2) in d for d in days.values())


@pytest.mark.parametrize("key_type", [KeyType.INT8, KeyType.INT4, KeyType.INT2,
                                      KeyType.TEXT, KeyType.UUID])  # fmt: skip
def test_values_round_trip_through_binary_copy(
    world: World, cluster: Cluster, key_type: KeyType
) -> None:
    log = _log(world, "rt", key_type=key_type)
    keys: dict[KeyType, list[Any]] = {
        KeyType.INT8: [-(2**63), 2**63 - 1, 0],
        KeyType.INT4: [-(2**31), 2**31 - 1, 7],
        KeyType.INT2: [-(2**15), 2**15 - 1, 3],
        KeyType.TEXT: ["", "été ☃ 日本", "x" * 300],
        KeyType.UUID: [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.uuid4()],
    }
    ts = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, 12, 30, 1, 123456,
          tzinfo=dt.UTC), dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)]  # fmt: skip
    ids = [uuid.uuid4() for _ in range(3)]
    extra = [None, {"a": [1, 2.5, None], "ü": "ß"}, [1, "two"]]
    frame = pd.DataFrame(
        {"entity_id": pd.Series(keys[key_type], dtype=object), "prediction_id": ids, "ts": ts,
         "score": [None, -1.5e300, 0.25], "model": ["m1", "modèle", "m1"],
         "model_version": ["v1", "v2", "v☃"], "predicted": ["cat", None, "🐍 snake"],
         "extra": extra}
    )  # fmt: skip
    w = world.writer(log)
    w.log_many(frame)
    w.log(keys[key_type][0], "single", "v", predicted="only class")
    w.flush()
    w.close()
    got = {}
    for g in _groups(cluster):
        for row in cluster.as_written(g).fetch_all(
            f"SELECT prediction_id, entity_id, ts, score, model, model_version, predicted, "  # noqa: S608
            f"extra FROM {log.name}", consistency="strong"):  # fmt: skip
            got[row[0]] = row[1:]
    assert len(got) == 4
    for i, pid in enumerate(ids):
        entity, t, score, model, version, predicted, ex = got[pid]
        assert entity == keys[key_type][i]
        assert t == ts[i]
        assert score == frame["score"][i] or (score is None and pd.isna(frame["score"][i]))
        assert (model, version) == (frame["model"][i], frame["model_version"][i])
        assert predicted == frame["predicted"][i]
        assert ex == (json.loads(json.dumps(extra[i])) if extra[i] is not None else None)


def test_a_group_down_keeps_its_rows_and_a_full_queue_blocks_or_raises(
    world: World, cluster: Cluster, local: LocalCluster
) -> None:
    log = _log(world, "down")
    stopped = "g1-primary"
    # The log's map was published by the world's own client: this client learns of it by
    # NOTIFY or its poll, late on a busy machine, so it reads the catalog now.
    shard_map = cluster.refresh_shards().map_of(log.family)

    def g1_rows(lo: int, hi: int) -> int:
        return sum(shard_map.locate(k * 7919) == "g1" for k in range(lo, hi))

    w = world.writer(log, batch_rows=200, queue_rows=1_000, flush_interval_s=0.05,
                     on_full="raise")  # fmt: skip
    w.log_many(_frame(100))
    w.flush()  # connections to both groups are pooled before the stop
    try:
        assert local.down([stopped]) == [stopped]
        w.log_many(_frame(900, start=100))
        with pytest.raises(PredictionError, match="not yet written"):
            w.flush(timeout=1.0)
        left = g1_rows(100, 1_000)
        _until(world, lambda: w.stats().queued == left)  # g0's rows written, g1's kept
        stats = w.stats()
        assert left > 0 and stats.failures >= 1 and stats.error is not None
        assert "g1" in stats.error
        # Full: g1's rows wait, so 1,000 more do not fit (raise mode).
        with pytest.raises(WriterQueueFull, match="queue is full"):
            w.log_many(_frame(1_000 - left + 1, start=1_000))
        assert w.stats().refused_full == 1_000 - left + 1
        # Block mode with a bound waits, then raises; nothing of it is taken.
        blocking = world.writer(log, batch_rows=200, queue_rows=1_000, on_full="block",
                                flush_interval_s=0.05, block_timeout_s=0.3)  # fmt: skip
        blocking.log_many(_frame(1_000, start=5_000))  # g1's share stays queued
        started = time.monotonic()
        with pytest.raises(WriterQueueFull, match="after waiting"):
            blocking.log_many(_frame(1_000, start=6_000))
        assert time.monotonic() - started >= 0.3
        assert blocking.stats().refused_full == 1_000 and blocking.stats().blocked_s >= 0.3
    finally:
        local.up()
    result = w.flush(timeout=60)
    assert w.stats().error is None
    assert result.rows >= left
    w.close()
    blocking.close()
    assert blocking.stats().written == 1_000
    # The test's own client may still hold g1-primary marked down from a connection
    # tried while it was starting up: it answers once its monitor sees it up again.
    deadline = time.monotonic() + 30
    while True:
        try:
            counted = (_count(cluster, log), _distinct(cluster, log))
            break
        except NodeUnavailableError:
            assert time.monotonic() < deadline, "g1-primary still marked down"
            time.sleep(0.2)
    assert counted == (2_000, 2_000)


def test_block_mode_waits_for_room_and_takes_everything(
    cluster: Cluster, local: LocalCluster
) -> None:
    tables = PredictionTables(cluster)
    log = PredictionLog(name=f"block_{uuid.uuid4().hex[:6]}")
    tables.create(log)
    w = PredictionWriter(cluster, tables, log, batch_rows=200, queue_rows=1_000,
                         flush_interval_s=0.05, backoff=FAST)  # fmt: skip
    w.log_many(_frame(10))
    w.flush()
    timed = PredictionWriter(cluster, tables, log, batch_rows=200, queue_rows=1_000,
                             block_timeout_s=0.3, backoff=FAST)  # fmt: skip
    timed.log_many(_frame(10, start=10))
    timed.flush()
    done = threading.Event()
    try:
        local.down(["g1-primary"])
        w.log_many(_frame(1_000, start=100))  # g1's share stays queued
        timed.log_many(_frame(1_000, start=3_000))
        started = time.monotonic()
        with pytest.raises(WriterQueueFull, match="after waiting"):
            timed.log_many(_frame(1_000, start=4_000))
        assert time.monotonic() - started >= 0.3
        assert timed.stats().blocked_s >= 0.3 and timed.stats().refused_full == 1_000

        def more() -> None:
            w.log_many(_frame(1_000, start=2_000))
            done.set()

        thread = threading.Thread(target=more)
        thread.start()
        assert not done.wait(0.5)  # blocked while g1 is down
    finally:
        local.up()
    assert done.wait(60)
    thread.join()
    w.close()
    timed.close()
    assert w.stats().blocked_s > 0.4 and w.stats().refused_full == 0
    assert _count(cluster, log) == 10 + 10 + 1_000 + 1_000 + 1_000 == _distinct(cluster, log)


def test_rows_the_server_refuses_are_set_aside_and_the_rest_written_once(
    world: World, cluster: Cluster
) -> None:
    log = _log(world, "refuse")
    # Rules the writer cannot check in Python: the server alone refuses these rows
    # (a check violation, 23514; a data exception, 22001).
    for g in _groups(cluster):
        cluster.as_written(g).execute(
            f"ALTER TABLE {log.name} ADD CONSTRAINT score_cap CHECK (score < 100)"
        )
        cluster.as_written(g).execute(f"ALTER TABLE {log.name} ALTER predicted TYPE varchar(8)")
    w = world.writer(log, batch_rows=500, flush_interval_s=60.0)
    frame = _frame(2_000)
    bad = [3, 700, 701, 1_999]
    frame.loc[bad, "score"] = 1_000.0
    assert w.log_many(frame) == 2_000
    bad_id = w.log(123_456, "m", "v1", score=1e6)
    w.log(123_457, "m", "v1", predicted="fine")
    long_id = w.log(123_458, "m", "v1", predicted="far too long for eight")
    result = w.flush(timeout=60)
    assert (result.rows, result.duplicates, result.rejected) == (1_997, 0, 6)
    assert _count(cluster, log) == 1_997 == _distinct(cluster, log)
    assert _count(cluster, log, "WHERE score >= 100") == 0
    stats = w.stats()
    assert (stats.written, stats.rejected_rows, stats.queued, stats.error) == (1_997, 6, 0, None)
    assert stats.rejected_error is not None
    refused = w.rejected()
    want = {uuid.UUID(int=k + 1) for k in bad} | {bad_id, long_id}
    assert {r.prediction_id for r in refused} == want
    by_id = {r.prediction_id: r for r in refused}
    assert (
        by_id[long_id].sqlstate == "22001" and by_id[long_id].predicted == "far too long for eight"
    )
    checked = [r for r in refused if r.prediction_id != long_id]
    assert all(r.sqlstate == "23514" and "score_cap" in r.error for r in checked)
    assert all(r.score is not None and r.score >= 100 for r in checked)
    assert {r.entity for r in refused} == {k * 7919 for k in bad} | {123_456, 123_458}
    assert w.rejected(clear=True) == refused and w.rejected() == []
    # A resend goes through the staging table (duplicates): the bad rows are refused
    # there too, the good ones found stored.
    w.log_many(frame)
    again = w.flush(timeout=60)
    assert (again.rows, again.duplicates, again.rejected) == (0, 1_996, 4)
    assert _count(cluster, log) == 1_997
    # What PostgreSQL cannot store is refused at the door, nothing of the call queued.
    with pytest.raises(PredictionError, match="predicted holds a NUL character"):
        w.log(1, "m", "v1", predicted="a\x00b")
    with pytest.raises(PredictionError, match="extra holds a lone surrogate"):
        w.log(1, "m", "v1", score=0.5, extra={"k": "\ud800"})
    nul = _frame(3, start=9_000, extra=[None, {"k": "x\x00"}, None])
    with pytest.raises(PredictionError, match="row 1: extra holds a NUL"):
        w.log_many(nul)
    assert w.stats().queued == 0
    w.close()
    assert w.stats().rejected_rows == 10 and _count(cluster, log) == 1_997


def _groups(cluster: Cluster) -> list[str]:
    return [g.name for g in cluster.config.shard_groups]
