"""`mlscale bench scatter --quick` writes measured figures and verdicts anyone can recheck.

Structure only: whether a gate passes is what the benchmark measures, not what a
test may assert (and the quick run's tables are too small to be CPU-bound).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlscale.local.cgroups import detect
from tests.conftest import run_cli
from tests.integration.bench_checks import recheck, spread

pytestmark = pytest.mark.slow

VARIANTS = (
    "fanout",
    "fanout_move",
    "sequential",
    "single_node",
    "raw_parallel",
    "raw_parallel_filtered",
)


def test_scatter_bench_writes_measured_figures(scratch_dir: Path) -> None:
    out = scratch_dir / "results"
    result = run_cli("bench", "scatter", "--quick", "--out", str(out), "-q", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "results written to" in result.stdout
    doc = json.loads((out / "scatter.json").read_text())
    assert doc["name"] == "scatter" and doc["quick"] is True
    params, metrics = doc["params"], doc["metrics"]
    assert params["groups"] == 4 and params["replicas"] == 0 and params["node_cpu"] == 0.2

    gates = {g["name"]: g for g in doc["gates"]}
    (goal,) = doc["goals"]
    assert set(gates) == {"parallel_vs_sequential_ratio", "stream_rss_growth_mb"}
    assert gates["parallel_vs_sequential_ratio"]["op"] == ">="
    assert gates["parallel_vs_sequential_ratio"]["target"] == pytest.approx(3.0)
    assert gates["stream_rss_growth_mb"]["op"] == "<="
    assert gates["stream_rss_growth_mb"]["target"] == pytest.approx(200.0)
    assert goal["name"] == "scatter_vs_single_ratio"
    assert goal["op"] == "<=" and goal["target"] == pytest.approx(0.5)
    for verdict in (*gates.values(), goal):
        recheck(verdict)
    if detect()[0] is None:
        assert all(v["value"] is None for v in (*gates.values(), goal))
        assert any("CPU caps" in n for n in doc["notes"])
        return

    # Every variant was timed in every round, with the client's CPU beside it.
    rounds = params["rounds"]
    assert rounds >= 5
    ms = {v: spread(metrics, f"{v}_query_ms", rounds) for v in VARIANTS}
    assert all(timing["min"] > 0 for timing in ms.values())
    for v in VARIANTS:
        assert ms[v]["median"] > 0
        spread(metrics, f"{v}_client_cpu_ms_per_query", rounds)
    # The verdicts are the ratios of those medians.
    assert gates["parallel_vs_sequential_ratio"]["value"] == pytest.approx(
        ms["sequential"]["median"] / ms["fanout"]["median"], rel=1e-9
    )
    assert goal["value"] == pytest.approx(
        ms["fanout"]["median"] / ms["single_node"]["median"], rel=1e-9
    )
    # The ownership filter's cost: the fan-out during a move vs the default fan-out, and
    # the raw per-group queries with vs without it; each fan-out against its own ceiling.
    derived = {
        "ownership_filter_ratio": ("fanout_move", "fanout"),
        "ownership_filter_raw_ratio": ("raw_parallel_filtered", "raw_parallel"),
        "fanout_over_ceiling": ("fanout", "raw_parallel"),
        "fanout_move_over_ceiling": ("fanout_move", "raw_parallel_filtered"),
        "ceiling_vs_sequential_ratio": ("sequential", "raw_parallel"),
    }
    for key, (top, bottom) in derived.items():
        assert metrics[key] == pytest.approx(
            ms[top]["median"] / ms[bottom]["median"], rel=1e-9
        ), key
        spread(metrics, f"{key}_per_round", rounds)
    assert metrics["ownership_filter_extra_ms"] == pytest.approx(
        ms["fanout_move"]["median"] - ms["fanout"]["median"]
    )
    assert metrics["ownership_filter_raw_extra_ms"] == pytest.approx(
        ms["raw_parallel_filtered"]["median"] - ms["raw_parallel"]["median"]
    )
    # Outside a move the fan-out sends the plain query; the move variant filters.
    sent = metrics["group_sql_sent"]
    assert "hashint8extended" not in sent["fanout"]
    assert "hashint8extended" in sent["fanout_move"]
    assert {"fanout", "fanout_move", "raw_parallel", "raw_parallel_filtered"} <= params.keys()
    assert any("ceiling" in n and "raw parallel, unfiltered" in n for n in doc["notes"])
    assert any("raw parallel, filtered" in n for n in doc["notes"])
    # Every variant answered what the one node holding all rows answered.
    assert metrics["answers_equal"] is True and metrics["answer_rows"] == 8
    assert sum(metrics["rows_by_group"].values()) == params["rows"]
    assert all(n > 0 for n in metrics["rows_by_group"].values())

    # The stream read every row, in order, in a process of its own.
    stream = metrics["stream"]
    assert stream["how"] == "stream" and stream["ordered"] is True
    assert stream["rows"] == params["stream_rows"] == metrics["fetchall"]["rows"]
    assert gates["stream_rss_growth_mb"]["value"] == pytest.approx(stream["rss_growth_mb"])
    assert stream["rss_before_mb"] > 0 and stream["rss_growth_mb"] >= 0
    assert stream["wall_s"] > 0
    # Nodes were capped as the parameters say.
    caps = doc["machine"]["node_cpu_caps"]
    assert len(caps) == 5 and all(c == pytest.approx(0.2) for c in caps.values())
