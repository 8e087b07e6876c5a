"""Units cut into batches: sizes, positions, resuming mid-unit."""

from __future__ import annotations

import numpy as np

from mlscale.core.training.batching import Batcher
from mlscale.core.training.position import Position

START = Position(0, 1, 8, None)


def unit(first: int, rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    ids = np.arange(first, first + rows)
    return {"id": ids}, {"id": ids % 2 == 0}, rows


def test_batches_span_units_and_say_where_to_resume() -> None:
    b = Batcher(4, START)
    out = [*b.add(0, *unit(0, 6)), *b.add(1, *unit(6, 5))]
    last = b.finish(2)
    assert [x.columns["id"].tolist() for x in out] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [(x.position.step, x.position.offset) for x in out] == [(0, 4), (1, 2)]
    assert last is not None and last.columns["id"].tolist() == [8, 9, 10]
    assert (last.position.step, last.position.offset) == (2, 0)
    assert out[1].valid["id"].tolist() == [True, False, True, False]


def test_a_start_offset_skips_rows_of_its_unit_only() -> None:
    b = Batcher(3, Position(0, 1, 8, None, step=1, offset=2))
    out = [*b.add(1, *unit(10, 4)), *b.add(2, *unit(20, 2))]
    assert [x.columns["id"].tolist() for x in out] == [[12, 13, 20]]
    assert (out[0].position.step, out[0].position.offset) == (2, 1)
    assert b.finish(3) is not None


def test_a_batch_ending_with_its_unit_points_at_the_next_unit() -> None:
    b = Batcher(3, START)
    (only,) = b.add(0, *unit(0, 3))
    assert (only.position.step, only.position.offset) == (1, 0)
    assert b.finish(1) is None
