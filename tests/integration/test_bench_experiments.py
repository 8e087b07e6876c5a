"""`mlscale bench experiments --quick` writes measured figures and verdicts anyone
can recheck. Structure only: whether the goal holds is what the benchmark measures;
the gate (both variants return the same runs) is correctness and must pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow


def test_experiments_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "experiments", "--quick", "--out", str(out), "-q", timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "experiments.json").read_text())
    assert doc["name"] == "experiments" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["rounds"] >= 5 and params["documents"] >= 100_000
    for name in ("path_index", "no_index"):
        p50 = spread(metrics, f"{name}_p50_ms", params["rounds"])
        p99 = spread(metrics, f"{name}_p99_ms", params["rounds"])
        assert 0 < p50["median"] <= p99["max"]
    ratio = metrics["no_index_p50_ms"]["median"] / metrics["path_index_p50_ms"]["median"]
    assert metrics["p50_speedup"] == pytest.approx(ratio)
    assert metrics["same_results"] is True and metrics["runs_per_find_mean"] > 0
    assert metrics["plan_uses_index"] == {"path_index": True, "no_index": False}
    assert "Bitmap Index Scan" in metrics["plans"]["path_index"]
    gates = {g["name"]: g for g in doc["gates"]}
    assert gates["same_results"]["passed"] is True
    for verdict in doc["gates"] + doc["goals"]:
        recheck(verdict)
