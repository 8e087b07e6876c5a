"""The report page: figures, verdicts, charts, skipped files, escaping; the SVG renderer's edges."""

from __future__ import annotations

import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from mlscale.bench.results import Bar, BenchResult, Chart, Group, Verdict
from mlscale.errors import MlscaleError
from mlscale.report import render_report, write_report
from mlscale.report.html import checks_of, derived_charts, flatten
from mlscale.report.svg import chart_from_dict, format_number, nice_ticks, render_chart

SVG_NS = "{http://www.w3.org/2000/svg}"


def _round(per_s: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "threads": 4,
        "ops": int(per_s * 2),
        "wall_s": 2.0,
        "per_s": per_s,
        "latency_ms": {"p50": p50, "p95": (p50 + p99) / 2, "p99": p99, "max": p99 * 2},
    }


DEMO: dict[str, Any] = {
    "name": "demo",
    "started_at": "2026-11-22T06:09:45+00:00",
    "params": {"users": 50000, "round_s": 2.0, "quick": False},
    "metrics": {
        "load_rows_per_s": 27615.119446680405,
        "replica_catchup_s": 0.04256830999997874,
        "replica_visibility_ms": {"p50": 0.2079300001014417, "samples": 300},
        "pooled_over_unpooled": 20.89502647496323,
        "replicas_over_primary": 0.8852604505293187,
    },
    "rounds": {
        "reads_pooled": [_round(3301.7, 1.17, 2.53), _round(2734.7, 1.41, 3.16)],
        "reads_unpooled": [_round(138.77, 28.8, 47.4), _round(121.22, 30.3, 52.4)],
    },
    "machine": {"cpus": 2, "postgres_version": "15.18"},
}


def _bench() -> BenchResult:
    return BenchResult(
        name="node-cap",
        title="Node capacity <script>alert(1)</script>",
        params={"rows": 1_000_000},
        metrics={"reads_per_s": 12345.678, "latency_ms": {"p50": 1.23456, "p99": 9.8765}},
        gates=[
            Verdict("reads at 16 threads", 12345.678, ">=", 10000, "ops/s"),
            Verdict("read p99", 9.8765, "<=", 5.0, "ms"),
        ],
        goals=[Verdict("writes", 6120.7, ">=", 8000, "ops/s")],
        charts=[
            Chart(
                "Reads by threads",
                "ops/s",
                (
                    Group("1 thread", (Bar("pooled", 4123.4, 3900.0, 4400.0), Bar("raw", 206.0))),
                    Group("16 threads", (Bar("pooled", 12345.678), Bar("raw", 900.0))),
                ),
                target=10000,
            )
        ],
        notes=["client CPU was busy & the rates are partly client-bound"],
        machine={"cpus": 2, "python": "3.11.7"},
        duration_s=83.4,
    )


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    path = _bench().write(d)
    # The file claims the failing gate passed: the report must not believe it.
    doc = json.loads(path.read_text())
    doc["gates"][1]["passed"] = True
    path.write_text(json.dumps(doc))
    (d / "demo.json").write_text(json.dumps(DEMO))
    (d / "broken.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2, 3]")
    (d / "noname.json").write_text('{"title": "no name here"}')
    return d


def _row(page: str, text: str) -> str:
    """The table row of ``page`` holding ``text``."""
    rows: list[str] = [r for r in re.findall(r"<tr.*?</tr>", page, flags=re.S) if text in r]
    assert len(rows) == 1, (text, rows)
    return rows[0]


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, flags=re.S)


