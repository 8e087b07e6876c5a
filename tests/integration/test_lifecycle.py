"""`mlscale up | down | destroy` through the real CLI: idempotent, self-healing, clean."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from mlscale import LocalCluster
from mlscale.local import procs
from tests.conftest import assert_one_line_error, run_cli


def all_pids(cluster: LocalCluster) -> dict[str, list[int]]:
    return cluster.processes()


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    assert procs.wait_dead(pid, timeout), f"pid {pid} still alive"


def test_up_twice_kill_up_down_destroy(scratch_dir: Path) -> None:
    d = str(scratch_dir / "c")
    cluster = LocalCluster(d)
    first = run_cli("up", "--dir", d, "--shards", "1", "--replicas", "1")
    assert first.returncode == 0, first.stderr
    assert "created cluster" in first.stdout
    before = all_pids(cluster)
    assert set(before) == {"control", "g0-primary", "g0-replica1", "redis"}
    assert all(before.values()), before

    # A second `up` on a running cluster does nothing.
    again = run_cli("up", "--dir", d)
    assert again.returncode == 0, again.stderr
    assert "already running; nothing to do" in again.stdout
    # Same postmasters and Redis as before (their children come and go).
    assert {k: v[0] for k, v in all_pids(cluster).items()} == {k: v[0] for k, v in before.items()}

    # kill -9 a replica and a primary: `up` brings exactly those back.
    for name in ("g0-replica1", "g0-primary"):
        victim = all_pids(cluster)[name][0]
        os.kill(victim, signal.SIGKILL)
        wait_gone(victim)
        shown = run_cli("status", "--dir", d, "--json")
        assert shown.returncode == 0, shown.stderr
        states = {n["name"]: n["state"] for n in json.loads(shown.stdout)["nodes"]}
        assert states[name] == "down" and states["control"] == "up", states
        healed = run_cli("up", "--dir", d)
        assert healed.returncode == 0, healed.stderr
        assert f"started {name} in" in healed.stdout, healed.stdout
        now = all_pids(cluster)
        assert now[name] and now[name][0] != victim
        assert now["control"][0] == before["control"][0]

    # Redis too.
    victim = all_pids(cluster)["redis"][0]
    os.kill(victim, signal.SIGKILL)
    wait_gone(victim)
    healed = run_cli("up", "--dir", d)
    assert "started redis" in healed.stdout, healed.stdout + healed.stderr

    # The healed replica streams again from the restarted primary.
    deadline = time.monotonic() + 30
    while True:
        nodes = {n.name: n for n in cluster.status()[0]}
        if nodes["g0-replica1"].streaming or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert nodes["g0-replica1"].streaming, nodes["g0-replica1"]

    # `down` leaves no process of the cluster behind, children included.
    every = [pid for name, pids in all_pids(cluster).items() for pid in pids]
    every += [c for pids in all_pids(cluster).values() for p in pids for c in procs.children(p)]
    assert len(every) > 8
    stopped = run_cli("down", "--dir", d)
    assert stopped.returncode == 0, stopped.stderr
    alive = [pid for pid in every if procs.pid_alive(pid)]
    assert alive == [], f"processes left after down: {alive}"
    assert run_cli("down", "--dir", d).stdout.strip() == "nothing was running"

    # After a full stop, `up` starts everything again; then destroy removes it all.
    restarted = run_cli("up", "--dir", d)
    assert restarted.returncode == 0, restarted.stderr
    assert "started control, g0-primary, g0-replica1, redis" in restarted.stdout
    running = [pid for pids in all_pids(cluster).values() for pid in pids]
    gone = run_cli("destroy", "--dir", d)
    assert gone.returncode == 0, gone.stderr
    assert not Path(d).exists()
    assert [pid for pid in running if procs.pid_alive(pid)] == []


def test_up_with_other_shape_on_existing_cluster_is_refused(scratch_dir: Path) -> None:
    d = str(scratch_dir / "c")
    assert (
        run_cli("up", "--dir", d, "--shards", "1", "--replicas", "0", "--no-redis").returncode == 0
    )
    pids = LocalCluster(d).processes()
    assert_one_line_error(
        run_cli("up", "--dir", d, "--shards", "3"), "created with --shards 1, not with --shards 3"
    )
    assert LocalCluster(d).processes() == pids


def test_sync_replication(scratch_dir: Path) -> None:
    d = str(scratch_dir / "c")
    result = run_cli(
        "up", "--dir", d, "--shards", "1", "--replicas", "2", "--no-redis", "--sync-replication"
    )
    assert result.returncode == 0, result.stderr
    nodes = {n.name: n for n in LocalCluster(d).status()[0]}
    assert nodes["g0-replica1"].sync_state == "quorum"
    assert nodes["g0-replica2"].sync_state == "quorum"
