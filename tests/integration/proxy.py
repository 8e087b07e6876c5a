"""A TCP proxy whose faults a test controls: a frozen node, a dead node, a slow link.

Point a node's host:port in a config at :attr:`Proxy.port` and the client reaches the
server only through the proxy; then, while the client keeps running:

- :meth:`Proxy.pause` -- a frozen node: no byte moves either way, every socket stays
  open, new connections are accepted and then hear nothing (what a hung host or a
  partition that drops packets looks like to a client);
- :meth:`Proxy.cut` -- a dead node: every connection is closed and new ones are
  refused (ECONNREFUSED, as from a host whose server is gone);
- :meth:`Proxy.slow` -- a slow link: every chunk waits that many seconds;
- :meth:`Proxy.restore` -- back to forwarding at full speed.

Threads, not asyncio: the clients under test block in their own threads, and a
thread per direction keeps the proxy readable. One thread accepts; each connection
has two pumps (client to server, server to client). The accepting thread alone opens
and closes the listening socket, so a cut and a restore never race an ``accept``.

psycopg's ``tests/fix_proxy.py`` gave the idea (an external proxy stopped and
started); here the faults are finer and the proxy lives in the test process.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

__all__ = ["Proxy"]

_CHUNK = 64 * 1024  # bytes read per recv
_POLL_S = 0.05  # how often a blocked thread looks at the proxy's state again
_WAIT_S = 5.0  # the longest a control call waits for the threads to obey


class _Link:
    """One proxied connection: the client's socket, the server's, and its two pumps."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.closed = threading.Event()
        self.pumps_left = 2
        self.sending = 0  # pumps between "may send" and "sent"

    def shut(self) -> None:
        """Close both ends at once; the pumps wake from select and finish."""
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Proxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` until :meth:`stop`.

    ``port`` 0 (the default) takes a free port; :attr:`port` tells which. A cut keeps
    that port: :meth:`restore` listens on it again. Use as a context manager, or call
    :meth:`stop`; the pytest fixture ``tcp_proxy`` does it for a test.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.connect_timeout_s = connect_timeout_s
        self._cond = threading.Condition()
        self._paused = False
        self._cut = False
        self._delay_s = 0.0
        self._stopping = False
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = self._listen(port)
        self.port: int = self._listener.getsockname()[1]
        self._bind_error: OSError | None = None
        self.accepted = 0  # connections accepted since start
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"proxy-{self.port}", daemon=True
        )
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Proxy:
        """Start accepting and forwarding (the listening socket is open already)."""
        if not self._started:
            self._started = True
            self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; wait for the threads."""
        with self._cond:
            self._stopping = True
            links = list(self._links)
            self._cond.notify_all()
        for link in links:
            link.shut()
        if self._started:
            self._acceptor.join(_WAIT_S)
        elif self._listener is not None:
            self._listener.close()
            self._listener = None
        self._wait_for_links(links)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------

    def pause(self) -> None:
        """Freeze: forward nothing either way until :meth:`restore`; sockets stay open.

        Returns once no byte is on its way through the proxy."""
        with self._cond:
            self._paused = True
            self._cond.notify_all()
            if not self._cond.wait_for(
                lambda: all(link.sending == 0 for link in self._links), _WAIT_S
            ):
                raise RuntimeError("a pump kept sending after pause()")

    def cut(self) -> None:
        """Die: close every connection now and refuse new ones until :meth:`restore`."""
        with self._cond:
            self._cut = True
            links = list(self._links)
            if not self._started and self._listener is not None:
                self._listener.close()  # no accepting thread yet to do it
                self._listener = None
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._listener is None, _WAIT_S):
                raise RuntimeError("the proxy did not stop listening")
        for link in links:
            link.shut()
        self._wait_for_links(links)

    def slow(self, seconds: float) -> None:
        """Delay every chunk, each way, by ``seconds`` (0: no delay)."""
        if seconds < 0:
            raise ValueError(f"a delay cannot be negative (got {seconds} s)")
        with self._cond:
            self._delay_s = seconds
            self._cond.notify_all()

    def restore(self) -> None:
        """Forward again at full speed; after a cut, listen on the same port again."""
        with self._cond:
            self._paused = False
            self._delay_s = 0.0
            self._cut = False
            self._bind_error = None
            self._cond.notify_all()
            if not self._started:
                return
            done = self._cond.wait_for(
                lambda: self._listener is not None or self._bind_error is not None, _WAIT_S
            )
            if self._bind_error is not None:
                raise RuntimeError(
                    f"cannot listen on port {self.port} again: {self._bind_error}"
                ) from self._bind_error
            if not done:
                raise RuntimeError("the proxy did not listen again")

    @property
    def active(self) -> int:
        """Connections open through the proxy now."""
        with self._cond:
            return len(self._links)

    # -- threads -----------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.create_server((self.host, port), backlog=64)
        listener.setblocking(False)
        return listener

    def _accept_loop(self) -> None:
        """Owns the listening socket: closes it on a cut and on stop, reopens it on restore."""
        while True:
            with self._cond:
                if self._stopping:
                    break
                if self._cut and self._listener is not None:
                    self._listener.close()
                    self._listener = None
                    self._cond.notify_all()
                elif not self._cut and self._listener is None and self._bind_error is None:
                    try:
                        self._listener = self._listen(self.port)
                    except OSError as exc:
                        self._bind_error = exc
                    self._cond.notify_all()
                listener = self._listener
                if listener is None:
                    self._cond.wait(_POLL_S)
                    continue
            ready, _, _ = select.select([listener], [], [], _POLL_S)
            if ready:
                self._accept(listener)
        with self._cond:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self._cond.notify_all()

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setblocking(True)
        try:
            server = socket.create_connection(self.target, timeout=self.connect_timeout_s)
        except OSError:
            client.close()  # the target is down: so is the proxied node
            return
        server.settimeout(None)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, server)
        with self._cond:
            if self._stopping or self._cut:
                link.shut()
                client.close()
                server.close()
                return
            self._links.add(link)
            self.accepted += 1
        for src, dst, way in ((client, server, "up"), (server, client, "down")):
            threading.Thread(
                target=self._pump,
                args=(link, src, dst),
                name=f"proxy-{self.port}-{way}",
                daemon=True,
            ).start()

    def _may_send(self, link: _Link) -> bool:
        """Wait while paused; False once the link is closed."""
        with self._cond:
            while self._paused and not link.closed.is_set():
                self._cond.wait(_POLL_S)  # a shut link sets no condition: look again soon
            if link.closed.is_set():
                return False
            link.sending += 1
            return True

    def _sent(self, link: _Link) -> None:
        with self._cond:
            link.sending -= 1
            self._cond.notify_all()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not link.closed.is_set():
                with self._cond:  # a paused proxy reads nothing: the sender's buffers fill
                    if self._paused:
                        self._cond.wait(_POLL_S)
                        continue
                ready, _, _ = select.select([src], [], [], _POLL_S)
                if not ready:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    break
                with self._cond:
                    delay = self._delay_s
                if delay and link.closed.wait(delay):
                    break
                if not self._may_send(link):
                    break
                try:
                    dst.sendall(data)
                finally:
                    self._sent(link)
        except (OSError, ValueError):
            pass  # a socket closed under us: the link is going away
        finally:
            link.shut()
            self._pump_done(link)

    def _pump_done(self, link: _Link) -> None:
        with self._cond:
            link.pumps_left -= 1
            if link.pumps_left == 0:
                link.client.close()
                link.server.close()
                self._links.discard(link)
            self._cond.notify_all()

    def _wait_for_links(self, links: list[_Link]) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not (set(links) & self._links), _WAIT_S)
