"""A local etcd cluster on loopback: Patroni's DCS for ``mlscale up --ha``.

Three members, so that losing one keeps a quorum. Each runs as the servers' OS
user with its own data directory under ``etcd/NAME``; started detached (its own
session) and tracked by a PID file, stopped by PID.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..errors import MissingBinaryError, NodeStartError
from .daemons import DaemonFiles
from .osuser import ServiceUser

__all__ = ["ETCD_MEMBERS", "EtcdMember", "etcd_hosts", "find_etcd", "initial_cluster"]

log = logging.getLogger(__name__)

ETCD_MEMBERS = 3
_SYSTEM_ETCD = Path("/usr/bin/etcd")


def find_etcd() -> Path:
    """The ``etcd`` server binary: ``$MLSCALE_ETCD``, else Debian's ``/usr/bin/etcd``."""
    chosen = os.environ.get("MLSCALE_ETCD")
    path = Path(chosen) if chosen else _SYSTEM_ETCD
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinaryError(
            f"etcd not found at {path}; run scripts/setup.sh (it installs Debian's etcd-server) "
            "or point MLSCALE_ETCD at an etcd binary"
        )
    return path


def member_name(index: int) -> str:
    """The name of etcd member ``index`` (in ``processes()``, ``status``)."""
    return f"etcd{index}"


def initial_cluster(peers: list[tuple[str, int]]) -> str:
    """etcd's ``--initial-cluster`` value for members (name, peer port) on loopback."""
    return ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in peers)


def etcd_hosts(ports: list[tuple[int, int]]) -> list[str]:
    """The members' client addresses as Patroni's ``etcd3.hosts`` wants them."""
    return [f"127.0.0.1:{client}" for client, _ in ports]


@dataclass(frozen=True, slots=True)
class EtcdMember:
    """One etcd member on this machine: its directory, ports and process."""

    name: str
    workdir: Path
    client_port: int
    peer_port: int
    user: ServiceUser

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "etcd.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "etcd.log"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def argv(self, binary: Path, cluster: str, token: str) -> list[str]:
        """The command line: loopback only, a new cluster unless its data exists."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            str(binary),
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            cluster,
            "--initial-cluster-token",
            token,
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]

    @property
    def files(self) -> DaemonFiles:
        """The member's PID and log files (its data directory marks its command line)."""
        return DaemonFiles(self.pid_file, self.log_file, str(self.data_dir), self.user)

    def pid(self) -> int | None:
        """The member's PID if it runs (checked against its command line)."""
        return self.files.pid()

    def start(self, binary: Path, cluster: str, token: str) -> int:
        """Start the member detached; its PID. Health is waited for by the caller
        (one member alone has no quorum)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user.own(self.workdir)
        os.chmod(self.workdir, 0o700)
        pid = self.files.start(
            self.argv(binary, cluster, token),
            cwd=self.workdir,
            locale="C",
            what=f"{self.name}: etcd",
        )
        log.info("started %s on port %s (pid %s)", self.name, self.client_port, pid)
        return pid

    def healthy(self, timeout: float = 1.0) -> bool:
        """Whether the member answers ``/health`` with a quorum behind it."""
        try:
            resp = httpx.get(f"{self.client_url}/health", timeout=timeout)
            return resp.status_code == 200 and resp.json().get("health") in ("true", True)
        except (httpx.HTTPError, ValueError):
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.pid() is None:
                raise NodeStartError(f"{self.name} exited; see {self.log_file}")
            if time.monotonic() > deadline:
                raise NodeStartError(
                    f"{self.name} is not healthy after {timeout:.0f} s; see {self.log_file}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop by PID (SIGTERM, SIGKILL if it hangs); whether it was running."""
        pid = self.files.stop(timeout)
        if pid is None:
            return False
        log.info("stopped %s (pid %s)", self.name, pid)
        return True
