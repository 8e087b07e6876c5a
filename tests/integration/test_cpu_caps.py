"""Capped nodes: every process of a node sits in the node's cgroup with the 10 ms quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.local.cgroups import cap_of_process, cluster_id, detect, parse_proc_cgroup
from tests.conftest import run_cli


def test_every_process_of_a_capped_node_is_in_its_cgroup(scratch_dir: Path) -> None:
    cgroups, why = detect()
    if cgroups is None:
        pytest.skip(f"cgroup CPU control is not writable here: {why}")
    d = scratch_dir / "c"
    result = run_cli(
        "up",
        "--dir",
        str(d),
        "--shards",
        "1",
        "--replicas",
        "1",
        "--no-redis",
        "--node-cpu",
        "0.25",
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    local = LocalCluster(d)
    cid = cluster_id(local.root)
    # Open backends too: processes forked after start must inherit the cap.
    with Cluster.from_file(local.layout.config) as cluster:
        backends = {}
        for name in ("control", "g0-primary", "g0-replica1"):
            with cluster.connection(name) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                backends[name] = row[0]
        processes = local.processes()
        for name, pids in processes.items():
            assert backends[name] in pids
            expected = f"/mlscale/{cid}/{name}"
            node_dir = cgroups.node_dir(cid, name)
            assert cgroups.cap(node_dir) == 0.25
            for pid in pids:
                try:
                    text = Path(f"/proc/{pid}/cgroup").read_text()
                except FileNotFoundError:
                    # A short-lived child (an autovacuum worker, a backend ending) left
                    # between the listing and here; the backends held open cannot.
                    assert pid != backends[name], (name, pid)
                    continue
                v1_path, v2_path = parse_proc_cgroup(text)
                assert (v1_path if cgroups.version == 1 else v2_path) == expected, (name, pid)
                assert cap_of_process(pid) == (expected, 0.25)
            if cgroups.version == 1:
                assert (node_dir / "cpu.cfs_period_us").read_text().strip() == "10000"
                assert (node_dir / "cpu.cfs_quota_us").read_text().strip() == "2500"
            else:
                assert (node_dir / "cpu.max").read_text().split() == ["2500", "10000"]
    shown = run_cli("status", "--dir", str(d), "--json")
    import json

    assert {n["name"]: n["cpu_cap"] for n in json.loads(shown.stdout)["nodes"]} == {
        "control": 0.25,
        "g0-primary": 0.25,
        "g0-replica1": 0.25,
    }
    assert run_cli("down", "--dir", str(d)).returncode == 0
    assert not cgroups.node_dir(cid, "g0-primary").exists(), "cgroup left after down"
