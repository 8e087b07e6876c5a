"""`mlscale bench replicas` writes verdicts anyone can recheck from its metrics.

Structure only: whether the gate passes is what the benchmark measures, not
what a test may assert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlscale.local.cgroups import detect
from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow


def test_replicas_bench_writes_rechecked_verdicts(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "replicas", "--quick", "--out", str(out), "-q", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "results written to" in result.stdout
    doc = json.loads((out / "replicas.json").read_text())
    assert doc["name"] == "replicas" and doc["quick"] is True
    metrics = doc["metrics"]

    (gate,) = doc["gates"]
    assert gate["name"] == "routed_overhead_ratio"
    assert gate["op"] == "<=" and gate["target"] == pytest.approx(1.10)
    routed = spread(metrics, "routed_read_p50_us")
    raw = spread(metrics, "raw_read_p50_us")
    assert routed["n"] >= 5 and raw["n"] >= 5
    assert gate["value"] == pytest.approx(routed["median"] / raw["median"], rel=1e-9)
    assert metrics["routed_overhead_ratio"] == pytest.approx(gate["value"], rel=1e-9)
    assert metrics["routed_overhead_us"] == pytest.approx(routed["median"] - raw["median"])
    # The routed reads really went to the replica the raw pool reads from.
    assert set(metrics["overhead_routed_reads"]["reads_by_node"]) == {metrics["overhead_replica"]}
    recheck(gate)

    (goal,) = doc["goals"]
    assert goal["name"] == "read_scaling_ratio"
    assert goal["op"] == ">=" and goal["target"] == pytest.approx(3.0)
    recheck(goal)
    if detect()[0] is None:
        assert goal["value"] is None and any("CPU caps" in n for n in doc["notes"])
        return
    alone = spread(metrics, "primary_only_reads_per_s")
    four = spread(metrics, "four_nodes_reads_per_s")
    assert alone["n"] >= 5 and four["n"] >= 5
    assert goal["value"] == pytest.approx(four["median"] / alone["median"], rel=1e-9)
    assert metrics["errors"] == {"primary_only": 0, "four_nodes": 0}
    for key in ("ceiling_primary_tps", "ceiling_4_nodes_tps"):
        assert spread(metrics, key)["median"] > 0
    assert metrics["ceiling_ratio"] == pytest.approx(
        metrics["ceiling_4_nodes_tps"]["median"] / metrics["ceiling_primary_tps"]["median"]
    )
    # Every data node served reads in the 4-node rounds; the client's CPU was recorded.
    load = metrics["node_load"]["four_nodes"]
    assert len(load) == 4 and all(v["xact_share"] > 0 for v in load.values())
    assert metrics["four_nodes_client_cpu_per_s"]["median"] > 0
    assert set(doc["machine"]["node_cpu_caps"].values()) == {0.1}
    assert {c["target"] for c in doc["charts"] if c.get("target")} == {1.10, 3.0}
