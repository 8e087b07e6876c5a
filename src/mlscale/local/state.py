"""``state.json``: what a local cluster records of itself when its creation completes.

Besides marking the creation complete, it holds what stopping the cluster needs --
its OS user, its nodes and ports, its Redis port, its Redis Cluster's ports, its
CPU cap -- so that ``down``
and ``destroy`` work from it alone, even when a hand-edited ``mlscale.toml`` no
longer parses. (Clusters made before this file held nodes are read from the config.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.topology import Node, Role, nodes_of

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["ClusterRecord", "read_record", "record_of", "write_record"]

FORMAT = 2


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """What stopping a local cluster needs: no binaries, no valid config."""

    os_user: str | None
    nodes: tuple[Node, ...]
    redis_port: int | None
    node_cpu: float | None
    # (client port, bus port) of each Redis Cluster master; empty without one.
    redis_cluster: tuple[tuple[int, int], ...] = ()

    @property
    def ports(self) -> list[int]:
        """Every port the cluster's servers listen on (Redis Cluster buses included)."""
        return (
            [n.port for n in self.nodes]
            + ([self.redis_port] if self.redis_port else [])
            + [p for pair in self.redis_cluster for p in pair]
        )


def record_of(config: ClusterConfig) -> ClusterRecord:
    """The record of the cluster ``config`` describes."""
    local = config.local
    return ClusterRecord(
        os_user=local.os_user if local else None,
        nodes=tuple(nodes_of(config)),
        redis_port=config.redis.port if config.redis else None,
        node_cpu=local.node_cpu if local else None,
        redis_cluster=tuple(
            (n.port, n.bus_port if n.bus_port is not None else n.port + 10000)
            for n in (config.redis_cluster.nodes if config.redis_cluster else ())
        ),
    )


def write_record(path: Path, config: ClusterConfig, postgres_version: int) -> None:
    """Write ``state.json`` for the cluster of ``config`` (its creation is complete)."""
    record = record_of(config)
    doc = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "os_user": record.os_user,
        "postgres_version": postgres_version,
        "nodes": [
            {
                "name": n.name,
                "role": n.role.value,
                "group": n.group,
                "host": n.host,
                "port": n.port,
                "dbname": n.dbname,
                "user": n.user,
            }
            for n in record.nodes
        ],
        "redis_port": record.redis_port,
        "node_cpu": record.node_cpu,
        "redis_cluster": [{"port": p, "bus_port": b} for p, b in record.redis_cluster],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def read_record(path: Path) -> ClusterRecord | None:
    """The record in ``state.json``, or None if it is absent, damaged or from before
    records held nodes."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc.get("format", 1) < FORMAT:
            return None
        nodes = tuple(
            Node(
                name=str(n["name"]),
                role=Role(n["role"]),
                group=n["group"],
                host=str(n["host"]),
                port=int(n["port"]),
                dbname=str(n["dbname"]),
                user=str(n["user"]),
            )
            for n in doc["nodes"]
        )
        redis_port = doc.get("redis_port")
        node_cpu = doc.get("node_cpu")
        return ClusterRecord(
            os_user=doc.get("os_user"),
            nodes=nodes,
            redis_port=int(redis_port) if redis_port is not None else None,
            node_cpu=float(node_cpu) if node_cpu is not None else None,
            redis_cluster=tuple(
                (int(n["port"]), int(n["bus_port"])) for n in doc.get("redis_cluster") or ()
            ),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
