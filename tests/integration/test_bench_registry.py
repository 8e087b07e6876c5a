"""`mlscale bench registry --quick` writes measured figures and verdicts anyone can
recheck. Structure only: whether the gates pass is what the benchmark measures. The
library and the service are always measured; MLflow, if it cannot be installed on this
machine, must say why in ``unavailable``, never vanish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

VARIANTS = ("l1_on", "l1_off", "mlflow", "service")


# The benchmark's own bound (a cold install of MLflow included): the suite's
# 300 s per test is a hang guard that a busy machine can outlast.
TIMEOUT_S = 600


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_registry_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "registry", "--quick", "--out", str(out), "-q", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "registry.json").read_text())
    assert doc["name"] == "registry" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["rounds"] >= 5 and params["server_workers"] >= 1
    missing = metrics["unavailable"]
    assert set(missing) <= {"mlflow"}, missing
    measured = [v for v in VARIANTS if v not in missing]
    for name in VARIANTS:  # measured, or a reason; never both, never neither
        assert (f"{name}_lookups_per_s" in metrics) == (name in measured), name
    for name in measured:
        assert spread(metrics, f"{name}_lookups_per_s", params["rounds"])["min"] > 0
        p50 = spread(metrics, f"{name}_p50_ms", params["rounds"])
        assert p50["median"] <= spread(metrics, f"{name}_p99_ms", params["rounds"])["max"]
        spread(metrics, f"{name}_client_cpu_cores", params["rounds"])
    if "mlflow" in missing:
        assert missing["mlflow"].startswith("MLflow could not be installed"), missing["mlflow"]
    else:
        ceiling = metrics["mlflow_ceiling"]
        assert [p["clients"] for p in ceiling["points"]] == params["ceiling_clients"]
        assert all(p["errors"] == 0 and p["lookups"] > 0 for p in ceiling["points"])
    assert metrics["production_lookup_per_s"] == metrics["l1_on_lookups_per_s"]["median"]
    assert metrics["p99_ms"] == metrics["l1_on_p99_ms"]["median"]
    seen = metrics["visibility"]
    assert seen["transitions"] == params["visibility_promotions"] > 0
    assert (
        seen["observations"] + seen["missed"]
        == seen["transitions"] * params["visibility_processes"]
    )
    if seen["missed"] == 0 and seen["regressions"] == 0:
        assert metrics["visibility_p99_ms"] == seen["p99_ms"] > 0
    else:  # a missed promotion or a regression fails the gate, whatever the lags
        assert metrics["visibility_p99_ms"] is None
    if "mlflow" in measured:
        ratio = metrics["l1_on_lookups_per_s"]["median"] / metrics["mlflow_lookups_per_s"]["median"]
        assert metrics["vs_mlflow_ratio"] == pytest.approx(ratio)
    else:
        assert metrics["vs_mlflow_ratio"] is None
    gates = {(g["name"], g["op"], g["target"]) for g in doc["gates"]}
    assert gates == {
        ("production_lookup_per_s", ">=", 10_000),
        ("p99_ms", "<=", 5),
        ("visibility_p99_ms", "<=", 100),
    }
    goals = {g["name"] for g in doc["goals"]}
    assert goals == {"vs_mlflow_ratio", "vs_mlflow_ceiling_ratio"}
    for verdict in doc["gates"] + doc["goals"]:
        recheck(verdict)
    for name, why in missing.items():  # said on the console too
        assert f"{name}: {why}" in result.stdout
