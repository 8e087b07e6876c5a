"""``mlscale route "SQL"``: where a statement would go, and why."""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import load_config
from ..core.classify import Classification, Classifier
from ..core.route import OnPrimary, choose_role
from .options import cluster_config, dir_option


@click.command("route")
@click.argument("sql")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Use this config's extra read-only functions ([routing]); with --live, its cluster.",
)
@click.option(
    "--live",
    is_flag=True,
    help="Ask the running cluster: the groups the shard key places it in and the node a "
    "call made now would use (bans, samples, consistency).",
)
@click.option("--params", default=None, help="With --live: the parameters, as a JSON list.")
@click.option(
    "--consistency",
    default=None,
    type=click.Choice(["strong", "read_your_writes", "bounded_staleness", "eventual"]),
    help="With --live: the read's consistency (default eventual).",
)
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def route_cmd(
    sql: str,
    config_file: str | None,
    live: bool,
    params: str | None,
    consistency: str | None,
    cluster_dir: str,
    as_json: bool,
) -> None:
    """Where SQL would go from outside a session (primary or replica), and why."""
    if live:
        doc = _live(sql, cluster_dir, config_file, params, consistency)
        c = Classifier().classify(sql)
    else:
        extra = load_config(config_file).routing.read_only_functions if config_file else []
        c = Classifier(read_only_functions=extra).classify(sql)
        role = choose_role(c)  # the automatic scope never refuses
        target = "primary" if isinstance(role, OnPrimary) else "replica"
        doc = {"target": target, "reason": role.reason, "cross_shard": _cross_shard(sql)}
    doc.update(_session_facts(c))
    if as_json:
        click.echo(json.dumps(doc))
        return
    where = f"{doc['target']} ({doc['node']})" if doc.get("node") else doc["target"]
    click.echo(f"{where}: {doc['reason']}")
    if live:
        click.echo(f"  groups: {', '.join(doc['groups'])} ({doc['placed_by']})")
        if doc["fanout"]:
            for group, text in doc["fanout"]["group_sql"].items():
                click.echo(f"  on {group}: {text}")
            click.echo(f"  merge: {', '.join(s['step'] for s in doc['fanout']['plan']['steps'])}")
        if doc["bans"]:
            bans = "; ".join(f"{n}: {b['kind']}: {b['reason']}" for n, b in doc["bans"].items())
            click.echo(f"  bans: {bans}")
    if c.creates:
        effects = ", ".join(doc["creates_session_state"])
        if c.lost_outside_session:
            how = "pins a session; refused outside one"
        else:
            how = "kept by a session, lost by a call outside one, which still runs it"
        click.echo(f"  creates session state: {effects} ({how})")
    if c.transaction is not None:
        click.echo(
            "  controls a transaction: refused outside a session; use `with cluster.transaction():`"
        )
    if c.needs_session:
        click.echo("  reads this session's state: runs on the session's connection")


def _cross_shard(sql: str) -> dict[str, Any]:
    """How the statement would be merged if it read sharded tables on several groups
    (``--live`` adds the groups and the slots each one reads)."""
    from ..core.keyroute.placeholders import PlaceholderError, number_placeholders
    from ..core.scatter import plan_select
    from ..errors import RoutingError

    try:
        text = number_placeholders(sql, with_params=True).text
    except PlaceholderError:
        text = sql
    try:
        return plan_select(text).to_dict()
    except RoutingError as exc:
        return {"refused": str(exc)}


def _session_facts(c: Classification) -> dict[str, Any]:
    return {
        "statements": c.statements,
        "creates_session_state": sorted(e.value for e in c.creates),
        "needs_session": c.needs_session,
        "refused_outside_session": c.refused_outside_session,
        "transaction": c.transaction.value if c.transaction else None,
    }


def _live(
    sql: str, cluster_dir: str, config_file: str | None, params: str | None, consistency: str | None
) -> dict[str, Any]:
    from ..engine.cluster_sync import Cluster

    values = json.loads(params) if params else None
    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        return cluster.explain_route(sql, values, consistency=consistency).to_dict()
