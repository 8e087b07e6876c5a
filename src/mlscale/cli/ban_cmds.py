"""``mlscale ban NODE`` / ``mlscale unban NODE``: replicas out of (and back into) read rotation."""

from __future__ import annotations

import click

from ..config import ClusterConfig
from ..core.topology import check_bannable, find_node, nodes_of
from ..engine import catalog_sync, migrations
from ..engine.connect import connect
from ..errors import MlscaleError
from .options import cluster_config, config_option, dir_option


def _replica(config: ClusterConfig, node: str) -> None:
    try:
        found = find_node(nodes_of(config), node)
    except KeyError as exc:
        raise MlscaleError(str(exc).strip("'\"")) from None
    check_bannable(found)


@click.command()
@click.argument("node")
@click.option("--reason", required=True, help="Why: shown in status and in errors.")
@dir_option
@config_option
def ban(node: str, reason: str, cluster_dir: str, config_file: str | None) -> None:
    """Take replica NODE out of read rotation for every client, until `mlscale unban`."""
    config = cluster_config(cluster_dir, config_file)
    _replica(config, node)
    if not reason.strip():
        raise MlscaleError("a ban needs a reason (--reason)")
    with connect(nodes_of(config)[0], config) as conn:
        migrations.migrate(conn)
        catalog_sync.set_ban(conn, node, reason)
    click.echo(f"banned {node}: {reason} (clients stop reading from it within about a second)")


@click.command()
@click.argument("node")
@dir_option
@config_option
def unban(node: str, cluster_dir: str, config_file: str | None) -> None:
    """Put replica NODE back into read rotation."""
    config = cluster_config(cluster_dir, config_file)
    _replica(config, node)
    with connect(nodes_of(config)[0], config) as conn:
        migrations.migrate(conn)
        lifted = catalog_sync.clear_ban(conn, node)
    click.echo(f"unbanned {node}" if lifted else f"{node} was not banned")
