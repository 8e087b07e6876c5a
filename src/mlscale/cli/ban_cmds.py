"""``mlscale ban NODE`` / ``mlscale unban NODE``: replicas out of (and back into) read rotation."""

from __future__ import annotations

import click

from ..config import ClusterConfig, load_config
from ..core.topology import Role, find_node, nodes_of
from ..engine import catalog
from ..engine.connect import connect
from ..errors import MlscaleError
from ..local.cluster import LocalCluster
from .options import dir_option


def _config(cluster_dir: str, config_file: str | None) -> ClusterConfig:
    return load_config(config_file) if config_file else LocalCluster(cluster_dir).config()


def _replica(config: ClusterConfig, node: str) -> None:
    try:
        found = find_node(nodes_of(config), node)
    except KeyError as exc:
        raise MlscaleError(str(exc).strip("'\"")) from None
    if found.role is not Role.REPLICA:
        raise MlscaleError(f"only replicas can be banned from reads; {node} is a {found.role}")


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config of the cluster (default: the local cluster's).",
)


@click.command()
@click.argument("node")
@click.option("--reason", required=True, help="Why: shown in status and in errors.")
@dir_option
@config_option
def ban(node: str, reason: str, cluster_dir: str, config_file: str | None) -> None:
    """Take replica NODE out of read rotation for every client, until `mlscale unban`."""
    config = _config(cluster_dir, config_file)
    _replica(config, node)
    if not reason.strip():
        raise MlscaleError("a ban needs a reason (--reason)")
    with connect(nodes_of(config)[0], config) as conn:
        catalog.migrate(conn)
        catalog.set_ban(conn, node, reason)
    click.echo(f"banned {node}: {reason} (clients stop reading from it within about a second)")


@click.command()
@click.argument("node")
@dir_option
@config_option
def unban(node: str, cluster_dir: str, config_file: str | None) -> None:
    """Put replica NODE back into read rotation."""
    config = _config(cluster_dir, config_file)
    _replica(config, node)
    with connect(nodes_of(config)[0], config) as conn:
        catalog.migrate(conn)
        lifted = catalog.clear_ban(conn, node)
    click.echo(f"unbanned {node}" if lifted else f"{node} was not banned")
