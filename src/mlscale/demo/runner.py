"""``mlscale demo``: start a local cluster, run the chapters, print and save what was measured.

The cluster the demo starts is always stopped again, on errors and Ctrl-C
(and SIGTERM, which the CLI turns into Ctrl-C) too; with ``keep`` it is left
running after a successful run.
A cluster that was already running in ``cluster_dir`` is used as it is and
left running.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from ..engine.cluster_sync import Cluster
from ..errors import ClusterError
from ..local.cluster import LocalCluster, UpReport
from ..local.tempdirs import reachable_tempdir
from ..report.html import write_report
from . import (
    caching,
    crossshard,
    failover,
    features,
    foundation,
    mlstores,
    predictions,
    replicas,
    serving,
    sharding,
)
from .caching import run_caching
from .crossshard import run_crossshard
from .failover import run_failover
from .features import drop_features, run_features
from .foundation import ChapterResult, Params, Row, drop_tables, run_foundation
from .mlstores import drop_mlstores, run_mlstores
from .predictions import drop_predictions, run_predictions
from .replicas import run_replicas
from .serving import drop_serving, run_serving
from .sharding import drop_sharded, run_sharding

__all__ = ["render_table", "run_demo"]

log = logging.getLogger(__name__)

HEADER = Row("figure", "value", "unit", "how measured")


def echo(text: str = "") -> None:
    """Print a line for the person watching the demo."""
    print(text, flush=True)


@dataclass
class _Lease:
    """The demo's hold on a local cluster and what it must undo."""

    local: LocalCluster
    existed: bool
    made_dir: Path | None
    report: UpReport | None = None

    def release(self, *, keep: bool, ok: bool) -> None:
        """Stop (and, if the demo created it, delete) the cluster, unless it is to be kept."""
        root = self.local.root
        if keep and ok:
            return
        if self.existed:
            if self.report is not None and self.report.started:
                echo(f"stopping the servers the demo started in {root} ...")
                self.local.down(self.report.started)
            return
        if self.local.layout.is_cluster():
            if keep:
                self.local.down()
                echo(f"cluster stopped, its files kept in {root}")
            else:
                echo(f"stopping and removing the demo cluster in {root} ...")
                self.local.destroy()
        elif self.made_dir is not None:
            shutil.rmtree(self.made_dir, ignore_errors=True)


def _new_demo_dir() -> Path:
    """A fresh ``mlscale-demo-XXXX`` in the system temp dir, which the servers' OS user
    can enter wherever the demo is run from (a clone under ``/root`` would lock it out)."""
    return reachable_tempdir("mlscale-demo-")


def render_table(rows: Sequence[Row]) -> str:
    """Rows as plain text in aligned columns, with a header and a rule under it."""
    table = [HEADER, *rows]
    widths = [max(len(getattr(r, f)) for r in table) for f in ("figure", "value", "unit")]

    def line(r: Row) -> str:
        cells = (r.figure.ljust(widths[0]), r.value.rjust(widths[1]), r.unit.ljust(widths[2]))
        return "  ".join((*cells, r.how)).rstrip()

    rule = "  ".join("-" * w for w in (*widths, len(HEADER.how)))
    return "\n".join([line(HEADER), rule, *(line(r) for r in rows)])


def _machine(cluster: Cluster) -> dict[str, Any]:
    """What the figures were measured on: CPU count, versions."""
    version = cluster.primary().fetch_value("SHOW server_version")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "psycopg": psycopg.__version__,
        "postgres_version": version,
    }


def _refuse(local: LocalCluster, unmet: Sequence[str]) -> None:
    """Stop the demo before it writes anything, if a chapter cannot run on ``local``."""
    if unmet:
        raise ClusterError(
            f"the cluster in {local.root} cannot run the demo: {'; '.join(unmet)}; nothing "
            "was written (run `mlscale demo` without --dir for a cluster made for it)"
        )


def _run_chapters(
    local: LocalCluster, params: Params, keep: bool
) -> tuple[ChapterResult, dict[str, Any]]:
    """Every chapter on ``local``'s cluster; (its figures, the machine's description)."""
    cluster = Cluster.from_file(local.layout.config)
    try:
        _refuse(local, [p for p in [sharding.needs_of_catalog(cluster)] if p])
        machine = _machine(cluster)
        result = run_foundation(cluster, params, echo)
        chapters = (
            run_replicas,
            run_sharding,
            run_crossshard,
            run_caching,
            run_features,
            run_predictions,
            run_serving,
            run_failover,
            run_mlstores,
        )
        for run in chapters:
            chapter = run(cluster, params, echo)
            result.metrics.update(chapter.metrics)
            result.rounds.update(chapter.rounds)
            result.rows += chapter.rows
            result.notes += chapter.notes
        if not keep:
            drop_features(cluster)  # before drop_tables: its EAV table is in the demo schema
            drop_predictions(cluster)
            drop_serving(cluster)
            drop_mlstores(cluster)
            drop_tables(cluster)
            drop_sharded(cluster)
        return result, machine
    finally:
        cluster.close()


def run_demo(*, cluster_dir: str | None, out: str, keep: bool, quick: bool) -> dict[str, Any]:
    """Run the demo; print its table, write ``<out>/demo.json`` and the HTML report of
    every result in ``out``, and return what the JSON holds.

    ``cluster_dir`` defaults to a new ``$TMPDIR/mlscale-demo-*`` directory; ``keep``
    leaves the cluster running; ``quick`` shortens every workload (for tests).
    """
    params = Params.for_run(quick=quick)
    root = Path(cluster_dir) if cluster_dir else _new_demo_dir()
    local = LocalCluster(root)
    existed = local.layout.is_cluster()
    lease = _Lease(local, existed, made_dir=None if cluster_dir else local.root)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    ok = False
    try:
        if existed:  # checked before a server is started or a row written
            config = local.config()
            chapters = (
                foundation,
                replicas,
                sharding,
                crossshard,
                caching,
                features,
                predictions,
                serving,
                failover,
                mlstores,
            )
            _refuse(local, [p for p in (c.needs(config) for c in chapters) if p])
        echo(f"starting a local cluster in {local.root} ...")
        t0 = time.perf_counter()
        lease.report = local.up() if existed else local.up(shards=2, replicas=2, redis=True)
        start_s = time.perf_counter() - t0
        result, machine = _run_chapters(local, params, keep)
        ok = True
    finally:
        lease.release(keep=keep, ok=ok)

    if lease.report is not None and lease.report.created:
        result.metrics["cluster_start_s"] = start_s
        result.rows.insert(
            0,
            Row(
                "local cluster start",
                f"{start_s:.1f}",
                "s",
                "initdb, 2 shard groups of a primary + 2 replicas (pg_basebackup), Redis",
            ),
        )
    doc: dict[str, Any] = {
        "name": "demo",
        "started_at": started_at,
        "params": {**params.as_dict(), "quick": quick, "cluster_created": not existed},
        "metrics": result.metrics,
        "rounds": result.rounds,
        "machine": machine,
    }
    echo()
    echo(render_table(result.rows))
    echo()
    for note in result.notes:
        echo(f"note: {note}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "demo.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    echo(f"figures written to {path}")
    echo(f"report (all results in {out_dir}, with plots): {write_report(out_dir)}")
    if keep and not existed:
        root = local.root
        echo(f"the cluster is still running in {root}: `mlscale destroy --dir {root}` removes it")
    return doc
