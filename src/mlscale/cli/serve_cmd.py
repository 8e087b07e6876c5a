"""``mlscale serve`` (the HTTP service) and ``mlscale keys create|list|revoke`` (its
API keys). Thin: settings in, :mod:`mlscale.serve` does the work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from .options import config_option, dir_option

T = TypeVar("T")


def _config_path(cluster_dir: str, config_file: str | None) -> str:
    """The config file ``--config`` names, else the local cluster's in ``--dir``."""
    if config_file:
        return str(Path(config_file).resolve())
    from ..local.cluster import LocalCluster

    local = LocalCluster(cluster_dir)
    local.config()  # a clear error if there is no cluster there
    return str(local.layout.config.resolve())


@click.command("serve")
@dir_option
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@click.option(
    "--max-body-bytes",
    default=1 << 20,
    show_default=True,
    type=click.IntRange(1024),
    help="Larger request bodies are refused (413) before they are parsed.",
)
@click.option(
    "--key-cache-s",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a verified API key is trusted (a revoked key works that long at most).",
)
@click.option(
    "--flush-interval-s",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.001),
    help="How often queued predictions are written (seconds); all are at shutdown.",
)
@click.option("--access-log", is_flag=True, help="Log every request (method, path, status).")
def serve(
    cluster_dir: str,
    config_file: str | None,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    key_cache_s: float,
    flush_interval_s: float,
    access_log: bool,
) -> None:
    """Serve features, predictions, labels and the model registry over HTTP (OpenAPI docs at
    /docs, Prometheus metrics at /metrics)."""
    from ..serve.run import serve as run
    from ..serve.settings import ServeSettings

    settings = ServeSettings(
        config_path=_config_path(cluster_dir, config_file),
        max_body_bytes=max_body_bytes,
        key_cache_s=key_cache_s,
        flush_interval_s=flush_interval_s,
    )
    run(settings, host=host, port=port, workers=workers, access_log=access_log)


def _with_keys(cluster_dir: str, config_file: str | None, call: Callable[..., Awaitable[T]]) -> T:
    """Run ``call(keys)`` on the cluster's API keys, the cluster closed after."""
    from ..engine.cluster_async import AsyncCluster
    from ..serve.keys import ApiKeys
    from .options import cluster_config

    async def go() -> T:
        async with AsyncCluster(cluster_config(cluster_dir, config_file)) as cluster:
            return await call(ApiKeys(cluster))

    return asyncio.run(go())


@click.group("keys")
def keys() -> None:
    """API keys of the HTTP service: stored as digests; a key is shown once."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True)
@dir_option
@config_option
def create(name: str, scope: str, cluster_dir: str, config_file: str | None) -> None:
    """Make a key; print it once (mlscale keeps only its digest)."""
    made = _with_keys(cluster_dir, config_file, lambda k: k.create(name, scope))
    click.echo(f"created key {made.key.key_id} ({made.key.name}, scope {scope})", err=True)
    click.echo("store it now: it is not shown again", err=True)
    click.echo(made.secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@dir_option
@config_option
def list_keys(as_json: bool, cluster_dir: str, config_file: str | None) -> None:
    """Every key: id, name, scope, made, revoked."""
    found = _with_keys(cluster_dir, config_file, lambda k: k.list())
    if as_json:
        click.echo(json.dumps([k.to_dict() for k in found], indent=2))
        return
    if not found:
        click.echo("no API keys yet: make one with `mlscale keys create --name N --scope read`")
        return
    for k in found:
        state = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M:%S}"
        made = f"{k.created_at:%Y-%m-%d %H:%M:%S}"
        click.echo(f"{k.key_id}  {k.scope.value:5}  {made}  {state}  {k.name}")


@keys.command("revoke")
@click.argument("key_id")
@dir_option
@config_option
def revoke(key_id: str, cluster_dir: str, config_file: str | None) -> None:
    """Revoke key KEY_ID (services stop taking it within their key cache time)."""
    done = _with_keys(cluster_dir, config_file, lambda k: k.revoke(key_id))
    click.echo(f"revoked key {done.key_id} ({done.name})")
