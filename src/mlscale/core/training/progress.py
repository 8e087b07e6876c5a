"""How far a training read has got, for a progress line or a callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ReadProgress"]


@dataclass(frozen=True, slots=True)
class ReadProgress:
    """After ``units_done`` of the reader's ``units_total`` units: ``rows`` rows and
    ``bytes`` bytes of COPY data read in ``elapsed_s`` seconds."""

    units_done: int
    units_total: int
    rows: int
    bytes: int
    elapsed_s: float

    @property
    def rows_per_s(self) -> float:
        """Rows read per second so far."""
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        """One line for a terminal, e.g. ``units 5/16  1,234,567 rows  2.1 M rows/s``."""
        return (
            f"units {self.units_done}/{self.units_total}  {self.rows:,} rows  "
            f"{self.bytes / 1e6:,.1f} MB  {self.rows_per_s / 1e6:.2f} M rows/s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "units_done": self.units_done,
            "units_total": self.units_total,
            "rows": self.rows,
            "bytes": self.bytes,
            "elapsed_s": self.elapsed_s,
        }
