"""What `mlscale up` promises about each server: settings, auth, user, loopback only."""

from __future__ import annotations

import os
import stat

import pytest
import redis

from mlscale import Cluster, LocalCluster
from mlscale.local import procs

EXPECTED = {
    "wal_level": "logical",
    "wal_log_hints": "on",
    "hot_standby_feedback": "on",
    "listen_addresses": "127.0.0.1",
    "password_encryption": "scram-sha-256",
    "lc_collate": "C",
    "server_encoding": "UTF8",
}


@pytest.mark.parametrize("node", ["control", "g0-primary", "g1-replica2"])
def test_day_one_settings_are_live(cluster: Cluster, node: str) -> None:
    with cluster.connection(node) as conn:
        for name, value in EXPECTED.items():
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            assert row == (value,), (node, name, row)
        for name in (
            "max_prepared_transactions",
            "max_replication_slots",
            "max_wal_senders",
            "max_logical_replication_workers",
        ):
            row = conn.execute("SELECT current_setting(%s)::int", (name,)).fetchone()
            assert row is not None and row[0] > 0, (node, name)
        row = conn.execute("SELECT pg_size_bytes(current_setting('wal_keep_size'))").fetchone()
        assert row is not None and row[0] >= 64 * 1024 * 1024
        preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
        assert preload is not None and "pg_stat_statements" in preload[0]
        ext = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        ).fetchone()
        assert ext == (1,)


def test_secrets_are_private_and_replicas_use_the_passfile(local_cluster: LocalCluster) -> None:
    layout = local_cluster.layout
    secret = layout.secret.read_text().strip()
    for path in (layout.secret, layout.pgpass):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert secret not in layout.config.read_text()
    conf = (layout.data_dir("g0-replica1") / "mlscale.conf").read_text()
    assert f"passfile={layout.pgpass}" in conf
    assert secret not in conf
    hba = (layout.data_dir("g0-primary") / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)
    assert secret not in (layout.log("g0-primary")).read_text()


def test_servers_run_unprivileged_on_loopback(local_cluster: LocalCluster) -> None:
    pids = local_cluster.processes()
    for name, node_pids in pids.items():
        for pid in node_pids:
            uid = os.stat(f"/proc/{pid}").st_uid
            assert uid != 0, f"{name} process {pid} runs as root"
    listening = _listening_addresses({pid for node_pids in pids.values() for pid in node_pids})
    assert listening, "found no listening sockets of the cluster"
    assert all(addr == "0100007F" for addr in listening), listening  # 127.0.0.1


def _listening_addresses(pids: set[int]) -> list[str]:
    """Hex IPv4 addresses of TCP sockets in LISTEN state owned by ``pids``."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A = LISTEN
                    out.append(parts[1].split(":")[0])
    return out


def test_redis_requires_the_password(local_cluster: LocalCluster) -> None:
    config = local_cluster.config()
    assert config.redis is not None
    anonymous = redis.Redis(host="127.0.0.1", port=config.redis.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    authed = redis.Redis(
        host="127.0.0.1",
        port=config.redis.port,
        password=local_cluster.layout.secret.read_text().strip(),
    )
    assert authed.ping()
    authed.close()


def test_procs_helpers_see_the_cluster(local_cluster: LocalCluster) -> None:
    primary = local_cluster.processes()["g0-primary"]
    assert len(primary) > 3  # postmaster + checkpointer, walwriter, walsenders, ...
    assert all(procs.pid_alive(p) for p in primary)
