"""``mlscale predictions list|retain|attach|quality``: prediction logs from the shell.

Thin: each command opens the cluster, asks
:class:`~mlscale.stores.predictions.PredictionStore` and prints what it answered.
``retain`` is what a daily cron job runs. A :class:`~mlscale.errors.PredictionError`
(unknown log, bad option) is one line on stderr and exit code 2 (see ``main.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from .options import cluster_config, config_option, dir_option

if TYPE_CHECKING:
    from ..stores.predictions import PredictionStore


@contextmanager
def _store(cluster_dir: str, config_file: str | None) -> Iterator[PredictionStore]:
    """A prediction store on the cluster of ``--dir`` / ``--config``, closed after use."""
    from ..engine.cluster_sync import Cluster
    from ..stores.predictions import PredictionStore

    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        yield PredictionStore(cluster)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.group()
def predictions() -> None:
    """Prediction logs: list them, drop old days, attach late labels, show quality."""


@predictions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@dir_option
@config_option
def list_logs(as_json: bool, cluster_dir: str, config_file: str | None) -> None:
    """Every prediction log: its entity, key family, retention and days on disk."""
    with _store(cluster_dir, config_file) as store:
        logs = store.logs()
        days = {log.name: store.days(log) for log in logs}
    data = [
        {
            **log.to_spec(),
            "days": sorted({d.isoformat() for ds in days[log.name].values() for d in ds}),
        }
        for log in logs
    ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("no prediction logs yet: create one with PredictionStore.create()")
        return
    rows = [("LOG", "ENTITY", "FAMILY", "RETENTION", "DAYS")] + [
        (
            d["name"],
            f"{d['entity']}:{d['key_type']}",
            d["family"],
            f"{d['retention_days']}d" if d["retention_days"] else "-",
            f"{d['days'][0]} .. {d['days'][-1]} ({len(d['days'])})" if d["days"] else "-",
        )
        for d in data
    ]
    _table(rows)


@predictions.command("retain")
@click.argument("name")
@click.option(
    "--keep-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days to keep, today included (default: the log's retention_days).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@dir_option
@config_option
def retain(
    name: str, keep_days: int | None, as_json: bool, cluster_dir: str, config_file: str | None
) -> None:
    """Drop log NAME's predictions and labels of days older than --keep-days, a whole
    partition per day and group (no DELETE)."""
    with _store(cluster_dir, config_file) as store:
        result = store.retain(name, keep_days=keep_days)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if not result.days:
        click.echo(f"{name}: nothing before {result.before}")
        return
    dropped = sum(len(p) for p in result.partitions.values())
    click.echo(
        f"{name}: dropped {len(result.days)} day(s) before {result.before} "
        f"({result.days[0]} .. {result.days[-1]}), {dropped} partitions"
    )


@predictions.command("attach")
@click.argument("name")
@dir_option
@config_option
def attach(name: str, cluster_dir: str, config_file: str | None) -> None:
    """Attach log NAME's unmatched labels whose prediction has arrived since."""
    with _store(cluster_dir, config_file) as store:
        result = store.attach_labels(name)
    click.echo(f"{name}: attached {result.attached}, still unmatched {result.remaining}")


@predictions.command("quality")
@click.argument("name")
@click.argument("model")
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--version", "version", default=None, help="Only this model version.")
@click.option(
    "--consistency",
    type=click.Choice(["eventual", "strong"]),
    default="eventual",
    show_default=True,
    help="Read from replicas (eventual) or the primaries (strong).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with calibration bins).")
@dir_option
@config_option
def quality(
    name: str,
    model: str,
    days: int,
    version: str | None,
    consistency: str,
    as_json: bool,
    cluster_dir: str,
    config_file: str | None,
) -> None:
    """MODEL's accuracy and MAE per version and UTC day over the last --days days,
    from log NAME's labeled predictions."""
    end = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    start = end - dt.timedelta(days=days)
    with _store(cluster_dir, config_file) as store:
        rows = store.quality(name, model, start, end, version=version, consistency=consistency)
    if as_json:
        click.echo(json.dumps([q.to_dict() for q in rows], indent=2))
        return
    if not rows:
        click.echo(f"{name}: no predictions of {model} from {start} to {end}")
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2%}"

    _table(
        [("VERSION", "DAY", "PREDICTIONS", "LABELED", "ACCURACY", "MAE")]
        + [
            (
                q.model_version,
                q.day.isoformat(),
                f"{q.predictions:,}",
                f"{q.labeled:,}",
                pct(q.accuracy),
                "-" if q.mae is None else f"{q.mae:.4g}",
            )
            for q in rows
        ]
    )
