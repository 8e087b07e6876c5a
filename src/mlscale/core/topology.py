"""The nodes of a cluster as plain values, derived from its config."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import MlscaleError

if TYPE_CHECKING:  # only annotations name them; importing config loads pydantic
    from ..config import ClusterConfig, NodeConfig

__all__ = [
    "Node",
    "Role",
    "check_bannable",
    "control_nodes_of",
    "find_node",
    "nodes_of",
    "primary_name",
    "replica_name",
    "same_topology",
]


class Role(enum.StrEnum):
    """What a PostgreSQL node is for."""

    CONTROL = "control"
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class Node:
    """One PostgreSQL server of the topology.

    ``name`` is unique in the cluster (``control``, ``g0-primary``,
    ``g0-replica1``); ``slot_name`` is the same name as PostgreSQL accepts for a
    replication slot or an ``application_name`` in ``synchronous_standby_names``.
    """

    name: str
    role: Role
    group: str | None
    host: str
    port: int
    dbname: str
    user: str

    @property
    def slot_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def address(self) -> str:
        """``host:port``, safe to log (no user, no secret)."""
        return f"{self.host}:{self.port}"


def primary_name(group: str) -> str:
    """The node name of ``group``'s primary."""
    return f"{group}-primary"


def replica_name(group: str, index: int) -> str:
    """The node name of ``group``'s replica number ``index`` (from 1)."""
    return f"{group}-replica{index}"


def _node(name: str, role: Role, group: str | None, cfg: NodeConfig, c: ClusterConfig) -> Node:
    return Node(
        name=name,
        role=role,
        group=group,
        host=cfg.host,
        port=cfg.port,
        dbname=cfg.dbname or c.auth.dbname,
        user=cfg.user or c.auth.user,
    )


def nodes_of(config: ClusterConfig) -> list[Node]:
    """Every PostgreSQL node: control first, then each group's primary and replicas."""
    out = [_node("control", Role.CONTROL, None, config.control, config)]
    for group in config.shard_groups:
        primary = _node(primary_name(group.name), Role.PRIMARY, group.name, group.primary, config)
        out.append(primary)
        out.extend(
            _node(replica_name(group.name, i), Role.REPLICA, group.name, replica, config)
            for i, replica in enumerate(group.replicas, start=1)
        )
    return out


def control_nodes_of(config: ClusterConfig) -> list[Node]:
    """The control database's nodes: ``control``, then its standbys
    (``control-replica1``, ...) when it is a Patroni cluster; all of role CONTROL
    (which one leads is Patroni's to say)."""
    out = [_node("control", Role.CONTROL, None, config.control, config)]
    out.extend(
        _node(f"control-replica{i}", Role.CONTROL, None, replica, config)
        for i, replica in enumerate(config.control.replicas or (), start=1)
    )
    return out


def find_node(nodes: Iterable[Node], name: str) -> Node:
    """The node called ``name``; ``KeyError`` listing the known names otherwise."""
    nodes = list(nodes)
    for node in nodes:
        if node.name == name:
            return node
    raise KeyError(f"no node named {name!r}; known: {', '.join(n.name for n in nodes)}")


def check_bannable(node: Node) -> None:
    """Refuse to ban ``node`` from reads unless it is a replica (the one rule for the
    library and the CLI)."""
    if node.role is not Role.REPLICA:
        raise MlscaleError(
            f"only replicas can be banned from reads; {node.name} is a {node.role.value}"
        )


def same_topology(a: Sequence[Node], b: Sequence[Node]) -> bool:
    """Whether two node lists describe the same topology, whatever their order."""
    return sorted(a, key=lambda n: n.name) == sorted(b, key=lambda n: n.name)
