"""``python -m mlscale.bench.training_probe``: one way of reading a sharded table's rows
into the client, timed, with its client memory, in a fresh process.

A process's peak resident set only grows, so each read runs in a new interpreter:
it opens the cluster and its connections and reads a small table of the same shape
(imports, pools, plans), takes its resident set (``VmRSS``) as the baseline, resets
the peak (``5`` into ``/proc/self/clear_refs``; where refused, the start-up's peak
stays in and the growth is overstated, never understated), runs the measured read,
and reads the peak (``VmHWM``; ``ru_maxrss`` where there is no /proc). One JSON
object on stdout: ``{"how", "rows", "label_sum", "wall_s", "cpu_s", "rss_before_mb",
"peak_rss_mb", "rss_growth_mb", "peak_reset", "bytes"}``.

``how``:

- ``reader``: :class:`~mlscale.stores.training.TrainingReader` (binary COPY, units read
  ``prefetch`` at a time), each batch's columns as numpy arrays; the batches are
  consumed (label summed) and dropped, as a training loop would.
- ``fetchall``: the usual code: plain psycopg, one connection per group, the groups
  queried at once from one thread each, ``SELECT * FROM t`` then ``fetchall()`` and
  ``pandas.DataFrame(rows, columns=...)`` per group, then ``pandas.concat``: the whole
  table is held at the end, as that code holds it.
- ``ceiling``: the machine's ceiling for moving the same rows: the same connections
  and threads, ``COPY t TO STDOUT (FORMAT binary)`` per group, bytes counted and
  dropped (no decoding).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg import sql

from ..core.topology import find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect

__all__ = ["main"]

KIB_PER_MB = 1024.0


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / KIB_PER_MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MB


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _per_group(cluster: Cluster, work: Callable[[Any], Any]) -> list[Any]:
    """``work(conn)`` on a new connection to each group's primary, all at once."""
    nodes = [
        find_node(cluster.nodes, cluster.primary_node(g.name)) for g in cluster.config.shard_groups
    ]
    conns = [connect(node, cluster.config) for node in nodes]
    try:
        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            return list(pool.map(work, conns))
    finally:
        for conn in conns:
            conn.close()


def _fetchall(cluster: Cluster, table: str) -> tuple[int, int, int]:
    import pandas as pd

    query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))

    def one(conn: Any) -> Any:
        cur = conn.execute(query)
        rows = cur.fetchall()
        return pd.DataFrame(rows, columns=[d.name for d in cur.description])

    frame = pd.concat(_per_group(cluster, one), ignore_index=True)
    return len(frame), int(frame["label"].sum()), 0


def _ceiling(cluster: Cluster, table: str) -> tuple[int, int, int]:
    statement = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(table))

    def one(conn: Any) -> tuple[int, int]:
        size = 0
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for chunk in copy:
                size += len(chunk)
            rows = cur.rowcount
        return rows, size

    done = _per_group(cluster, one)
    return sum(r for r, _ in done), -1, sum(s for _, s in done)


def _reader(cluster: Cluster, table: str, args: argparse.Namespace) -> tuple[int, int, int]:
    from ..stores.training import TrainingReader

    reader = TrainingReader(
        cluster, table, batch_size=args.batch_size, units=args.units, prefetch=args.prefetch
    )
    rows = label = 0
    for batch in reader:
        rows += batch.rows
        label += int(batch.columns["label"].sum())
    return rows, label, reader.last_progress.bytes if reader.last_progress else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlscale.bench.training_probe")
    parser.add_argument("config", help="the cluster's config file")
    parser.add_argument("table", help="the sharded table to read")
    parser.add_argument("--warm-table", required=True, help="a small table of the same shape")
    parser.add_argument("--how", choices=("reader", "fetchall", "ceiling"), required=True)
    parser.add_argument("--batch-size", type=int, default=65536)
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--prefetch", type=int, default=4)
    args = parser.parse_args(argv)

    def read(table: str) -> tuple[int, int, int]:
        if args.how == "reader":
            return _reader(cluster, table, args)
        if args.how == "fetchall":
            return _fetchall(cluster, table)
        return _ceiling(cluster, table)

    with Cluster.from_file(args.config) as cluster:
        read(args.warm_table)
        before = _status_mb("VmRSS")
        reset = _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        rows, label, size = read(args.table)
        wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        peak = _status_mb("VmHWM")
    out = {
        "how": args.how,
        "rows": rows,
        "label_sum": label,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "rss_growth_mb": peak - before,
        "peak_reset": reset,
        "bytes": size,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
