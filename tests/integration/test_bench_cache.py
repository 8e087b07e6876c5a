"""`mlscale bench cache --quick` writes measured figures and verdicts anyone can recheck.

Structure only: whether a gate passes is what the benchmark measures, not what a
test may assert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

VARIANTS = (
    "l1_hit",
    "l1_hit_decorated",
    "l2_hit",
    "l2_hit_async",
    "db_read",
    "db_read_mlscale",
    "naive_hit",
    "naive_batch_100",
    "l2_batch_100",
    "redis_ping",
    "db_select_1",
)


def test_cache_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "cache", "--quick", "--out", str(out), "-q", timeout=240)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "cache.json").read_text())
    assert doc["name"] == "cache" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["zipf_s"] == pytest.approx(1.1) and params["batch_keys"] == 100
    rounds = params["rounds"]
    assert rounds >= 5

    gates = {g["name"]: g for g in doc["gates"]}
    assert set(gates) == {"l2_batch_vs_naive_ratio", "l1_hit_vs_db_ratio", "db_load_cut"}
    targets = {"l2_batch_vs_naive_ratio": 3.0, "l1_hit_vs_db_ratio": 50.0, "db_load_cut": 0.8}
    for name, target in targets.items():
        assert gates[name]["op"] == ">=" and gates[name]["target"] == pytest.approx(target)
    (goal,) = doc["goals"]
    assert goal["name"] == "l2_hit_vs_cashews_ratio" and goal["op"] == "<="
    for verdict in (*gates.values(), goal):
        recheck(verdict)

    # Every variant timed in every round: p50 <= p99, throughput positive.
    p50 = {v: spread(metrics, f"{v}_p50_us", rounds) for v in VARIANTS}
    for v in VARIANTS:
        p99 = spread(metrics, f"{v}_p99_us", rounds)
        assert 0 < p50[v]["median"] <= p99["median"], v
        assert spread(metrics, f"{v}_ops_per_s", rounds)["min"] > 0
    # The verdicts are ratios of those medians.
    assert gates["l2_batch_vs_naive_ratio"]["value"] == pytest.approx(
        p50["naive_batch_100"]["median"] / p50["l2_batch_100"]["median"], rel=1e-9
    )
    assert gates["l1_hit_vs_db_ratio"]["value"] == pytest.approx(
        p50["db_read"]["median"] / p50["l1_hit"]["median"], rel=1e-9
    )
    assert metrics["l1_hit_vs_db_mlscale_ratio"] == pytest.approx(
        p50["db_read_mlscale"]["median"] / p50["l1_hit"]["median"], rel=1e-9
    )
    # Where an L1 hit's time goes: every step measured, the rest what the steps leave.
    prof = {k: spread(metrics["l1_hit_profile_ns"], k, rounds) for k in
            ("timer", "name", "lookup", "get", "rest_of_get")}  # fmt: skip
    for k in ("timer", "name", "lookup", "get"):
        assert prof[k]["min"] > 0, k
    assert any("where an L1 hit's time goes" in n for n in doc["notes"])
    # The load cut adds up, and the database's own count agrees with the client's.
    cut = spread(metrics, "db_load_cut_per_round", rounds)
    assert gates["db_load_cut"]["value"] == pytest.approx(cut["median"])
    for served in metrics["load_cut_rounds"]:
        assert served["l1_hits"] + served["l2_hits"] + served["db_reads"] == served["requests"]
        assert served["db_reads"] > 0 and served["l2_hits"] > 0
        assert served["db_reads_server"] in (None, served["db_reads"])
    assert any("façade" in n for n in doc["notes"])
    assert any("PING" in n and "SELECT 1" in n for n in doc["notes"])

    # cashews: measured beside mlscale's async hit, or said why not.
    if goal["value"] is None:
        assert any("cashews" in n and "not measured" in n for n in doc["notes"])
    else:
        cashews = spread(metrics, "cashews_hit_p50_us", rounds)
        assert goal["value"] == pytest.approx(
            p50["l2_hit_async"]["median"] / cashews["median"], rel=1e-9
        )
