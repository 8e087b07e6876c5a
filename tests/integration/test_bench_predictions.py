"""`mlscale bench predictions --quick` writes measured figures and verdicts anyone can
recheck. Structure only: whether the gate passes is what the benchmark measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

VARIANTS = ("writer", "raw_copy", "executemany", "rowwise")


# The benchmark's own bound: the suite's 300 s per test is a hang guard that a busy
# machine can outlast.
TIMEOUT_S = 600


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_predictions_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "predictions", "--quick", "--out", str(out), "-q", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["name"] == "predictions" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["groups"] == 4 and params["rounds"] >= 5
    for name in VARIANTS:
        rate = spread(metrics, f"{name}_rows_per_s", params["rounds"])
        assert rate["min"] > 0
        spread(metrics, f"{name}_client_cpu_cores", params["rounds"])
    assert metrics["counts_checked"] is True  # every run's rows were counted on the servers
    ratio = metrics["writer_rows_per_s"]["median"] / metrics["raw_copy_rows_per_s"]["median"]
    assert metrics["vs_raw_copy_ratio"] == pytest.approx(ratio)
    assert metrics["vs_executemany_ratio"] > 0 and metrics["rowwise_insert_rows_per_s"] > 0
    assert set(metrics["client_path_us_per_row"]) == {"check", "place_encode", "total"}
    assert metrics["client_path_profile"]["top_by_own_time"]
    (gate,) = doc["gates"]
    assert (gate["name"], gate["op"], gate["target"]) == ("vs_raw_copy_ratio", ">=", 0.7)
    recheck(gate)
    assert "writer / raw COPY" in result.stdout
