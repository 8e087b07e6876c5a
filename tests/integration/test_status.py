"""`mlscale status --json` on the shared 2 x (1 + 2) cluster."""

from __future__ import annotations

import json
import time

from mlscale import LocalCluster
from tests.conftest import run_cli


def test_status_lists_every_node_up_and_replicas_streaming(local_cluster: LocalCluster) -> None:
    deadline = time.monotonic() + 15
    while True:
        result = run_cli("status", "--dir", str(local_cluster.root), "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        replicas = [n for n in data["nodes"] if n["role"] == "replica"]
        settled = all(n["lag_bytes"] is not None and n["lag_bytes"] <= 64 * 1024 for n in replicas)
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
