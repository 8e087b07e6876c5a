"""After-commit hooks hear of a plain write with its causal token, on the real 2-group
cluster: one position per group it committed in, read after its commit returned, so
a read given the token sees the write (a cache's fill after an invalidation)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mlscale import AsyncCluster, Cluster, LocalCluster
from mlscale.core.lsn import parse_lsn
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.engine.hooks import Committed
from tests.integration.sharding_cleanup import restore_sharding

FAMILY = "ct_keys"


@pytest.fixture(scope="module")
def sharded(cluster: Cluster) -> Iterator[Cluster]:
    """ct_rows sharded on id over g0 and g1, ct_plain on the default group; gone after."""
    before = cluster.refresh_shards()
    try:
        cluster.create_shard_map(SlotMap.even(KeyFamily.of(FAMILY, "int8"), ["g0", "g1"]))
        cluster.create_sharded_table(
            "CREATE TABLE ct_rows (id bigint PRIMARY KEY, v int NOT NULL)",
            shard_key="id",
            family=FAMILY,
        )
        cluster.execute("CREATE TABLE IF NOT EXISTS ct_plain (id int PRIMARY KEY, v int)")
        yield cluster
    finally:
        cluster.execute("DROP TABLE IF EXISTS ct_plain")
        restore_sharding(cluster, before)


def _lsn_now(cluster: Cluster, group: str) -> int:
    with cluster.connection(cluster.primary_node(group)) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(row[0])


def _one_key_per_group(cluster: Cluster) -> dict[str, int]:
    keys: dict[str, int] = {}
    for key in range(1, 100):
        keys.setdefault(cluster.locate(FAMILY, key), key)
        if len(keys) == 2:
            return keys
    raise AssertionError("no key places a row on each group")


def test_a_plain_execute_carries_the_position_it_committed_at(sharded: Cluster) -> None:
    cluster, events = sharded, list[Committed]()
    cluster.on_commit(events.append)
    try:
        before = _lsn_now(cluster, "g0")
        cluster.execute(
            "INSERT INTO ct_plain VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET v = ct_plain.v + 1"
        )
        after = _lsn_now(cluster, "g0")
        (event,) = events
        assert event.groups == ("g0",) and event.token is not None
        assert set(event.token) == {"g0"}
        assert before < event.token["g0"].lsn <= after  # past the commit record, no later
        written = cluster.primary().fetch_value("SELECT v FROM ct_plain WHERE id = 1")
        # A read given the token sees the write, wherever it is served.
        for _ in range(4):
            seen = cluster.fetch_value("SELECT v FROM ct_plain WHERE id = 1", token=event.token)
            assert seen == written
    finally:
        cluster.remove_commit_hook(events.append)


def test_a_split_write_carries_one_position_per_group(sharded: Cluster) -> None:
    cluster, events = sharded, list[Committed]()
    keys = _one_key_per_group(cluster)
    cluster.on_commit(events.append)
    try:
        insert = "INSERT INTO ct_rows (id, v) VALUES (%s, 0) ON CONFLICT DO NOTHING"
        for key in keys.values():
            cluster.execute(insert, (key,))
        del events[:]
        before = {g: _lsn_now(cluster, g) for g in keys}
        ids = sorted(keys.values())
        assert cluster.execute("UPDATE ct_rows SET v = v + 1 WHERE id = ANY(%s)", (ids,)) == 2
        after = {g: _lsn_now(cluster, g) for g in keys}
        (event,) = events
        assert sorted(event.groups) == ["g0", "g1"] and event.token is not None
        assert set(event.token) == {"g0", "g1"}
        for g in keys:
            assert before[g] < event.token[g].lsn <= after[g]
        # COPY split over the groups: one position per group too.
        del events[:]
        fresh = [(k + 1000, 5) for k in ids]
        assert cluster.copy("COPY ct_rows (id, v) FROM STDIN", fresh) == 2
        (copied,) = events
        assert copied.token is not None and len(copied.token) == len(set(copied.groups))
    finally:
        cluster.remove_commit_hook(events.append)


def test_the_async_cluster_does_the_same(local_cluster: LocalCluster, sharded: Cluster) -> None:
    async def run() -> Committed:
        events: list[Committed] = []
        async with AsyncCluster.from_file(local_cluster.layout.config) as ac:
            ac.on_commit(events.append)
            await ac.execute("UPDATE ct_plain SET v = v + 1 WHERE id = 1")
        (event,) = events
        return event

    before = _lsn_now(sharded, "g0")
    event = asyncio.run(run())
    assert event.token is not None and event.token["g0"].lsn > before
