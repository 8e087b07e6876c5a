"""Ports and directories are checked before anything starts."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from mlscale import ClusterDirError, PortInUseError
from mlscale.local.osuser import ServiceUser, check_reachable
from mlscale.local.ports import choose_ports, port_is_free


def test_taken_port_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(PortInUseError, match=f"port {port} .*wanted by a"):
            choose_ports(["a", "b"], base=port)


def test_scan_skips_taken_ports() -> None:
    ports = choose_ports(["a", "b", "c"])
    assert len(set(ports)) == 3
    assert all(port_is_free(p) for p in ports)


def test_unreachable_parent_is_reported() -> None:
    stranger = ServiceUser("stranger", uid=os.geteuid() + 12345, gid=os.getegid() + 12345)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        locked = Path(tmp) / "locked"
        locked.mkdir(mode=0o700)
        with pytest.raises(ClusterDirError, match="not reachable by OS user 'stranger'"):
            check_reachable(locked / "cluster", stranger)
        os.chmod(locked, 0o711)
        check_reachable(locked / "cluster", stranger)


def test_file_as_parent_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    me = ServiceUser("me", os.geteuid(), os.getegid())
    with pytest.raises(ClusterDirError, match="is not a directory"):
        check_reachable(blocker / "cluster", me)
