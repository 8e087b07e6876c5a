"""``mlscale catalog migrate``: bring a (possibly remote) catalog up to date."""

from __future__ import annotations

import click

from ..core.topology import nodes_of
from ..engine import migrations as catalog_mod
from ..engine.connect import connect
from .options import cluster_config, config_option, dir_option


@click.group()
def catalog() -> None:
    """The catalog on the control database."""


@catalog.command("migrate")
@dir_option
@config_option
def migrate(cluster_dir: str, config_file: str | None) -> None:
    """Apply pending catalog migrations and register the config's topology."""
    cfg = cluster_config(cluster_dir, config_file)
    nodes = nodes_of(cfg)
    with connect(nodes[0], cfg) as conn:
        applied = catalog_mod.migrate(conn)
        epoch = catalog_mod.register_topology(conn, nodes, "mlscale catalog migrate")
        version = catalog_mod.catalog_version(conn)
    if applied:
        names = ", ".join(f"{m.version} ({m.name})" for m in applied)
        click.echo(f"applied migrations {names}")
    click.echo(f"catalog at version {version}; topology epoch {epoch}")
