"""``mlscale features list|describe|materialize``: the feature store's views, from the shell.

Thin: each command opens the cluster, asks :class:`~mlscale.stores.features.FeatureStore`
and prints what it answered. A :class:`~mlscale.errors.FeatureError` (unknown view,
bad source, ...) is one line on stderr and exit code 2 (see ``main.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .options import cluster_config, config_option, dir_option

if TYPE_CHECKING:
    from ..core.features.spec import FeatureView
    from ..stores.features import FeatureStore


@contextmanager
def _store(cluster_dir: str, config_file: str | None) -> Iterator[FeatureStore]:
    """A feature store on the cluster of ``--dir`` / ``--config``, closed after use."""
    from ..engine.cluster_sync import Cluster
    from ..stores.features import FeatureStore

    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        yield FeatureStore(cluster)


def _ttl(ttl_s: float | None) -> str:
    """A TTL for people: ``none``, ``90s``, ``15m``, ``6h``, ``7d`` (exact units only)."""
    if ttl_s is None:
        return "none"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if ttl_s >= size and ttl_s % size == 0:
            return f"{int(ttl_s // size)}{unit}"
    return f"{ttl_s:g}s"


def _summary(view: FeatureView) -> dict[str, Any]:
    """One line of ``features list``, as data."""
    return {
        "name": view.name,
        "version": view.version,
        "entities": [f"{e.name}:{e.key_type.value}" for e in view.entities],
        "features": len(view.features),
        "ttl_s": view.ttl_s,
        "owner": view.owner,
        "family": view.family,
    }


def _utc(value: dt.datetime) -> dt.datetime:
    """``value`` with a time zone: a naive time is taken as UTC, as pushes take it."""
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


class IsoTime(click.ParamType[dt.datetime]):
    """An ISO 8601 date or time (``2024-05-01``, ``2024-05-01T12:00:00+02:00``); naive = UTC."""

    name = "ISO-TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return _utc(value)
        try:
            return _utc(dt.datetime.fromisoformat(str(value)))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time (e.g. 2024-05-01T00:00)")


@click.group()
def features() -> None:
    """Feature views: list them, describe one, materialize from a table or Parquet."""


@features.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@dir_option
@config_option
def list_views(as_json: bool, cluster_dir: str, config_file: str | None) -> None:
    """Every registered view version: entities, feature count, TTL, owner."""
    with _store(cluster_dir, config_file) as store:
        views = sorted(store.views(), key=lambda v: (v.name, v.version))
    rows = [_summary(v) for v in views]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no feature views yet: register one with FeatureStore.register()")
        return
    table = [("VIEW", "VERSION", "ENTITIES", "FEATURES", "TTL", "OWNER")] + [
        (
            r["name"],
            str(r["version"]),
            ", ".join(r["entities"]),
            str(r["features"]),
            _ttl(r["ttl_s"]),
            r["owner"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@features.command("describe")
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="Version (default: newest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the view's info as data).")
@dir_option
@config_option
def describe(
    name: str, version: int | None, as_json: bool, cluster_dir: str, config_file: str | None
) -> None:
    """View NAME: its spec, tables, and rows and bytes on disk per shard group."""
    with _store(cluster_dir, config_file) as store:
        info = store.describe(name, version)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    v = info.view
    click.echo(f"feature view {v.name} version {v.version} (key family {v.family})")
    if v.description:
        click.echo(f"  {v.description}")
    click.echo(f"  owner: {v.owner or '-'}; ttl: {_ttl(v.ttl_s)}")
    click.echo(f"  entities: {', '.join(f'{e.name} ({e.key_type.value})' for e in v.entities)}")
    click.echo(f"  features ({len(v.features)}):")
    for f in v.features:
        extra = [f"dim {f.dim}"] if f.dim is not None else []
        if f.allow_nan:
            extra.append("NaN allowed")
        note = f" [{', '.join(extra)}]" if extra else ""
        text = f" - {f.description}" if f.description else ""
        click.echo(f"    {f.name}: {f.type.value}{note}{text}")
    click.echo(f"  tables: online {info.online_table}, history {info.history_table} (by month)")
    groups = sorted(set(info.online_rows) | set(info.history_rows) | set(info.bytes_on_disk))
    width = max([len("group"), *(len(g) for g in groups)])
    head = f"{'online rows':>12}  {'history rows':>12}  {'bytes':>14}"
    click.echo(f"  {'group'.ljust(width)}  {head}")
    for g in groups:
        click.echo(
            f"  {g.ljust(width)}  {info.online_rows.get(g, 0):>12,}  "
            f"{info.history_rows.get(g, 0):>12,}  {info.bytes_on_disk.get(g, 0):>14,}"
        )
    click.echo(
        f"  {'all'.ljust(width)}  {sum(info.online_rows.values()):>12,}  "
        f"{sum(info.history_rows.values()):>12,}  {sum(info.bytes_on_disk.values()):>14,}"
    )


@features.command("materialize")
@click.argument("name")
@click.argument("source")
@click.option("--start", type=IsoTime(), default=None, help="First event time (inclusive).")
@click.option("--end", type=IsoTime(), default=None, help="Last event time (exclusive).")
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Rows per push.",
)
@click.option("--timestamp-column", default="event_ts", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress line per batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@dir_option
@config_option
def materialize(
    name: str,
    source: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    batch_rows: int,
    timestamp_column: str,
    quiet: bool,
    as_json: bool,
    cluster_dir: str,
    config_file: str | None,
) -> None:
    """Push the rows of SOURCE (a table on the cluster, or a Parquet file or directory)
    with event times in [--start, --end) into view NAME, in batches."""
    if start is not None and end is not None and start >= end:
        raise click.BadParameter(f"--start {start} is not before --end {end}")
    with _store(cluster_dir, config_file) as store:
        result = store.materialize(
            name,
            source,
            start,
            end,
            timestamp_column=timestamp_column,
            batch_rows=batch_rows,
            progress=not quiet,
        )
    doc = result.to_dict()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    rate = doc["rows_per_s"]
    click.echo(
        f"materialized {result.rows:,} rows into {result.view} in {result.batches} batches, "
        f"{result.seconds:.2f} s ({rate:,.0f} rows/s)"
        if rate is not None
        else f"materialized {result.rows:,} rows into {result.view}"
    )
