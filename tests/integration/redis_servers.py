"""Real Redis servers for the cache's integration tests: a standalone Redis and a
3-master Redis Cluster on free loopback ports, always stopped.

The fixtures over them live in conftest.py: ``server`` is parametrized over both
topologies (module scope); ``own_redis`` is a standalone Redis of one test only, to
stop or freeze.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from mlscale.cache.remote import RemoteCache, RemoteSettings
from mlscale.local import ports as portsmod
from mlscale.local.osuser import resolve_service_user
from mlscale.local.rediscluster import LocalRedisCluster
from mlscale.local.redisnode import RedisNode

__all__ = ["Server", "cluster_server", "standalone_server"]


@dataclass
class Server:
    """A running Redis (standalone or cluster) and how to reach and count it."""

    kind: str
    ports: list[int]
    password: str
    stop: Callable[[], None]
    pid: Callable[[], int | None] = lambda: None
    caches: list[RemoteCache] = field(default_factory=list)

    def cache(self, settings: RemoteSettings | None = None, timeout_s: float = 1.0) -> RemoteCache:
        c = RemoteCache.connect(
            "127.0.0.1",
            self.ports[0],
            password=self.password,
            cluster=self.kind == "cluster",
            timeout_s=timeout_s,
            settings=settings,
        )
        self.caches.append(c)
        return c

    def _nodes(self) -> list[redis.Redis]:
        return [redis.Redis(port=p, password=self.password, socket_timeout=2.0) for p in self.ports]

    def reset_stats(self) -> None:
        for n in self._nodes():
            n.config_resetstat()
            n.close()

    def calls(self, command: str) -> int:
        """Calls of ``command`` summed over every node since ``reset_stats``."""
        total = 0
        for n in self._nodes():
            stats = n.info("commandstats")
            total += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
            n.close()
        return total


def standalone_server(base: Path) -> Server:
    user = resolve_service_user()
    (port,) = portsmod.claim_ports(base, ["redis-test"])  # kept while it is down
    node = RedisNode(None, base / "redis", port, user)
    password = uuid.uuid4().hex
    node.write_conf(password)
    node.start(password)
    return Server("standalone", [port], password, node.stop, node.pid)


def cluster_server(base: Path) -> Server:
    rc = LocalRedisCluster(base / "rc", masters=3).start()
    return Server("cluster", [n.port for n in rc.nodes], rc.password, rc.stop)
