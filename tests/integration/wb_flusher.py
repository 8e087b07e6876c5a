"""A write-behind flusher in its own process, for the crash tests (kill -9 needs a
process to kill): ``python -m tests.integration.wb_flusher --config ... --port ...``.

``--hold-file F --hold-batch K``: after the K-th batch has committed and before the
journal is trimmed, write the batch's result to F and sleep, so the test can kill
the process in exactly that gap. ``--drain``: flush until the journal is empty, print
the stats as JSON, exit. Otherwise flush until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from mlscale import Cluster
from mlscale.cache.journal import Journal
from mlscale.cache.writebehind import FlushResult, PostgresSink, Target, WriteBehind

COLUMNS = ("val", "seq")


def target(table: str) -> Target:
    return Target(table, key="id", columns=COLUMNS)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--hold-file")
    p.add_argument("--hold-batch", type=int, default=3)
    p.add_argument("--drain", action="store_true")
    args = p.parse_args(argv)

    batches = 0

    def hold(result: FlushResult) -> None:
        nonlocal batches
        batches += 1
        if args.hold_file and batches == args.hold_batch:
            info = {"last_id": result.last_id, "rows": result.rows, "applied": result.applied}
            tmp = Path(args.hold_file + ".tmp")
            tmp.write_text(json.dumps(info))
            tmp.rename(args.hold_file)
            time.sleep(3600)  # killed here, between commit and trim

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    journal = Journal.connect(args.stream, port=args.port, password=args.password)
    with Cluster.from_file(args.config) as cluster:
        t = target(args.table)
        wb = WriteBehind(
            journal,
            [t],
            sink=PostgresSink(cluster.connection, [t]),
            batch_size=args.batch,
            after_commit=hold,
        )
        if args.drain:
            wb.drain(timeout_s=600)
        else:
            print("ready", flush=True)
            wb.run_flusher(stop)
        print(json.dumps(wb.stats().to_dict()), flush=True)
        wb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
