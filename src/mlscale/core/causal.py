"""Causal tokens: per shard group, the WAL position a writer's commits reached.

A writer reads its group's WAL position after COMMIT has returned (read inside
the transaction it would precede the commit record) and tags it with the
group's system identifier and timeline. A reader hands the token back; a
replica that has replayed that position has seen those writes.

LSNs compare within one system identifier and timeline, and across a failover
up to the switch point: a node of a later timeline holds a token's position if
the token's timeline ended at or after it (the timeline history says where:
:meth:`GroupPosition.honoured_by`). A token from a rebuilt cluster, or beyond
its timeline's switch point (lost with the old primary), says nothing about a
replica's replay position, and a read that needs it goes to the primary.

Wire format, version ``c1``: ``c1`` alone (empty), or ``c1.`` followed by
``.``-separated entries ``<group>-<sysid>-<timeline>-<lsn>``, numbers in
lowercase hex without leading zeros, groups sorted. Only unreserved URL
characters, so it fits a URL, an HTTP header or a queue message unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .lsn import format_lsn

__all__ = [
    "MAX_TOKEN_CHARS",
    "MAX_TOKEN_GROUPS",
    "TOKEN_PREFIX",
    "CausalToken",
    "GroupPosition",
    "InvalidToken",
    "Token",
]

U64 = 2**64  # system identifiers and LSNs are unsigned 64-bit
_GROUP = re.compile(r"[a-z][a-z0-9_]{0,30}")  # the config's shard group names
_HEX = {  # canonical lowercase hex, no leading zeros, bounded digits
    "system identifier": re.compile(r"0|[1-9a-f][0-9a-f]{0,15}"),
    "timeline": re.compile(r"[1-9a-f][0-9a-f]{0,7}"),
    "LSN": re.compile(r"0|[1-9a-f][0-9a-f]{0,15}"),
}

TOKEN_PREFIX = "c1"
"""Format version: ``c1`` or ``c1.<entry>.<entry>...``, each entry ``group-sysid-tli-lsn``."""
MAX_TOKEN_GROUPS = 64
"""At most this many shard groups in one token (keeps it under common 8 KiB header limits)."""
MAX_TOKEN_CHARS = len(TOKEN_PREFIX) + MAX_TOKEN_GROUPS * (1 + 31 + 1 + 16 + 1 + 8 + 1 + 16)
"""The longest valid token, in characters; longer input is refused before parsing."""


class InvalidToken(ValueError):
    """A causal token string that is not one this version wrote."""


@dataclass(frozen=True, slots=True)
class GroupPosition:
    """A WAL position of one shard group's history.

    ``system_identifier``: ``pg_control_system().system_identifier``; the signed
    bigint PostgreSQL returns is stored as its unsigned 64-bit value.
    ``timeline``: the timeline ID (1 at initdb, +1 at each promotion).
    ``lsn``: byte position in the WAL stream.
    """

    system_identifier: int
    timeline: int
    lsn: int

    def __post_init__(self) -> None:
        if not -(2**63) <= self.system_identifier < U64:
            raise ValueError(f"system identifier out of 64-bit range: {self.system_identifier}")
        if not 1 <= self.timeline < 2**32:
            raise ValueError(f"timeline must be in 1..2^32-1, got {self.timeline}")
        if not 0 <= self.lsn < U64:
            raise ValueError(f"LSN must be in 0..2^64-1, got {self.lsn}")
        object.__setattr__(self, "system_identifier", self.system_identifier % U64)

    def same_history(self, system_identifier: int | None, timeline: int | None) -> bool:
        """Whether an LSN on (``system_identifier``, ``timeline``) compares with ours."""
        return (
            system_identifier is not None
            and system_identifier % U64 == self.system_identifier
            and timeline == self.timeline
        )

    def honoured_by(
        self,
        system_identifier: int | None,
        timeline: int | None,
        switch_points: Mapping[int, int] | None = None,
    ) -> bool:
        """Whether a node on (``system_identifier``, ``timeline``) holds this position's
        history once it has replayed ``lsn``: the same timeline, or a later one that
        forked from ours at or after ``lsn``.

        ``switch_points``: timeline -> the LSN (bytes) where it ended and the next one
        began, from the new timeline's history (Patroni's ``/history``, or the
        ``.history`` file). A position beyond its timeline's switch point was lost
        with the old primary: no node of the new timeline holds it.
        """
        if system_identifier is None or system_identifier % U64 != self.system_identifier:
            return False
        if timeline is None or timeline < self.timeline:
            return False
        if timeline == self.timeline:
            return True
        end = (switch_points or {}).get(self.timeline)
        return end is not None and self.lsn <= end

    def __str__(self) -> str:
        return f"{format_lsn(self.lsn)} (system {self.system_identifier}, timeline {self.timeline})"


def _newest(a: GroupPosition, b: GroupPosition) -> GroupPosition:
    # Lexicographic max over (system identifier, timeline, LSN). Same history:
    # the later LSN. A later timeline: its history holds every surviving write
    # of the earlier one (a position past the fork point was lost with the old
    # primary, so no node can ever satisfy it). A different cluster: the
    # identifier is initdb's time in its high bits, so the larger one is the
    # newer cluster. Whichever is kept, a position a replica cannot compare
    # with sends the read to the primary, so no choice here can serve stale data.
    ka = (a.system_identifier, a.timeline, a.lsn)
    kb = (b.system_identifier, b.timeline, b.lsn)
    return a if ka >= kb else b


class CausalToken(Mapping[str, GroupPosition]):
    """Immutable map: shard group name -> the newest :class:`GroupPosition` written there.

    ``merge`` is a join: commutative, associative, idempotent, and never moves a
    group's position back. Serialized by :meth:`to_string` as a short string safe
    in URLs and HTTP headers; :meth:`parse` accepts exactly what it writes.
    """

    __slots__ = ("_positions",)

    def __init__(self, positions: Mapping[str, GroupPosition] | None = None) -> None:
        items = dict(sorted((positions or {}).items()))
        if len(items) > MAX_TOKEN_GROUPS:
            raise ValueError(f"a causal token holds at most {MAX_TOKEN_GROUPS} shard groups")
        for group, pos in items.items():
            if not isinstance(group, str) or not _GROUP.fullmatch(group):
                raise ValueError(f"invalid shard group name in causal token: {group!r}")
            if not isinstance(pos, GroupPosition):
                raise TypeError(f"position of {group!r} is not a GroupPosition: {pos!r}")
        self._positions: dict[str, GroupPosition] = items

    def __getitem__(self, group: str) -> GroupPosition:
        return self._positions[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __bool__(self) -> bool:
        return bool(self._positions)

    def __hash__(self) -> int:
        return hash(tuple(self._positions.items()))

    def __repr__(self) -> str:
        return f"CausalToken.parse({self.to_string()!r})"

    def for_group(self, group: str) -> GroupPosition | None:
        """The position written in ``group``, or None if this token never wrote there."""
        return self._positions.get(group)

    def merge(self, other: Mapping[str, GroupPosition]) -> CausalToken:
        """Per group, the newer of the two positions: the larger (system identifier,
        timeline, LSN). Same history: the later LSN. Same cluster, another
        timeline: the later timeline's (a promotion; its history holds every write
        of the earlier one that survived). Another cluster: the larger identifier
        (initdb's time sits in its high bits: the rebuilt cluster). A position no
        replica can compare with sends its group's reads to the primary.
        """
        out = dict(self._positions)
        for group, pos in other.items():
            mine = out.get(group)
            out[group] = pos if mine is None else _newest(mine, pos)
        return CausalToken(out)

    def advanced(self, group: str, position: GroupPosition) -> CausalToken:
        """This token after a commit in ``group`` at ``position``."""
        return self.merge({group: position})

    def to_string(self) -> str:
        """``c1.g0-<sysid>-<tli>-<lsn>...``: lowercase hex, groups sorted; stable."""
        entries = (
            f".{g}-{p.system_identifier:x}-{p.timeline:x}-{p.lsn:x}"
            for g, p in self._positions.items()
        )
        return TOKEN_PREFIX + "".join(entries)

    @classmethod
    def parse(cls, text: str) -> CausalToken:
        """The token ``text`` holds; :class:`InvalidToken` saying what is wrong otherwise."""
        if not isinstance(text, str):
            raise InvalidToken(f"causal token must be a string, got {type(text).__name__}")
        if len(text) > MAX_TOKEN_CHARS:
            raise InvalidToken(
                f"causal token is {len(text)} characters long; at most {MAX_TOKEN_CHARS} allowed"
            )
        version, *entries = text.split(".")
        if version != TOKEN_PREFIX:
            raise InvalidToken(f"causal token must start with {TOKEN_PREFIX!r}, got {text[:8]!r}")
        if len(entries) > MAX_TOKEN_GROUPS:
            raise InvalidToken(f"causal token has more than {MAX_TOKEN_GROUPS} shard groups")
        positions: dict[str, GroupPosition] = {}
        previous = ""
        for i, entry in enumerate(entries, start=1):
            group, pos = _parse_entry(i, entry)
            if group <= previous:
                raise InvalidToken(
                    f"causal token entry {i}: shard group {group!r} is repeated or out of order"
                )
            previous = group
            positions[group] = pos
        return cls(positions)


def _parse_entry(i: int, entry: str) -> tuple[str, GroupPosition]:
    parts = entry.split("-")
    if len(parts) != 4:
        raise InvalidToken(
            f"causal token entry {i} ({entry[:80]!r}) must be group-sysid-timeline-lsn"
        )
    group, *fields = parts
    if not _GROUP.fullmatch(group):
        raise InvalidToken(f"causal token entry {i}: invalid shard group name {group[:40]!r}")
    values: list[int] = []
    for (what, pattern), field in zip(_HEX.items(), fields, strict=True):
        if not pattern.fullmatch(field):
            raise InvalidToken(
                f"causal token entry {i} ({group}): {what} {field[:20]!r} is not "
                "canonical lowercase hex"
            )
        values.append(int(field, 16))
    return group, GroupPosition(*values)


Token = CausalToken | str | None
"""What a read's ``token=`` takes: a token, its text form, or None (no token)."""
