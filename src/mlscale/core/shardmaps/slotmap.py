"""The default strategy: a fixed space of hash slots and a directory of slot ranges.

A key's slot is ``hash<type>extended(key, 0) & (S - 1)`` (see
:mod:`mlscale.core.slots`), the same in Python and SQL. The directory maps
contiguous slot ranges to shard groups. Adding a group moves whole slots, about
1/(N+1) of them, taken evenly from every group; nothing is rehashed.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from psycopg import sql

from ...errors import ConfigError
from ..slots import DEFAULT_SLOTS, KeyType, check_slot_count, composite_slot_sql, slot_sql
from .base import (
    Key,
    KeyFamily,
    check_group_in,
    check_groups,
    check_name,
    check_version,
    keyed_any_of,
    map_fields,
)

# numpy (~50 ms to import) is imported where maps are built or place keys in bulk,
# not here, so that `import mlscale` does not load it.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["SlotMap", "SlotMove", "SlotRange", "moves"]


@dataclass(frozen=True, slots=True)
class SlotRange:
    """Slots ``start`` .. ``end`` (both included) placed on shard group ``group``."""

    start: int
    end: int
    group: str

    @property
    def size(self) -> int:
        """How many slots the range holds."""
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class SlotMove:
    """Slots ``start`` .. ``end`` (both included) move from group ``source`` to ``target``."""

    start: int
    end: int
    source: str
    target: str

    @property
    def size(self) -> int:
        """How many slots move."""
        return self.end - self.start + 1


def _check_slot_count(slots: object) -> int:
    try:
        return check_slot_count(slots)
    except ConfigError as exc:
        raise ConfigError(f"slot map: {exc}") from None


@dataclass(frozen=True, slots=True)
class SlotMap:
    """``slots`` hash slots (a power of two) and the shard group of every slot range.

    ``ranges`` must cover 0 .. slots-1 in order without gaps or overlaps; adjacent
    ranges of one group are merged, so equal placements compare equal. Every
    group in ``groups`` owns at least one slot; ``groups``' order is the index
    order of :meth:`locate_slots`.
    """

    strategy: ClassVar[str] = "slots"

    family: KeyFamily
    groups: tuple[str, ...]
    ranges: tuple[SlotRange, ...]
    slots: int = DEFAULT_SLOTS
    version: int = 1
    _starts: list[int] = field(init=False, repr=False, compare=False)
    _range_index: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)
    _starts_array: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        import numpy as np

        if not isinstance(self.family, KeyFamily):
            raise ConfigError(f"slot map: family must be a KeyFamily, got {self.family!r}")
        _check_slot_count(self.slots)
        check_version(self.version)
        groups = check_groups(self.groups, "slot map groups")
        ranges = _canonical(self.ranges, self.slots, groups)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "_starts", [r.start for r in ranges])
        object.__setattr__(self, "_starts_array", np.array(self._starts, dtype=np.int64))
        index = {g: i for i, g in enumerate(groups)}
        object.__setattr__(
            self, "_range_index", np.array([index[r.group] for r in ranges], dtype=np.int64)
        )

    @classmethod
    def even(
        cls,
        family: KeyFamily,
        groups: Sequence[str],
        slots: int = DEFAULT_SLOTS,
        *,
        version: int = 1,
    ) -> SlotMap:
        """``groups`` each owning one contiguous range; sizes differ by at most one slot."""
        names = check_groups(groups, "slot map groups")
        n = len(names)
        if _check_slot_count(slots) < n:
            raise ConfigError(f"slot map: {slots} slots cannot be shared by {n} groups")
        ranges = tuple(
            SlotRange(i * slots // n, (i + 1) * slots // n - 1, g) for i, g in enumerate(names)
        )
        return cls(family, names, ranges, slots, version)

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The key columns' types, in key order."""
        return self.family.key_types

    def slot(self, key: Key) -> int:
        """The slot of ``key`` (0 .. slots-1); a RoutingError for a malformed key."""
        return self.family.hash(self.family.normalize(key)) & (self.slots - 1)

    def group_of_slot(self, slot: int) -> str:
        """The shard group owning ``slot`` (binary search over the range starts)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is outside 0..{self.slots - 1}")
        return self.ranges[bisect.bisect_right(self._starts, slot) - 1].group

    def locate(self, key: Key) -> str:
        """The shard group of ``key``; a RoutingError for a malformed key."""
        return self.group_of_slot(self.slot(key))

    def locate_slots(self, slots: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """For an array of slots, the index in :attr:`groups` of each slot's group."""
        import numpy as np

        arr = np.asarray(slots)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"locate_slots() needs integer slots, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.slots):
            raise ValueError(f"a slot is outside 0..{self.slots - 1}")
        found = np.searchsorted(self._starts_array, arr, side="right") - 1
        return self._range_index[found]

    def ranges_of(self, group: str) -> tuple[SlotRange, ...]:
        """The slot ranges ``group`` owns, in slot order."""
        check_group_in(group, self.groups)
        return tuple(r for r in self.ranges if r.group == group)

    def slot_counts(self) -> dict[str, int]:
        """How many slots each group owns, in :attr:`groups` order."""
        counts = dict.fromkeys(self.groups, 0)
        for r in self.ranges:
            counts[r.group] += r.size
        return counts

    def predicate(self, group: str, columns: Sequence[sql.Composable]) -> sql.Composed:
        """``(slot BETWEEN a AND b OR ...)`` over ``group``'s ranges, slot computed in SQL."""
        check_group_in(group, self.groups)
        self.family.check_columns(columns)
        expr = (
            composite_slot_sql(columns, self.family.key_types, self.slots)
            if self.family.composite
            else slot_sql(columns[0], self.family.key_types[0], self.slots)
        )
        parts: list[sql.Composable] = []
        for r in self.ranges_of(group):
            if r.start == r.end:
                parts.append(sql.SQL("{} = {}").format(expr, sql.Literal(r.start)))
            else:
                parts.append(
                    sql.SQL("{} BETWEEN {} AND {}").format(
                        expr, sql.Literal(r.start), sql.Literal(r.end)
                    )
                )
        return keyed_any_of(self.family, columns, parts, hashed=True)

    def with_group(self, group: str) -> SlotMap:
        """The next version with ``group`` added, owning ``slots // (N + 1)`` slots.

        Only the slots the new group must own move, taken one at a time from
        whichever group then owns the most (earlier groups first on ties), so
        the donors end as even as they can be. Each donor gives up the top of
        its own slots, so the new group gets one contiguous range per donor.
        """
        import numpy as np

        check_name(group, "a shard group name")
        if group in self.groups:
            raise ConfigError(f"slot map already has shard group {group!r}")
        n = len(self.groups)
        quota = self.slots // (n + 1)
        if quota == 0:
            raise ConfigError(f"slot map: {self.slots} slots cannot be shared by {n + 1} groups")
        owner = self._owners()
        counts = np.bincount(owner, minlength=n)
        # Max-heap on the slots a donor would still hold; ties go to the earlier group.
        heap = [(-int(c), i) for i, c in enumerate(counts)]
        heapq.heapify(heap)
        give = [0] * n
        for _ in range(quota):
            held, i = heapq.heappop(heap)
            give[i] += 1
            heapq.heappush(heap, (held + 1, i))
        for i, k in enumerate(give):
            if k:
                owner[np.flatnonzero(owner == i)[-k:]] = n
        return self._from_owners((*self.groups, group), owner)

    def without_group(self, group: str) -> SlotMap:
        """The next version without ``group``; its slots go to the others, evenly.

        Each slot goes to whichever remaining group then owns the fewest (earlier
        groups first on ties); each recipient gets one contiguous run of the
        removed group's slots.
        """
        import numpy as np

        check_group_in(group, self.groups)
        if len(self.groups) == 1:
            raise ConfigError(f"cannot remove {group!r}, the slot map's only shard group")
        gone = self.groups.index(group)
        owner = self._owners()
        counts = np.bincount(owner, minlength=len(self.groups))
        freed = np.flatnonzero(owner == gone)
        heap = [(int(c), i) for i, c in enumerate(counts) if i != gone]
        heapq.heapify(heap)
        take = dict.fromkeys((i for i in range(len(self.groups)) if i != gone), 0)
        for _ in range(freed.size):
            held, i = heapq.heappop(heap)
            take[i] += 1
            heapq.heappush(heap, (held + 1, i))
        at = 0
        for i, k in take.items():
            owner[freed[at : at + k]] = i
            at += k
        # Renumber so indexes follow the new groups tuple.
        owner = np.where(owner > gone, owner - 1, owner)
        return self._from_owners(tuple(g for g in self.groups if g != group), owner)

    def _owners(self) -> npt.NDArray[np.int64]:
        """The group index of every slot."""
        import numpy as np

        sizes = [r.size for r in self.ranges]
        return np.repeat(self._range_index, sizes)

    def _from_owners(self, groups: tuple[str, ...], owner: npt.NDArray[np.int64]) -> SlotMap:
        import numpy as np

        starts = [0, *(np.flatnonzero(np.diff(owner)) + 1).tolist()]
        ends = [*(s - 1 for s in starts[1:]), self.slots - 1]
        ranges = tuple(
            SlotRange(s, e, groups[int(owner[s])]) for s, e in zip(starts, ends, strict=True)
        )
        return SlotMap(self.family, groups, ranges, self.slots, check_version(self.version + 1))

    def to_spec(self) -> dict[str, Any]:
        """``{"strategy": "slots", "version", "family", "slots", "groups", "ranges"}``.

        ``ranges`` is a list of ``[start, end, group]`` with ``end`` included.
        """
        return {
            "strategy": self.strategy,
            "version": self.version,
            "family": self.family.to_spec(),
            "slots": self.slots,
            "groups": list(self.groups),
            "ranges": [[r.start, r.end, r.group] for r in self.ranges],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SlotMap:
        """The map :meth:`to_spec` described; a ConfigError naming what is wrong."""
        fields, family, version = map_fields(
            spec, cls.strategy, required=("slots", "groups", "ranges")
        )
        ranges = fields["ranges"]
        if not isinstance(ranges, list):
            raise ConfigError(f"slot map spec: ranges must be a list, got {ranges!r}")
        parsed = []
        for i, item in enumerate(ranges):
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in item[:2])
            ):
                raise ConfigError(
                    f"slot map spec: ranges[{i}] must be [start, end, group], got {item!r}"
                )
            parsed.append(SlotRange(item[0], item[1], item[2]))
        return cls(family, fields["groups"], tuple(parsed), fields["slots"], version)


