"""Where a statement on sharded tables runs: one part per shard group, or a refusal.

Pure: takes what the key router read from the statement (a :data:`KeyReading`),
the sharding directory and the caller's ``shard_key`` / ``broadcast``, and
answers a :class:`ShardPlan` (the statement text and params for each group) or
None when no sharded table is involved (the statement routes as before).

Rules, in the user's terms:

- a key in the statement (``WHERE key = ...``, ``IN``, ``= ANY``, the rows of an
  ``INSERT ... VALUES``) places it; keys on several groups split it per group;
  a long ``IN`` list of parameters is sent as one array parameter (``= ANY``), so a
  statement with 70,000 keys never meets the protocol's 65,535-parameter limit;
- an explicit ``shard_key=`` places a statement whose key cannot be read;
- a write with no key runs on every group only with ``broadcast=True``;
- a read with no key runs on every group of its tables' map, and a read whose keys
  live on several groups but cannot be split by key (an aggregate, ORDER BY, LIMIT,
  DISTINCT...) runs whole on each of those groups: both are *merged* plans, whose
  rows the scatter room (engine/scatter) merges into what one server would return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RoutingError
from .keyroute import (
    Broadcast,
    ByKeys,
    CopyIn,
    InsertRows,
    KeyReading,
    NoKey,
    Params,
    Refused,
    Unsharded,
)
from .sharding import ShardDirectory
from .shardmaps import SlotMap
from .shardschema import check_sharded_ddl
from .slots import slots_of

__all__ = ["NO_KEY", "Part", "ShardPlan", "plan", "split_copy_rows"]


class _NoKey:
    """The default of ``shard_key=``: no key given (None may be a key's value)."""

    def __repr__(self) -> str:
        return "NO_KEY"


NO_KEY: Any = _NoKey()

_CROSS_SHARD = "a read with no shard key runs on every group and is merged"


@dataclass(frozen=True, slots=True)
class Part:
    """What one shard group runs: statement text and params."""

    group: str
    sql: str
    params: Params


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The parts of a statement on sharded tables, in the cluster's group order, and why."""

    parts: tuple[Part, ...]
    reason: str
    # The statement matches no row anywhere (key = ANY of an empty list): any one
    # group may run it, the caller's own group if it has one.
    any_group: bool = False
    # Every part runs the whole statement and the rows are merged (a cross-shard
    # read), each group reading only the slots it owns in ``directory``'s maps.
    merged: bool = False
    directory: ShardDirectory | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(p.group for p in self.parts)


def plan(
    routed: KeyReading,
    directory: ShardDirectory,
    statement: str,
    params: Params,
    *,
    write: bool,
    all_groups: Sequence[str],
    shard_key: Any = NO_KEY,
    broadcast: bool = False,
) -> ShardPlan | None:
    """The plan for ``statement`` (with ``params``), which the key router answered
    ``routed`` for.

    ``write``: whether the statement writes (by the classifier); ``all_groups``:
    every shard group of the cluster, where broadcasts go. None: not sharded.
    Raises :class:`RoutingError` with what to do when the statement cannot run.
    """
    if isinstance(routed, Refused):
        raise RoutingError(routed.reason)
    if broadcast and not write:
        # Rows of every group put together would be a silent union: wrong for a count,
        # an ORDER BY or a LIMIT.
        raise RoutingError(f"broadcast=True is for writes; {_CROSS_SHARD}: leave it out")
    if broadcast and shard_key is not NO_KEY:
        raise RoutingError("pass shard_key= or broadcast=True, not both")
    if isinstance(routed, Unsharded):
        if broadcast:  # e.g. DDL of a table every group keeps a copy of
            parts = tuple(Part(g, statement, params) for g in all_groups)
            return ShardPlan(parts, "broadcast to every shard group")
        if shard_key is NO_KEY:
            return None
        families = sorted(directory.maps)
        if len(families) != 1:
            raise RoutingError(
                "shard_key= needs the statement to name a sharded table when there is not "
                f"exactly one key family (there are: {', '.join(families) or 'none'})"
            )
        group = directory.map_of(families[0]).locate(shard_key)
        return ShardPlan((Part(group, statement, params),), f"shard_key= in family {families[0]}")
    if isinstance(routed, CopyIn):
        raise RoutingError(
            "COPY ... FROM STDIN into a sharded table needs its rows to split them: "
            "cluster.copy(statement, rows)"
        )
    if isinstance(routed, Broadcast):
        check_sharded_ddl(statement, directory.tables)
        if not broadcast:
            raise RoutingError(
                f"{routed.reason}; it must run on every shard group: pass broadcast=True"
            )
        parts = tuple(Part(g, statement, params) for g in all_groups)
        return ShardPlan(parts, f"broadcast to every shard group: {routed.reason}")
    if isinstance(routed, NoKey):
        if shard_key is not NO_KEY:
            family = _family_of(directory, routed.tables)
            group = directory.map_of(family).locate(shard_key)
            return ShardPlan((Part(group, statement, params),), f"shard_key= in family {family}")
        if broadcast:
            parts = tuple(Part(g, statement, params) for g in all_groups)
            return ShardPlan(parts, f"broadcast to every shard group: {routed.reason}")
        if write:
            raise RoutingError(
                f"{routed.reason}; a write without a shard key runs on every shard group "
                "only with broadcast=True"
            )
        groups = _groups_of(directory, routed.tables)
        return _merged(groups, statement, params, directory, all_groups, _CROSS_SHARD)
    shard_map = directory.map_of_table(routed.table.name)
    if not routed.keys:  # = ANY('{}'): matches nothing, anywhere
        group = shard_map.groups[0]
        return ShardPlan(
            (Part(group, routed.sql, routed.params),), "no key value: no row", any_group=True
        )
    grouping = directory.group_keys(shard_map, routed.keys)
    if shard_key is not NO_KEY:
        given = shard_map.locate(shard_key)
        if set(grouping) != {given}:
            raise RoutingError(
                f"shard_key= places the statement on {given}, but its keys live on "
                f"{', '.join(grouping)}"
            )
    # Checked for writes too: FOR UPDATE, a writing CTE or an unknown function make a
    # SELECT a "write", and its per-group answers would still need merging.
    if len(grouping) > 1 and isinstance(routed, ByKeys) and routed.unsplittable:
        if write:
            raise RoutingError(
                f"its keys live on {len(grouping)} shard groups and {routed.unsplittable}: "
                "a write is split by key, so pin keys of one group"
            )
        why = f"its keys live on {len(grouping)} groups and {routed.unsplittable}: merged"
        return _merged(list(grouping), statement, params, directory, all_groups, why)
    if isinstance(routed, InsertRows):
        kind, split = "rows", routed.split(grouping)
    else:  # a long IN list goes as one array of the key's type: see ByKeys.split
        kind, split = "keys", routed.split(grouping, key_types=shard_map.key_types)
    parts = _in_order([Part(g, text, params) for g, (text, params) in split.items()], all_groups)
    where = ", ".join(f"{g} ({len(grouping[g])})" for g in grouping)
    return ShardPlan(parts, f"{len(routed.keys)} {kind} of {routed.table.name} on {where}")


def _in_order(parts: Sequence[Part], all_groups: Sequence[str]) -> tuple[Part, ...]:
    """``parts`` in the cluster's group order. Every multi-group write takes its
    groups' connections and locks in this one order, so two of them cannot wait
    on each other across servers (a deadlock neither server could see)."""
    rank = {g: i for i, g in enumerate(all_groups)}
    return tuple(sorted(parts, key=lambda p: rank.get(p.group, len(rank))))


def _merged(
    groups: Sequence[str],
    statement: str,
    params: Params,
    directory: ShardDirectory,
    all_groups: Sequence[str],
    reason: str,
) -> ShardPlan:
    parts = _in_order([Part(g, statement, params) for g in groups], all_groups)
    return ShardPlan(parts, reason, merged=True, directory=directory)


def _groups_of(directory: ShardDirectory, tables: Sequence[str]) -> list[str]:
    """Every group of the one key family's map the sharded ``tables`` belong to."""
    families = {directory.table(t).family for t in tables if t in directory.tables}
    if len(families) != 1:
        raise RoutingError(
            "cross-shard read: the statement reads sharded tables of "
            f"{len(families)} key families ({', '.join(sorted(families))}), whose rows are "
            "placed by different maps; read each family in its own statement"
        )
    return list(directory.map_of(families.pop()).groups)


def _family_of(directory: ShardDirectory, tables: Sequence[str]) -> str:
    families = {directory.table(t).family for t in tables if t in directory.tables}
    if len(families) != 1:
        raise RoutingError(
            "shard_key= is ambiguous: the statement touches sharded tables of "
            f"{len(families)} key families ({', '.join(sorted(families))})"
        )
    return families.pop()


def split_copy_rows(
    routed: CopyIn,
    directory: ShardDirectory,
    statement: str,
    rows: Iterable[Sequence[Any]],
    all_groups: Sequence[str] = (),
) -> ShardPlan:
    """The rows of a ``COPY ... FROM STDIN`` into a sharded table, split by shard group.

    With a slot map and a one-column key, slots are computed for all rows at once
    (numpy); other maps place row by row. Each part carries its rows as params.
    """
    data = [tuple(row) for row in rows]
    shard_map = directory.map_of_table(routed.table.name)
    width = len(routed.columns)
    for n, row in enumerate(data):
        if len(row) != width:
            raise RoutingError(
                f"COPY row {n} has {len(row)} values; {routed.table.name} "
                f"({', '.join(routed.columns)}) takes {width}"
            )
    if isinstance(shard_map, SlotMap) and len(routed.key_indexes) == 1 and data:
        (index,) = routed.key_indexes
        slots = slots_of([row[index] for row in data], shard_map.key_types[0], shard_map.slots)
        owners = shard_map.locate_slots(slots)
        parts = []
        for g, group in enumerate(shard_map.groups):
            picked = (owners == g).nonzero()[0]
            if picked.size:
                parts.append(Part(group, statement, [data[i] for i in picked]))
        return ShardPlan(_in_order(parts, all_groups), f"{len(data)} COPY rows by slot")
    by_group: dict[str, list[tuple[Any, ...]]] = {}
    for row in data:
        group = shard_map.locate(tuple(row[i] for i in routed.key_indexes))
        by_group.setdefault(group, []).append(row)
    parts = [Part(g, statement, chunk) for g, chunk in by_group.items()]
    return ShardPlan(_in_order(parts, all_groups), f"{len(data)} COPY rows by key")
