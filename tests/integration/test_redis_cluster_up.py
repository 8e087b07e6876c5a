"""`mlscale up --redis-cluster N --redis-fsync always`: a real Redis Cluster beside the
cluster, recorded in its config, healed by `up`, shown by `status`, stopped by `down`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import redis

from mlscale import LocalCluster
from mlscale.local import procs
from tests.conftest import assert_one_line_error, run_cli

MASTERS = {"redis-cluster-0", "redis-cluster-1", "redis-cluster-2"}


def test_up_redis_cluster_heal_status_down(scratch_dir: Path) -> None:
    d = str(scratch_dir / "c")
    made = run_cli(
        "up", "--dir", d, "--shards", "1", "--replicas", "0",
        "--redis-cluster", "3", "--redis-fsync", "always",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    cluster = LocalCluster(d)
    config = cluster.config()
    assert config.redis_cluster is not None and len(config.redis_cluster.nodes) == 3
    assert config.local is not None and config.local.redis_fsync == "always"
    pids = cluster.processes()
    assert set(pids) >= MASTERS and all(pids[m] for m in MASTERS), pids

    # A client of the recorded nodes reaches a formed cluster; keys spread over masters.
    secret = (Path(d) / "secret").read_text().strip()
    nodes = [redis.cluster.ClusterNode(n.host, n.port) for n in config.redis_cluster.nodes]
    client = redis.RedisCluster(startup_nodes=nodes, password=secret)
    try:
        for i in range(30):
            client.set(f"k{i}", i)
        assert [int(client.get(f"k{i}") or -1) for i in range(30)] == list(range(30))
        owners = {client.get_node_from_key(f"k{i}").port for i in range(30)}
        assert len(owners) == 3
    finally:
        client.close()

    shown = json.loads(run_cli("status", "--dir", d, "--json").stdout)
    assert shown["redis"]["appendfsync"] == "always"
    masters = {m["name"]: m for m in shown["redis_cluster"]}
    assert set(masters) == MASTERS
    assert all(m["state"] == "up" and m["cluster_state"] == "ok" for m in masters.values())
    assert all(m["appendfsync"] == "always" and m["pid"] for m in masters.values())
    assert "cache cluster:ok" in run_cli("status", "--dir", d).stdout

    # kill -9 one master: status says so; `up` brings exactly it back, the data with it (AOF).
    victim = pids["redis-cluster-1"][0]
    os.kill(victim, signal.SIGKILL)
    assert procs.wait_dead(victim, 10)
    shown = json.loads(run_cli("status", "--dir", d, "--json").stdout)
    assert {m["name"]: m["state"] for m in shown["redis_cluster"]}["redis-cluster-1"] == "down"
    healed = run_cli("up", "--dir", d)
    assert healed.returncode == 0, healed.stderr
    assert "started redis-cluster-1 in" in healed.stdout, healed.stdout
    client = redis.RedisCluster(startup_nodes=nodes, password=secret)
    try:
        assert [int(client.get(f"k{i}") or -1) for i in range(30)] == list(range(30))
    finally:
        client.close()

    # Another shape is refused; `down` stops every master by PID.
    assert_one_line_error(
        run_cli("up", "--dir", d, "--redis-cluster", "4"),
        "created with --redis-cluster 3, not with --redis-cluster 4",
    )
    running = [p for m in MASTERS for p in cluster.processes()[m]]
    stopped = run_cli("down", "--dir", d)
    assert stopped.returncode == 0, stopped.stderr
    assert set(stopped.stdout.removeprefix("stopped ").strip().split(", ")) >= MASTERS
    assert [p for p in running if procs.pid_alive(p)] == []


def test_up_refuses_a_two_master_redis_cluster(scratch_dir: Path) -> None:
    d = str(scratch_dir / "c")
    assert_one_line_error(
        run_cli("up", "--dir", d, "--redis-cluster", "2"), "--redis-cluster must be between 3"
    )
    assert not (scratch_dir / "c" / "mlscale.toml").exists()