def _canonical(ranges: object, slots: int, groups: tuple[str, ...]) -> tuple[SlotRange, ...]:
    """``ranges`` checked to cover 0..slots-1 in order, adjacent same-group ranges merged."""
    if not isinstance(ranges, tuple | list) or not ranges:
        raise ConfigError("slot map: ranges must be a non-empty list of slot ranges")
    known = set(groups)
    out: list[SlotRange] = []
    expected = 0
    for i, r in enumerate(ranges):
        if not isinstance(r, SlotRange):
            raise ConfigError(f"slot map: ranges[{i}] is not a SlotRange: {r!r}")
        if r.group not in known:
            raise ConfigError(
                f"slot map: ranges[{i}] places slots on {r.group!r}, which is not in groups"
            )
        if r.start != expected:
            what = "a gap" if r.start > expected else "an overlap"
            raise ConfigError(
                f"slot map: ranges[{i}] starts at slot {r.start}, expected {expected} "
                f"({what}; ranges must cover 0..{slots - 1} in order)"
            )
        if r.end < r.start or r.end >= slots:
            raise ConfigError(
                f"slot map: ranges[{i}] ends at slot {r.end}; it must be in {r.start}..{slots - 1}"
            )
        if out and out[-1].group == r.group:
            out[-1] = SlotRange(out[-1].start, r.end, r.group)
        else:
            out.append(r)
        expected = r.end + 1
    if expected != slots:
        raise ConfigError(
            f"slot map: ranges end at slot {expected - 1}; they must cover 0..{slots - 1}"
        )
    empty = known - {r.group for r in out}
    if empty:
        raise ConfigError(f"slot map: shard group(s) {', '.join(sorted(empty))} own no slot")
    return tuple(out)


def moves(old: SlotMap, new: SlotMap) -> list[SlotMove]:
    """The slot ranges whose group differs between ``old`` and ``new``, in slot order.

    Consecutive slots moving between the same two groups form one move.
    """
    if old.slots != new.slots or old.family != new.family:
        raise ValueError(
            "moves() compares two versions of one family's slot map "
            f"(got {old.slots} and {new.slots} slots, families "
            f"{old.family.name!r} and {new.family.name!r})"
        )
    bounds = sorted({*old._starts, *new._starts, old.slots})
    out: list[SlotMove] = []
    for start, stop in itertools.pairwise(bounds):
        source, target = old.group_of_slot(start), new.group_of_slot(start)
        if source == target:
            continue
        last = out[-1] if out else None
        if last and last.end == start - 1 and (last.source, last.target) == (source, target):
            out[-1] = SlotMove(last.start, stop - 1, source, target)
        else:
            out.append(SlotMove(start, stop - 1, source, target))
    return out
