"""Loopback TCP ports for local servers, and the ports stopped clusters will want back.

A port is free while its cluster is stopped, but the cluster wants it back on its
next ``up``. So a new cluster skips the ports recorded by other clusters: those in
the machine-wide registry (a JSON file beside the port lock, written by ``up`` and
cleared by ``destroy``; :func:`claim_ports` records a lone server's too) and those in
the config of any cluster in the same parent directory (clusters made before the
registry existed). An entry lasts while its directory exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import PortInUseError

__all__ = [
    "DEFAULT_SCAN_START",
    "check_free",
    "choose_ports",
    "claim_ports",
    "forget_ports",
    "port_is_free",
    "port_lock",
    "record_ports",
    "reserved_ports",
]

# Below Linux's ephemeral range (32768+), so a client socket never takes a
# port a stopped node will want back when it restarts.
DEFAULT_SCAN_START = 25432
_SCAN_END = 32767


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (SO_REUSEADDR, as PostgreSQL)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_free(ports: Iterable[tuple[str, int]], host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` for the first (owner, port) whose port is taken."""
    for owner, port in ports:
        if not port_is_free(port, host):
            raise PortInUseError(
                f"port {port} on {host} (wanted by {owner}) is in use by another process; "
                "stop that process or choose other ports (--base-port)"
            )


def choose_ports(
    owners: list[str],
    base: int | None = None,
    host: str = "127.0.0.1",
    reserved: Mapping[int, Path] | None = None,
) -> list[int]:
    """One port for each of ``owners`` (node names) in a new cluster.

    With ``base`` the ports are exactly ``base .. base+count-1`` and must all be
    free; without it, the first free ports from :data:`DEFAULT_SCAN_START` up.
    ``reserved`` maps ports other clusters recorded to their directories: those
    are never chosen, even while their cluster is stopped.
    """
    count = len(owners)
    reserved = reserved or {}
    if base is not None:
        if base < 1 or base + count - 1 > 65535:
            raise PortInUseError(f"--base-port {base} leaves no room for {count} ports")
        wanted = list(range(base, base + count))
        for owner, port in zip(owners, wanted, strict=True):
            if port in reserved:
                raise PortInUseError(
                    f"port {port} (wanted by {owner}) belongs to the cluster in "
                    f"{reserved[port]}, which wants it back when it starts; "
                    "choose other ports (--base-port)"
                )
        check_free(zip(owners, wanted, strict=True), host)
        return wanted
    out: list[int] = []
    for port in range(DEFAULT_SCAN_START, _SCAN_END):
        if port not in reserved and port_is_free(port, host):
            out.append(port)
            if len(out) == count:
                return out
    raise PortInUseError(f"no {count} free ports between {DEFAULT_SCAN_START} and {_SCAN_END}")


@contextlib.contextmanager
def port_lock() -> Iterator[None]:
    """Hold the machine-wide lock for choosing ports and binding them.

    A port is free when chosen but only taken when the server binds it, seconds
    later; two ``up`` runs at once would choose the same ones. Holding this
    lock from choice to bind makes them take turns.
    """
    path = _machine_dir() / "mlscale-ports.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # whoever made it, every user may take turns
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- the ports of other clusters ----------------------------------------------------


def _machine_dir() -> Path:
    """Where the port lock and registry live: one place for the whole machine, so
    ``/tmp`` whatever ``TMPDIR`` says (a process with its own ``TMPDIR``, as a test or
    a user's shell may set, must still see every other cluster's ports);
    ``MLSCALE_PORTS_DIR`` overrides it, and a machine without ``/tmp`` falls back to
    the temp dir."""
    override = os.environ.get("MLSCALE_PORTS_DIR")
    if override:
        return Path(override)
    shared = Path("/tmp")
    return shared if shared.is_dir() and os.access(shared, os.W_OK) else Path(tempfile.gettempdir())


def _registry() -> Path:
    return _machine_dir() / "mlscale-ports.json"


@contextlib.contextmanager
def _registry_open() -> Iterator[dict[str, list[int]]]:
    """The registry (cluster directory -> its ports), locked; written back on exit."""
    fd = os.open(_registry(), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(os.pread(fd, 1 << 22, 0) or b"{}")
            clusters = {str(k): [int(p) for p in v] for k, v in data["clusters"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            clusters = {}  # absent or damaged: rebuilt from what is recorded next
        before = dict(clusters)
        yield clusters
        if clusters != before:
            text = json.dumps({"clusters": clusters}, indent=1, sort_keys=True).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
    finally:
        os.close(fd)


def record_ports(root: Path, ports: Iterable[int]) -> None:
    """Record that the cluster in ``root`` owns ``ports`` (best effort)."""
    try:
        with _registry_open() as clusters:
            clusters[str(root)] = sorted(set(ports))
    except OSError:
        pass  # a registry nobody may write only loses the skipping of stopped clusters


def claim_ports(root: Path, names: list[str]) -> list[int]:
    """Free loopback ports for ``names`` (one each), recorded as the ports of the
    directory ``root`` so that no cluster or other claim takes one while the server
    on it is down: a server killed and started again on its port (a fault test)
    finds it still free. ``forget_ports(root)`` (or removing ``root``) releases them."""
    with port_lock():
        chosen = choose_ports(names, reserved=reserved_ports(root))
        record_ports(root, chosen)
    return chosen


def forget_ports(root: Path) -> None:
    """Forget the ports of the cluster in ``root`` (it was destroyed)."""
    with contextlib.suppress(OSError), _registry_open() as clusters:
        clusters.pop(str(root), None)


def _config_ports(config: Path) -> list[int]:
    """The ports a cluster's mlscale.toml names, read leniently (any may be broken)."""
    try:
        data: dict[str, Any] = tomllib.loads(config.read_text(encoding="utf-8"))
        servers = [data.get("control", {}), data.get("redis") or {}]
        for group in data.get("shard_groups", []):
            servers += [group.get("primary", {}), *group.get("replicas", [])]
        buses = [n for n in (data.get("redis_cluster") or {}).get("nodes", [])]
        servers += buses
        return [int(s["port"]) for s in servers if "port" in s] + [
            int(n["bus_port"]) for n in buses if "bus_port" in n
        ]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def reserved_ports(root: Path) -> dict[int, Path]:
    """Ports of clusters other than ``root``, to their directories: every entry of
    the registry whose directory still exists (the rest are dropped from it), and
    every cluster beside ``root``."""
    out: dict[int, Path] = {}
    with contextlib.suppress(OSError), _registry_open() as clusters:
        for other, ports in list(clusters.items()):
            if not Path(other).is_dir():
                del clusters[other]  # destroyed without us
            elif Path(other) != root:
                out.update(dict.fromkeys(ports, Path(other)))
    with contextlib.suppress(OSError):
        for sibling in root.parent.iterdir():
            config = sibling / "mlscale.toml"
            if sibling != root and config.is_file():
                out.update(dict.fromkeys(_config_ports(config), sibling))
    return out
