"""Server settings of local nodes: what later features rely on is there from day one."""

from __future__ import annotations

from pathlib import Path

from mlscale.local.settings import (
    HBA,
    conf_text,
    postgres_settings,
    quote_conf,
    redis_conf_text,
    replica_settings,
    sync_standby_names,
)


def test_day_one_settings() -> None:
    s = postgres_settings(port=5999, preload=["pg_stat_statements"])
    assert s["port"] == "5999"
    assert s["listen_addresses"] == "'127.0.0.1'"
    assert s["wal_level"] == "logical"
    assert s["wal_log_hints"] == "on"
    assert s["hot_standby_feedback"] == "on"
    assert int(s["max_prepared_transactions"]) > 0
    assert int(s["max_replication_slots"]) >= 10
    assert int(s["max_wal_senders"]) >= 10
    assert int(s["max_logical_replication_workers"]) >= 4
    assert "wal_keep_size" in s
    assert s["shared_preload_libraries"] == "'pg_stat_statements'"
    assert "shared_preload_libraries" not in postgres_settings(port=1, preload=[])


def test_replica_reads_its_password_from_a_passfile() -> None:
    s = replica_settings(
        primary_port=6000,
        user="mlscale",
        passfile=Path("/c/pgpass"),
        application_name="g0_replica1",
        slot="g0_replica1",
    )
    assert "passfile=/c/pgpass" in s["primary_conninfo"]
    assert "password" not in s["primary_conninfo"]
    assert s["primary_slot_name"] == "'g0_replica1'"


def test_hba_is_loopback_and_scram_only() -> None:
    rules = [line.split() for line in HBA.splitlines() if line and not line.startswith("#")]
    assert all(rule[-1] == "scram-sha-256" for rule in rules)
    assert all(rule[3] == "127.0.0.1/32" for rule in rules if rule[0] == "host")


def test_quoting_and_text() -> None:
    assert quote_conf("it's") == "'it''s'"
    assert quote_conf("a\\b") == "'a\\\\b'"
    assert sync_standby_names(["g0_replica1", "g0_replica2"]) == "ANY 1 (g0_replica1, g0_replica2)"
    assert conf_text({"a": "1"}).endswith("a = 1\n")
    redis = redis_conf_text(port=7000, workdir=Path("/r"), password="pw")
    assert "bind 127.0.0.1" in redis and "requirepass pw" in redis and "port 7000" in redis
