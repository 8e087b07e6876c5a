"""Units of work of the training-data reader and how readers split them.

A *unit* is a contiguous range of hash slots, ``S / U`` of them (``S`` the cluster's
slot count, ``U`` a power of two): every row of a sharded table is in exactly one
unit, whatever the shard map, because its slot is a function of its key alone.
Units do not depend on placement, so readers that load different map versions (a
move between their starts) still agree on them, and a position stays valid across
a move.

A unit is read from the groups owning its slots: one *piece* per group, the unit's
slots intersected with the group's ranges in the map (a :class:`SlotMap`), so a slot
that briefly lives on two groups is read from its owner only -- the ownership rule
of cross-shard reads (``core/scatter/ownership.py``). Maps of other strategies place
keys without slots: their pieces are the whole unit on every group, each filtered by
the map's own predicate for the group as well.

Readers split units without talking to each other: reader ``i`` of ``N`` (``i = rank
* num_workers + worker``, ``N = world_size * num_workers``) takes the units at
positions ``i, i + N, i + 2N, ...`` of one order every reader computes alike: a
permutation drawn from the seed, or, without a seed, the bit-reversed unit order,
which puts consecutive units far apart in slot space and so, under an even map, on
different groups (read in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..shardmaps import ShardMap, SlotMap

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "Piece",
    "Split",
    "Unit",
    "default_units",
    "pieces",
    "plan_units",
    "reader_units",
    "row_permutation",
    "unit_order",
]


@dataclass(frozen=True, slots=True)
class Unit:
    """Slots ``start`` .. ``end`` (both included): unit number ``index``."""

    index: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Piece:
    """The part of a unit one group holds: slots ``start`` .. ``end`` on ``group``;
    ``by_map``: the map places keys without slots, so its predicate filters too."""

    group: str
    start: int
    end: int
    by_map: bool = False


@dataclass(frozen=True, slots=True)
class Split:
    """Which reader this is: ``rank`` of ``world_size`` processes (DDP ranks), and
    ``worker`` of ``num_workers`` data-loading workers in that process."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        for name, value, count in (
            ("rank", self.rank, self.world_size),
            ("worker", self.worker, self.num_workers),
        ):
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(f"the count of {name}s must be an int >= 1, not {count!r}")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
                raise ConfigError(f"{name} must be an int in 0..{count - 1}, not {value!r}")

    @property
    def reader(self) -> int:
        """This reader's number, 0 .. readers-1."""
        return self.rank * self.num_workers + self.worker

    @property
    def readers(self) -> int:
        """How many readers share the units."""
        return self.world_size * self.num_workers


def default_units(slots: int, readers: int) -> int:
    """Units when the caller names none: a power of two, at least 8 and 4 per reader
    (so readers get near-equal shares), at most ``slots``.

    Each unit's query scans its groups' tables once (a hash of every row's key is
    compared with the unit's slots), so more units cost more scans; fewer units mean
    larger ones held in memory. 8 units over 4 groups is two scans per group
    (measured: 2M rows of 12 columns, 8 units 2.0 s, 16 units 2.3-2.7 s, 32 units
    2.5-2.8 s on the 2-core machine the benchmark runs on, while it was loaded)."""
    units = 8
    while units < 4 * readers:
        units *= 2
    return min(units, slots)


def plan_units(slots: int, units: int) -> tuple[Unit, ...]:
    """``units`` equal slot ranges covering 0 .. slots-1; ``units`` a power of two
    no larger than ``slots``."""
    if not isinstance(units, int) or isinstance(units, bool) or units < 1 or units & (units - 1):
        raise ConfigError(f"units must be a power of two, not {units!r}")
    if units > slots:
        raise ConfigError(f"units ({units}) cannot exceed the cluster's {slots} slots")
    size = slots // units
    return tuple(Unit(i, i * size, (i + 1) * size - 1) for i in range(units))


def unit_order(units: int, seed: int | None) -> list[int]:
    """Every unit index once: a permutation drawn from ``seed``, or without one the
    bit-reversed order (0, U/2, U/4, 3U/4, ...)."""
    if seed is None:
        bits = units.bit_length() - 1
        return [int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(units)]
    import numpy as np

    return [int(i) for i in np.random.default_rng([_seed(seed), 0]).permutation(units)]


def reader_units(units: int, seed: int | None, split: Split) -> tuple[int, ...]:
    """The unit indexes reader ``split.reader`` reads, in the order it reads them."""
    return tuple(unit_order(units, seed)[split.reader :: split.readers])


def pieces(unit: Unit, shard_map: ShardMap, slots: int) -> tuple[Piece, ...]:
    """Where ``unit``'s rows are: each group's share of it, in slot order."""
    if isinstance(shard_map, SlotMap):
        if shard_map.slots != slots:
            raise ConfigError(
                f"key family {shard_map.family.name}'s map has {shard_map.slots} slots; "
                f"the reader was planned for {slots}"
            )
        return tuple(
            Piece(r.group, max(r.start, unit.start), min(r.end, unit.end))
            for r in shard_map.ranges
            if r.start <= unit.end and r.end >= unit.start
        )
    return tuple(Piece(g, unit.start, unit.end, by_map=True) for g in shard_map.groups)


def row_permutation(rows: int, seed: int, unit: int) -> npt.NDArray[np.int64]:
    """The order (a permutation of 0 .. rows-1) a seeded read gives unit ``unit``'s
    rows, which arrive sorted by the order columns: the same for the same
    seed, unit and row count."""
    import numpy as np

    out: npt.NDArray[Any] = np.random.default_rng([_seed(seed), 1, unit]).permutation(rows)
    return out.astype(np.int64, copy=False)


def _seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0, not {seed!r}")
    return seed
