"""`mlscale up --ha`: a local cluster on Patroni and etcd, through the real CLI.

One HA cluster for the module (1 shard group of 2 nodes, the control database of 2,
3 etcd members): it is made with leaders and streaming sync standbys, `switchover`
moves a leader and the old one rejoins as a standby, `down` and `destroy` leave no
process. (Non-HA clusters are covered, unchanged, by the other tests.)
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mlscale import LocalCluster
from mlscale.local import procs
from tests.conftest import run_cli
from tests.integration.local_clusters import require_ha, throwaway_dir

pytestmark = pytest.mark.integration


def _cluster_pids(root: Path) -> list[int]:
    """Every process whose command line names the cluster directory (agents, etcd,
    postmasters), found in /proc, not through mlscale's own bookkeeping."""
    out = []
    for entry in Path("/proc").iterdir():
        pid = int(entry.name) if entry.name.isdigit() else 0
        if pid and procs.pid_alive(pid) and any(str(root) in a for a in procs.cmdline(pid)):
            out.append(pid)
    return out


@pytest.fixture(scope="module")
def ha_dir() -> Iterator[Path]:
    require_ha()
    with throwaway_dir("mlscale-ha-") as root:
        made = run_cli(
            "up", "--dir", str(root), "--ha", "--shards", "1", "--replicas", "1", "--no-redis"
        )
        assert made.returncode == 0, made.stderr
        yield root


def status(root: Path) -> dict[str, Any]:
    shown = run_cli("status", "--dir", str(root), "--json")
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def scopes(root: Path) -> dict[str, dict[str, Any]]:
    return {s["scope"]: s for s in status(root)["ha"]["scopes"]}


def wait_settled(root: Path, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every scope with a running leader and its other members streaming."""
    deadline = time.monotonic() + timeout
    while True:
        now = scopes(root)
        if all(
            s["leader"]
            and all(
                m["state"] == ("running" if m["role"] == "leader" else "streaming")
                for m in s["members"]
            )
            for s in now.values()
        ):
            return now
        assert time.monotonic() < deadline, now
        time.sleep(0.5)


def test_up_ha_makes_leaders_and_streaming_sync_standbys(ha_dir: Path) -> None:
    ha = status(ha_dir)["ha"]
    assert ha["sync"] == "strict"
    assert ha["watchdog"].startswith("on" if Path("/dev/watchdog").exists() else "off")
    by_scope = {s["scope"]: s for s in ha["scopes"]}
    assert set(by_scope) == {"control", "g0"}
    assert by_scope["g0"]["leader"] == "g0-primary"
    assert by_scope["control"]["leader"] == "control"
    for scope in by_scope.values():
        others = [m for m in scope["members"] if m["role"] != "leader"]
        assert len(others) == 1, scope
        assert others[0]["state"] == "streaming" and others[0]["role"] == "sync_standby"
    assert all(ha["agents"].values()) and len(ha["agents"]) == 4
    assert all(ha["etcd"].values()) and len(ha["etcd"]) == 3

    # The config records each scope's REST endpoints; the secret stays in 0600 files.
    cluster = LocalCluster(ha_dir)
    config = cluster.config()
    assert config.shard_groups[0].patroni and len(config.shard_groups[0].patroni) == 2
    assert config.control.patroni and len(config.control.patroni) == 2
    secret = (ha_dir / "secret").read_text().strip()
    for yml in (ha_dir / "nodes").glob("*/patroni.yml"):
        assert stat.S_IMODE(yml.stat().st_mode) == 0o600
    for pid in _cluster_pids(ha_dir):
        assert not any(secret in part for part in procs.cmdline(pid)), pid
    # The nodes have what mlscale's clusters need.
    with psycopg.connect(
        host="127.0.0.1",
        port=config.shard_groups[0].primary.port,
        user="mlscale",
        dbname="mlscale",
        passfile=str(ha_dir / "pgpass"),
    ) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('data_checksums', 'wal_level', 'lc_collate', 'max_prepared_transactions')"
            ).fetchall()
        )
    assert settings == {
        "data_checksums": "on",
        "wal_level": "logical",
        "lc_collate": "C",
        "max_prepared_transactions": "64",
    }
    text = run_cli("status", "--dir", str(ha_dir)).stdout
    assert "g0: leader g0-primary" in text and "watchdog:" in text
    # Any config with patroni endpoints (a remote Patroni cluster too) shows the same view.
    remote = run_cli("status", "--config", str(ha_dir / "mlscale.toml")).stdout
    assert "g0: leader g0-primary" in remote and "control: leader control" in remote


def test_switchover_moves_the_leader_and_the_old_one_rejoins(ha_dir: Path) -> None:
    moved = run_cli("switchover", "g0", "--dir", str(ha_dir), "--json")
    assert moved.returncode == 0, moved.stderr
    result = json.loads(moved.stdout)
    assert (result["old_leader"], result["new_leader"]) == ("g0-primary", "g0-replica1")
    assert 0 < result["seconds"] < 60
    deadline = time.monotonic() + 60
    while True:
        g0 = scopes(ha_dir)["g0"]
        old = next(m for m in g0["members"] if m["name"] == "g0-primary")
        # Back as a streaming standby, and (strict sync) chosen as the sync standby.
        if old["state"] == "streaming" and old["role"] == "sync_standby":
            break
        assert time.monotonic() < deadline, g0
        time.sleep(0.5)
    new = next(m for m in g0["members"] if m["name"] == "g0-replica1")
    assert old["timeline"] == new["timeline"] >= 2
    # The new leader takes a write (strict sync: the rejoined standby acknowledges it).
    port = LocalCluster(ha_dir).config().shard_groups[0].replicas[0].port
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="mlscale",
        dbname="mlscale",
        passfile=str(ha_dir / "pgpass"),
        autocommit=True,
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ha_probe (id int)")
        conn.execute("INSERT INTO ha_probe VALUES (1)")
    # And back, by manual failover to a named member.
    back = run_cli("failover", "g0", "--to", "g0-primary", "--dir", str(ha_dir))
    assert back.returncode == 0, back.stderr
    assert "g0-primary leads now" in back.stdout
    wait_settled(ha_dir)


def test_down_up_destroy_leave_no_process(ha_dir: Path) -> None:
    wait_settled(ha_dir)
    assert len(_cluster_pids(ha_dir)) == 4 + 3 + 4  # agents, etcd, postmasters
    down = run_cli("down", "--dir", str(ha_dir))
    assert down.returncode == 0, down.stderr
    assert _cluster_pids(ha_dir) == []
    again = run_cli("up", "--dir", str(ha_dir))
    assert again.returncode == 0, again.stderr
    assert all(s["leader"] for s in scopes(ha_dir).values())
    gone = run_cli("destroy", "--dir", str(ha_dir))
    assert gone.returncode == 0, gone.stderr
    assert _cluster_pids(ha_dir) == []
    assert not ha_dir.exists()
