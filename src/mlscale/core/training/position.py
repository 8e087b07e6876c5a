"""Where a reader is in its sequence of units: returned with every batch, accepted to
resume from.

``step`` is the index, in the reader's own unit sequence, of the next unit to read
and ``offset`` how many of that unit's rows (in the reader's order for it) were
already delivered. Units are read whole and re-ordered deterministically (sorted by
order columns, then, with a seed, permuted by a per-unit RNG), so skipping
``offset`` rows of a re-read unit continues exactly after the last row delivered,
provided the rows did not change in between. The position also names the reader
and the plan it belongs to (reader, readers, units, seed): resuming another reader's
position, or under another plan, is refused rather than silently reading other rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError

__all__ = ["Position"]

_PREFIX = "tr1"


@dataclass(frozen=True, slots=True)
class Position:
    """Reader ``reader`` of ``readers`` over ``units`` units (order from ``seed``, None
    for the natural order) has delivered every row before row ``offset`` of its unit
    number ``step`` (an index into its own unit sequence)."""

    reader: int
    readers: int
    units: int
    seed: int | None
    step: int = 0
    offset: int = 0

    def to_string(self) -> str:
        """A short text form, e.g. ``tr1.0.6.32.7.3.4096`` (for checkpoints, queues)."""
        seed = "n" if self.seed is None else str(self.seed)
        head = f"{_PREFIX}.{self.reader}.{self.readers}.{self.units}"
        return f"{head}.{seed}.{self.step}.{self.offset}"

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, text: str | Position) -> Position:
        """The position :meth:`to_string` wrote; a ConfigError for anything else."""
        if isinstance(text, Position):
            return text
        parts = str(text).split(".")
        try:
            if len(parts) != 7 or parts[0] != _PREFIX:
                raise ValueError
            reader, readers, units = int(parts[1]), int(parts[2]), int(parts[3])
            seed = None if parts[4] == "n" else int(parts[4])
            step, offset = int(parts[5]), int(parts[6])
        except ValueError:
            raise ConfigError(f"not a training-reader position: {str(text)[:80]!r}") from None
        if min(reader, units, step, offset) < 0 or readers < 1 or reader >= readers:
            raise ConfigError(f"not a training-reader position: {str(text)[:80]!r}")
        return cls(reader, readers, units, seed, step, offset)

    def check(self, reader: int, readers: int, units: int, seed: int | None) -> None:
        """Raise ConfigError unless this position belongs to that reader and plan."""
        mine = (self.reader, self.readers, self.units, self.seed)
        theirs = (reader, readers, units, seed)
        if mine != theirs:
            raise ConfigError(
                f"position {self} is reader {self.reader} of {self.readers} over {self.units} "
                f"units with seed {self.seed}; this reader is {reader} of {readers} over {units} "
                f"units with seed {seed}: resume with the same split, units and seed"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reader": self.reader,
            "readers": self.readers,
            "units": self.units,
            "seed": self.seed,
            "step": self.step,
            "offset": self.offset,
        }
