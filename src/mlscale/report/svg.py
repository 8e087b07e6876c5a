"""Charts of benchmark results as SVG text: grouped horizontal bars, no dependencies.

A chart is :class:`mlscale.bench.results.Chart`: groups of bars in one unit, each
bar optionally with the range (low..high) it came from, and an optional target
drawn as a dashed reference line. Bars run horizontally so that long group
labels stay readable; every bar carries its value as text, so a bar too short to
see on a linear axis (figures of very different sizes) still says what it is.

Everything here is a pure function from values to strings. Text is escaped;
values that cannot be drawn (NaN, infinities, missing) are shown as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any, Final

from ..bench.results import Bar, Chart, Group

__all__ = ["PALETTE", "chart_from_dict", "format_number", "nice_ticks", "render_chart"]

# Colour-blind-friendly enough and distinct in greyscale print; one per bar label.
PALETTE: Final = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#b07aa1",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
)
FONT_FAMILY: Final = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
FONT_PX: Final = 12
# Average advance of a sans-serif glyph, as a share of the font size: text widths
# are estimated, since there is no font metrics without a renderer.
GLYPH_EM: Final = 0.6
BAR_PX: Final = 16
BAR_GAP_PX: Final = 3
GROUP_GAP_PX: Final = 12
GROUP_LABEL_MAX_PX: Final = 210
LEGEND_LABEL_MAX_CHARS: Final = 40
VALUE_LABEL_PX: Final = 62  # room kept past a bar's end for its value
MARGIN_PX: Final = 12


def format_number(value: Any) -> str:
    """A figure for people: thousands separators from 1,000 up, 3 significant digits below.

    Integers (and integral floats) keep every digit; ``True``/``False``, ``None``
    and strings are shown as they are; NaN as "NaN", infinities as "∞"/"-∞".
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1e15 or mag < 1e-4:
        return f"{value:.3g}"
    if value.is_integer():
        return f"{int(value):,}"
    if mag >= 999.5:
        return f"{round(value):,}"
    decimals = 2 - math.floor(math.log10(mag))
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 (times a power of ten) not below ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        if mult * power >= raw * (1 - 1e-9):
            return mult * power
    return 10.0 * power


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``lo..hi``; the first and last bound the axis."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo > hi:
        lo, hi = hi, lo
    if lo == hi:
        hi = lo + (abs(lo) or 1.0)
    step = _nice_step((hi - lo) / max(count - 1, 1))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    # Integer multiples keep 0 exactly 0 (no 5.6e-17 tick).
    return [k * step for k in range(first, last + 1)]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _text_px(text: str, size: float = FONT_PX) -> float:
    return len(text) * size * GLYPH_EM


def _clip(text: str, max_px: float, size: float = FONT_PX) -> str:
    """``text`` cut with an ellipsis to fit ``max_px``."""
    fits = max(int(max_px / (size * GLYPH_EM)), 1)
    return text if len(text) <= fits else text[: max(fits - 1, 1)] + "…"


