"""The data of `mlscale bench metrics`: its line protocol and its binary COPY twin hold
the same points, and the comparison of both sides' answers catches every difference."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlscale.bench.metrics import compare
from mlscale.bench.metrics_data import MetricsData, Shape
from mlscale.core.copybinary import row_spans

END = datetime(2026, 12, 7, tzinfo=UTC)


def test_lines_batches_and_payloads_agree() -> None:
    shape = Shape(runs=3, interval_s=600, hours=24, batch_lines=50, end=END)
    data = MetricsData.make(shape)
    assert shape.instants == 144 and data.lines == 2 * 3 * 144 == shape.lines
    lines = [ln for b in data.batches for ln in b.splitlines()]
    assert len(lines) == data.lines and len(data.batches) == -(-data.lines // 50)
    assert all(len(b.splitlines()) <= 50 for b in data.batches)
    assert sum(len(row_spans(p)) - 1 for p in data.payloads) == data.lines
    first, second = lines[0].split(" "), lines[1].split(" ")
    assert first[0] == "train,host=gpu-00,run=run000" and second[0].startswith("system,")
    assert int(first[2]) == int(shape.start.timestamp()) * 10**9
    assert int(lines[-1].split(" ")[2]) < int(END.timestamp()) * 10**9
    fields = dict(kv.split("=") for kv in first[1].split(","))
    assert set(fields) == {"loss", "acc", "step"} and fields["step"] == "0i"
    assert float(fields["loss"]) > 0
    assert data.batches == MetricsData.make(shape).batches  # deterministic


def test_compare_finds_times_and_values_that_differ() -> None:
    a = [[(0, 1.0), (300, 2.0)], [(0, 3.0)]]
    same = compare(a, [[(0, 1.0), (300, 2.0 * (1 + 1e-12))], [(0, 3.0)]], ["r0", "r1"])
    assert same.equal and same.series == 2 and same.buckets == 2
    assert same.max_rel_diff == pytest.approx(1e-12, rel=1e-3)
    moved = compare(a, [[(0, 1.0), (600, 2.0)], [(0, 3.0)]], ["r0", "r1"])
    assert not moved.equal and moved.first_difference.startswith("r0: buckets differ")
    off = compare(a, [[(0, 1.0), (300, 2.0)], [(0, 3.001)]], ["r0", "r1"])
    assert not off.equal and off.first_difference.startswith("r1 at 0 ns")