def test_figures_of_the_json_appear_as_displayed(results_dir: Path) -> None:
    page = render_report(results_dir)
    # bench metrics, flattened with dotted keys
    assert "12,346" in _row(page, ">reads_per_s<")
    assert "1.23" in _row(page, "latency_ms.p50")
    assert "9.88" in _row(page, "latency_ms.p99")
    # demo metrics
    assert "27,615" in _row(page, ">load_rows_per_s<")
    assert "0.0426" in _row(page, ">replica_catchup_s<")
    assert "0.208" in _row(page, "replica_visibility_ms.p50")
    assert ">300<" in _row(page, "replica_visibility_ms.samples")
    assert "20.9" in _row(page, ">pooled_over_unpooled<")
    # gates and goals: value, op, target, unit
    row = _row(page, "reads at 16 threads")
    for text in ("12,346", "&gt;=", "10,000", "ops/s", ">PASS<"):
        assert text in row, text
    row = _row(page, "read p99")
    for text in ("9.88", "&lt;=", ">5<", "ms"):
        assert text in row, text
    assert "6,121" in _row(page, ">writes<") and "8,000" in _row(page, ">writes<")
    # params, machine, notes, duration
    assert "1,000,000" in _row(page, ">rows<")
    assert "15.18" in _row(page, ">postgres_version<")
    assert "client CPU was busy &amp; the rates are partly client-bound" in page
    assert "1 min 23 s" in page


def test_verdicts_are_recomputed_not_read_from_the_file(results_dir: Path) -> None:
    page = render_report(results_dir)
    verdict = re.search(r'<td class="verdict">(.*?)</td>', _row(page, "read p99")).group(1)  # type: ignore[union-attr]
    assert ">FAIL<" in verdict
    assert ">PASS<" not in verdict.replace("file: PASS", "")
    assert "1 of 2 gates failed" in page
    assert "goals: 0 of 1 reached" in page
    assert "All 2 gates passed" not in page


def test_checks_of_handles_unknown_ops_and_missing_values() -> None:
    doc = {
        "gates": [
            {"name": "a", "value": 3, "op": "<=", "target": 5, "passed": False},
            {"name": "b", "value": 3, "op": "==", "target": 3, "passed": True},
            {"name": "c", "value": None, "op": ">=", "target": 1},
            "not a gate",
        ]
    }
    checks = checks_of(doc)
    assert [(c.name, c.passed, c.stored) for c in checks] == [
        ("a", True, False),
        ("b", False, True),
        ("c", False, None),
    ]


def test_every_chart_is_an_svg_with_bars(results_dir: Path) -> None:
    page = render_report(results_dir)
    svgs = _svgs(page)
    # node-cap's own chart, and the demo's derived throughput, latency and ratio charts
    assert len(svgs) == 4
    for svg in svgs:
        assert '<rect class="bar"' in svg
        ET.fromstring(svg)  # well-formed
    titles = [ET.fromstring(s).find(f"{SVG_NS}title").text for s in svgs]  # type: ignore[union-attr]
    assert "Reads by threads" in titles
    assert any(t and t.startswith("Throughput per variant") for t in titles)


def test_demo_charts_are_derived_from_rounds_and_ratios() -> None:
    charts = {c.unit: c for c in derived_charts(DEMO)}
    assert set(charts) == {"ops/s", "ms", "×"}
    pooled = charts["ops/s"].groups[0]
    assert pooled.label == "reads_pooled"
    (bar,) = pooled.bars
    assert bar.value == pytest.approx((3301.7 + 2734.7) / 2)
    assert (bar.low, bar.high) == (2734.7, 3301.7)
    assert [b.label for b in charts["ms"].groups[0].bars] == ["p50", "p95", "p99"]
    assert charts["×"].target == 1.0
    assert [g.label for g in charts["×"].groups] == ["pooled / unpooled", "replicas / primary"]


def test_demo_comes_first_and_invalid_files_are_skipped(results_dir: Path) -> None:
    page = render_report(results_dir)
    assert page.index('id="r-demo"') < page.index('id="r-node-cap"')
    skipped = page[page.index('id="skipped"') :]
    for name in ("broken.json", "list.json", "noname.json"):
        assert name in skipped
    assert "3 files skipped" in page


