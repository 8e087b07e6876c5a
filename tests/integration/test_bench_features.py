"""`mlscale bench features --quick` writes measured figures and verdicts anyone can recheck.

Structure only: whether a gate passes is what the benchmark measures, not what a
test may assert. Feast is installed on demand into its own venv (minutes the first
time; ``$MLSCALE_BENCH_VENVS`` points at one already made); if it cannot be, its
gate and goal must be skipped with the reason in the JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

OURS = ("mlscale_cache_off", "mlscale_cache_on", "raw_binary", "raw_text")
FEAST = {"vs_feast_postgres_ratio": "postgres", "vs_feast_redis_ratio": "redis"}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The benchmark's own bound (a cold install of Feast included): the suite's
# 300 s per test is a hang guard that a busy machine can outlast.
TIMEOUT_S = 1500


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_features_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "features", "--quick", "--out", str(out), "-q", timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "features.json").read_text())
    assert doc["name"] == "features" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["groups"] == 2 and params["replicas_per_group"] == 1
    assert params["features"] == 50 and params["batch_entities"] == 100
    rounds = params["rounds"]
    assert rounds >= 5

    gates = {g["name"]: g for g in doc["gates"]}
    goals = {g["name"]: g for g in doc["goals"]}
    skipped = metrics["skipped"]
    # Every gate and goal is there with a finite value, or (Feast's only) skipped with
    # the reason Feast was not measured.
    expected_gates = {"vs_raw_any_ratio": (">=", 0.7), "vs_feast_postgres_ratio": (">=", 10.0)}
    expected_goals = {
        "entities_per_s_cache_off": (">=", 50_000.0),
        "batch_p99_ms": ("<=", 10.0),
        "vs_feast_redis_ratio": (">=", 3.0),
    }
    for table, expected in ((gates, expected_gates), (goals, expected_goals)):
        for name, (op, target) in expected.items():
            if name not in table:
                assert name in FEAST and skipped[name].startswith("unavailable: "), name
                assert metrics["feast"][FEAST[name]]["status"] == skipped[name]
                continue
            verdict = table[name]
            assert verdict["op"] == op and verdict["target"] == pytest.approx(target), name
            assert _finite(verdict["value"]), name
            assert _finite(metrics[name]) and metrics[name] == pytest.approx(verdict["value"])
            recheck(verdict)
        assert set(table) <= set(expected)

    # Every variant measured in every round: a median with its range, p50 <= p99.
    variants = list(OURS) + [f"feast_{s}" for n, s in FEAST.items() if n not in skipped]
    rate = {v: spread(metrics, f"{v}_entities_per_s", rounds) for v in variants}
    for v in variants:
        assert rate[v]["min"] > 0, v
        p50 = spread(metrics, f"{v}_batch_p50_ms", rounds)
        p99 = spread(metrics, f"{v}_batch_p99_ms", rounds)
        assert 0 < p50["median"] <= p99["median"], v
    # The gates are ratios of those medians; the ceiling is the faster raw cursor.
    ceiling = max(rate["raw_binary"]["median"], rate["raw_text"]["median"])
    assert metrics["raw_ceiling"] in ("raw_binary", "raw_text")
    assert gates["vs_raw_any_ratio"]["value"] == pytest.approx(
        rate["mlscale_cache_off"]["median"] / ceiling, rel=1e-9
    )
    if "vs_feast_postgres_ratio" in gates:
        assert gates["vs_feast_postgres_ratio"]["value"] == pytest.approx(
            rate["mlscale_cache_off"]["median"] / rate["feast_postgres"]["median"], rel=1e-9
        )

    # Metrics: load rates and bytes on disk, ours and Feast's where it was measured.
    for key in ("load_entities_per_s", "bytes_per_entity", "history_bytes_per_entity",
                "cache_on_vs_off_ratio"):  # fmt: skip
        assert _finite(metrics[key]) and metrics[key] > 0, key
    assert metrics["load"]["entities"] == params["entities"]
    for name, store in FEAST.items():
        if name in skipped:
            continue
        side = metrics["feast"][store]
        assert side["status"] == "measured" and side["mismatches"] == 0
        assert 0 < side["entities_loaded"] <= params["entities"]
        assert _finite(metrics[f"feast_{store}_load_entities_per_s"])
    if "vs_feast_postgres_ratio" not in skipped:
        assert _finite(metrics["feast_postgres_bytes_per_entity"])

    # The open loop reports what it could not send, and the profile where time went.
    loop = metrics["open_loop"]
    assert loop["ops"] > 0 and loop["dropped"] >= 0 and loop["late"] >= 0
    assert loop["target_per_s"] * 100 >= 50_000  # the goal's rate, or above
    lower = metrics["open_loop_lower_rates"]
    assert lower and all(p["target_batches_per_s"] < loop["target_per_s"] for p in lower)
    assert all(_finite(p["p99_ms"]) and _finite(p["entities_per_s"]) for p in lower)
    profile = metrics["cache_off_profile"]
    assert profile["batches"] > 0 and profile["top_by_own_time"]
    assert all(_finite(r["tottime_us_per_batch"]) for r in profile["top_by_own_time"])
    assert any("where a cache-off batch's time goes" in n for n in doc["notes"])
