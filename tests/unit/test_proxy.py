"""The fault-injection proxy of the integration tests, against a plain TCP echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.proxy import Proxy


class Echo:
    """A TCP server on 127.0.0.1 that sends back whatever it receives."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)


@pytest.fixture()
def echo() -> Iterator[Echo]:
    server = Echo()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def proxy(echo: Echo) -> Iterator[Proxy]:
    with Proxy("127.0.0.1", echo.port) as p:
        yield p


def client(proxy: Proxy, timeout_s: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def assert_closed(sock: socket.socket) -> None:
    """The other end closed ``sock``: end of file, or a reset if bytes were in flight."""
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        return
    assert data == b"", data


def wait_until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_forwards_both_ways_and_counts_connections(proxy: Proxy) -> None:
    assert proxy.host == "127.0.0.1" and proxy.port > 0
    with client(proxy) as a, client(proxy) as b:
        assert round_trip(a, b"hello") == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB: many chunks each way
        assert round_trip(b, big) == big
        assert proxy.accepted == 2
        assert proxy.active == 2
    wait_until(lambda: proxy.active == 0)


def test_pause_freezes_without_closing_and_restore_delivers(proxy: Proxy) -> None:
    with client(proxy) as sock:
        assert round_trip(sock, b"before") == b"before"
        proxy.pause()
        sock.sendall(b"frozen")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing comes back, and no EOF either: the node hangs
        # A new connection is accepted and hears nothing too.
        with client(proxy, timeout_s=0.5) as late:
            late.sendall(b"late")
            with pytest.raises(TimeoutError):
                late.recv(100)
            proxy.restore()
            late.settimeout(2.0)
            assert late.recv(100) == b"late"
        sock.settimeout(2.0)
        assert sock.recv(100) == b"frozen"  # held, not lost
        assert round_trip(sock, b"after") == b"after"


def test_cut_closes_connections_and_refuses_new_ones_until_restore(proxy: Proxy) -> None:
    port = proxy.port
    with client(proxy) as sock:
        assert round_trip(sock, b"x") == b"x"
        proxy.cut()
        assert proxy.active == 0
        assert_closed(sock)
    with pytest.raises(ConnectionRefusedError):
        client(proxy)
    proxy.restore()
    assert proxy.port == port
    with client(proxy) as sock:
        assert round_trip(sock, b"back") == b"back"


def test_cut_then_pause_then_restore(proxy: Proxy) -> None:
    proxy.cut()
    proxy.pause()
    proxy.restore()
    with client(proxy) as sock:
        assert round_trip(sock, b"ok") == b"ok"


def test_slow_delays_each_chunk_each_way(proxy: Proxy) -> None:
    with client(proxy) as sock:
        started = time.monotonic()
        round_trip(sock, b"fast")
        fast = time.monotonic() - started
        proxy.slow(0.2)
        started = time.monotonic()
        assert round_trip(sock, b"slow") == b"slow"
        slow = time.monotonic() - started
        proxy.restore()
        started = time.monotonic()
        round_trip(sock, b"fast")
        again = time.monotonic() - started
    assert fast < 0.2 and again < 0.2, (fast, again)  # under the 0.2 s of one delay
    assert slow >= 0.4, slow  # 0.2 s up and 0.2 s down
    with pytest.raises(ValueError, match="negative"):
        proxy.slow(-1)


def test_a_target_that_is_down_closes_the_client(echo: Echo) -> None:
    echo.close()
    with Proxy("127.0.0.1", echo.port) as proxy, client(proxy) as sock:
        assert_closed(sock)
        assert proxy.accepted == 0


def test_stop_closes_everything_and_frees_the_port(echo: Echo) -> None:
    proxy = Proxy("127.0.0.1", echo.port).start()
    sock = client(proxy)
    assert round_trip(sock, b"x") == b"x"
    proxy.pause()  # a paused link is closed too
    proxy.stop()
    assert_closed(sock)
    sock.close()
    assert proxy.active == 0
    with pytest.raises(ConnectionRefusedError):
        client(proxy)
    assert not [t for t in threading.enumerate() if t.name.startswith(f"proxy-{proxy.port}")]


def test_faults_set_before_start_hold_from_the_first_connection(echo: Echo) -> None:
    proxy = Proxy("127.0.0.1", echo.port)
    try:
        proxy.cut()
        proxy.start()
        with pytest.raises(ConnectionRefusedError):
            client(proxy)
        proxy.restore()
        with client(proxy) as sock:
            assert round_trip(sock, b"up") == b"up"
    finally:
        proxy.stop()
