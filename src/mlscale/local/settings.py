"""Server settings of local nodes, decided once so every later feature can rely on them.

Pure: these functions only compute text; :mod:`.pgnode` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from psycopg.conninfo import make_conninfo

__all__ = [
    "HBA",
    "conf_text",
    "postgres_settings",
    "quote_conf",
    "redis_conf_text",
    "replica_settings",
    "sync_standby_names",
]

# Loopback only, password (scram-sha-256) for every connection, replication included.
HBA = """\
# written by mlscale: loopback only, scram-sha-256 everywhere
local   all          all                       scram-sha-256
host    all          all          127.0.0.1/32 scram-sha-256
host    replication  all          127.0.0.1/32 scram-sha-256
"""


def quote_conf(value: str) -> str:
    """A string as a postgresql.conf literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def postgres_settings(*, port: int, preload: Sequence[str] = ()) -> dict[str, str]:
    """Settings every local node gets, primary or replica.

    From day one: logical decoding (resharding uses logical replication),
    ``wal_log_hints`` (pg_rewind after failover), WAL kept for lagging
    replicas, headroom for slots, WAL senders, logical workers and prepared
    transactions (two-phase commit), hot standby with feedback, and replica
    status reported every second so lag in bytes and time stays fresh.
    """
    settings = {
        "listen_addresses": quote_conf("127.0.0.1"),
        "port": str(port),
        "unix_socket_directories": quote_conf(""),
        "max_connections": "200",
        "password_encryption": quote_conf("scram-sha-256"),
        "wal_level": "logical",
        "wal_log_hints": "on",
        "wal_keep_size": quote_conf("512MB"),
        "max_wal_senders": "20",
        "max_replication_slots": "20",
        "max_logical_replication_workers": "8",
        "max_sync_workers_per_subscription": "2",
        "max_worker_processes": "24",
        "max_prepared_transactions": "64",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "wal_receiver_status_interval": quote_conf("1s"),
        "track_commit_timestamp": "on",
        "shared_buffers": quote_conf("128MB"),
        "log_line_prefix": quote_conf("%m [%p] %q%u@%d "),
        "log_min_messages": "warning",
        "lc_messages": quote_conf("C"),
    }
    if preload:
        settings["shared_preload_libraries"] = quote_conf(",".join(preload))
        if "pg_stat_statements" in preload:
            settings["pg_stat_statements.track"] = "all"
    return settings


def replica_settings(
    *, primary_port: int, user: str, passfile: Path, application_name: str, slot: str
) -> dict[str, str]:
    """How a streaming replica reaches its primary: through a passfile, never inline."""
    conninfo = make_conninfo(
        host="127.0.0.1",
        port=primary_port,
        user=user,
        passfile=str(passfile),
        application_name=application_name,
    )
    return {"primary_conninfo": quote_conf(conninfo), "primary_slot_name": quote_conf(slot)}


def sync_standby_names(standbys: Sequence[str]) -> str:
    """Quorum commit: a commit waits for any one of the group's replicas."""
    return f"ANY 1 ({', '.join(standbys)})"


def conf_text(settings: Mapping[str, str]) -> str:
    """Settings as the lines of an included postgresql.conf file."""
    lines = ["# written by mlscale; edits are overwritten when the cluster is rebuilt"]
    lines.extend(f"{key} = {value}" for key, value in settings.items())
    return "\n".join(lines) + "\n"


def redis_conf_text(
    *, port: int, workdir: Path, password: str, appendfsync: str = "everysec"
) -> str:
    """A Redis config: loopback, password, append-only file synced per ``appendfsync``
    (``everysec``: up to a second of acknowledged writes may be lost in a crash;
    ``always``: each write is fsynced before Redis replies)."""
    if appendfsync not in ("always", "everysec"):
        raise ValueError(f"appendfsync must be 'always' or 'everysec', not {appendfsync!r}")
    return "\n".join(
        [
            "# written by mlscale",
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {port}",
            "daemonize yes",
            f"pidfile {workdir / 'redis.pid'}",
            f"logfile {workdir / 'redis.log'}",
            f"dir {workdir}",
            f"requirepass {password}",
            "appendonly yes",
            f"appendfsync {appendfsync}",
            'save ""',
            "",
        ]
    )