def test_text_is_escaped_and_the_page_is_self_contained(results_dir: Path) -> None:
    page = render_report(results_dir)
    assert "<script" not in page
    assert "Node capacity &lt;script&gt;alert(1)&lt;/script&gt;" in page
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"http://www.w3.org/2000/svg"}
    assert urls == set()
    assert "<link" not in page and "@import" not in page


def test_missing_sections_are_not_shown(tmp_path: Path) -> None:
    (tmp_path / "bare.json").write_text('{"name": "bare"}')
    page = render_report(tmp_path)
    assert 'id="r-bare"' in page
    for heading in ("Gates and goals", "Charts", "Metrics", "Notes", "Parameters", "Machine"):
        assert heading not in page
    assert "No gates in this result" in page


def test_write_report_defaults_into_the_results_dir(results_dir: Path, tmp_path: Path) -> None:
    path = write_report(results_dir)
    assert path == results_dir / "report.html"
    assert path.read_text().startswith("<!DOCTYPE html>")
    out = write_report(results_dir, tmp_path / "elsewhere" / "page.html")
    assert out.is_file()


def test_no_directory_or_no_results_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(MlscaleError, match="no results directory") as exc:
        write_report(tmp_path / "missing")
    assert "\n" not in str(exc.value)
    with pytest.raises(MlscaleError, match="no results in"):
        write_report(tmp_path)
    (tmp_path / "junk.json").write_text("nope")
    with pytest.raises(MlscaleError, match=r"1 \*\.json file"):
        write_report(tmp_path)


def test_flatten_uses_dotted_keys_and_indexes_lists_of_objects() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2], "f": [{"g": 3}]}) == [
        ("a.b", 1),
        ("a.c.d", 2),
        ("e", [1, 2]),
        ("f[0].g", 3),
    ]


