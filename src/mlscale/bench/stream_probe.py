"""``python -m mlscale.bench.stream_probe``: a cross-shard read's client memory, measured
in a fresh process.

A process's peak resident set (``VmHWM``, ``ru_maxrss``) only grows, so the
benchmark runs this module in a new interpreter: it opens the cluster, warms up
on a small read of the same shape (imports, pools, the planner's caches), takes
its resident set now (``VmRSS``) as the baseline, resets the peak (``5`` into
``/proc/self/clear_refs``; where that is refused, the peak of the start-up stays
in and the growth is overstated, never understated), runs the measured read while
keeping nothing but a count, and reads the peak. One JSON object on stdout::

    {"how", "rows", "ordered", "rss_before_mb", "rss_after_mb", "rss_growth_mb",
     "peak_reset", "wall_s", "cpu_s"}

``how`` is ``stream`` (``Cluster.stream``, rows k-way merged from server-side
cursors) or ``fetchall`` (the tutorials' loop: every group's rows fetched whole
one group after another, extended into one list and sorted in Python), for
contrast. ``ordered`` says whether column ``--key`` came out non-decreasing.
"""

from __future__ import annotations

import argparse
import json
import operator
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..core.topology import find_node
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect

__all__ = ["main"]

KIB_PER_MB = 1024.0


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB; the peak from
    ``getrusage`` where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / KIB_PER_MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MB


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux); whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _count_ordered(rows: Iterable[Sequence[Any]], key: int) -> tuple[int, bool]:
    """(rows seen, whether column ``key`` never decreased); keeps no row."""
    count, ordered, last = 0, True, None
    for row in rows:
        value = row[key]
        if last is not None and value < last:
            ordered = False
        last = value
        count += 1
    return count, ordered


def _fetchall_loop(cluster: Cluster, sql: str, key: int) -> list[Any]:
    """The tutorials' loop: each group's rows whole, one group after another, then sorted."""
    results: list[Any] = []
    for group in cluster.config.shard_groups:
        node = find_node(cluster.nodes, cluster.primary_node(group.name))
        with connect(node, cluster.config) as conn:
            results.extend(conn.execute(sql).fetchall())
    results.sort(key=operator.itemgetter(key))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlscale.bench.stream_probe")
    parser.add_argument("config", help="the cluster's config file")
    parser.add_argument("sql", help="the measured read")
    parser.add_argument("--warm-sql", required=True, help="a small read of the same shape")
    parser.add_argument("--how", choices=("stream", "fetchall"), default="stream")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--key", type=int, default=0, help="the ORDER BY column's index")
    args = parser.parse_args(argv)

    with Cluster.from_file(args.config) as cluster:
        if args.how == "stream":
            _count_ordered(cluster.stream(args.warm_sql, batch_size=args.batch_size), args.key)
        else:
            _fetchall_loop(cluster, args.warm_sql, args.key)
        before = _status_mb("VmRSS")
        reset = _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        if args.how == "stream":
            rows, ordered = _count_ordered(
                cluster.stream(args.sql, batch_size=args.batch_size), args.key
            )
        else:
            held = _fetchall_loop(cluster, args.sql, args.key)
            rows, ordered = _count_ordered(held, args.key)
        wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        after = _status_mb("VmHWM")
    out = {
        "how": args.how,
        "rows": rows,
        "ordered": ordered,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "rss_growth_mb": after - before,
        "peak_reset": reset,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
