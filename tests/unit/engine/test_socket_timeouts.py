"""Socket timeouts of the engine's connections: libpq's keepalives and user timeout
from ``[pools]``, and the socket shutdown that cuts a connection whose server will
not answer (a frozen process: its kernel acknowledges, so TCP never gives up)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest

from mlscale import parse_config
from mlscale.config import ClusterConfig
from mlscale.core.topology import nodes_of
from mlscale.engine.connect import connect_kwargs
from mlscale.engine.nodepool_sync import shutdown_socket


def _config(tmp_path: Path, pools: dict[str, float] | None = None) -> ClusterConfig:
    return parse_config(
        {
            "auth": {"passfile": "pgpass"},
            "control": {"port": 5432},
            "shard_groups": [{"name": "g0", "primary": {"port": 5433}}],
            **({"pools": pools} if pools is not None else {}),
        },
        source=tmp_path / "c.toml",
    )


def test_connections_carry_keepalives_and_a_user_timeout(tmp_path: Path) -> None:
    config = _config(tmp_path)
    kwargs = connect_kwargs(nodes_of(config)[1], config)
    assert kwargs["keepalives"] == 1
    assert (kwargs["keepalives_idle"], kwargs["keepalives_interval"]) == (10, 3)
    assert kwargs["keepalives_count"] == 3
    assert kwargs["tcp_user_timeout"] == 20_000  # milliseconds
    # libpq knows every parameter (an unknown one fails here, not at connect time).
    psycopg.conninfo.make_conninfo("", **{k: v for k, v in kwargs.items() if k != "passfile"})


def test_socket_timeouts_follow_the_pools_section(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {"keepalives_idle_s": 5, "keepalives_interval_s": 1, "keepalives_count": 2,
         "tcp_user_timeout_s": 0},
    )  # fmt: skip
    kwargs = connect_kwargs(nodes_of(config)[1], config)
    assert (kwargs["keepalives_idle"], kwargs["keepalives_interval"]) == (5, 1)
    assert kwargs["keepalives_count"] == 2
    assert "tcp_user_timeout" not in kwargs  # 0: the OS's default


def test_shutdown_socket_wakes_a_reader_blocked_on_a_silent_peer() -> None:
    mine, silent = socket.socketpair()  # the peer never answers, never closes
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(mine.recv(10)))
    reader.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert shutdown_socket(mine.fileno()) == 1
    reader.join(5.0)
    try:
        assert not reader.is_alive() and got == [b""]  # end of stream, at once
        assert time.monotonic() - started < 1.0
        assert mine.fileno() >= 0  # the owner's descriptor is left open for it to close
    finally:
        mine.close()
        silent.close()


def test_shutdown_socket_of_no_socket_is_zero() -> None:
    assert shutdown_socket(10_000) == 0  # not an open descriptor
    with pytest.raises(OSError):
        socket.socket(fileno=10_000)