# -- svg ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (0.0, "0"),
        (-0.0, "0"),
        (5, "5"),
        (2.0, "2"),
        (1234567, "1,234,567"),
        (27615.119, "27,615"),
        (999.7, "1,000"),
        (123.456, "123"),
        (20.895, "20.9"),
        (1.0793, "1.08"),
        (0.5, "0.5"),
        (0.04256, "0.0426"),
        (-3.14159, "-3.14"),
        (0.0000123, "1.23e-05"),
        (math.nan, "NaN"),
        (math.inf, "∞"),
        (True, "true"),
        (None, "—"),
        ("15.18 (Debian)", "15.18 (Debian)"),
    ],
)
def test_format_number(value: object, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(0, 1234), (0, 0.037), (-3.2, 7.7), (0, 0), (5, 5), (0, 1e9), (-50, 0), (0, math.nan)],
)
def test_nice_ticks_cover_the_range_with_round_steps(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 12
    if math.isfinite(hi):
        assert ticks[0] <= min(lo, hi) and ticks[-1] >= max(lo, hi)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    mantissa = next(iter(steps)) / 10 ** math.floor(math.log10(next(iter(steps))))
    assert round(mantissa, 6) in (1.0, 2.0, 2.5, 5.0)
    if lo <= 0 <= hi:
        assert 0 in ticks


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _bars(svg: str) -> list[ET.Element]:
    return [r for r in _parse(svg).iter(f"{SVG_NS}rect") if r.get("class") == "bar"]


def _chart(*groups: Group, target: float | None = None, unit: str = "ms") -> Chart:
    return Chart("t", unit, tuple(groups), target)


def test_single_bar() -> None:
    svg = render_chart(_chart(Group("only", (Bar("median", 42.0),))))
    assert len(_bars(svg)) == 1
    assert ">42<" in svg and ">only<" in svg and ">median<" in svg


def test_zero_negative_and_nan_values() -> None:
    chart = _chart(Group("g", (Bar("zero", 0.0), Bar("neg", -5.0), Bar("nan", math.nan))))
    svg = render_chart(chart)
    bars = _bars(svg)
    assert len(bars) == 2  # a NaN bar is not drawn ...
    assert ">n/a<" in svg  # ... but said
    zero, neg = bars
    assert float(zero.get("width", "")) == 0
    assert float(neg.get("width", "")) > 0
    zero_x = float(zero.get("x", ""))
    assert float(neg.get("x", "")) + float(neg.get("width", "")) == pytest.approx(zero_x, abs=0.2)
    assert ">-5<" in svg


def test_all_values_missing_and_no_groups() -> None:
    svg = render_chart(_chart(Group("g", (Bar("a", math.nan),)), Group("empty", ())))
    _parse(svg)
    assert ">n/a<" in svg and ">no data<" in svg
    svg = render_chart(Chart("nothing", "", ()))
    _parse(svg)
    assert ">no data<" in svg and _bars(svg) == []


def test_very_different_magnitudes_keep_small_bars_visible() -> None:
    svg = render_chart(_chart(Group("g", (Bar("big", 1e6), Bar("small", 0.5)))))
    big, small = _bars(svg)
    assert float(small.get("width", "")) >= 1
    assert float(big.get("width", "")) > 500
    assert ">1,000,000<" in svg and ">0.5<" in svg


def test_whiskers_and_target_line() -> None:
    svg = render_chart(_chart(Group("g", (Bar("a", 10.0, 8.0, 14.0),)), target=12.0))
    root = _parse(svg)
    assert [p.get("class") for p in root.iter(f"{SVG_NS}path")] == ["whisker"]
    assert "target 12 ms" in svg
    # the axis reaches the whisker's high end
    ticks = [
        float((t.text or "").replace(",", ""))
        for t in root.iter(f"{SVG_NS}text")
        if t.get("class") == "tick"
    ]
    assert max(ticks) >= 14


def test_long_labels_are_clipped_with_the_full_text_as_tooltip() -> None:
    label = "a very long group label " * 10
    svg = render_chart(_chart(Group(label, (Bar("x" * 200, 1.0),))))
    root = _parse(svg)
    texts = [t.text or "" for t in root.iter(f"{SVG_NS}text")]
    assert any(t.endswith("…") and t.startswith("a very long") for t in texts)
    assert all(len(t) < 60 for t in texts if t != "t")
    assert label in [t.text for t in root.iter(f"{SVG_NS}title")]
    width = int(root.get("width", ""))
    for rect in _bars(svg):
        assert 0 <= float(rect.get("x", "")) <= width


def test_text_is_escaped() -> None:
    chart = Chart("<b>&", "<u>", (Group("<i>", (Bar("\"'&<", 1.0),)),), None)
    svg = render_chart(chart)
    root = _parse(svg)  # parses: nothing unescaped
    assert "<b>" not in svg and "<i>" not in svg and "<u>" not in svg
    assert root.find(f"{SVG_NS}title").text == "<b>&"  # type: ignore[union-attr]


def test_many_bar_labels_wrap_the_legend_and_cycle_colours() -> None:
    bars = tuple(Bar(f"series number {i}", float(i + 1)) for i in range(14))
    svg = render_chart(_chart(Group("g", bars)))
    root = _parse(svg)
    swatches = [r for r in root.iter(f"{SVG_NS}rect") if r.get("class") == "swatch"]
    assert len(swatches) == 14
    assert len({s.get("y") for s in swatches}) > 1  # more than one legend row
    assert len(_bars(svg)) == 14


def test_chart_from_dict_tolerates_gaps() -> None:
    chart = chart_from_dict(
        {
            "title": "x",
            "groups": [
                {"label": "g", "bars": [{"label": "a", "value": None}, {"value": 3, "low": 1}]},
                "junk",
                {"bars": "junk"},
            ],
            "target": "high",
        }
    )
    assert chart.unit == ""
    assert [g.label for g in chart.groups] == ["g", ""]
    a, b = chart.groups[0].bars
    assert math.isnan(a.value) and (b.label, b.value, b.low, b.high) == ("", 3.0, 1.0, None)
    assert chart.target is not None and math.isnan(chart.target)
    _parse(render_chart(chart))
