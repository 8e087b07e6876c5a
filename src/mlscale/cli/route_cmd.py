"""``mlscale route "SQL"``: where a statement would go, and why."""

from __future__ import annotations

import json

import click

from ..config import load_config
from ..core.classify import Classifier
from ..core.route import ToPrimary, route


@click.command("route")
@click.argument("sql")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Use this config's extra read-only functions ([routing]).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def route_cmd(sql: str, config_file: str | None, as_json: bool) -> None:
    """Where SQL would go from outside a session (primary or replica), and why."""
    extra = load_config(config_file).routing.read_only_functions if config_file else []
    c = Classifier(read_only_functions=extra).classify(sql)
    chosen = route(c)  # the automatic scope never refuses
    target = "primary" if isinstance(chosen, ToPrimary) else "replica"
    effects = sorted(e.value for e in c.creates)
    doc = {
        "target": target,
        "reason": chosen.reason,
        "statements": c.statements,
        "creates_session_state": effects,
        "needs_session": c.needs_session,
        "transaction": c.transaction.value if c.transaction else None,
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"{target}: {chosen.reason}")
    if c.creates:
        click.echo(
            f"  creates session state: {', '.join(effects)} (pins a session; refused outside one)"
        )
    if c.needs_session:
        click.echo("  reads this session's state: runs on the session's connection")
