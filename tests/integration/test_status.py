"""`mlscale status --json` on the shared 2 x (1 + 2) cluster."""

from __future__ import annotations

import json
import time
import tomllib

import tomli_w

from mlscale import Cluster, LocalCluster
from tests.conftest import run_cli


def test_status_lists_every_node_up_and_replicas_streaming(local_cluster: LocalCluster) -> None:
    deadline = time.monotonic() + 15
    while True:
        result = run_cli("status", "--dir", str(local_cluster.root), "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        replicas = [n for n in data["nodes"] if n["role"] == "replica"]
        # lag_ms is NULL for a moment when a standby had caught up and a new write came.
        settled = all(
            n["lag_bytes"] is not None and n["lag_bytes"] <= 64 * 1024 and n["lag_ms"] is not None
            for n in replicas
        )
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    nodes = data["nodes"]
    roles = sorted(n["role"] for n in nodes)
    assert roles == ["control"] + ["primary"] * 2 + ["replica"] * 4
    assert all(n["state"] == "up" and isinstance(n["pid"], int) for n in nodes), nodes
    assert all({"name", "role", "state", "port", "lag_bytes"} <= n.keys() for n in nodes)
    for n in replicas:
        assert n["streaming"] is True, n
        assert n["in_recovery"] is True, n
        assert n["lag_bytes"] <= 64 * 1024, n
        assert n["lag_ms"] is not None and n["lag_ms"] < 5_000, n
    assert data["redis"]["state"] == "up"


def test_status_table(local_cluster: LocalCluster) -> None:
    result = run_cli("status", "--dir", str(local_cluster.root))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NODE", "ROLE", "PORT", "STATE"]
    assert {line.split()[0] for line in lines[1:]} >= {
        "control",
        "g0-primary",
        "g1-replica2",
        "redis",
    }


def test_status_from_config_file(local_cluster: LocalCluster) -> None:
    result = run_cli("status", "--config", str(local_cluster.layout.config), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["nodes"]) == 7


def test_status_and_routing_agree_on_a_replica_lagging_past_its_threshold(
    local_cluster: LocalCluster,
) -> None:
    """One replica stops replaying while its primary writes past the lag threshold:
    routing bans it for lag, and `mlscale status` shows the same ban, by the same
    policy, for every replica of the cluster."""
    original = local_cluster.layout.config
    doc = tomllib.loads(original.read_text())
    doc.setdefault("policies", {})["max_replica_lag_bytes"] = 256 * 1024
    config = original.with_name("lagging.toml")  # beside it: the passfile path is relative
    config.write_text(tomli_w.dumps(doc))
    victim = "g1-replica2"
    try:
        with Cluster.from_file(config) as cluster:
            with cluster.connection(victim) as conn:
                conn.execute("SELECT pg_wal_replay_pause()")
            with cluster.connection(cluster.primary_node("g1")) as conn:
                conn.execute(
                    "CREATE TABLE lag_fill AS SELECT g, repeat('x', 200) AS pad "
                    "FROM generate_series(1, 5000) g"  # about 1.5 MB of WAL
                )
            # Until the others have replayed the burst too (one may be lag-banned for a
            # moment while it replays): then only the paused one is behind.
            deadline = time.monotonic() + 15
            while set(cluster.stats().bans) != {victim}:
                samples = cluster.replica_samples()
                assert time.monotonic() < deadline, (cluster.stats().bans, samples)
                cluster.group("g1").fetch_value("SELECT 1")  # reads refresh the verdicts
                time.sleep(0.1)
            routed = {name: str(ban) for name, ban in cluster.stats().bans.items()}
            assert routed[victim].startswith("lag: "), routed
            for _ in range(20):  # while it lags, no read goes there
                assert cluster.explain_route("SELECT 1", group="g1").node != victim
            result = run_cli("status", "--config", str(config), "--json")
            assert result.returncode == 0, result.stderr
            nodes = json.loads(result.stdout)["nodes"]
            shown = {n["name"]: n["ban"] for n in nodes if n["role"] == "replica"}
            kinds = {name: (ban or "").split(":")[0] for name, ban in shown.items()}
            assert kinds == {n: routed.get(n, "").split(":")[0] for n in shown}, (shown, routed)
            print(f"routing: {routed}; status: {shown}")
    finally:
        with Cluster.from_file(original) as cluster:
            with cluster.connection(victim) as conn:
                conn.execute("SELECT pg_wal_replay_resume()")
            with cluster.connection(cluster.primary_node("g1")) as conn:
                conn.execute("DROP TABLE IF EXISTS lag_fill")
        config.unlink()


def test_route_live_reports_the_running_clusters_decision(local_cluster: LocalCluster) -> None:
    result = run_cli("route", "--live", "--dir", str(local_cluster.root), "--json", "SELECT 1")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["target"] == "replica" and doc["node"].startswith("g0-replica"), doc
    assert doc["groups"] == ["g0"] and doc["placement"] == "one"
    assert doc["consistency"] == "eventual"
    write = run_cli("route", "--live", "--dir", str(local_cluster.root), "--json",
                    "--consistency", "strong", "SELECT 1 FOR UPDATE")
    doc = json.loads(write.stdout)
    assert doc["target"] == "primary" and doc["node"] == "g0-primary", doc
    text = run_cli("route", "--live", "--dir", str(local_cluster.root), "SELECT 1").stdout
    assert text.startswith("replica (g0-replica") and "groups: g0" in text
