"""`mlscale bench training-read --quick` writes measured figures and a verdict anyone
can recheck.

Structure only: whether the gate passes is what the benchmark measures, not what a
test may assert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

VARIANTS = ("reader", "fetchall_pandas", "ceiling")


# The benchmark's own bound: the suite's 300 s per test is a hang guard that a busy
# machine can outlast.
TIMEOUT_S = 400


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_training_read_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli(
        "bench", "training-read", "--quick", "--out", str(out), "-q", timeout=TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    assert "results written to" in result.stdout
    doc = json.loads((out / "training-read.json").read_text())
    assert doc["name"] == "training-read" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["groups"] == 4 and params["rows"] == 200_000
    rounds = params["rounds"]
    assert rounds >= 5

    (gate,) = doc["gates"]
    assert gate["name"] == "vs_fetchall_pandas_ratio"
    assert gate["op"] == ">=" and gate["target"] == pytest.approx(5.0)
    recheck(gate)

    rates = {v: spread(metrics, f"{v}_rows_per_s", rounds) for v in VARIANTS}
    for v in VARIANTS:
        spread(metrics, f"{v}_peak_rss_mb", rounds)
        spread(metrics, f"{v}_client_cpu_s", rounds)
    assert gate["value"] == pytest.approx(
        rates["reader"]["median"] / rates["fetchall_pandas"]["median"]
    )
    assert sum(metrics["rows_by_group"].values()) == params["rows"]
    assert len(metrics["rows_by_group"]) == 4
