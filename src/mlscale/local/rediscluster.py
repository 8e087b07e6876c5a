"""A local N-master Redis Cluster on loopback, for the cache tier's tests and benchmarks.

Real ``redis-server --cluster-enabled yes`` processes, one directory each under a
work directory, joined by ``redis-cli --cluster create``. Every node has a client
port and an explicit cluster-bus port (``cluster-port``), both chosen below Linux's
ephemeral range like the other local servers. Nodes are stopped by the PID in their
pid file, checked against the process's command line, never by name.

``mlscale up --redis-cluster N`` runs one beside a local cluster (ports chosen with
the cluster's, recorded in its config); tests and benchmarks start their own.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from ..errors import NodeStartError
from . import ports as portsmod
from . import procs
from .binaries import find_redis
from .osuser import ServiceUser, resolve_service_user
from .redisnode import redis_pid

__all__ = ["LocalRedisCluster", "RedisClusterNode", "cluster_node_conf_text"]

log = logging.getLogger(__name__)


def cluster_node_conf_text(
    *, port: int, bus_port: int, workdir: Path, password: str, appendfsync: str = "everysec"
) -> str:
    """The config of one cluster node: loopback, password (also for node-to-node
    links), its own nodes.conf, AOF synced per ``appendfsync`` (always | everysec)."""
    if appendfsync not in ("always", "everysec"):
        raise ValueError(f"appendfsync must be 'always' or 'everysec', not {appendfsync!r}")
    return "\n".join(
        [
            "# written by mlscale (local Redis Cluster node)",
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {port}",
            f"cluster-port {bus_port}",
            "cluster-enabled yes",
            f"cluster-config-file {workdir / 'nodes.conf'}",
            # Short enough that a test that stops a node sees the cluster react.
            "cluster-node-timeout 3000",
            "daemonize yes",
            f"pidfile {workdir / 'redis.pid'}",
            f"logfile {workdir / 'redis.log'}",
            f"dir {workdir}",
            f"requirepass {password}",
            f"masterauth {password}",
            "appendonly yes",
            f"appendfsync {appendfsync}",
            'save ""',
            "",
        ]
    )


@dataclass(frozen=True, slots=True)
class RedisClusterNode:
    """One master of the local cluster: its client port, bus port and directory."""

    port: int
    bus_port: int
    workdir: Path

    def pid(self) -> int | None:
        """The PID of this node's server if it runs (pid file checked against argv)."""
        return redis_pid(self.workdir, self.port)


