"""What the monitor samples and the SQL it samples with (shared by the sync and async twins)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HEARTBEAT_DDL",
    "HEARTBEAT_LOCK",
    "HEARTBEAT_WRITE",
    "PRIMARY_SAMPLE",
    "REPLICA_BEAT",
    "REPLICA_SAMPLE",
    "PrimarySample",
    "ReplicaSample",
]

# Key of the session advisory lock whose holder writes a group's heartbeats.
HEARTBEAT_LOCK = 0x6D6C73_6862  # "mls" "hb"
# mlscale's own objects on data nodes live in schema mlscale_sys: not "mlscale",
# which would be the "$user" schema of the local clusters' login user and so
# capture every table its users create without a schema name.
# Key of the transaction-level advisory lock around creating objects in that
# schema: IF NOT EXISTS alone races (two creators can both find it missing).
MLSCALE_SCHEMA_LOCK = 0x6D6C73_7363  # "mls" "sc"
HEARTBEAT_DDL = (
    # One simple query is one implicit transaction: the lock holds to its end.
    f"SELECT pg_advisory_xact_lock({MLSCALE_SCHEMA_LOCK}); "
    "CREATE SCHEMA IF NOT EXISTS mlscale_sys; "
    "CREATE TABLE IF NOT EXISTS mlscale_sys.heartbeat "
    "(shard_group text PRIMARY KEY, beat timestamptz NOT NULL)"
)
HEARTBEAT_WRITE = (
    "INSERT INTO mlscale_sys.heartbeat (shard_group, beat) VALUES (%s, clock_timestamp()) "
    "ON CONFLICT (shard_group) DO UPDATE SET beat = excluded.beat"
)
PRIMARY_SAMPLE = (
    "SELECT pg_current_wal_lsn()::text, system_identifier, "
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int "
    "FROM pg_control_system()"
)
REPLICA_SAMPLE = (
    "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
    "(SELECT system_identifier FROM pg_control_system()), "
    "(SELECT received_tli FROM pg_stat_wal_receiver), pg_is_in_recovery()"
)
REPLICA_BEAT = (
    "SELECT extract(epoch FROM clock_timestamp() - beat) * 1000 "
    "FROM mlscale_sys.heartbeat WHERE shard_group = %s"
)


@dataclass(frozen=True, slots=True)
class PrimarySample:
    """A primary as last seen. LSN in bytes; ``at`` in monotonic seconds."""

    node: str
    group: str
    up: bool
    at: float
    lsn: int | None = None
    system_identifier: int | None = None
    timeline: int | None = None
    writes_heartbeat: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """A replica as last seen: positions in bytes, lag in bytes, staleness in ms."""

    node: str
    group: str
    up: bool
    at: float
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    lag_bytes: int | None = None
    staleness_ms: float | None = None
    system_identifier: int | None = None
    timeline: int | None = None
    in_recovery: bool | None = None
    error: str | None = None
