"""`mlscale bench placement --quick` runs without servers and writes rechecked verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlscale.bench.results import Verdict
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # runs `mlscale bench placement`

RING_GATE = "ring (balanced tokens, the default; 256/group): worst group share's distance from 25%"
RING_MOVED_GATE = "ring (balanced tokens, the default): keys moved when g4 joins, distance from 20%"


def test_placement_bench_writes_its_figures_and_gates(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = run_cli("bench", "placement", "--quick", "--out", str(out), "-q", timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "placement.json").read_text())
    assert doc["name"] == "placement" and doc["quick"] is True
    assert doc["params"]["keys"] == 200_000 and doc["params"]["groups"] == ["g0", "g1", "g2", "g3"]
    metrics = doc["metrics"]

    gates = {g["name"]: g for g in doc["gates"]}
    assert len(gates) == 4
    for gate in gates.values():
        assert gate["op"] == "<=" and gate["unit"] == "points"
        recheck = Verdict(gate["name"], gate["value"], "<=", gate["target"])
        assert gate["passed"] == recheck.passed
    slot_share, slot_moved = (g for name, g in gates.items() if name.startswith("slots"))
    assert slot_share["target"] == 2.0 and slot_share["passed"]
    assert slot_moved["target"] == 2.0 and slot_moved["passed"]
    # The default ring's tokens are balanced: its gates pass whatever the names.
    assert doc["params"]["ring_allocation"] == metrics["ring_allocation"] == "balanced"
    assert gates[RING_GATE]["target"] == 2.5 and gates[RING_GATE]["passed"]
    assert abs(gates[RING_GATE]["value"] - metrics["ring_worst_share_deviation_points"]) < 1e-9
    assert gates[RING_GATE]["value"] < 0.5  # only the sample's noise: the exact shares are equal
    assert all(abs(s - 25) < 1e-9 for s in metrics["ring_exact_share_percent"].values())
    assert gates[RING_MOVED_GATE]["target"] == 2.0 and gates[RING_MOVED_GATE]["passed"]
    assert abs(gates[RING_MOVED_GATE]["value"] - abs(metrics["ring_moved_percent"] - 20)) < 1e-9

    # Hashed tokens are reported, not gated: for g0..g3, g2 owns 21.97% of the hash space.
    hashed = metrics["ring_hashed_share_percent"]
    assert set(hashed) == {"g0", "g1", "g2", "g3"} and abs(sum(hashed.values()) - 100) < 1e-6
    worst = metrics["ring_hashed_worst_share_deviation_points"]
    assert abs(worst - max(abs(s - 25) for s in hashed.values())) < 1e-9
    assert abs(metrics["ring_hashed_exact_share_percent"]["g2"] - 21.965) < 0.01
    assert 2.5 < worst < 3.5
    assert not any("hashed" in name for name in gates)
    assert any(note.startswith("not gated: a ring with hashed tokens") for note in doc["notes"])
    assert metrics["ring_hashed_moved_to_old_groups_keys"] == 0
    assert 10 < metrics["ring_hashed_moved_percent"] < 30
    luck = metrics["ring_hashed_name_luck"]
    assert luck["name_sets"] == 50 and 0 < luck["fraction_within_tolerance"] <= 1

    shares = metrics["slots_share_percent"]
    assert set(shares) == {"g0", "g1", "g2", "g3"} and abs(sum(shares.values()) - 100) < 1e-6
    assert abs(slot_share["value"] - max(abs(s - 25) for s in shares.values())) < 1e-9
    assert abs(slot_moved["value"] - abs(metrics["slots_moved_percent"] - 20)) < 1e-9
    assert metrics["slots_moved_to_old_groups_keys"] == 0
    assert metrics["ring_moved_to_old_groups_keys"] == 0
    assert metrics["slots_moved_slots"] == 4096 // 5
    assert 75 < metrics["md5_mod_n_moved_percent"] < 85
    for variant in ("vectorized", "scalar"):
        assert metrics[f"{variant}_keys_per_s"]["n"] >= 5
    assert metrics["vectorized_over_scalar"] > 0
    assert "ring (hashed)" in result.stdout and "results written to" in result.stdout
    assert doc["duration_s"] < 60
