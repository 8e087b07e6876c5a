"""A consistent-hash ring with virtual nodes, keys placed by PostgreSQL's own hash.

Every shard group holds ``vnodes`` *tokens*: points on the signed 64-bit line.
A key sits at its extended hash (``hash<type>extended(key, 0)``, as for slots)
and belongs to the first token at or after it, wrapping past the top of the
line to the lowest token. So a token owns the hashes in ``(previous token,
token]``, its *arc*, and a group's rows are a union of ``BETWEEN`` ranges on
the key's hash in SQL.

The tokens are part of the map's value and of its spec in the catalog; nothing
re-derives them from group names. How they were chosen is the ring's
:class:`TokenAllocation`, which also decides where a group added later goes:

``balanced`` (the default)
    In the spirit of Cassandra's token allocation for a keyspace: the first
    group's tokens are evenly spaced, and every group added after it gets
    tokens that each split an existing arc, so it takes 1/(N+1) of the hash
    space, levelled off the groups that own the most (evenly, when the shares
    are even). A ring built on N groups is the first group grown N-1 times, so
    its shares are equal to the hash unit; 4 groups of 256 tokens own 25% each.
``hashed``
    Tokens at ``hashtextextended('{group}#{i}', 0)``, the classic ring. Shares
    depend on where the names' hashes fall: with 256 tokens per group, the
    worst of 4 groups' shares is typically 1.8 points from 25%, and 3 points
    for the names g0..g3 (g2 owns 21.97%; ``mlscale bench placement``).

Either way existing tokens never move: adding a group moves keys only to it,
and removing one moves only its keys, each arc to the token after it. Data
moves key by key, not slot by slot: prefer
:class:`~mlscale.core.shardmaps.slotmap.SlotMap` unless a ring is required.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from psycopg import sql

from ...errors import ConfigError
from ..slots import KeyType, hash_keys
from .base import (
    Key,
    KeyFamily,
    check_group_in,
    check_groups,
    check_name,
    check_version,
    key_hash_sql,
    keyed_any_of,
    map_fields,
)

# numpy (~50 ms to import) is imported where maps are built or place keys in bulk,
# not here, so that `import mlscale` does not load it.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["DEFAULT_VNODES", "MAX_VNODES", "HashRing", "TokenAllocation"]

DEFAULT_VNODES = 256
"""Tokens per shard group. Hashed tokens then vary a group's share by about 1/sqrt(256)."""
MAX_VNODES = 65536

_MIN = -(2**63)
_MAX = 2**63 - 1
_SPACE = 2**64  # hash values on the ring


class TokenAllocation(enum.StrEnum):
    """How a ring places the tokens of its groups, at creation and when one is added."""

    BALANCED = "balanced"
    """Tokens that split the fullest groups' arcs: every group owns an equal share."""
    HASHED = "hashed"
    """Tokens at the hashes of ``'{group}#{i}'``: shares vary with the names."""


