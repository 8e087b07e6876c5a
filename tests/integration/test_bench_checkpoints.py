"""`mlscale bench checkpoints --quick` writes measured figures and verdicts anyone can
recheck. Structure only: whether the read-rate gate holds is what the benchmark
measures (on a shared 2-CPU machine it may not); the bit-exact gate must pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow


def test_checkpoints_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "checkpoints", "--quick", "--out", str(out), "-q", timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "checkpoints.json").read_text())
    assert doc["name"] == "checkpoints" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["rounds"] >= 5 and params["checkpoint_bytes"] >= 128 << 20
    rates = {}
    for name in ("mlscale_write", "local_write", "mlscale_read", "local_read", "local_read_cached"):
        rates[name] = spread(metrics, f"{name}_mb_per_s", params["rounds"])["median"]
        assert rates[name] > 0
    assert metrics["read_ratio_vs_local_file"] == pytest.approx(
        rates["mlscale_read"] / rates["local_read"]
    )
    assert metrics["bit_exact"] is True
    gates = {g["name"]: g for g in doc["gates"]}
    assert gates["bit_exact"]["passed"] is True
    assert gates["read_ratio_vs_local_file"]["target"] == 0.5
    for verdict in doc["gates"] + doc["goals"]:
        recheck(verdict)
