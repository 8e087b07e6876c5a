"""`mlscale bench metrics --quick` writes measured figures and verdicts anyone can
recheck. Structure only: whether the goals hold is what the benchmark measures; the
gates (both sides answer the downsample query alike, every point counted) are
correctness and must pass. Needs Debian's influxdb (scripts/setup.sh installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlscale.bench.influx_peer import influxd_binary
from mlscale.local.procs import pid_alive
from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(influxd_binary() is None, reason="influxd not installed (scripts/setup.sh)"),
]

INGEST = ("mlscale", "influxdb", "raw_copy")


def test_metrics_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "metrics", "--quick", "--out", str(out), "-q", timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["name"] == "metrics" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["rounds"] >= 5 and params["client_threads"] >= 1
    assert params["batches"] == -(-params["lines"] // params["batch_lines"])
    for name in INGEST:
        rate = spread(metrics, f"{name}_points_per_s", params["rounds"])
        assert rate["min"] > 0
        spread(metrics, f"{name}_client_cpu_cores", params["rounds"])
    for name in ("mlscale", "influxdb"):
        p50 = spread(metrics, f"{name}_query_p50_ms", params["rounds"])
        p99 = spread(metrics, f"{name}_query_p99_ms", params["rounds"])
        assert 0 < p50["median"] <= p99["max"]
    ratio = metrics["mlscale_points_per_s"]["median"] / metrics["influxdb_points_per_s"]["median"]
    assert metrics["ingest_ratio_vs_influx"] == pytest.approx(ratio)
    ratio = metrics["mlscale_query_p50_ms"]["median"] / metrics["influxdb_query_p50_ms"]["median"]
    assert metrics["query_p50_ratio"] == pytest.approx(ratio)
    # Equality was checked, over every run, before any query was timed.
    agreement = metrics["query_agreement"]
    assert agreement["series"] == params["runs"] and agreement["buckets"] == 288
    assert agreement["equal"] is True and metrics["query_results_equal"] is True
    assert agreement["max_rel_diff"] <= 1e-9
    assert metrics["counts_checked"] is True
    profile = metrics["ingest_profile"]
    stages = profile["us_per_line"]
    assert set(stages) == {"parse", "place_and_encode", "wait_for_groups", "write_lines"}
    assert stages["parse"] > 0 and stages["write_lines"] > 0
    assert profile["profile"]["top_by_own_time"]
    influxd = metrics["influxd"]
    assert influxd["version"].startswith("InfluxDB v1.") and influxd["start_s"] > 0
    gates = {g["name"]: g for g in doc["gates"]}
    assert gates["query_results_equal"]["passed"] and gates["counts_equal"]["passed"]
    assert {g["name"] for g in doc["goals"]} == {"ingest_ratio_vs_influx", "query_p50_ratio"}
    for verdict in doc["gates"] + doc["goals"]:
        recheck(verdict)
    assert "mlscale / InfluxDB" in result.stdout
    # The bench stopped the influxd it started.
    assert not pid_alive(influxd["pid"])
