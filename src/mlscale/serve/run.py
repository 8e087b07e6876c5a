"""Running the service: uvicorn with ``workers`` processes, each building the app from
the settings this process puts in the environment (an import string and a factory,
as uvicorn needs to start workers; no secret is put in argv or the environment).

uvicorn's own shutdown is the graceful one: on SIGTERM or SIGINT it stops accepting
connections, lets the requests in flight finish (up to ``graceful_s`` seconds), then
runs each worker's lifespan shutdown, which writes what the prediction writers
acknowledged before closing the cluster."""

from __future__ import annotations

import os

from .settings import ServeSettings

__all__ = ["FACTORY", "serve"]

FACTORY = "mlscale.serve.app:app_from_env"


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