def _n(x: float) -> str:
    """A coordinate, short."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _bar_tip(group: Group, bar: Bar, unit: str) -> str:
    parts = [p for p in (group.label, bar.label) if p]
    tip = f"{' · '.join(parts)}: {format_number(bar.value)} {unit}".strip()
    if _finite(bar.low) or _finite(bar.high):
        tip += f" (range {format_number(bar.low)} .. {format_number(bar.high)})"
    return tip


def _legend(labels: Sequence[str], width: int, top: float) -> tuple[list[str], float]:
    """Legend items wrapped into rows; (SVG elements, y below the legend)."""
    out: list[str] = []
    x, y = float(MARGIN_PX), top
    row_h = FONT_PX + 8
    for i, label in enumerate(labels):
        shown = _clip(label or "(unlabelled)", LEGEND_LABEL_MAX_CHARS * FONT_PX * GLYPH_EM)
        item_w = 12 + 5 + _text_px(shown) + 16
        if x > MARGIN_PX and x + item_w > width - MARGIN_PX:
            x, y = float(MARGIN_PX), y + row_h
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<g class="legend-item"><title>{escape(label)}</title>'
            f'<rect class="swatch" x="{_n(x)}" y="{_n(y)}" width="12" height="12" rx="2" '
            f'fill="{colour}"/>'
            f'<text x="{_n(x + 17)}" y="{_n(y + 10)}">{escape(shown)}</text></g>'
        )
        x += item_w
    return out, (y + row_h if labels else top)


def render_chart(chart: Chart, *, width: int = 720) -> str:
    """``chart`` as a standalone SVG document (``width`` px wide, as tall as it needs)."""
    legend_labels: list[str] = []
    for group in chart.groups:
        for bar in group.bars:
            if bar.label not in legend_labels:
                legend_labels.append(bar.label)
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(legend_labels)}
    target = chart.target if _finite(chart.target) else None
    values = [
        x
        for g in chart.groups
        for b in g.bars
        for x in (b.value, b.low, b.high)
        if x is not None and math.isfinite(x)
    ]
    has_bars = any(g.bars for g in chart.groups)

    title = chart.title or "chart"
    parts: list[str] = [
        f'<text class="chart-title" x="{MARGIN_PX}" y="20" font-size="14" '
        f'font-weight="600">{escape(_clip(title, width - 2 * MARGIN_PX, 14))}</text>'
    ]
    legend, y = _legend(legend_labels if has_bars else [], width, 32.0)
    parts += legend

    if not has_bars:
        parts.append(f'<text class="no-data" x="{MARGIN_PX}" y="{_n(y + 20)}">no data</text>')
        return _svg(width, y + 34, title, parts)

    span = [0.0, *values, *([target] if target is not None else [])]
    ticks = nice_ticks(min(span), max(span))
    d0, d1 = ticks[0], ticks[-1]

    label_px = min(max(_text_px(g.label) for g in chart.groups), GROUP_LABEL_MAX_PX)
    label_right = MARGIN_PX + label_px
    x1 = width - MARGIN_PX - VALUE_LABEL_PX
    x0 = _plot_left(chart, label_right + (10 if label_px else 0), x1, d0, d1)
    # A target label sits above the plot.
    top = y + (18 if target is not None else 6)

    def sx(v: float) -> float:
        return x0 + (v - d0) / (d1 - d0) * (x1 - x0)

    zero = sx(0.0)
    bands: list[str] = []  # drawn first: grid lines and bars go over them
    body: list[str] = []
    band_top = top
    for gi, group in enumerate(chart.groups):
        n = max(len(group.bars), 1)
        band_h = n * BAR_PX + (n - 1) * BAR_GAP_PX
        if gi % 2:
            bands.append(
                f'<rect class="band" x="{MARGIN_PX}" y="{_n(band_top - GROUP_GAP_PX / 2)}" '
                f'width="{width - 2 * MARGIN_PX}" height="{_n(band_h + GROUP_GAP_PX)}" '
                f'fill="#f4f6f8"/>'
            )
        if group.label:
            body.append(
                f"<g><title>{escape(group.label)}</title>"
                f'<text class="group-label" x="{_n(label_right)}" '
                f'y="{_n(band_top + band_h / 2)}" dy="0.35em" text-anchor="end">'
                f"{escape(_clip(group.label, label_px))}</text></g>"
            )
        if not group.bars:
            body.append(
                f'<text class="no-data" x="{_n(zero + 4)}" y="{_n(band_top + band_h / 2)}" '
                f'dy="0.35em" fill="#6a737d">no data</text>'
            )
        for bi, bar in enumerate(group.bars):
            bar_top = band_top + bi * (BAR_PX + BAR_GAP_PX)
            body += _bar(bar, group, chart.unit, colour[bar.label], sx, bar_top)
        band_top += band_h + GROUP_GAP_PX
    axis_y = band_top - GROUP_GAP_PX / 2

    grid: list[str] = []
    for t in ticks:
        x = sx(t)
        grid.append(
            f'<line class="grid" x1="{_n(x)}" y1="{_n(top - 4)}" x2="{_n(x)}" y2="{_n(axis_y)}" '
            f'stroke="{"#8c959f" if t == 0 else "#e1e4e8"}" stroke-width="1"/>'
            f'<text class="tick" x="{_n(x)}" y="{_n(axis_y + 16)}" text-anchor="middle" '
            f'fill="#57606a">{escape(format_number(t))}</text>'
        )
    grid.append(
        f'<line class="axis" x1="{_n(x0)}" y1="{_n(axis_y)}" x2="{_n(x1)}" y2="{_n(axis_y)}" '
        f'stroke="#8c959f" stroke-width="1"/>'
    )
    bottom = axis_y + 22
    if chart.unit:
        bottom += 14
        grid.append(
            f'<text class="unit" x="{_n((x0 + x1) / 2)}" y="{_n(bottom)}" text-anchor="middle" '
            f'fill="#57606a">{escape(chart.unit)}</text>'
        )
    if target is not None:
        tx = sx(target)
        label = f"target {format_number(target)} {chart.unit}".strip()
        half = _text_px(label, 11) / 2
        lx = min(max(tx, MARGIN_PX + half), width - MARGIN_PX - half)
        body.append(
            f'<g class="target"><line x1="{_n(tx)}" y1="{_n(top - 6)}" x2="{_n(tx)}" '
            f'y2="{_n(axis_y)}" stroke="#cf222e" stroke-width="1.5" stroke-dasharray="5 3"/>'
            f'<text x="{_n(lx)}" y="{_n(top - 9)}" text-anchor="middle" font-size="11" '
            f'fill="#cf222e">{escape(label)}</text></g>'
        )
    return _svg(width, bottom + 10, title, [*parts, *bands, *grid, *body])


def _plot_left(chart: Chart, left: float, x1: float, d0: float, d1: float) -> float:
    """Where the axis starts: at ``left``, or further right so that the value label
    drawn left of each negative bar still fits between ``left`` and the bar."""
    x0 = left
    for group in chart.groups:
        for bar in group.bars:
            if not (math.isfinite(bar.value) and bar.value < 0):
                continue
            low = bar.low if bar.low is not None and math.isfinite(bar.low) else bar.value
            frac = (min(bar.value, low) - d0) / (d1 - d0)  # < 1: the domain reaches 0
            need = _text_px(format_number(bar.value)) + 6
            # Solve x0 + frac * (x1 - x0) - need >= left for x0.
            x0 = max(x0, (left + need - frac * x1) / (1 - frac))
    return x0


def _bar(
    bar: Bar,
    group: Group,
    unit: str,
    colour: str,
    sx: Callable[[float], float],
    y: float,
) -> list[str]:
    """One bar, its whisker and its value label, ``y`` being the bar's top."""
    out: list[str] = []
    mid = y + BAR_PX / 2
    tip = escape(_bar_tip(group, bar, unit))
    zero = sx(0.0)
    if not math.isfinite(bar.value):
        return [
            f'<g><title>{tip}</title><text class="value na" x="{_n(zero + 4)}" y="{_n(mid)}" '
            f'dy="0.35em" fill="#6a737d">n/a</text></g>'
        ]
    end = sx(bar.value)
    left, w = min(zero, end), abs(end - zero)
    if bar.value != 0 and w < 1:
        # Visible even beside figures a thousand times its size.
        w = 1.0
        left = zero if bar.value > 0 else zero - 1
    out.append(
        f'<rect class="bar" x="{_n(left)}" y="{_n(y)}" width="{_n(w)}" height="{BAR_PX}" '
        f'fill="{colour}"><title>{tip}</title></rect>'
    )
    reach_hi, reach_lo = max(end, zero), min(end, zero)
    low = bar.low if bar.low is not None and math.isfinite(bar.low) else None
    high = bar.high if bar.high is not None and math.isfinite(bar.high) else None
    if low is not None or high is not None:
        a = sx(low if low is not None else bar.value)
        b = sx(high if high is not None else bar.value)
        cap = BAR_PX * 0.3
        out.append(
            f'<path class="whisker" d="M{_n(a)} {_n(mid)}H{_n(b)}'
            f"M{_n(a)} {_n(mid - cap)}V{_n(mid + cap)}"
            f'M{_n(b)} {_n(mid - cap)}V{_n(mid + cap)}" stroke="#24292f" '
            f'stroke-width="1.2" fill="none"/>'
        )
        reach_hi, reach_lo = max(reach_hi, a, b), min(reach_lo, a, b)
    text = escape(format_number(bar.value))
    if bar.value >= 0:
        out.append(
            f'<text class="value" x="{_n(reach_hi + 4)}" y="{_n(mid)}" dy="0.35em">{text}</text>'
        )
    else:
        out.append(
            f'<text class="value" x="{_n(reach_lo - 4)}" y="{_n(mid)}" dy="0.35em" '
            f'text-anchor="end">{text}</text>'
        )
    return out


