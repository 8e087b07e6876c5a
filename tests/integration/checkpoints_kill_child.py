"""The uploading process of the checkpoint kill test (test_checkpoints.py): saves FILE
as checkpoint STEP of RUN with 1 MiB chunks and prints one line per chunk handled,
``chunk <done> <sent>``, flushed, so the test can kill it midway.

Usage: python checkpoints_kill_child.py CONFIG RUN STEP FILE
"""

from __future__ import annotations

import sys

from mlscale import Cluster
from mlscale.stores.checkpoints import Checkpoints, TransferProgress


def main(argv: list[str]) -> int:
    config, run, step, path = argv
    with Cluster.from_file(config) as cluster:
        store = Checkpoints(cluster, chunk_size=1 << 20, workers=2)

        def shown(p: TransferProgress) -> None:
            print(f"chunk {p.chunks_done} {p.chunks_sent}", flush=True)

        result = store.save(run, int(step), path, progress=shown)
    print(f"done {result.sent} {result.skipped}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