@dataclass(frozen=True, slots=True)
class HashRing:
    """Shard groups on a hash ring, ``vnodes`` tokens each.

    ``HashRing(family, groups)`` allocates balanced tokens; pass
    ``allocation=TokenAllocation.HASHED`` for tokens at the names' hashes.
    Balanced is the default because it only changes where the tokens are:
    every key is still placed by its PostgreSQL hash, adding a group still
    moves keys only to that group, and the shares are equal instead of off by
    a few points for unlucky names.

    ``tokens`` gives the tokens outright, one strictly ascending tuple of
    ``vnodes`` signed int64 values per group in ``groups`` order, no token
    twice in the ring (as stored in a spec); ``allocation`` then only says how
    groups added later are placed.

    With very few tokens per group (below about 16) balanced shares are only
    approximate: a group's debt cannot always be split among enough arcs.
    """

    strategy: ClassVar[str] = "ring"

    family: KeyFamily
    groups: tuple[str, ...]
    vnodes: int = DEFAULT_VNODES
    version: int = 1
    _: KW_ONLY
    allocation: TokenAllocation = TokenAllocation.BALANCED
    tokens: tuple[tuple[int, ...], ...] = field(default=(), repr=False)
    _positions: list[int] = field(init=False, repr=False, compare=False)
    _owners: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)
    _positions_array: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)
    _intervals: tuple[tuple[int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        import numpy as np

        if not isinstance(self.family, KeyFamily):
            raise ConfigError(f"hash ring: family must be a KeyFamily, got {self.family!r}")
        groups = check_groups(self.groups, "hash ring groups")
        object.__setattr__(self, "groups", groups)
        if (
            isinstance(self.vnodes, bool)
            or not isinstance(self.vnodes, int)
            or not 1 <= self.vnodes <= MAX_VNODES
        ):
            raise ConfigError(
                f"hash ring: vnodes must be an integer from 1 to {MAX_VNODES}, got {self.vnodes!r}"
            )
        check_version(self.version)
        allocation = _allocation(self.allocation)
        object.__setattr__(self, "allocation", allocation)
        if self.tokens == ():
            table = _allocate(groups, self.vnodes, allocation)
        else:
            table = _check_tokens(self.tokens, groups, self.vnodes)
        object.__setattr__(self, "tokens", table)

        positions = np.array([t for ts in table for t in ts], dtype=np.int64)
        owners = np.repeat(np.arange(len(groups), dtype=np.int64), self.vnodes)
        order = np.argsort(positions, kind="stable")
        object.__setattr__(self, "_positions_array", positions[order])
        object.__setattr__(self, "_positions", positions[order].tolist())
        object.__setattr__(self, "_owners", owners[order])
        object.__setattr__(self, "_intervals", self._arcs())

    def _arcs(self) -> tuple[tuple[int, int, int], ...]:
        """``(low, high, group index)`` hash ranges covering the int64 line, merged."""
        out: list[tuple[int, int, int]] = []

        def add(low: int, high: int, owner: int) -> None:
            if out and out[-1][2] == owner and out[-1][1] == low - 1:
                out[-1] = (out[-1][0], high, owner)
            else:
                out.append((low, high, owner))

        low = _MIN
        owners = self._owners.tolist()
        for position, owner in zip(self._positions, owners, strict=True):
            add(low, position, owner)
            low = position + 1
        if low <= _MAX:  # past the highest token the ring wraps to the lowest
            add(low, _MAX, owners[0])
        return tuple(out)

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The key columns' types, in key order."""
        return self.family.key_types

    def shares(self) -> dict[str, float]:
        """Each group's exact fraction (0..1) of the 2**64 hash values, from its arcs."""
        owned = [0] * len(self.groups)
        for lo, hi, owner in self._intervals:
            owned[owner] += hi - lo + 1
        return {g: n / _SPACE for g, n in zip(self.groups, owned, strict=True)}

    def group_of_hash(self, value: int) -> str:
        """The group owning hash ``value``: the first token at or after it, wrapping around."""
        i = bisect.bisect_left(self._positions, value)
        return self.groups[int(self._owners[i % len(self._positions)])]

    def locate(self, key: Key) -> str:
        """The shard group of ``key``; a RoutingError for a malformed key."""
        return self.group_of_hash(self.family.hash(self.family.normalize(key)))

    def locate_hashes(self, hashes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """For an array of key hashes (int64), the index in :attr:`groups` of each one's group."""
        import numpy as np

        arr = np.asarray(hashes)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"locate_hashes() needs int64 hashes, got dtype {arr.dtype}")
        found = np.searchsorted(self._positions_array, arr.astype(np.int64), side="left")
        found[found == len(self._positions)] = 0
        return self._owners[found]

    def hash_ranges(self, group: str) -> tuple[tuple[int, int], ...]:
        """The hash ranges ``(low, high)`` (both included) ``group`` owns, in order."""
        check_group_in(group, self.groups)
        index = self.groups.index(group)
        return tuple((lo, hi) for lo, hi, owner in self._intervals if owner == index)

    def predicate(self, group: str, columns: Sequence[sql.Composable]) -> sql.Composed:
        """``(h <= a OR h BETWEEN b AND c OR ... OR h >= z)`` over ``group``'s hash ranges."""
        check_group_in(group, self.groups)
        h = key_hash_sql(self.family, columns)
        parts: list[sql.Composable] = []
        for lo, hi in self.hash_ranges(group):
            # Open ends instead of the int64 bounds: no literal at the edge of bigint.
            if lo == _MIN and hi == _MAX:
                parts.append(sql.SQL("{} IS NOT NULL").format(h))
            elif lo == _MIN:
                parts.append(sql.SQL("{} <= {}").format(h, sql.Literal(hi)))
            elif hi == _MAX:
                parts.append(sql.SQL("{} >= {}").format(h, sql.Literal(lo)))
            elif lo == hi:
                parts.append(sql.SQL("{} = {}").format(h, sql.Literal(lo)))
            else:
                parts.append(
                    sql.SQL("{} BETWEEN {} AND {}").format(h, sql.Literal(lo), sql.Literal(hi))
                )
        return keyed_any_of(self.family, columns, parts, hashed=True)

    def with_group(self, group: str) -> HashRing:
        """The next version with ``group``'s tokens added; no existing token moves.

        Balanced: ``group`` takes 1/(N+1) of the hash space, each of its tokens
        splitting one of the largest arcs of the groups that own the most.
        Hashed: its tokens are its name's hashes, and it takes what they cover.
        """
        check_name(group, "a shard group name")
        if group in self.groups:
            raise ConfigError(f"hash ring already has shard group {group!r}")
        if self.allocation is TokenAllocation.BALANCED:
            added = _split_arcs(self.tokens, self.vnodes)
        else:
            added = _hashed_tokens(group, self.vnodes)
        return self._next((*self.groups, group), (*self.tokens, added))

    def without_group(self, group: str) -> HashRing:
        """The next version without ``group``: each of its arcs goes to the token after it.

        No other token moves, so only ``group``'s keys move. The remaining
        shares are not rebalanced: the successors' groups gain what they
        inherit, which for a balanced ring is roughly what ``group`` took from
        each when it joined (exactly, for the group added last). The next
        :meth:`with_group` on a balanced ring takes from the fullest groups
        first, which levels them again.
        """
        check_group_in(group, self.groups)
        if len(self.groups) == 1:
            raise ConfigError(f"cannot remove {group!r}, the hash ring's only shard group")
        keep = [i for i, g in enumerate(self.groups) if g != group]
        return self._next(tuple(self.groups[i] for i in keep), tuple(self.tokens[i] for i in keep))

    def _next(self, groups: tuple[str, ...], tokens: tuple[tuple[int, ...], ...]) -> HashRing:
        return HashRing(
            self.family,
            groups,
            self.vnodes,
            self.version + 1,
            allocation=self.allocation,
            tokens=tokens,
        )

    def to_spec(self) -> dict[str, Any]:
        """``{"strategy": "ring", "version", "family", "vnodes", "allocation", "groups",
        "tokens"}``; ``tokens`` holds one ascending list per group, in ``groups`` order."""
        return {
            "strategy": self.strategy,
            "version": self.version,
            "family": self.family.to_spec(),
            "vnodes": self.vnodes,
            "allocation": str(self.allocation),
            "groups": list(self.groups),
            "tokens": [list(ts) for ts in self.tokens],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> HashRing:
        """The ring :meth:`to_spec` described; a ConfigError naming what is wrong."""
        fields, family, version = map_fields(
            spec, cls.strategy, required=("vnodes", "allocation", "groups", "tokens")
        )
        tokens = fields["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(ts, list) for ts in tokens):
            raise ConfigError(
                f"hash ring tokens must be a list of token lists, one per group, got {tokens!r:.80}"
            )
        return cls(
            family,
            fields["groups"],
            fields["vnodes"],
            version,
            allocation=fields["allocation"],
            tokens=tuple(tuple(ts) for ts in tokens),
        )


def _allocation(value: object) -> TokenAllocation:
    if isinstance(value, str):
        try:
            return TokenAllocation(value)
        except ValueError:
            pass
    raise ConfigError(
        f"hash ring: allocation must be one of {', '.join(TokenAllocation)}, got {value!r}"
    )


def _check_tokens(
    tokens: object, groups: tuple[str, ...], vnodes: int
) -> tuple[tuple[int, ...], ...]:
    """``tokens`` if it is one valid token tuple per group; a ConfigError naming the fault."""
    if not isinstance(tokens, tuple | list) or len(tokens) != len(groups):
        count = len(tokens) if isinstance(tokens, tuple | list) else type(tokens).__name__
        raise ConfigError(
            f"hash ring tokens must hold one token list per group ({len(groups)}), got {count}"
        )
    owner: dict[int, str] = {}
    out = []
    for group, ts in zip(groups, tokens, strict=True):
        if not isinstance(ts, tuple | list) or len(ts) != vnodes:
            count = len(ts) if isinstance(ts, tuple | list) else type(ts).__name__
            raise ConfigError(
                f"hash ring: group {group!r} needs {vnodes} tokens (vnodes), got {count}"
            )
        previous = None
        for t in ts:
            if isinstance(t, bool) or not isinstance(t, int) or not _MIN <= t <= _MAX:
                raise ConfigError(
                    f"hash ring: group {group!r} has token {t!r}, not a signed 64-bit integer"
                )
            if previous is not None and t <= previous:
                raise ConfigError(
                    f"hash ring: group {group!r}'s tokens must be strictly ascending, "
                    f"got {t} after {previous}"
                )
            if t in owner:
                raise ConfigError(
                    f"hash ring: token {t} belongs to both {owner[t]!r} and {group!r}"
                )
            owner[t] = group
            previous = t
        out.append(tuple(ts))
    return tuple(out)


def _allocate(
    groups: tuple[str, ...], vnodes: int, allocation: TokenAllocation
) -> tuple[tuple[int, ...], ...]:
    """Tokens for a new ring of ``groups``, placed as ``allocation`` says."""
    if allocation is TokenAllocation.HASHED:
        return tuple(_hashed_tokens(g, vnodes) for g in groups)
    # The first group spaced evenly, then each next one added as with_group adds
    # it: the same tokens as growing a one-group ring, and equal shares.
    table: list[tuple[int, ...]] = [_even_tokens(vnodes)]
    for _ in groups[1:]:
        table.append(_split_arcs(table, vnodes))
    return tuple(table)


def _hashed_tokens(group: str, vnodes: int) -> tuple[int, ...]:
    """``hashtextextended('{group}#{i}', 0)`` for i < vnodes, ascending.

    Two equal hashes (a 64-bit collision) fail the ring's token checks.
    """
    hashes = hash_keys([f"{group}#{i}" for i in range(vnodes)], KeyType.TEXT)
    return tuple(sorted(int(h) for h in hashes))


def _even_tokens(vnodes: int) -> tuple[int, ...]:
    """``vnodes`` tokens with arcs of 2**64 / vnodes hash values (give or take one)."""
    return tuple(_MIN + (k + 1) * _SPACE // vnodes - 1 for k in range(vnodes))


def _split_arcs(table: Sequence[Sequence[int]], vnodes: int) -> tuple[int, ...]:
    """``vnodes`` new tokens taking 1/(N+1) of the hash space from N groups' arcs.

    What each group gives is levelled: the fullest groups come down to a
    common share, so with equal shares every group gives 1/(N(N+1)). A
    group's part is split among new tokens in proportion, and each new token
    takes the low end of one of that group's largest remaining arcs, so the
    group keeps the token and the rest of the arc.
    """
    # Per group, its arcs as (-length, start, end): token end owns (start, end].
    arcs: list[list[tuple[int, int, int]]] = [[] for _ in table]
    points = sorted((t, g) for g, ts in enumerate(table) for t in ts)
    for i, (end, owner) in enumerate(points):
        start = points[i - 1][0]  # the lowest token's arc wraps from the highest
        length = (end - start) % _SPACE or _SPACE  # a lone token owns everything
        arcs[owner].append((-length, start, end))
    owned = [-sum(a[0] for a in group_arcs) for group_arcs in arcs]
    counts, debts = _apportion(_level(owned, _SPACE // (len(table) + 1)), vnodes)

    new: list[int] = []
    for heap, debt, count in zip(arcs, debts, counts, strict=True):
        if count == 0:
            continue
        # Largest arc first; ties by position, so the result is reproducible.
        heapq.heapify(heap)
        left = debt
        for remaining in range(count, 0, -1):
            neg, start, end = heapq.heappop(heap)
            length = -neg
            if length < 2:
                raise ConfigError("hash ring: no arc is left to split for another token")
            take = max(1, min(left // remaining, length - 1))
            token = (start - _MIN + take) % _SPACE + _MIN
            new.append(token)
            left -= take
            heapq.heappush(heap, (-(length - take), token, end))
    return tuple(sorted(new))


def _level(owned: Sequence[int], total: int) -> list[int]:
    """What each group gives so ``total`` comes off the fullest ones, leaving them equal.

    Water-filling in integers: the m fullest groups come down to a common level
    (to the hash unit) no lower than the next group's share; the rest give nothing.
    """
    order = sorted(range(len(owned)), key=lambda g: (-owned[g], g))
    top = 0
    for m, g in enumerate(order, 1):
        top += owned[g]
        below = owned[order[m]] if m < len(order) else 0
        if top - total >= m * below:
            break
    level, extra = divmod(top - total, m)
    debts = [0] * len(owned)
    for rank, g in enumerate(order[:m]):
        debts[g] = owned[g] - level - (1 if rank < extra else 0)
    return debts


def _apportion(debts: Sequence[int], tokens: int) -> tuple[list[int], list[int]]:
    """``(tokens per group, hash values per group)``: ``tokens`` shared by ``debts``.

    Tokens go in proportion to the debts (largest remainders). A group owing
    less than a token's worth may get none (with few tokens per group); its
    debt then falls to the group with the most tokens, so the new group still
    takes the whole total.
    """
    total = sum(debts)
    counts = [tokens * d // total for d in debts]
    by_remainder = sorted(range(len(debts)), key=lambda g: (-(tokens * debts[g] % total), g))
    for g in by_remainder[: tokens - sum(counts)]:
        counts[g] += 1
    amounts = [d if c else 0 for d, c in zip(debts, counts, strict=True)]
    busiest = max(range(len(counts)), key=lambda g: (counts[g], -g))
    amounts[busiest] += total - sum(amounts)
    return counts, amounts
