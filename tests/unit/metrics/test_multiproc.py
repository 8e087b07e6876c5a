"""Multiprocess mode: two worker processes' counters summed in one render."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mlscale.metrics import render_multiprocess
from mlscale.metrics.multiproc import MetricsMirror
from tests.unit.metrics.fixtures import FakeCluster, stats

ROOT = Path(__file__).resolve().parents[3]
REPLICA1_EVENTUAL = {"consistency": "eventual", "group": "g0", "node": "g0-replica1",
                     "role": "replica"}


def values(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(series: list[tuple[dict[str, str], float]], **labels: str) -> float:
    found = [v for lab, v in series if all(lab.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (labels, series)
    return found[0]


def worker(reads: int, directory: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.metrics.mp_worker", str(reads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_two_workers_counters_are_summed_and_dead_workers_gauges_dropped(tmp_path: Path) -> None:
    procs = [worker(7, tmp_path), worker(11, tmp_path)]
    try:
        body, content_type = render_multiprocess(str(tmp_path))
        assert content_type.startswith("text/plain")
        v = values(body)
        assert one(v["mlscale_reads_total"], **REPLICA1_EVENTUAL) == 18
        assert one(v["mlscale_writes_total"], node="g0-primary") == 6
        # Pools are each worker's own: summed; lag is the same replica's: the max.
        assert one(v["mlscale_pool_size"], node="g0-primary") == 6
        assert one(v["mlscale_replica_lag_seconds"], node="g0-replica1") == 0.12
        assert one(v["mlscale_replica_banned"], node="g0-replica2", kind="lag") == 1
        assert one(v["mlscale_feature_read_seconds_count"], view="user_stats") == 18

        for p in procs:  # each worker's counters move on: only the increase is added
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("more\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "done"
        v = values(render_multiprocess(str(tmp_path))[0])
        assert one(v["mlscale_reads_total"], **REPLICA1_EVENTUAL) == 28
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            p.wait(timeout=10)
    # Both workers are gone: their counts stay, their live gauges go.
    v = values(render_multiprocess(str(tmp_path))[0])
    assert one(v["mlscale_reads_total"], **REPLICA1_EVENTUAL) == 28
    assert "mlscale_pool_size" not in v
    assert one(v["mlscale_feature_read_seconds_bucket"], view="user_stats", le="0.0005") == 18


def test_without_a_directory_the_process_renders_its_own_mirrors(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    cluster = FakeCluster(stats(reads=4))
    with MetricsMirror(cluster, interval_s=60):
        v = values(render_multiprocess()[0])
        before = one(v["mlscale_reads_total"], **REPLICA1_EVENTUAL)
        cluster.s = stats(reads=9)
        v = values(render_multiprocess()[0])  # copies before rendering
        assert one(v["mlscale_reads_total"], **REPLICA1_EVENTUAL) - before == 5
