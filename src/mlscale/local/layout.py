"""Where a local cluster keeps its files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Layout"]


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths inside a cluster directory::

    mlscale.toml        the topology config (what Cluster.from_file reads)
    secret              the generated password, mode 0600
    pgpass              libpq passfile for clients and replicas, mode 0600
    state.json          written last when the cluster was created
    nodes/NAME/data     a PostgreSQL data directory
    nodes/NAME/postgres.log
    nodes/NAME/patroni.yml  with --ha: the node's Patroni agent (mode 0600), its
                        patroni.log and patroni.pid
    etcd/etcdN/         with --ha: an etcd member's data, etcd.log, etcd.pid
    redis/              Redis config, AOF, log and pid file
    redis-cluster/node-PORT/  one Redis Cluster master each (``--redis-cluster N``)
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "mlscale.toml"

    @property
    def secret(self) -> Path:
        return self.root / "secret"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def node_dir(self, name: str) -> Path:
        return self.root / "nodes" / name

    def data_dir(self, name: str) -> Path:
        return self.node_dir(name) / "data"

    def log(self, name: str) -> Path:
        return self.node_dir(name) / "postgres.log"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_cluster_dir(self) -> Path:
        return self.root / "redis-cluster"

    def is_cluster(self) -> bool:
        return self.config.exists()

    def is_complete(self) -> bool:
        return self.state.exists()

    def write_private(self, path: Path, text: str, owner: tuple[int, int] | None) -> None:
        """Write ``text`` to a file only its owner can read (mode 0600)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        if owner is not None:
            os.chown(path, *owner)
