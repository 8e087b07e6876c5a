"""Running the service: uvicorn with ``workers`` processes, each building the app from
the settings this process puts in the environment (an import string and a factory,
as uvicorn needs to start workers; no secret is put in argv or the environment).

uvicorn's own shutdown is the graceful one: on SIGTERM or SIGINT it stops accepting
connections, lets the requests in flight finish (up to ``graceful_s`` seconds), then
runs each worker's lifespan shutdown, which writes what the prediction writers
acknowledged before closing the cluster.

Metrics: with several workers, each writes its numbers to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and ``/metrics``
sums them. The directory is the caller's if set (emptied first, as prometheus_client
requires: an earlier run's files would add to this run's counts), else a temporary
one removed at exit. One worker keeps its metrics in process."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Any

from .settings import ServeSettings

__all__ = ["FACTORY", "serve"]

FACTORY = "mlscale.serve.app:app_from_env"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    graceful_s: float = 30.0,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Serve until stopped (SIGTERM, SIGINT): see the module docstring."""
    import uvicorn

    os.environ.update(settings.to_env())
    made = _metrics_dir() if workers > 1 else None
    try:
        _run(uvicorn, host, port, workers, graceful_s, access_log, log_level)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _metrics_dir() -> str | None:
    """Prepare the multiprocess metrics directory; the one made here, if any."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.unlink(stale)
        return None
    made = tempfile.mkdtemp(prefix="mlscale-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def _run(
    uvicorn: Any,
    host: str,
    port: int,
    workers: int,
    graceful_s: float,
    access_log: bool,
    log_level: str,
) -> None:
    uvicorn.run(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=int(graceful_s) if graceful_s else None,
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
    )
