"""The writer process of the kill test (test_predictions_kill.py): logs rows with ids
and times made from a counter, flushes every ``flush_every`` rows and appends the
count each returned flush acknowledged to ``ack_file`` (fsynced), then prints its
last FlushResult's totals as one line: ``done <rows stored> <duplicates>``.

Usage: python predictions_kill_child.py CONFIG LOG TOTAL CHUNK FLUSH_EVERY ACK_FILE
"""

from __future__ import annotations

import datetime as dt
import os
import sys

import numpy as np
import pandas as pd

from mlscale import Cluster
from mlscale.stores.predictions.tables_sync import PredictionTables
from mlscale.stores.predictions.writer_sync import PredictionWriter

# Row i: prediction_id = uuid(int=i), so "id < uuid(int=n)" selects the first n rows;
# entity i // 16: the slot hash still spreads entities over every group, and each
# group's primary-key index grows at its end (random keys made the servers ~2x
# slower here, past the test's time budget; the benchmark writes random keys).


def frame(start: int, count: int, day_us: int) -> pd.DataFrame:
    i = np.arange(start, start + count, dtype=np.int64)
    ids = np.zeros((count, 16), dtype=np.uint8)
    ids[:, 8:] = i.astype(">u8").view(np.uint8).reshape(count, 8)
    raw = ids.tobytes()
    return pd.DataFrame(
        {
            "entity_id": i // 16,
            "prediction_id": [raw[k : k + 16] for k in range(0, len(raw), 16)],
            "ts": pd.to_datetime(day_us + i * 10, unit="us", utc=True),
            "score": (i % 1000) / 1000.0,
            "model": "kill",
            "model_version": "v1",
        }
    )


def main(argv: list[str]) -> int:
    config, name, total, chunk, flush_every, ack_file = argv
    n, step, every = int(total), int(chunk), int(flush_every)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_us = int(today.timestamp()) * 1_000_000
    rows = duplicates = 0
    with Cluster.from_file(config) as cluster:
        tables = PredictionTables(cluster)
        log = tables.get(name)
        with open(ack_file, "a") as acks, PredictionWriter(cluster, tables, log) as writer:
            for start in range(0, n, step):
                count = min(step, n - start)
                writer.log_many(frame(start, count, day_us))
                end = start + count
                if end % every == 0 or end == n:
                    done = writer.flush()
                    rows += done.rows
                    duplicates += done.duplicates
                    acks.write(f"{end}\n")
                    acks.flush()
                    os.fsync(acks.fileno())
    print(f"done {rows} {duplicates}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
