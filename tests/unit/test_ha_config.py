"""HA pieces without servers: the `patroni` endpoints of a config, `[local.ha]`, each
agent's Patroni file, and the parsing of Patroni's REST answers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from mlscale import ConfigError, parse_config
from mlscale.engine.patroni import parse_cluster, parse_history
from mlscale.local.ha import ha_members
from mlscale.local.osuser import resolve_service_user
from mlscale.local.patroni import (
    HA_TIMING,
    PatroniAgent,
    patroni_config,
    patroni_parameters,
    patroni_yaml,
)
from mlscale.local.settings import postgres_settings


def config(**group: Any) -> dict[str, Any]:
    return {
        "control": {"host": "10.0.0.5", "port": 5432},
        "shard_groups": [
            {
                "name": "g0",
                "primary": {"host": "10.0.0.10", "port": 5432},
                "replicas": [{"host": "10.0.0.11", "port": 5432}],
                **group,
            }
        ],
    }


# -- the `patroni` field ------------------------------------------------------------


def test_patroni_endpoints_are_normalised() -> None:
    cfg = parse_config(config(patroni=["http://10.0.0.10:8008/", "https://db-1.example"]))
    assert cfg.shard_groups[0].patroni == ["http://10.0.0.10:8008", "https://db-1.example:8008"]
    assert parse_config(config()).shard_groups[0].patroni is None


@pytest.mark.parametrize(
    ("endpoints", "fragment"),
    [
        ([], "at least one REST endpoint"),
        (["10.0.0.10:8008"], "not an http(s)://host:port URL"),
        (["ftp://10.0.0.10:8008"], "not an http(s)://host:port URL"),
        (["http://10.0.0.10:8008/cluster"], "has a path or query"),
        (["http://10.0.0.10:99999"], "invalid port"),
        (["http://10.0.0.10:8008", "http://10.0.0.10:8008/"], "listed twice"),
        (["http://admin:pw@10.0.0.10:8008"], "inline passwords are not accepted"),
        # The REST API may not share a port with a PostgreSQL server of the config.
        (["http://10.0.0.10:5432"], "both use 10.0.0.10:5432"),
    ],
)
def test_bad_patroni_endpoints_are_refused(endpoints: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(patroni=endpoints))
    assert fragment in str(err.value)
    assert "pw" not in str(err.value).replace(fragment, "")


def test_control_may_be_a_patroni_cluster() -> None:
    data = config()
    data["control"] = {
        "port": 5432,
        "replicas": [{"port": 5433}],
        "patroni": ["http://127.0.0.1:8008", "http://127.0.0.1:8009"],
    }
    cfg = parse_config(data)
    assert cfg.control.patroni == ["http://127.0.0.1:8008", "http://127.0.0.1:8009"]
    data["control"]["replicas"] = [{"port": 5432}]
    with pytest.raises(ConfigError, match=r"control\.replicas\[0\] and control both use"):
        parse_config(data)


def test_local_ha_section() -> None:
    data = config()
    data["local"] = {"ha": {"sync": "on", "etcd": [[2379, 2380], [2381, 2382], [2383, 2384]]}}
    cfg = parse_config(data)
    assert cfg.local is not None and cfg.local.ha is not None
    assert cfg.local.ha.sync == "on" and cfg.local.ha.watchdog is False
    data["local"]["ha"]["etcd"] = [[2379, 2380], [2380, 2382]]
    with pytest.raises(ConfigError, match="its own client and peer port"):
        parse_config(data)
    data["local"]["ha"] = {"sync": "maybe", "etcd": [[2379, 2380]]}
    with pytest.raises(ConfigError, match=r"local\.ha\.sync"):
        parse_config(data)


def test_members_follow_the_endpoint_order() -> None:
    data = config(patroni=["http://127.0.0.1:9001", "http://127.0.0.1:9002"])
    data["control"] = {"port": 5000, "patroni": ["http://127.0.0.1:9000"]}
    members = ha_members(parse_config(data))
    assert [(m.name, m.scope, m.rest_port, m.first) for m in members] == [
        ("control", "control", 9000, True),
        ("g0-primary", "g0", 9001, True),
        ("g0-replica1", "g0", 9002, False),
    ]


# -- the agents' Patroni files ----------------------------------------------------------


def agent_config(tmp_path: Path, sync: str = "strict", watchdog: bool = False) -> dict[str, Any]:
    return patroni_config(
        scope="g0",
        name="g0-primary",
        rest_port=9001,
        pg_port=5432,
        node_dir=tmp_path / "nodes" / "g0-primary",
        data_dir=tmp_path / "nodes" / "g0-primary" / "data",
        bin_dir=Path("/usr/lib/postgresql/15/bin"),
        etcd_hosts=["127.0.0.1:2379", "127.0.0.1:2381", "127.0.0.1:2383"],
        user="mlscale",
        secret="s3cret",
        sync=sync,  # type: ignore[arg-type]
        parameters=patroni_parameters(postgres_settings(port=5432, preload=["pg_stat_statements"])),
        hba=["host all all 127.0.0.1/32 scram-sha-256"],
        watchdog=watchdog,
    )


def test_patroni_config_carries_the_decided_settings(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path)
    dcs = cfg["bootstrap"]["dcs"]
    assert {k: dcs[k] for k in HA_TIMING} == {
        "ttl": 20,
        "loop_wait": 1,
        "retry_timeout": 3,
        "primary_start_timeout": 0,
    }
    assert dcs["synchronous_mode"] is True and dcs["synchronous_mode_strict"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["use_slots"] is True
    params = dcs["postgresql"]["parameters"]
    # mlscale's settings, unquoted for Patroni, without what Patroni sets itself.
    assert params["wal_level"] == "logical"
    assert params["shared_preload_libraries"] == "pg_stat_statements"
    assert params["wal_keep_size"] == "512MB"
    assert params["max_prepared_transactions"] == "64"
    assert params["log_line_prefix"] == "%m [%p] %q%u@%d "
    assert "port" not in params and "listen_addresses" not in params
    assert "data-checksums" in cfg["bootstrap"]["initdb"]
    assert {"locale": "C"} in cfg["bootstrap"]["initdb"]
    assert {"auth": "scram-sha-256"} in cfg["bootstrap"]["initdb"]
    pg = cfg["postgresql"]
    assert pg["listen"] == "127.0.0.1:5432"
    assert pg["authentication"]["superuser"] == {"username": "mlscale", "password": "s3cret"}
    assert cfg["restapi"]["listen"] == "127.0.0.1:9001"
    assert cfg["etcd3"]["hosts"][0] == "127.0.0.1:2379"
    assert cfg["watchdog"] == {"mode": "off"}


@pytest.mark.parametrize(
    ("sync", "mode", "strict"), [("off", False, False), ("on", True, False), ("strict", True, True)]
)
def test_sync_modes(tmp_path: Path, sync: str, mode: bool, strict: bool) -> None:
    dcs = agent_config(tmp_path, sync=sync)["bootstrap"]["dcs"]
    assert (dcs["synchronous_mode"], dcs["synchronous_mode_strict"]) == (mode, strict)


def test_watchdog_used_when_present(tmp_path: Path) -> None:
    assert agent_config(tmp_path, watchdog=True)["watchdog"]["mode"] == "automatic"
    with pytest.raises(ValueError, match="sync must be"):
        agent_config(tmp_path, sync="always")


def test_patroni_file_is_yaml_and_private(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path)
    text = patroni_yaml(cfg)
    assert text.startswith("#")
    assert json.loads(text.split("\n", 1)[1]) == cfg  # JSON is YAML
    agent = PatroniAgent("g0-primary", tmp_path / "nodes" / "g0-primary", resolve_service_user())
    agent.write_config(cfg)
    assert stat.S_IMODE(os.stat(agent.config_file).st_mode) == 0o600


# -- Patroni's REST answers ----------------------------------------------------------------


def test_parse_cluster_and_history() -> None:
    doc = {
        "scope": "g0",
        "members": [
            {
                "name": "g0-primary",
                "role": "leader",
                "state": "running",
                "timeline": 2,
                "api_url": "http://127.0.0.1:9001/patroni",
                "host": "127.0.0.1",
                "port": 5432,
            },
            {
                "name": "g0-replica1",
                "role": "sync_standby",
                "state": "streaming",
                "timeline": 2,
                "host": "127.0.0.1",
                "port": 5433,
                "lag": 0,
                "replay_lag": 16,
                "receive_lag": 0,
                "replay_lsn": "0/3000060",
            },
            {
                "name": "g0-replica2",
                "role": "replica",
                "state": "stopped",
                "lag": "unknown",
                "replay_lag": "unknown",
            },
        ],
    }
    view = parse_cluster(doc, "http://127.0.0.1:9001")
    assert view.leader is not None and view.leader.name == "g0-primary"
    sync = view.member("g0-replica1")
    assert sync is not None and sync.is_sync and sync.lag_bytes == 16
    stopped = view.member("g0-replica2")
    assert stopped is not None and stopped.lag_bytes is None and stopped.timeline is None
    assert view.to_dict()["leader"] == "g0-primary"
    assert parse_cluster({"scope": "g0", "members": []}, "x").leader is None
    events = parse_history(
        [
            [
                1,
                50331808,
                "no recovery target specified",
                "2026-01-01T00:00:00+00:00",
                "g0-replica1",
            ],
            "junk",
        ]
    )
    assert len(events) == 1 and events[0].new_leader == "g0-replica1" and events[0].timeline == 1
