"""``mlscale switchover | failover``: move a Patroni scope's leader through its REST API."""

from __future__ import annotations

import json
from typing import Any, Literal

import click

from ..config import ClusterConfig
from ..engine.patroni import PatroniError, handover
from .options import F, cluster_config, config_option, dir_option


def _scope_endpoints(config: ClusterConfig, group: str) -> list[str]:
    """The Patroni REST endpoints of ``group`` (a shard group, or ``control``)."""
    if group == "control":
        endpoints = config.control.patroni
    else:
        found = next((g for g in config.shard_groups if g.name == group), None)
        if found is None:
            known = ", ".join(["control", *(g.name for g in config.shard_groups)])
            raise PatroniError(f"no shard group {group!r}; known: {known}")
        endpoints = found.patroni
    if not endpoints:
        raise PatroniError(
            f"{group} is not a Patroni cluster (its config has no patroni endpoints); "
            "make the cluster with `mlscale up --ha`"
        )
    return endpoints


def _auth(config: ClusterConfig, config_file: str | None) -> tuple[str, str] | None:
    """A local HA cluster's REST API credentials: its user and secret (never printed)."""
    if config_file or config.source is None:
        return None
    secret = config.source.parent / "secret"
    try:
        return (config.auth.user, secret.read_text().strip())
    except OSError:
        return None


def _handover(
    action: Literal["switchover", "failover"],
    *,
    cluster_dir: str,
    config_file: str | None,
    group: str,
    candidate: str | None,
    wait_s: float,
    as_json: bool,
) -> None:
    """Ask ``group``'s Patroni for ``action`` and print what it did (text or JSON)."""
    config = cluster_config(cluster_dir, config_file)
    result = handover(
        _scope_endpoints(config, group),
        action=action,
        candidate=candidate,
        auth=_auth(config, config_file),
        wait_s=wait_s,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(
        f"{result.scope}: {result.action} from {result.old_leader or 'no leader'} to "
        f"{result.new_leader} in {result.seconds:.2f} s; {result.new_leader} leads now"
    )


def _handover_options(fn: F) -> F:
    """``--wait`` and ``--json``, shared by both commands."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    return click.option(
        "--wait",
        "wait_s",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds to wait for the new leader.",
    )(fn)


@click.command()
@dir_option
@config_option
@click.argument("group")
@click.option("--to", "candidate", default=None, metavar="NODE", help="The member to promote.")
@_handover_options
def switchover(**options: Any) -> None:
    """Planned switchover of GROUP's leader (a shard group or `control`), zero loss."""
    _handover("switchover", **options)


@click.command()
@dir_option
@config_option
@click.argument("group")
@click.option("--to", "candidate", required=True, metavar="NODE", help="The member to promote.")
@_handover_options
def failover(**options: Any) -> None:
    """Manual failover of GROUP (a shard group or `control`) to NODE, even without a leader."""
    _handover("failover", **options)
