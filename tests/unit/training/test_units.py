"""Units, the split between readers, and the seeded order: pure, table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from mlscale.core.shardmaps import KeyFamily, SlotMap, SlotRange
from mlscale.core.training.units import (
    Piece,
    Split,
    default_units,
    pieces,
    plan_units,
    reader_units,
    row_permutation,
    unit_order,
)
from mlscale.errors import ConfigError

FAMILY = KeyFamily.of("f", "int8")


def test_units_cover_the_slot_space_once() -> None:
    units = plan_units(4096, 16)
    assert [u.index for u in units] == list(range(16))
    covered = [s for u in units for s in range(u.start, u.end + 1)]
    assert covered == list(range(4096))


@pytest.mark.parametrize("bad", [0, 3, 12, 8192, True])
def test_unit_counts_must_be_powers_of_two_within_the_slots(bad: object) -> None:
    with pytest.raises(ConfigError):
        plan_units(4096, bad)  # type: ignore[arg-type]


def test_natural_order_is_bit_reversed() -> None:
    assert unit_order(8, None) == [0, 4, 2, 6, 1, 5, 3, 7]
    assert unit_order(1, None) == [0]


def test_seeded_order_is_a_permutation_and_repeats() -> None:
    a, b, c = unit_order(64, 7), unit_order(64, 7), unit_order(64, 8)
    assert sorted(a) == list(range(64))
    assert a == b and a != c


@pytest.mark.parametrize("seed", [None, 3])
def test_two_ranks_by_three_workers_share_every_unit_once(seed: int | None) -> None:
    seen: list[int] = []
    for rank in range(2):
        for worker in range(3):
            seen += reader_units(32, seed, Split(rank, 2, worker, 3))
    assert sorted(seen) == list(range(32))


@pytest.mark.parametrize(
    "kwargs",
    [{"rank": 2, "world_size": 2}, {"worker": -1}, {"num_workers": 0}, {"rank": True}],
)
def test_a_split_out_of_range_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Split(**kwargs)


def test_default_units_grow_with_readers() -> None:
    assert default_units(4096, 1) == 8
    assert default_units(4096, 3) == 16
    assert default_units(4096, 6) == 32
    assert default_units(4, 6) == 4


def test_pieces_intersect_a_unit_with_each_owner() -> None:
    shard_map = SlotMap(FAMILY, ("a", "b"),
                        (SlotRange(0, 100, "a"), SlotRange(101, 4095, "b")))
    first, second = plan_units(4096, 32)[:2]  # slots 0-127, 128-255
    assert pieces(first, shard_map, 4096) == (Piece("a", 0, 100), Piece("b", 101, 127))
    assert pieces(second, shard_map, 4096) == (Piece("b", 128, 255),)


def test_pieces_refuse_a_map_of_another_slot_count() -> None:
    shard_map = SlotMap.even(FAMILY, ["a"], slots=1024)
    with pytest.raises(ConfigError, match="1024 slots"):
        pieces(plan_units(4096, 16)[0], shard_map, 4096)


def test_row_permutation_depends_on_seed_and_unit_only() -> None:
    p = row_permutation(1000, 5, 3)
    assert sorted(p.tolist()) == list(range(1000))
    assert np.array_equal(p, row_permutation(1000, 5, 3))
    assert not np.array_equal(p, row_permutation(1000, 5, 4))
    assert not np.array_equal(p, row_permutation(1000, 6, 3))
