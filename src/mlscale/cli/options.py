"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

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
