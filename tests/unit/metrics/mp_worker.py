"""A worker process of the multiprocess test: mirrors a fake cluster into the shared files.

Run with PROMETHEUS_MULTIPROC_DIR set and argv[1] = its eventual reads. Prints
``ready`` after its first copy; on a line ``more`` it adds 5 reads and copies
again (``done``); it exits at end of input.
"""

from __future__ import annotations

import sys

from mlscale.metrics import MetricsMirror, multiprocess_enabled, observe_feature_read
from tests.unit.metrics.fixtures import FakeCluster, stats


def main() -> None:
    reads = int(sys.argv[1])
    assert multiprocess_enabled()
    cluster = FakeCluster(stats(reads=reads))
    mirror = MetricsMirror(cluster, interval_s=60)
    mirror.sync()
    for _ in range(reads):
        observe_feature_read("user_stats", 0.0003)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "more":
            cluster.s = stats(reads=reads + 5)
            mirror.sync()
            print("done", flush=True)


if __name__ == "__main__":
    main()
