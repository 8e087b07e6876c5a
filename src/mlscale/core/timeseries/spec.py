"""A measurement's definition and the names of its tables. No I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import MetricsError

__all__ = ["FAMILY", "FIELD_TYPES", "ROLLUP_LEVELS", "Measurement", "field_column"]

FAMILY = "mlscale_metrics"  # the key family of series ids (int8) of every measurement
ROLLUP_LEVELS = ("1m", "1h")
_MAX_NAME = 200
_SLUG = re.compile(r"[^a-z0-9]+")
# A field's type by its kind (batch.KIND_FLOAT, _INT, _BOOL, _STR), named as InfluxDB
# names them, and its column's PostgreSQL type.
FIELD_TYPES = ("float", "integer", "boolean", "string")
PG_TYPES = ("float8", "int8", "bool", "text")


def field_column(name: str, kind: int) -> str:
    """The column of field ``name`` of kind ``kind``: a letter of the kind, a slug and a
    hash of the name (at most 51 characters; the kind in the name so that a column can
    never be read or written as another type than it was made)."""
    slug = _SLUG.sub("_", name.lower()).strip("_")[:40]
    digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return f"{'fibs'[kind]}_{slug}_{digest}" if slug else f"{'fibs'[kind]}_{digest}"


@dataclass(frozen=True, slots=True)
class Measurement:
    """A measurement (like an InfluxDB measurement): ``name`` (any non-empty text up to
    200 characters), ``retention_days`` (whole UTC days kept, today included; None:
    kept until dropped), ``days_ahead`` (day partitions made ahead of time, besides
    yesterday and today) and whether 1-minute and 1-hour ``rollups`` are kept."""

    name: str
    retention_days: int | None = None
    days_ahead: int = 2
    rollups: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > _MAX_NAME:
            raise MetricsError(f"measurement name {self.name!r}: 1 to {_MAX_NAME} characters")
        r = self.retention_days
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise MetricsError("retention_days must be None or a whole number >= 1")
        d = self.days_ahead
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 60:
            raise MetricsError("days_ahead must be a whole number in 0..60")
        if not isinstance(self.rollups, bool):
            raise MetricsError("rollups must be True or False")

    @property
    def table(self) -> str:
        """The points' table: ``mlm_<slug>_<hash>`` (at most 36 characters, so that
        every derived name with its day suffix fits PostgreSQL's 63)."""
        slug = _SLUG.sub("_", self.name.lower()).strip("_")[:22]
        digest = hashlib.blake2b(self.name.encode(), digest_size=4).hexdigest()
        return f"mlm_{slug}_{digest}" if slug else f"mlm_{digest}"

    @property
    def series_table(self) -> str:
        """The series' table (id, key, tags)."""
        return f"{self.table}_series"

    @property
    def dirty_table(self) -> str:
        """Each group's minutes written since the last rollup refresh."""
        return f"{self.table}_dirty"

    @property
    def tag_keys_table(self) -> str:
        """Each group's copy of the tag keys the measurement's series have had."""
        return f"{self.table}_tagkeys"

    def rollup_table(self, level: str) -> str:
        """The rollup table of ``level`` ("1m" or "1h")."""
        if level not in ROLLUP_LEVELS:
            raise MetricsError(f"rollup level {level!r}: use one of {', '.join(ROLLUP_LEVELS)}")
        return f"{self.table}_{level}"

    @property
    def partitioned(self) -> tuple[str, ...]:
        """The tables partitioned by day: the points, and the rollups if kept."""
        if not self.rollups:
            return (self.table,)
        return (self.table, *(self.rollup_table(level) for level in ROLLUP_LEVELS))

    def to_spec(self) -> dict[str, Any]:
        """Plain data (what the catalog records, besides the types of the fields written:
        its ``fields``, see :mod:`mlscale.stores.metrics.tables_async`)."""
        return {
            "name": self.name,
            "retention_days": self.retention_days,
            "days_ahead": self.days_ahead,
            "rollups": self.rollups,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return self.to_spec()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Measurement:
        """The measurement :meth:`to_spec` made."""
        return cls(
            name=spec["name"],
            retention_days=spec.get("retention_days"),
            days_ahead=spec.get("days_ahead", 2),
            rollups=spec.get("rollups", True),
        )
