"""The replica monitor against real servers: positions, heartbeats, one writer, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psycopg

from mlscale import LocalCluster
from mlscale.engine.cluster_sync import Cluster
from mlscale.engine.monitor_async import AsyncMonitor
from mlscale.engine.monitor_sync import Monitor
from mlscale.engine.samples import HEARTBEAT_LOCK
from mlscale.local import procs


def wait_rounds(monitor: Monitor, rounds: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    start = monitor.rounds
    while monitor.rounds < start + rounds:
        assert time.monotonic() < deadline, "the monitor stopped sampling"
        time.sleep(0.02)


def test_monitor_samples_every_node_and_one_monitor_writes_heartbeats(
    local_cluster: LocalCluster,
) -> None:
    config = local_cluster.config()
    first, second = Monitor(config), Monitor(config)
    first.start()
    wait_rounds(first, 3)
    second.start()
    try:
        wait_rounds(second, 10)
        primaries, replicas = second.snapshot()
        assert set(primaries) == {"g0", "g1"}
        assert set(replicas) == {"g0-replica1", "g0-replica2", "g1-replica1", "g1-replica2"}
        for p in primaries.values():
            assert p.up and p.lsn and p.system_identifier and p.timeline == 1
        for r in replicas.values():
            assert r.up and r.in_recovery
            assert r.replay_lsn is not None and r.lag_bytes is not None
            assert r.system_identifier == primaries[r.group].system_identifier
            # Heartbeats every 100 ms keep the time staleness small on an idle cluster.
            assert r.staleness_ms is not None and r.staleness_ms < 2_000, r
        # Exactly one monitor writes each group's heartbeat: on each primary one
        # session holds the writer's lock (another test's cluster may hold it), and
        # the monitor started second never writes.
        with Cluster(config) as c:
            for group in ("g0", "g1"):
                with c.connection(c.primary_node(group)) as conn:
                    held = conn.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                        (HEARTBEAT_LOCK,),
                    ).fetchone()
                assert held == (1,), group
        assert not any(p.writes_heartbeat for p in second.snapshot()[0].values())
    finally:
        first.stop()
        second.stop()


def test_async_monitor_samples_too(local_cluster: LocalCluster) -> None:
    async def main() -> int:
        monitor = AsyncMonitor(local_cluster.config())
        monitor.start()
        try:
            for _ in range(200):
                if monitor.rounds >= 3:
                    break
                await asyncio.sleep(0.02)
            _, replicas = monitor.snapshot()
            assert all(r.up and r.replay_lsn for r in replicas.values())
            return monitor.rounds
        finally:
            await monitor.stop()

    assert asyncio.run(main()) >= 3


def test_a_killed_replica_is_seen_down_and_back_up(scratch_dir: Path) -> None:
    local = LocalCluster(scratch_dir / "c")
    local.up(shards=1, replicas=1, redis=False)
    monitor = Monitor(local.config())
    monitor.start()
    try:
        wait_rounds(monitor, 2)
        victim = local.processes()["g0-replica1"][0]
        os.kill(victim, signal.SIGKILL)
        assert procs.wait_dead(victim, 10)
        deadline = time.monotonic() + 10
        while monitor.snapshot()[1]["g0-replica1"].up:
            assert time.monotonic() < deadline, "the monitor never saw the replica go down"
            time.sleep(0.05)
        down = monitor.snapshot()[1]["g0-replica1"]
        assert down.error
        local.up()
        deadline = time.monotonic() + 20
        while not monitor.snapshot()[1]["g0-replica1"].up:
            assert time.monotonic() < deadline, "the monitor never saw the replica come back"
            time.sleep(0.05)
    finally:
        monitor.stop()


def test_an_old_heartbeat_does_not_ban_a_replica_that_is_caught_up(scratch_dir: Path) -> None:
    """A client starting after nobody wrote heartbeats for an hour: its replicas
    are caught up, so their reads must not go to the primary for lag."""
    from mlscale.engine.cluster_sync import Cluster

    local = LocalCluster(scratch_dir / "c")
    local.up(shards=1, replicas=1, redis=False)
    config = local.config()
    with Cluster(config) as cluster:
        primary = cluster.primary_node()
        with cluster.connection(primary) as conn:
            for attempt in range(3):
                try:
                    conn.execute(
                        "CREATE SCHEMA IF NOT EXISTS mlscale_sys; CREATE TABLE IF NOT EXISTS "
                        "mlscale_sys.heartbeat (shard_group text PRIMARY KEY, "
                        "beat timestamptz NOT NULL)"
                    )
                    break
                except psycopg.errors.UniqueViolation:
                    # The cluster's monitor created them at the same moment (IF NOT
                    # EXISTS is not safe against a concurrent CREATE): they exist now.
                    if attempt == 2:
                        raise
            conn.execute(
                "INSERT INTO mlscale_sys.heartbeat VALUES ('g0', now() - interval '1 hour') "
                "ON CONFLICT (shard_group) DO UPDATE SET beat = excluded.beat"
            )
        # Let the replica replay the old beat, as it would have long ago.
        replica = cluster.replica_nodes()[0]
        for _ in range(500):
            with cluster.connection(replica) as conn:
                row = conn.execute("SELECT to_regclass('mlscale_sys.heartbeat')").fetchone()
            if row is not None and row[0] is not None:
                break
            time.sleep(0.01)
    # A fresh client: its monitor's first round sees the hour-old beat.
    monitor = Monitor(config, heartbeat=False)
    monitor.start()
    try:
        wait_rounds(monitor, 2)
        sample = monitor.snapshot()[1]["g0-replica1"]
        assert sample.staleness_ms is not None and sample.staleness_ms < 2_000, sample
    finally:
        monitor.stop()
    with Cluster(config) as cluster:
        for _ in range(300):
            cluster.replica().fetch_one("SELECT 1")
        reads = cluster.stats().reads
    assert reads.fallbacks_by_cause == {}, reads
    assert reads.reads_by_node == {"g0-replica1": 300}, reads
