"""Pure pieces of core/: LSNs, pool sizing, topology."""

from __future__ import annotations

import pytest

from mlscale import Role, parse_config
from mlscale.config import PoolConfig
from mlscale.core.lsn import format_lsn, lag_bytes, parse_lsn
from mlscale.core.pooling import PoolSize, formula_size, pool_size
from mlscale.core.topology import find_node, nodes_of, same_topology


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/16B3748", 0x16B3748),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text


def test_lsn_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_lsn("16B374D848")
    with pytest.raises(ValueError):
        format_lsn(-1)


def test_lag_is_never_negative() -> None:
    assert lag_bytes(100, 40) == 60
    assert lag_bytes(40, 100) == 0


@pytest.mark.parametrize(("cores", "spindles", "size"), [(4, 1, 9), (8, 1, 17), (2, 0, 4)])
def test_pool_formula(cores: int, spindles: int, size: int) -> None:
    assert formula_size(cores, spindles) == size


def test_pool_size_uses_config_then_machine() -> None:
    assert pool_size(PoolConfig(), cpu_count=2) == PoolSize(1, 5)
    assert pool_size(PoolConfig(cores=8, spindles=0), cpu_count=2) == PoolSize(1, 16)
    assert pool_size(PoolConfig(max_size=3, min_size=2), cpu_count=64) == PoolSize(2, 3)
    assert pool_size(PoolConfig(min_size=10), cpu_count=1) == PoolSize(3, 3)


def test_nodes_are_named_by_group_and_role() -> None:
    cfg = parse_config(
        {
            "auth": {"user": "app", "dbname": "ml"},
            "control": {"port": 5432},
            "shard_groups": [
                {"name": "g0", "primary": {"port": 5433}, "replicas": [{"port": 5434}]},
                {"name": "eu", "primary": {"port": 5435, "dbname": "other"}},
            ],
        }
    )
    nodes = nodes_of(cfg)
    assert [(n.name, n.role, n.group) for n in nodes] == [
        ("control", Role.CONTROL, None),
        ("g0-primary", Role.PRIMARY, "g0"),
        ("g0-replica1", Role.REPLICA, "g0"),
        ("eu-primary", Role.PRIMARY, "eu"),
    ]
    assert find_node(nodes, "g0-replica1").slot_name == "g0_replica1"
    assert find_node(nodes, "eu-primary").dbname == "other"
    assert find_node(nodes, "g0-primary").user == "app"
    assert same_topology(nodes, list(reversed(nodes)))
    assert not same_topology(nodes, nodes[:-1])
    with pytest.raises(KeyError, match="known: control"):
        find_node(nodes, "nope")
