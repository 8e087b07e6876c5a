"""``mlscale models list|show|versions|history|promote``: the model registry from the shell.

Thin: each command opens the cluster, asks
:class:`~mlscale.stores.registry.ModelRegistry` and prints what it answered (``--json``
for the results' ``to_dict()``). Reads go to the primaries by default (a promotion
just made shows at once; ``--consistency eventual`` reads replicas). A
:class:`~mlscale.errors.RegistryError` (no such model, a bad name, a lost race) is one
line on stderr and exit code 2 (see ``main.py``).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .options import cluster_config, config_option, dir_option

if TYPE_CHECKING:
    from ..stores.registry import ModelRegistry

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def _registry(cluster_dir: str, config_file: str | None) -> Iterator[ModelRegistry]:
    """A registry on the cluster of ``--dir`` / ``--config``, closed after use."""
    from ..engine.cluster_sync import Cluster
    from ..stores.registry import ModelRegistry

    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        yield ModelRegistry(cluster)


def _reads(fn: F) -> F:
    """``--consistency``, ``--json``, ``--dir``, ``--config``."""
    fn = click.option(
        "--consistency",
        type=click.Choice(["strong", "eventual"]),
        default="strong",
        show_default=True,
        help="Read the primaries (strong) or replicas (eventual).",
    )(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    return config_option(dir_option(fn))


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())) or "-"


@click.group()
def models() -> None:
    """The model registry: models, versions, aliases and their history."""


@models.command("list")
@_reads
def list_models(consistency: str, as_json: bool, cluster_dir: str, config_file: str | None) -> None:
    """Every model: its newest version and its aliases."""
    with _registry(cluster_dir, config_file) as registry:
        found = registry.list_models(consistency=consistency)
    if as_json:
        _json([m.to_dict() for m in found])
        return
    if not found:
        click.echo("no models yet: register one with ModelRegistry.create_model()")
        return
    _table(
        [("MODEL", "VERSIONS", "ALIASES", "CREATED BY")]
        + [(m.name, str(m.latest_version), _aliases(dict(m.aliases)), m.created_by) for m in found]
    )


@models.command("show")
@click.argument("name")
@_reads
def show(
    name: str, consistency: str, as_json: bool, cluster_dir: str, config_file: str | None
) -> None:
    """Model NAME: description, tags, aliases."""
    with _registry(cluster_dir, config_file) as registry:
        model = registry.get_model(name, consistency=consistency)
    if as_json:
        _json(model.to_dict())
        return
    click.echo(f"model:       {model.name}")
    click.echo(f"description: {model.description or '-'}")
    click.echo(f"tags:        {json.dumps(dict(model.tags)) if model.tags else '-'}")
    click.echo(f"versions:    {model.latest_version}")
    click.echo(f"aliases:     {_aliases(dict(model.aliases))}")
    click.echo(f"created:     {model.created_at.isoformat()} by {model.created_by}")


@models.command("versions")
@click.argument("name")
@_reads
def versions(
    name: str, consistency: str, as_json: bool, cluster_dir: str, config_file: str | None
) -> None:
    """Every version of model NAME, oldest first."""
    with _registry(cluster_dir, config_file) as registry:
        found = registry.versions(name, consistency=consistency)
    if as_json:
        _json([v.to_dict() for v in found])
        return
    if not found:
        click.echo(f"{name}: no versions yet")
        return
    _table(
        [("VERSION", "ALIASES", "ARTIFACT", "METRICS", "CREATED")]
        + [
            (
                str(v.version),
                ", ".join(v.aliases) or "-",
                v.artifact_uri,
                ", ".join(f"{k}={x:g}" for k, x in v.metrics.items()) or "-",
                f"{v.created_at:%Y-%m-%d %H:%M:%S} {v.created_by}",
            )
            for v in found
        ]
    )


@models.command("history")
@click.argument("name")
@click.option("--alias", default=None, help="Only this alias's transitions.")
@_reads
def history(
    name: str,
    alias: str | None,
    consistency: str,
    as_json: bool,
    cluster_dir: str,
    config_file: str | None,
) -> None:
    """The alias transitions of model NAME, oldest first."""
    with _registry(cluster_dir, config_file) as registry:
        found = registry.history(name, alias, consistency=consistency)
    if as_json:
        _json([t.to_dict() for t in found])
        return
    if not found:
        click.echo(f"{name}: no transitions yet")
        return

    def ver(v: int | None) -> str:
        return "-" if v is None else str(v)

    _table(
        [("AT", "ALIAS", "REV", "FROM", "TO", "BY", "REASON")]
        + [
            (
                f"{t.at:%Y-%m-%d %H:%M:%S}",
                t.alias,
                str(t.revision),
                ver(t.from_version),
                ver(t.to_version),
                t.actor,
                t.reason,
            )
            for t in found
        ]
    )


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--alias", default="production", show_default=True, help="The alias to move.")
@click.option(
    "--expect-revision",
    "expected",
    type=click.IntRange(min=0),
    default=None,
    help="Move it only if the alias is still at this revision (0: never set).",
)
@click.option("--reason", required=True, help="Why (kept in the alias's history).")
@click.option("--actor", default=None, help="Who (default: the login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@dir_option
@config_option
def promote(
    name: str,
    version: int,
    alias: str,
    expected: int | None,
    reason: str,
    actor: str | None,
    as_json: bool,
    cluster_dir: str,
    config_file: str | None,
) -> None:
    """Point --alias of model NAME at VERSION (a lost race with --expect-revision exits 2)."""
    who = actor or _login()
    with _registry(cluster_dir, config_file) as registry:
        result = registry.transition(
            name, version, alias, expected_revision=expected, actor=who, reason=reason
        )
    if as_json:
        _json(result.to_dict())
        return
    if not result.changed:
        click.echo(f"{name}: {alias} already at version {version} (revision {result.revision})")
        return
    before = "unset" if result.previous_version is None else f"version {result.previous_version}"
    click.echo(
        f"{name}: {alias} moved from {before} to version {version} (revision {result.revision})"
    )


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "cli"
