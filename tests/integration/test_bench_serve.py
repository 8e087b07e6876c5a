"""`mlscale bench serve --quick` writes measured figures anyone can recheck: a local
cluster, `mlscale serve` with 2 workers, open-loop 10-entity feature requests over HTTP.
Structure only: what the rates are is what the benchmark measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_serve_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "serve", "--quick", "--out", str(out), "-q", timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "serve.json").read_text())
    assert doc["name"] == "serve" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["workers"] == 2 and params["entities_per_request"] == 10
    levels = metrics["levels"]
    assert [lv["target_per_s"] for lv in levels] == params["rates_per_s"]
    for lv in levels:
        assert lv["ops"] > 0 and lv["requests_per_s"] > 0
        assert 0 < lv["p50_ms"] <= lv["p99_ms"] <= lv["max_ms"]
        assert lv["client_cpu_cores"] > 0
        assert lv["late"] >= 0 and lv["dropped"] >= 0
    assert metrics["answers_checked"] > 0  # answers compared with the loaded values
    for key in ("requests_per_s", "p50_ms", "p99_ms", "client_cpu_cores", "late", "dropped"):
        assert key in metrics
    assert "req/s" in result.stdout and "client CPU" in result.stdout
