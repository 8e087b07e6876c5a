"""Loopback TCP ports for local servers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import PortInUseError

__all__ = ["DEFAULT_SCAN_START", "check_free", "choose_ports", "port_is_free", "port_lock"]

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


def choose_ports(owners: list[str], base: int | None = None, host: str = "127.0.0.1") -> list[int]:
    """One port for each of ``owners`` (node names) in a new cluster.

    With ``base`` the ports are exactly ``base .. base+count-1`` and must all be
    free; without it, the first free ports from :data:`DEFAULT_SCAN_START` up.
    """
    count = len(owners)
    if base is not None:
        if base < 1 or base + count - 1 > 65535:
            raise PortInUseError(f"--base-port {base} leaves no room for {count} ports")
        wanted = list(range(base, base + count))
        check_free(zip(owners, wanted, strict=True), host)
        return wanted
    out: list[int] = []
    for port in range(DEFAULT_SCAN_START, _SCAN_END):
        if port_is_free(port, host):
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
    path = Path(tempfile.gettempdir()) / "mlscale-ports.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # whoever made it, every user may take turns
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