class LocalRedisCluster:
    """``masters`` Redis Cluster masters (no replicas) under ``workdir`` on 127.0.0.1.

    ``start()`` writes the configs, starts the servers, creates the cluster (16384
    slots spread evenly) and waits until every node reports ``cluster_state:ok``;
    ``stop()`` stops every node it finds by PID. The password is generated unless
    given; ``startup_nodes`` is what a ``redis.RedisCluster`` client needs.

    ``ports`` gives each master's (client port, bus port) when the caller chose them
    (under its own port lock); otherwise ``start()`` chooses free ones. A cluster
    formed earlier is found again with ``ports`` and brought back by ``restart()``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        masters: int = 3,
        password: str | None = None,
        user: ServiceUser | None = None,
        binary: Path | None = None,
        ports: Sequence[tuple[int, int]] | None = None,
        appendfsync: str = "everysec",
    ) -> None:
        if ports is not None:
            masters = len(ports)
        if masters < 3:
            # redis-cli --cluster create refuses fewer than 3 masters.
            raise ValueError(f"a Redis Cluster needs at least 3 masters, not {masters}")
        if appendfsync not in ("always", "everysec"):
            raise ValueError(f"appendfsync must be 'always' or 'everysec', not {appendfsync!r}")
        self.workdir = workdir
        self.masters = masters
        self.password = password or secrets.token_urlsafe(18)
        self.user = user or resolve_service_user()
        self.binary = binary
        self.appendfsync = appendfsync
        self._given_ports = ports is not None
        self.nodes: list[RedisClusterNode] = [
            RedisClusterNode(port, bus, self.node_dir(port)) for port, bus in ports or ()
        ]

    def node_dir(self, port: int) -> Path:
        """The directory of the master on client port ``port``."""
        return self.workdir / f"node-{port}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every master."""
        return [("127.0.0.1", n.port) for n in self.nodes]

    def pids(self) -> list[int]:
        """PIDs of the nodes now running."""
        return [pid for pid in (n.pid() for n in self.nodes) if pid is not None]

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        """Start the nodes and form the cluster; self. On failure every node
        started is stopped again before the error is raised."""
        binary = self.binary or find_redis()
        cli = shutil.which("redis-cli", path=str(binary.parent)) or shutil.which("redis-cli")
        if cli is None:
            raise NodeStartError("redis-cli not found beside redis-server or on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user.own(self.workdir)
        try:
            if self._given_ports:
                for node in self.nodes:
                    self._start_node(binary, node, timeout)
            else:
                with portsmod.port_lock():
                    owners = [f"redis-cluster-{i}" for i in range(self.masters)]
                    chosen = portsmod.choose_ports(
                        owners + [f"{o}-bus" for o in owners],
                        reserved=portsmod.reserved_ports(self.workdir),
                    )
                    self.nodes = [
                        RedisClusterNode(
                            chosen[i], chosen[self.masters + i], self.node_dir(chosen[i])
                        )
                        for i in range(self.masters)
                    ]
                    for node in self.nodes:
                        self._start_node(binary, node, timeout)
            self._create(Path(cli), timeout)
            self._wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        log.info(
            "started a %s-master redis cluster on ports %s",
            self.masters,
            [n.port for n in self.nodes],
        )
        return self

    def restart(self, timeout: float = 30.0) -> list[RedisClusterNode]:
        """Start the masters of a cluster formed earlier that are down, from their own
        config and nodes.conf (they rejoin it), and wait until every master reports
        ``cluster_state:ok``; the masters started."""
        down = [n for n in self.nodes if n.pid() is None]
        if down:
            binary = self.binary or find_redis()
            for node in down:
                self._launch(binary, node, timeout)
        self._wait_ok(timeout)
        return down

    def _env(self) -> dict[str, str]:
        # Nothing of the caller's environment; the password reaches redis-cli through
        # REDISCLI_AUTH, never its argv (visible to every user in /proc).
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}

    def _start_node(self, binary: Path, node: RedisClusterNode, timeout: float) -> None:
        node.workdir.mkdir(parents=True, exist_ok=True)
        self.user.own(node.workdir)
        conf = node.workdir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                cluster_node_conf_text(
                    port=node.port,
                    bus_port=node.bus_port,
                    workdir=node.workdir,
                    password=self.password,
                    appendfsync=self.appendfsync,
                )
            )
        self.user.own(conf)
        self._launch(binary, node, timeout)

    def _launch(self, binary: Path, node: RedisClusterNode, timeout: float) -> None:
        """Run ``redis-server`` on the node's config (it daemonizes); wait for PING."""
        conf = node.workdir / "redis.conf"
        stale = node.workdir / "redis.pid"
        if stale.exists() and node.pid() is None:
            stale.unlink()
        done = subprocess.run(
            [str(binary), str(conf)],
            cwd=node.workdir,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            env=self._env(),
            umask=0o077,
            **self.user.popen_kwargs(),
        )
        if done.returncode != 0:
            raise NodeStartError(
                f"redis cluster node did not start on port {node.port}: "
                f"{(done.stderr or done.stdout).strip()[-200:] or 'no output'}"
            )
        self._wait(node, timeout, lambda c: bool(c.ping()), "answer PING")

    def _wait(
        self,
        node: RedisClusterNode,
        timeout: float,
        ready: Callable[[redis.Redis], bool],
        what: str,
    ) -> None:
        client = redis.Redis(
            host="127.0.0.1",
            port=node.port,
            password=self.password,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if node.pid() is not None and ready(client):
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise NodeStartError(
                        f"redis cluster node on port {node.port} did not {what} within "
                        f"{timeout:.0f} s (log: {node.workdir / 'redis.log'})"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _create(self, cli: Path, timeout: float) -> None:
        done = subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            env={**self._env(), "REDISCLI_AUTH": self.password},
        )
        if done.returncode != 0:
            raise NodeStartError(
                "redis-cli --cluster create failed: "
                f"{(done.stderr or done.stdout).strip()[-300:] or 'no output'}"
            )

    def _wait_ok(self, timeout: float) -> None:
        def ok(client: redis.Redis) -> bool:
            state = client.cluster("INFO").get("cluster_state")
            return state in ("ok", b"ok")

        for node in self.nodes:
            self._wait(node, timeout, ok, "report cluster_state:ok")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node that runs (SIGTERM, SIGKILL after ``timeout`` seconds)."""
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                procs.terminate(pid, signal.SIGTERM, timeout)
                log.info("stopped redis cluster node on port %s (pid %s)", node.port, pid)

    def __enter__(self) -> LocalRedisCluster:
        return self.start() if not self.pids() else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
