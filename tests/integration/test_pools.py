"""Per-node pools: sized by formula, observable, fork-safe, sync and async alike."""

from __future__ import annotations

import asyncio
import os
import time

import psycopg
import pytest

from mlscale import AsyncCluster, Cluster, MlscaleError, NodeUnavailableError, parse_config
from mlscale.core.topology import find_node
from mlscale.engine.connect import connect_kwargs


def backend_pid(cluster: Cluster, node: str) -> int:
    with cluster.connection(node) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_default_pool_size_is_the_formula(cluster: Cluster) -> None:
    assert cluster.pool_size.max_size == 2 * (os.cpu_count() or 1) + 1
    with cluster.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    stats = cluster.stats().pools[cluster.primary_node()]
    assert stats["pool_max"] == cluster.pool_size.max_size
    assert stats["requests_num"] >= 1


def test_pool_survives_fork(cluster: Cluster) -> None:
    node = cluster.primary_node("g1")
    backend_pid(cluster, node)
    # A first request may make the pool grow by a connection in the background;
    # let that finish so the parent's set of connections is settled.
    time.sleep(0.5)
    parent_pids = {backend_pid(cluster, node) for _ in range(10)}
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: use the cluster, report, exit without cleanup
        code = 1
        try:
            os.close(read)
            pid = backend_pid(cluster, node)
            with cluster.connection(cluster.replica_nodes("g1")[0]) as conn:
                conn.execute("SELECT count(*) FROM pg_class").fetchone()
            os.write(write, str(pid).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    child_pid = int(os.read(read, 64).decode() or 0)
    os.close(read)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid and child_pid not in parent_pids, "the child reused a parent connection"
    # After the child has exited, the parent's pooled connections still work.
    # After the child has exited, the parent's pooled connections (the same
    # server backends as before the fork) still work.
    for _ in range(10):
        assert backend_pid(cluster, node) in parent_pids
    assert cluster.stats().pools[node].get("connections_lost", 0) == 0


def test_async_cluster_uses_the_same_nodes(local_cluster) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[bool]:
        async with AsyncCluster.from_file(local_cluster.layout.config) as acluster:
            out = []
            for node in [acluster.primary_node(), *acluster.replica_nodes()]:
                async with acluster.connection(node) as conn:
                    cur = await conn.execute("SELECT pg_is_in_recovery()")
                    row = await cur.fetchone()
                    out.append(bool(row and row[0]))
            assert acluster.stats().pools
            return out

    assert asyncio.run(main()) == [False, True, True]


def test_down_node_gives_a_clear_error_that_driver_handlers_catch() -> None:
    config = parse_config(
        {
            "auth": {"password_env": "HOME"},
            "control": {"port": 1},
            "shard_groups": [{"name": "g0", "primary": {"port": 2}}],
            "pools": {"timeout_s": 0.5, "connect_timeout_s": 1},
        }
    )
    import psycopg

    with (
        Cluster(config) as dead,
        pytest.raises(psycopg.OperationalError) as info,
        dead.connection() as conn,
    ):
        conn.execute("SELECT 1")
    assert isinstance(info.value, NodeUnavailableError)
    # Known down (the monitor saw it) or not yet: either way the node and why.
    message = str(info.value)
    assert "g0-primary at 127.0.0.1:2" in message
    assert "refused" in message or "after 0.50 s" in message, message


def test_closed_cluster_and_unknown_node(local_cluster) -> None:  # type: ignore[no-untyped-def]
    c = Cluster.from_file(local_cluster.layout.config)
    with pytest.raises(MlscaleError, match="no node named 'nope'"), c.connection("nope"):
        pass
    c.close()
    with pytest.raises(MlscaleError, match="closed"), c.connection():
        pass


@pytest.mark.parametrize("reuse", ["lifo", "fifo"])
def test_idle_connections_are_reused_last_in_first_out(local_cluster, reuse: str) -> None:  # type: ignore[no-untyped-def]
    """LIFO (the default): one thread's calls keep landing on the backend used
    last, though the pool holds three; FIFO rotates through all of them."""
    config = local_cluster.config()
    config = config.model_copy(
        update={"pools": config.pools.model_copy(update={"min_size": 3, "reuse": reuse})}
    )
    with Cluster(config) as cluster:
        node = cluster.primary_node()
        backend_pid(cluster, node)
        deadline = time.monotonic() + 10
        while cluster.stats().pools[node]["pool_available"] < 3:
            assert time.monotonic() < deadline, "the pool never filled to min_size"
            time.sleep(0.01)
        pids = {backend_pid(cluster, node) for _ in range(12)}
    # (FIFO may see a 4th: the pool can grow while it fills.)
    assert len(pids) == 1 if reuse == "lifo" else len(pids) >= 3, pids

    async def one_async() -> set[int]:
        async with AsyncCluster(config) as acluster:

            async def pid() -> int:
                async with acluster.connection(node) as conn:
                    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
                    return int(row[0]) if row else 0

            await pid()
            while acluster.stats().pools[node]["pool_available"] < 3:
                await asyncio.sleep(0.01)
            return {await pid() for _ in range(12)}

    apids = asyncio.run(one_async())
    assert len(apids) == 1 if reuse == "lifo" else len(apids) >= 3, apids


def test_after_a_restart_only_idempotent_writes_are_retried(scratch_dir) -> None:  # type: ignore[no-untyped-def]
    """Pooled connections from before a primary restarted are dead: a plain write
    fails once (it is never repeated behind the caller's back), one marked
    idempotent is retried on a new connection and succeeds; no write is lost or doubled."""
    from mlscale import LocalCluster

    local = LocalCluster(scratch_dir / "c")
    local.up(shards=1, replicas=1, redis=False)
    config = local.config()
    config = config.model_copy(update={"pools": config.pools.model_copy(update={"min_size": 3})})
    with Cluster(config) as cluster:
        cluster.execute("CREATE TABLE writes (id int PRIMARY KEY)")
        for i in range(1, 4):
            cluster.execute("INSERT INTO writes VALUES (%s)", (i,))

        def restart_primary() -> None:
            assert local.down([cluster.primary_node()]) == [cluster.primary_node()]
            local.up()

        def dead_connections() -> None:
            """Pooled connections from before a restart the monitor did not see."""
            with psycopg.connect(autocommit=True, **connect_kwargs(primary, config)) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'mlscale' AND pid <> pg_backend_pid()"
                )

        primary = find_node(cluster.nodes, cluster.primary_node())
        dead_connections()
        with pytest.raises(NodeUnavailableError):
            cluster.execute("INSERT INTO writes VALUES (4)")
        cluster.execute("INSERT INTO writes VALUES (5)")  # the dead ones were dropped

        # A restart the monitor sees: once it sees the node back, a fresh pool.
        restart_primary()
        deadline = time.monotonic() + 5
        while cluster.primary_node() in cluster.stats().down:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert cluster.execute("INSERT INTO writes VALUES (8)") == 1
        dead_connections()

        assert cluster.execute("INSERT INTO writes VALUES (6)", idempotent=True) == 1
        assert (
            cluster.fetch_value("INSERT INTO writes VALUES (7) RETURNING id", idempotent=True) == 7
        )
        rows = cluster.fetch_all("SELECT id FROM writes ORDER BY id", consistency="strong")
    assert [r[0] for r in rows] == [1, 2, 3, 5, 6, 7, 8]


def test_without_the_catalog_one_group_routes_on_and_several_refuse(local_cluster) -> None:  # type: ignore[no-untyped-def]
    """The control node down (here: a port nobody listens on): with one shard group
    there is nothing to place, so statements run; with two, statements on tables fail,
    naming the control node, rather than guess where a row belongs (statements that
    name no table need no catalog: see test_outages.py)."""
    from mlscale.local.ports import port_is_free

    config = local_cluster.config()
    port = next(p for p in range(29_000, 30_000) if port_is_free(p))
    dead = config.control.model_copy(update={"port": port})
    fast = config.pools.model_copy(update={"timeout_s": 1.0, "connect_timeout_s": 0.5})
    two = config.model_copy(update={"control": dead, "pools": fast})
    one = two.model_copy(update={"shard_groups": config.shard_groups[:1]})
    with Cluster(one) as cluster:
        assert cluster.fetch_value("SELECT 41 + 1", consistency="strong") == 42
        assert cluster.fetch_value("SELECT 1") == 1  # a replica read too
    with Cluster(two) as cluster, pytest.raises(NodeUnavailableError, match="node control"):
        cluster.fetch_value("SELECT count(*) FROM pg_class", consistency="strong")