def _svg(width: int, height: float, title: str, parts: Sequence[str]) -> str:
    h = math.ceil(height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" role="img" font-family="{FONT_FAMILY}" '
        f'font-size="{FONT_PX}" fill="#24292f"><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def _num(x: Any) -> float:
    """A JSON number as float; anything else (null, strings, booleans) as NaN."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return math.nan
    return float(x)


def _opt(x: Any) -> float | None:
    return None if x is None else _num(x)


def chart_from_dict(obj: Mapping[str, Any]) -> Chart:
    """A chart from its JSON form (see :mod:`mlscale.bench.results`), tolerating gaps.

    Missing labels become "", missing or non-numeric values NaN; malformed groups
    and bars are dropped.
    """
    groups: list[Group] = []
    raw_groups = obj.get("groups")
    for g in raw_groups if isinstance(raw_groups, list) else []:
        if not isinstance(g, Mapping):
            continue
        raw_bars = g.get("bars")
        bars = tuple(
            Bar(
                label=str(b.get("label") or ""),
                value=_num(b.get("value")),
                low=_opt(b.get("low")),
                high=_opt(b.get("high")),
            )
            for b in (raw_bars if isinstance(raw_bars, list) else [])
            if isinstance(b, Mapping)
        )
        groups.append(Group(label=str(g.get("label") or ""), bars=bars))
    target = obj.get("target")
    return Chart(
        title=str(obj.get("title") or ""),
        unit=str(obj.get("unit") or ""),
        groups=tuple(groups),
        target=None if target is None else _num(target),
    )
