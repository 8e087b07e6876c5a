"""Units cut into batches of a fixed size, each with the position right after it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from .batch import Batch
from .position import Position

__all__ = ["Batcher"]


class Batcher:
    """Feed the reader's units in order (:meth:`add`); batches of ``size`` rows come
    out, a batch spanning units when one ends mid-batch. ``start``: the position read
    from (its offset rows of the first unit are skipped)."""

    def __init__(self, size: int, start: Position) -> None:
        self._size = size
        self._start = start
        self._parts: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        self._rows = 0

    def add(
        self, step: int, columns: Mapping[str, Any], valid: Mapping[str, Any], rows: int
    ) -> Iterator[Batch]:
        """The batches completed by unit number ``step`` of the reader's sequence."""
        i = self._start.offset if step == self._start.step else 0
        while i < rows:
            take = min(self._size - self._rows, rows - i)
            self._parts.append(
                (
                    {k: v[i : i + take] for k, v in columns.items()},
                    {k: v[i : i + take] for k, v in valid.items()},
                )
            )
            self._rows += take
            i += take
            if self._rows == self._size:
                step_after, offset = (step, i) if i < rows else (step + 1, 0)
                yield self._flush(step_after, offset)

    def finish(self, steps: int) -> Batch | None:
        """The last, shorter batch after all ``steps`` units, if rows are left."""
        return self._flush(steps, 0) if self._rows else None

    def _flush(self, step: int, offset: int) -> Batch:
        import numpy as np

        parts, position = self._parts, replace(self._start, step=step, offset=offset)
        self._parts, self._rows = [], 0
        first_columns, first_valid = parts[0]
        if len(parts) == 1:
            return Batch(first_columns, first_valid, position)
        columns = {k: np.concatenate([p[0][k] for p in parts]) for k in first_columns}
        valid = {k: np.concatenate([p[1][k] for p in parts]) for k in first_valid}
        return Batch(columns, valid, position)
