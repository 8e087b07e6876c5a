"""Kill test of the prediction writer: 5M rows into 4 groups, ``kill -9`` of the
writer process midway, then a resend of everything with the same ids.

Every row whose flush() had returned before the kill must be on the servers before
anything is resent; after the resend there must be exactly 5M distinct rows,
counted on the servers (not by the client)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.core.predictions.spec import PredictionLog
from mlscale.local.tempdirs import reachable_tempdir
from mlscale.stores.predictions.tables_sync import PredictionTables

TOTAL = 5_000_000
CHUNK = 100_000
FLUSH_EVERY = 500_000
KILL_AFTER = 1_500_000  # acknowledged rows before the kill (it lands mid-run)
KILL_DELAY_S = 0.4
CHILD = Path(__file__).with_name("predictions_kill_child.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def four_groups() -> Iterator[LocalCluster]:
    base = reachable_tempdir("mlscale-pkill-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=4, replicas=0, redis=False)
        yield local
    finally:
        try:
            local.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _child(config: Path, ack: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(config), "kill_log", str(TOTAL), str(CHUNK),
         str(FLUSH_EVERY), str(ack)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _acked(ack: Path) -> int:
    if not ack.exists():
        return 0
    lines = [ln for ln in ack.read_text().splitlines() if ln.strip()]
    return int(lines[-1]) if lines else 0


def _count(cluster: Cluster, groups: list[str], query: str, params: tuple[object, ...] = ()
           ) -> dict[str, int]:  # fmt: skip
    return {
        g: int(cluster.as_written(g).fetch_value(query, params, consistency="strong"))
        for g in groups
    }


def test_kill_midway_then_resend_stores_each_row_once(
    four_groups: LocalCluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    config = four_groups.layout.config
    with Cluster.from_file(config) as cluster:
        tables = PredictionTables(cluster)
        tables.create(PredictionLog(name="kill_log"))
        groups = tables.groups
        assert len(groups) == 4

        ack = tmp_path / "acks"
        child = _child(config, ack)
        try:
            deadline = time.monotonic() + 120
            while _acked(ack) < KILL_AFTER:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the writer acknowledged too little"
                time.sleep(0.01)
            # Not at once: a moment later batches are on the wire and being committed,
            # so the kill lands mid-COPY rather than just after an acknowledgement.
            time.sleep(KILL_DELAY_S)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.communicate()
        assert child.returncode == -signal.SIGKILL
        acked = _acked(ack)
        assert KILL_AFTER <= acked < TOTAL  # killed midway, after acknowledged flushes

        # Before anything is resent: every acknowledged row is stored, once.
        below = _count(
            cluster, groups, "SELECT count(*) FROM kill_log WHERE prediction_id < %s",
            (uuid.UUID(int=acked),),
        )  # fmt: skip
        present = sum(_count(cluster, groups, "SELECT count(*) FROM kill_log").values())
        assert sum(below.values()) == acked
        assert acked <= present < TOTAL

        # The restart resends everything with the same ids.
        ack2 = tmp_path / "acks2"
        again = _child(config, ack2)
        out, err = again.communicate(timeout=240)
        assert again.returncode == 0, err[-3000:]
        stored, duplicates = (int(x) for x in out.split()[-2:])
        assert _acked(ack2) == TOTAL

        counts = _count(cluster, groups, "SELECT count(*) FROM kill_log")
        distinct = _count(cluster, groups, "SELECT count(DISTINCT prediction_id) FROM kill_log")
        assert sum(counts.values()) == TOTAL
        assert counts == distinct
        assert all(counts.values())  # every group got rows
        # The resend stored what the kill had lost, and found the rest already there.
        assert stored == TOTAL - present
        assert duplicates == present
    took = time.monotonic() - started
    print(
        f"\nkill test: {acked:,} rows acknowledged at the kill, {present:,} present before "
        f"the resend, {TOTAL:,} distinct after it; {took:.1f} s"
    )
