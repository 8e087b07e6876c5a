"""``mlscale metrics serve|show``: a cluster client's Prometheus metrics from the shell.

Thin: the exporter and the exposition are :mod:`mlscale.metrics`'s. The numbers
are those of the client this command opens (its pools, the replica lag and bans
its monitor sees); an application's own reads show in its own process's
exporter (``mlscale.metrics.start_exporter``) or its service's ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import click

from .options import cluster_config, config_option, dir_option


def _watched(cluster: Any) -> None:
    """Start the client's replica monitor (lag, bans) without running a read: asking
    where a read would go starts it; the first samples come within a round."""
    cluster.explain_route("SELECT 1")
    time.sleep(max(0.3, 3 * cluster.config.policies.monitor_interval_s))


@click.group("metrics")
def metrics() -> None:
    """Prometheus metrics of a cluster client: reads, writes, lag, bans, pools."""


@metrics.command("serve")
@dir_option
@config_option
@click.option("--port", type=int, default=9464, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def serve(cluster_dir: str, config_file: str | None, port: int, host: str) -> None:
    """Serve /metrics of a cluster client until interrupted (Ctrl-C or SIGTERM)."""
    from ..engine.cluster_sync import Cluster
    from ..metrics import start_exporter

    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        _watched(cluster)
        with start_exporter(cluster, port, host) as exporter:
            click.echo(f"serving {exporter.url} (Ctrl-C to stop)", err=True)
            try:
                threading.Event().wait()  # until KeyboardInterrupt (SIGTERM is turned into one)
            except KeyboardInterrupt:
                click.echo("stopped", err=True)


@metrics.command("show")
@dir_option
@config_option
def show(cluster_dir: str, config_file: str | None) -> None:
    """Print a cluster client's metrics once, in Prometheus's text format."""
    from ..engine.cluster_sync import Cluster

    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        _watched(cluster)
        click.echo(cluster.metrics(), nl=False)
