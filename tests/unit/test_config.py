"""Topology config: valid files load; bad ones fail naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlscale import ConfigError, load_config, parse_config

BASE = """
name = "prod"
[auth]
passfile = "pgpass"
[control]
host = "10.0.0.5"
port = 5432
[[shard_groups]]
name = "g0"
primary = { host = "10.0.0.10", port = 5432 }
replicas = [{ host = "10.0.0.11", port = 5432 }, { host = "10.0.0.12" }]
[redis]
host = "10.0.0.20"
password_env = "REDIS_PASSWORD"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlscale.toml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.name == "prod"
    assert cfg.auth.user == "mlscale"
    assert cfg.shard_groups[0].replicas[1].port == 5432
    assert cfg.redis is not None and cfg.redis.port == 6379
    assert cfg.pools.max_size is None  # formula
    assert cfg.resolve(cfg.auth.passfile) == (tmp_path / "pgpass").resolve()


def test_absolute_passfile_is_kept(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE.replace('"pgpass"', '"/etc/mlscale/pgpass"')))
    assert cfg.resolve(cfg.auth.passfile) == Path("/etc/mlscale/pgpass")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("[auth]\n", '[auth]\npassword = "hunter2"\n'), ("auth.password", "password_env")),
        (
            ('host = "10.0.0.11", port = 5432', 'host = "10.0.0.11", port = 70000'),
            ("shard_groups[0].replicas[0].port", "65535"),
        ),
        (("port = 5432\n[[shard", 'port = "five"\n[[shard'), ("control.port", "'five'")),
        (("[redis]\n", "[redis]\nhots = 1\n"), ("redis.hots", "unknown field")),
        (('name = "g0"', 'name = "G 0"'), ("shard_groups[0].name", "lowercase")),
        (
            ('{ host = "10.0.0.12" }', '{ host = "10.0.0.10", port = 5432 }'),
            ("shard_groups[0].replicas[1]", "shard_groups[0].primary", "10.0.0.10:5432"),
        ),
        (
            ('passfile = "pgpass"', 'passfile = "pgpass"\npassword_env = "X"'),
            ("auth", "either password_env or passfile"),
        ),
        (('host = "10.0.0.20"', 'host = "10.0.0.5"\nport = 5432'), ("redis", "control")),
        (
            ("[redis]\n", "[pools]\nmin_size = 9\nmax_size = 3\n[redis]\n"),
            ("pools", "min_size (9) is larger than max_size (3)"),
        ),
    ],
)
def test_bad_field_is_named_with_a_fix(
    tmp_path: Path, change: tuple[str, str], fragments: tuple[str, ...]
) -> None:
    old, new = change
    assert old in BASE
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE.replace(old, new, 1)))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_duplicate_shard_group_names_are_refused() -> None:
    group = {"name": "g0", "primary": {"port": 5433}}
    with pytest.raises(ConfigError, match=r"shard_groups\[1\].name 'g0' repeats"):
        parse_config(
            {
                "control": {"port": 5432},
                "shard_groups": [group, {**group, "primary": {"port": 5434}}],
            }
        )


def test_missing_sections_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({})
    assert "control: required field is missing" in str(info.value)
    assert "shard_groups: required field is missing" in str(info.value)


def test_empty_shard_group_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="shard_groups"):
        parse_config({"control": {"port": 5432}, "shard_groups": []})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "name = \n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize("value", [12345678, ["s3cret-value"], "s3cret-value"])
def test_an_inline_password_is_refused_and_never_echoed(value: object) -> None:
    for section in ("control", "auth", "redis"):
        data: dict[str, object] = {"control": {"port": 5432},
                                   "shard_groups": [{"name": "g0", "primary": {"port": 5433}}]}
        target = data.setdefault(section, {})
        assert isinstance(target, dict)
        target["password"] = value
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        assert "inline passwords are not accepted" in str(info.value)
        assert "s3cret" not in str(info.value) and "12345678" not in str(info.value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("localhost", "127.0.0.1"),
        ("LOCALHOST", "localhost"),
        ("::1", "127.0.0.1"),
        ("0:0:0:0:0:0:0:1", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_two_names_of_one_server_are_one_server(a: str, b: str) -> None:
    with pytest.raises(ConfigError, match=r"shard_groups\[0\].primary and control both use"):
        parse_config(
            {
                "control": {"host": a, "port": 5432},
                "shard_groups": [{"name": "g0", "primary": {"host": b, "port": 5432}}],
            }
        )
    with pytest.raises(ConfigError, match="redis and control both use"):
        parse_config(
            {
                "control": {"host": a, "port": 5432},
                "shard_groups": [{"name": "g0", "primary": {"port": 5433}}],
                "redis": {"host": b, "port": 5432},
            }
        )


def test_other_hosts_or_ports_are_other_servers() -> None:
    parse_config(
        {
            "control": {"host": "localhost", "port": 5432},
            "shard_groups": [
                {"name": "g0", "primary": {"host": "127.0.0.2", "port": 5432}},
                {"name": "g1", "primary": {"host": "localhost", "port": 5433}},
                {"name": "g2", "primary": {"host": "db.example", "port": 5432}},
            ],
        }
    )


def _with_redis_cluster(nodes: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {
        "control": {"port": 5432},
        "shard_groups": [{"name": "g0", "primary": {"port": 5433}}],
        "redis": {"port": 6379},
        "redis_cluster": {"nodes": nodes, **extra},
    }


def test_redis_cluster_section_is_validated() -> None:
    three = [{"port": 7000, "bus_port": 17000}, {"port": 7001}, {"port": 7002}]
    cfg = parse_config(_with_redis_cluster(three, password_file="secret"))
    assert cfg.redis_cluster is not None
    assert [n.port for n in cfg.redis_cluster.nodes] == [7000, 7001, 7002]
    assert cfg.redis_cluster.nodes[0].bus_port == 17000
    with pytest.raises(ConfigError, match=r"redis_cluster.nodes: List should have at least 3"):
        parse_config(_with_redis_cluster(three[:2]))
    # A bus port is a port like any other: two servers cannot share it.
    with pytest.raises(ConfigError, match=r"redis_cluster.nodes\[1\] and redis_cluster.nodes"):
        parse_config(_with_redis_cluster([three[0], {"port": 17000}, three[2]]))
    with pytest.raises(ConfigError, match=r"redis_cluster.nodes\[0\] and redis both use"):
        parse_config(_with_redis_cluster([{"port": 6379}, *three[1:]]))
    with pytest.raises(ConfigError, match=r"inline passwords are not accepted in \[redis_clu"):
        parse_config(_with_redis_cluster(three, password="x"))
    with pytest.raises(ConfigError, match="either password_env or password_file"):
        parse_config(_with_redis_cluster(three, password_env="P", password_file="f"))


def test_local_redis_fsync_is_always_or_everysec() -> None:
    base = {"control": {"port": 5432}, "shard_groups": [{"name": "g0", "primary": {"port": 5433}}]}
    for given, expected in (({}, "everysec"), ({"redis_fsync": "always"}, "always")):
        local = parse_config({**base, "local": given}).local
        assert local is not None and local.redis_fsync == expected
    with pytest.raises(ConfigError, match=r"local\.redis_fsync"):
        parse_config({**base, "local": {"redis_fsync": "no"}})
