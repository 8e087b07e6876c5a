"""cProfile results as plain data for a benchmark's JSON: the functions that took the
most time, per unit of work (a row, a line, a batch), so a missed goal comes with where
the time went."""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

__all__ = ["profile_summary", "short_path"]

TOP = 12


def short_path(path: str) -> str:
    """A profile entry's file, shortened to the package or library it belongs to."""
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_summary(
    prof: cProfile.Profile, units: int, unit: str, top: int = TOP
) -> dict[str, Any]:
    """The ``top`` functions of ``prof`` by own time and by cumulative time, in µs per
    ``unit`` (``units`` of them were profiled), each with its share of the profiled
    time; ``{"units", "unit", "profiled_us_per_<unit>", "top_by_own_time",
    "top_by_cumulative_time"}``."""
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    per = max(units, 1)
    rows = [
        {
            "function": f"{short_path(file)}:{line}({fn})",
            "calls": int(nc),
            f"own_us_per_{unit}": tt / per * 1e6,
            f"cumulative_us_per_{unit}": ct / per * 1e6,
            "own_share": tt / total if total > 0 else 0.0,
        }
        for (file, line, fn), (_cc, nc, tt, ct, _callers) in raw.items()
    ]
    by_own = sorted(rows, key=lambda r: -float(r[f"own_us_per_{unit}"]))[:top]
    by_cum = sorted(rows, key=lambda r: -float(r[f"cumulative_us_per_{unit}"]))[:top]
    return {
        "units": units,
        "unit": unit,
        f"profiled_us_per_{unit}": total / per * 1e6,
        "top_by_own_time": by_own,
        "top_by_cumulative_time": by_cum,
    }
