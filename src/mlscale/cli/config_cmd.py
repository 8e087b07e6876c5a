"""``mlscale config check FILE``."""

from __future__ import annotations

import click

from ..config import load_config
from ..core.pooling import pool_size
from ..core.topology import nodes_of
from ..engine.connect import auth_problems
from ..engine.pools import usable_cpus
from ..errors import ConfigError


@click.group()
def config() -> None:
    """Topology config files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a topology config and that its secrets can be read (the passfile, the
    password variables); every problem on one error line, exit 1 if any."""
    cfg = load_config(file)
    problems = auth_problems(cfg)
    if problems:
        raise ConfigError(f"{file}: {'; '.join(problems)}")
    nodes = nodes_of(cfg)
    size = pool_size(cfg.pools, usable_cpus())
    click.echo(
        f"ok: {file}: {len(cfg.shard_groups)} shard group(s), {len(nodes)} PostgreSQL node(s), "
        f"redis {'yes' if cfg.redis else 'no'}; pools {size.min_size}..{size.max_size} "
        "connections per node"
    )
