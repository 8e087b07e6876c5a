"""`--sync-replication` with one replica per group: a commit waits for that replica.

While it is down every commit of its group stalls (until it is back, however long):
`up` warns of this when it makes such a cluster, and `status` counts the commits
waiting on each primary.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mlscale import LocalCluster
from mlscale.core.topology import find_node, nodes_of
from mlscale.engine.connect import connect
from mlscale.local.ports import port_is_free
from tests.conftest import run_cli


def waiting(d: str) -> tuple[int | None, str]:
    """g0-primary's count of commits waiting on sync replication, and the table."""
    shown = run_cli("status", "--dir", d, "--json")
    assert shown.returncode == 0, shown.stderr
    nodes = {n["name"]: n for n in json.loads(shown.stdout)["nodes"]}
    return nodes["g0-primary"]["sync_waiting"], run_cli("status", "--dir", d).stdout


@pytest.mark.timeout(120)
def test_one_sync_replica_per_group_warns_and_status_counts_stalled_commits(
    scratch_dir: Path,
) -> None:
    d = str(scratch_dir / "c")
    # Ports far above where new clusters look first, so that none takes the replica's
    # while it is down.
    base = next(b for b in range(31000, 32700, 10) if all(port_is_free(b + i) for i in range(3)))
    made = run_cli(
        "up",
        "--dir",
        d,
        "--shards",
        "1",
        "--replicas",
        "1",
        "--no-redis",
        "--sync-replication",
        "--base-port",
        str(base),
    )
    assert made.returncode == 0, made.stderr
    assert "warning:" in made.stderr and "stall" in made.stderr, made.stderr
    assert waiting(d)[0] == 0

    local = LocalCluster(d)
    config = local.config()
    assert local.down(["g0-replica1"]) == ["g0-replica1"]
    done = threading.Event()
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            with connect(find_node(nodes_of(config), "g0-primary"), config) as conn:
                conn.execute("CREATE TABLE stalled (id int)")
            done.set()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    writer = threading.Thread(target=commit, daemon=True)
    writer.start()
    deadline = time.monotonic() + 20
    while (shown := waiting(d))[0] != 1:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert not done.is_set()
    assert "g0-primary: 1 commit waiting for synchronous replication" in shown[1], shown[1]

    # Back comes the replica, and with it the commit.
    assert run_cli("up", "--dir", d).returncode == 0
    assert done.wait(30), errors
    writer.join(5)
    assert errors == []
    assert waiting(d)[0] == 0
