"""A standalone exporter for library users: ``/metrics`` over one cluster client, on a thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from .collector import cluster_registry

__all__ = ["Exporter", "start_exporter"]


@dataclass(slots=True)
class Exporter:
    """A running exporter: ``url`` serves the exposition until :meth:`stop`."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """Where Prometheus scrapes, e.g. ``http://127.0.0.1:9464/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and free the port (waits for the request in progress)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_exporter(
    cluster: Any, port: int = 0, host: str = "127.0.0.1", *, caches: Sequence[Any] = ()
) -> Exporter:
    """Serve ``cluster``'s metrics (and ``caches``', and this process's latency
    histograms) at ``http://host:port/metrics`` from a daemon thread; ``port`` 0
    picks a free one (read it from the result). Loopback by default: expose it
    wider only behind what guards your network."""
    server, thread = start_http_server(port, addr=host, registry=cluster_registry(cluster, caches))
    return Exporter(host, int(server.server_port), server, thread)
