"""`mlscale bench vectors --quick` writes measured figures and verdicts anyone can
recheck. Structure only: whether gates and goals pass is what the benchmark measures.
Both mlscale sides are always measured; milvus-lite, if it cannot be installed here,
must say why in ``unavailable``, never vanish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

SIDES = (
    "mlscale_4_groups",
    "one_node",
    "milvus_lite",
    "mlscale_4_groups_batched",
    "milvus_lite_batched",
)


# The benchmark's own bound (a cold install of milvus-lite included): the suite's
# 300 s per test is a hang guard that a busy machine can outlast.
TIMEOUT_S = 600


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_vectors_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "vectors", "--quick", "--out", str(out), "-q", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "vectors.json").read_text())
    assert doc["name"] == "vectors" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["rounds"] >= 5 and params["k"] == 10
    missing = metrics["unavailable"]
    assert set(missing) <= {"milvus_lite", "milvus_lite_batched"}, missing
    measured = [s for s in SIDES if s not in missing]
    for name in SIDES:  # measured, or a reason; never both, never neither
        assert (f"{name}_queries_per_s" in metrics) == (name in measured), name
    for name in measured:
        assert spread(metrics, f"{name}_queries_per_s", params["rounds"])["min"] > 0
        p50 = spread(metrics, f"{name}_p50_ms", params["rounds"])
        assert p50["median"] <= spread(metrics, f"{name}_p99_ms", params["rounds"])["max"]
        assert 0 < spread(metrics, f"{name}_recall", params["rounds"])["max"] <= 1
        assert metrics["errors"][name] == 0
        tuning = metrics["sides"][name]["tuning"]
        assert metrics["ef"][name] == tuning["ef"] == tuning["tried"][-1]["ef"]
    assert metrics["queries_per_s"] == metrics["mlscale_4_groups_queries_per_s"]["median"]
    assert metrics["sides"]["mlscale_4_groups"]["groups"] == 4
    exact = metrics["exact"]
    assert exact["queries"] > 0 and exact["max_rel_distance_diff"] < 1e-5
    assert sum(metrics["filter_1pct"]["answered_by"].values()) == metrics["filter_1pct"]["queries"]
    if "milvus_lite" in missing:
        assert missing["milvus_lite"].startswith("milvus-lite"), missing
    else:
        assert metrics["vs_milvus_lite_ratio"] > 0
        assert metrics["vs_milvus_lite_batched_ratio"] > 0
    target = metrics["seeds_target"]
    assert (target["queries_per_s"], target["p99_ms"]) == (20_000.0, 20.0)
    assert any("20,000 QPS" in n for n in doc["notes"])
    assert {g["name"] for g in doc["goals"]} >= {"vs_milvus_lite_ratio", "seeds_queries_per_s"}
    for verdict in doc["gates"] + doc["goals"]:
        recheck(verdict)
