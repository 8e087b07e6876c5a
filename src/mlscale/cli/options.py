"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..config import ClusterConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])


def dir_option(fn: F) -> F:
    """``--dir``: the cluster directory (default ``$MLSCALE_DIR`` or ``./.mlscale``)."""
    return click.option(
        "--dir",
        "cluster_dir",
        default=lambda: os.environ.get("MLSCALE_DIR", ".mlscale"),
        show_default="$MLSCALE_DIR or ./.mlscale",
        type=click.Path(file_okay=True, dir_okay=True),
        help="Cluster directory.",
    )(fn)


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config of the cluster (default: the local cluster's).",
)


def cluster_config(cluster_dir: str, config_file: str | None) -> ClusterConfig:
    """The config named by ``--config``, else the local cluster's in ``--dir``."""
    if config_file:
        return load_config(config_file)
    from ..local.cluster import LocalCluster  # only when a local cluster is meant

    return LocalCluster(cluster_dir).config()
