"""Manual bans: recorded in the catalog, honoured by every client, shown by status."""

from __future__ import annotations

import json
import time

from mlscale import Cluster, LocalCluster, MlscaleError
from tests.conftest import assert_one_line_error, run_cli


def reads_on(cluster: Cluster, node: str) -> int:
    return int(cluster.stats().reads.reads_by_node.get(node, 0))


def read_for(cluster: Cluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cluster.fetch_value("SELECT 1")


def test_cli_ban_takes_a_replica_out_of_rotation_for_running_clients(
    local_cluster: LocalCluster,
) -> None:
    d = str(local_cluster.root)
    with Cluster.from_file(local_cluster.layout.config) as cluster:
        read_for(cluster, 0.5)
        try:
            banned = run_cli("ban", "g0-replica1", "--reason", "disk maintenance", "--dir", d)
            assert banned.returncode == 0, banned.stderr
            read_for(cluster, 2.0)  # the monitor re-reads bans about once a second
            before = reads_on(cluster, "g0-replica1"), reads_on(cluster, "g0-replica2")
            read_for(cluster, 1.0)
            assert reads_on(cluster, "g0-replica1") == before[0]
            assert reads_on(cluster, "g0-replica2") > before[1]
            assert cluster.stats().bans["g0-replica1"].kind == "manual"
            status = json.loads(run_cli("status", "--dir", d, "--json").stdout)
            bans = {n["name"]: n["ban"] for n in status["nodes"] if n["role"] == "replica"}
            assert bans["g0-replica1"] == "manual: disk maintenance"
            assert bans["g0-replica2"] is None
        finally:
            assert run_cli("unban", "g0-replica1", "--dir", d).returncode == 0
        read_for(cluster, 2.0)
        before = reads_on(cluster, "g0-replica1")
        read_for(cluster, 1.0)
        assert reads_on(cluster, "g0-replica1") > before, "the replica never came back"
        assert "g0-replica1" not in cluster.stats().bans


def test_api_ban_is_shared_and_primaries_cannot_be_banned(local_cluster: LocalCluster) -> None:
    with Cluster.from_file(local_cluster.layout.config) as cluster:
        try:
            cluster.ban("g1-replica2", "reindexing")
            status = json.loads(run_cli("status", "--dir", str(local_cluster.root),
                                        "--json").stdout)
            assert {n["name"]: n["ban"] for n in status["nodes"]}["g1-replica2"] == (
                "manual: reindexing")
        finally:
            cluster.unban("g1-replica2")
        try:
            cluster.ban("g0-primary", "no")
        except MlscaleError as exc:
            assert "only replicas" in str(exc)
        else:
            raise AssertionError("a primary was banned")
    d = str(local_cluster.root)
    assert_one_line_error(run_cli("ban", "g0-primary", "--reason", "x", "--dir", d),
                          "only replicas")
    assert_one_line_error(run_cli("ban", "nope", "--reason", "x", "--dir", d), "nope")
