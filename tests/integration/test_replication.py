"""A row written on a primary is read back from each of its streaming replicas."""

from __future__ import annotations

import time
import uuid

from mlscale import Cluster


def wait_for_row(cluster: Cluster, node: str, token: str, timeout: float = 15.0) -> float:
    """Seconds until ``token`` is visible on ``node``."""
    start = time.monotonic()
    while True:
        with cluster.connection(node) as conn:
            row = conn.execute(
                "SELECT payload FROM it_replication WHERE token = %s", (token,)
            ).fetchone()
        if row is not None:
            assert row[0] == f"written on the primary as {token}"
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"{token} never reached {node}"
        time.sleep(0.01)


def test_rows_reach_every_replica(cluster: Cluster) -> None:
    for group in ("g0", "g1"):
        with cluster.connection(cluster.primary_node(group)) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS it_replication "
                "(token text PRIMARY KEY, payload text NOT NULL)"
            )
        tokens = [uuid.uuid4().hex for _ in range(20)]
        with cluster.connection(cluster.primary_node(group)) as conn:
            for token in tokens:
                conn.execute(
                    "INSERT INTO it_replication VALUES (%s, %s)",
                    (token, f"written on the primary as {token}"),
                )
        replicas = cluster.replica_nodes(group)
        assert len(replicas) == 2
        for replica in replicas:
            for token in tokens:
                wait_for_row(cluster, replica, token)
            with cluster.connection(replica) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_replicas_refuse_writes(cluster: Cluster) -> None:
    import psycopg
    import pytest

    with (
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
        cluster.connection(cluster.replica_nodes("g0")[0]) as conn,
    ):
        conn.execute("CREATE TABLE it_never (x int)")
