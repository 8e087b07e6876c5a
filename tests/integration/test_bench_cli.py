"""`mlscale bench NAME` writes a result anyone can recheck from the file alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlscale.bench.results import Verdict
from mlscale.local.cgroups import detect
from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def test_node_cap_bench_writes_rechecked_verdicts(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "node-cap", "--quick", "--out", str(out), "-q", timeout=180)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "node-cap.json").read_text())
    assert {"name", "params", "metrics", "gates", "goals"} <= doc.keys()
    assert doc["name"] == "node-cap" and doc["quick"] is True
    (gate,) = doc["gates"]
    assert {"name", "value", "op", "target"} <= gate.keys()
    assert gate["op"] == ">=" and gate["target"] == 3.0
    if detect()[0] is None:
        assert doc["notes"] and gate["passed"] is False
        return
    metrics = doc["metrics"]
    ratio = metrics["capped_query_p50_ms"]["median"] / metrics["uncapped_query_p50_ms"]["median"]
    assert abs(gate["value"] - ratio) < 1e-9
    assert gate["passed"] == Verdict(gate["name"], gate["value"], ">=", 3.0).passed
    assert metrics["capped_query_p50_ms"]["n"] >= 5 and metrics["uncapped_query_p50_ms"]["n"] >= 5
    assert doc["machine"]["node_cpu_caps"] == {"capped": 0.25, "uncapped": None}
    assert "results written to" in result.stdout

    page = run_cli("report", "--results", str(out))
    assert page.returncode == 0, page.stderr
    html = (out / "report.html").read_text()
    assert "<svg" in html and "node-cap" in html


def test_unknown_benchmark_and_empty_report(scratch_dir: Path) -> None:
    result = run_cli("bench", "no-such-bench")
    assert result.returncode == 2 and "no-such-bench" in result.stderr
    assert_one_line_error(run_cli("report", "--results", str(scratch_dir / "none")), "none")
