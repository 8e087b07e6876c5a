"""``mlscale config check FILE``."""

from __future__ import annotations

import click

from ..config import load_config
from ..core.pooling import pool_size
from ..core.topology import nodes_of
from ..engine.pools import usable_cpus


@click.group()
def config() -> None:
    """Topology config files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a topology config; one line per problem, exit 1 if any."""
    cfg = load_config(file)
    nodes = nodes_of(cfg)
    size = pool_size(cfg.pools, usable_cpus())
    click.echo(
        f"ok: {file}: {len(cfg.shard_groups)} shard group(s), {len(nodes)} PostgreSQL node(s), "
        f"redis {'yes' if cfg.redis else 'no'}; pools {size.min_size}..{size.max_size} "
        "connections per node"
    )
