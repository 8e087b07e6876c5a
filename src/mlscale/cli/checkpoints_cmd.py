"""``mlscale checkpoints list|save|load|keep|gc``: the checkpoint store from the shell.

Thin: each command opens the cluster, asks
:class:`~mlscale.stores.checkpoints.Checkpoints` and prints what it answered
(``--json`` for the results' ``to_dict()``); saves and loads draw a progress line on
stderr. A :class:`~mlscale.errors.CheckpointError` is one line on stderr (see
``main.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .options import cluster_config, config_option, dir_option

if TYPE_CHECKING:
    from ..core.checkpoints.results import TransferProgress
    from ..stores.checkpoints import Checkpoints


@contextmanager
def _store(cluster_dir: str, config_file: str | None, **options: Any) -> Iterator[Checkpoints]:
    from ..engine.cluster_sync import Cluster
    from ..stores.checkpoints import Checkpoints

    with Cluster(cluster_config(cluster_dir, config_file)) as cluster:
        yield Checkpoints(cluster, **options)


def _shown(p: TransferProgress) -> None:
    """A progress line on stderr, redrawn in place (on a terminal only)."""
    if not sys.stderr.isatty():
        return
    total = f"/{p.total_bytes / 1e6:,.0f}" if p.total_bytes else ""
    frac = p.fraction
    bar = "" if frac is None else f" [{'#' * int(frac * 20):<20}] {frac:4.0%}"
    sys.stderr.write(
        f"\r{p.file[-30:]:<30}{bar} {p.done_bytes / 1e6:,.0f}{total} MB, "
        f"{p.chunks_done} chunks ({p.chunks_sent} moved)"
    )
    sys.stderr.flush()


@click.group()
def checkpoints() -> None:
    """Model checkpoints: content-addressed chunks over the shard groups."""


@checkpoints.command("list")
@click.argument("run", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
@dir_option
def list_cmd(run: str | None, as_json: bool, cluster_dir: str, config_file: str | None) -> None:
    """Committed checkpoints (of RUN, or every run)."""
    with _store(cluster_dir, config_file) as store:
        found = store.list_checkpoints(run, consistency="strong")
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in found], indent=2))
        return
    if not found:
        click.echo("no checkpoints")
        return
    for i in found:
        when = i.created_at.isoformat(timespec="seconds") if i.created_at else "-"
        click.echo(
            f"{i.run}  step {i.step}  {i.files} file(s)  {i.total_bytes / 1e6:,.1f} MB  "
            f"{i.chunks} chunks  {when}"
        )


@checkpoints.command("save")
@click.argument("run")
@click.argument("step", type=int)
@click.argument("path", type=click.Path(exists=True))
@click.option("--chunk-mib", type=int, default=8, show_default=True, help="Chunk size, MiB.")
@click.option("--workers", type=int, default=4, show_default=True, help="Chunks moved at once.")
@config_option
@dir_option
def save_cmd(
    run: str, step: int, path: str, chunk_mib: int, workers: int, cluster_dir: str,
    config_file: str | None,
) -> None:  # fmt: skip
    """Save PATH (a file or a directory) as checkpoint STEP of RUN (resumes an
    interrupted save of the same RUN and STEP)."""
    with _store(cluster_dir, config_file, chunk_size=chunk_mib << 20, workers=workers) as store:
        done = store.save(run, step, path, progress=_shown)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    click.echo(
        f"saved {run}@{step}: {done.total_bytes / 1e6:,.1f} MB, {done.sent} chunk(s) sent, "
        f"{done.skipped} already stored{' (resumed)' if done.resumed else ''}, "
        f"{done.mb_per_s:,.0f} MB/s"
    )


@checkpoints.command("load")
@click.argument("run")
@click.argument("dest", type=click.Path())
@click.option("--step", type=int, default=None, help="Default: the latest.")
@click.option("--file", "file", default=None, help="One file of the checkpoint.")
@click.option("--workers", type=int, default=4, show_default=True, help="Chunks moved at once.")
@config_option
@dir_option
def load_cmd(
    run: str, dest: str, step: int | None, file: str | None, workers: int, cluster_dir: str,
    config_file: str | None,
) -> None:  # fmt: skip
    """Load a checkpoint of RUN into DEST (a directory, or a file path for one file),
    every chunk's hash verified."""
    with _store(cluster_dir, config_file, workers=workers) as store:
        done = store.load(run, dest, step=step, file=file, progress=_shown)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    click.echo(
        f"loaded {done.run}@{done.step}: {len(done.files)} file(s), "
        f"{done.total_bytes / 1e6:,.1f} MB verified, {done.mb_per_s:,.0f} MB/s"
        + (
            f", {done.primary_fallbacks} chunk(s) read from a primary (a replica lacked them)"
            if done.primary_fallbacks
            else ""
        )
    )


@checkpoints.command("keep")
@click.argument("run")
@click.argument("last", type=int)
@config_option
@dir_option
def keep_cmd(run: str, last: int, cluster_dir: str, config_file: str | None) -> None:
    """Keep the LAST checkpoints of RUN; delete the rest and the chunks only they named."""
    with _store(cluster_dir, config_file) as store:
        done = store.keep_last(run, last)
    click.echo(
        f"{run}: kept {list(done.kept)}, deleted {list(done.deleted)}, "
        f"{done.chunks_removed} chunk(s) removed ({done.bytes_removed / 1e6:,.1f} MB)"
    )


@checkpoints.command("gc")
@click.option("--grace-s", type=float, default=24 * 3600.0, show_default=True,
              help="Spare uploads and chunks touched within this many seconds.")  # fmt: skip
@config_option
@dir_option
def gc_cmd(grace_s: float, cluster_dir: str, config_file: str | None) -> None:
    """Forget abandoned uploads; remove chunks no checkpoint names."""
    with _store(cluster_dir, config_file) as store:
        done = store.gc(grace_s=grace_s)
    click.echo(
        f"{done.uploads_forgotten} upload(s) forgotten, {done.chunks_removed} chunk(s) "
        f"removed ({done.bytes_removed / 1e6:,.1f} MB)"
    )
