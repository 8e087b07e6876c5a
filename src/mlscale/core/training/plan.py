"""What a training reader reads, decided from the shard directory and the columns
(pure: the reader reads the directory and describes the columns, then asks here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigError
from ..scatter.ownership import TableRef, check_fanout
from ..sharding import ShardDirectory
from ..shardmaps import ShardMap, SlotMap
from ..slots import DEFAULT_SLOTS
from .columns import Column, aggregated
from .position import Position
from .sqlplan import Source
from .units import Split, Unit, default_units, plan_units, reader_units

__all__ = ["ReadPlan", "Request", "locate", "plan_read"]


@dataclass(frozen=True, slots=True)
class Request:
    """A reader's options that decide what it reads (see ``AsyncTrainingReader``)."""

    table: str | None = None
    query: str | None = None
    shard_key: tuple[str, ...] = ()
    family: str | None = None
    columns: tuple[str, ...] | None = None
    order_by: tuple[str, ...] = ()
    seed: int | None = None
    units: int | None = None
    split: Split = field(default_factory=Split)
    start: Position | None = None


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What a reader will read: the source, the columns of its batches and the columns
    read (those and the order columns), ``units`` units of the slot space, this
    reader's ``mine`` (unit indexes, in order), the shard map used and whether a
    piece is read as one row (``fast``, see ``columns.py``)."""

    source: Source
    columns: tuple[Column, ...]
    read_columns: tuple[Column, ...]
    units: tuple[Unit, ...]
    mine: tuple[int, ...]
    shard_map: ShardMap
    slots: int
    fast: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.source.table,
            "query": self.source.query,
            "columns": [
                {"name": c.name, "kind": c.kind.value, "nullable": c.nullable} for c in self.columns
            ],
            "units": len(self.units),
            "mine": list(self.mine),
            "slots": self.slots,
            "map_version": self.shard_map.version,
            "fast": self.fast,
        }


def locate(
    request: Request, directory: ShardDirectory
) -> tuple[ShardMap, tuple[str, ...], tuple[TableRef, ...]]:
    """The map placing the request's rows, their shard key columns, and a query's
    sharded-table references (a RoutingError for a query the fan-out rules refuse)."""
    refs: tuple[TableRef, ...] = ()
    if request.table is not None:
        table = directory.table(request.table)
        family, keys = table.family, table.key_columns
    else:
        fan = check_fanout(request.query or "", directory.tables)
        family, keys, refs = request.family or fan.family, request.shard_key, fan.refs
        if family != fan.family:
            raise ConfigError(f"the query reads key family {fan.family}, not {family}")
    shard_map = directory.map_of(family)
    if len(keys) != len(shard_map.family.key_types):
        raise ConfigError(
            f"key family {family} has {len(shard_map.family.key_types)} key "
            f"column(s); shard_key names {len(keys)}"
        )
    return shard_map, tuple(keys), refs


def plan_read(
    request: Request,
    shard_map: ShardMap,
    keys: tuple[str, ...],
    refs: tuple[TableRef, ...],
    described: Sequence[Column],
    primary_key: tuple[str, ...],
) -> ReadPlan:
    """The plan of a request, given the source's ``described`` columns and (a table's)
    ``primary_key``. Refuses unknown columns, a table without a primary key and no
    ``order_by``, and a start position of another split, unit count or seed."""
    columns = _chosen(described, request.columns)
    order_by = request.order_by or (primary_key if request.table is not None else keys)
    if not order_by:
        raise ConfigError(
            f"table {request.table} has no primary key: name order_by= "
            "columns unique among its rows"
        )
    names = {d.name for d in described}
    missing = [c for c in order_by if c not in names]
    if missing:
        raise ConfigError(f"no column {missing[0]!r} to order rows by")
    extra = [d for d in described if d.name in order_by and d not in columns]
    read_columns = (*columns, *extra)
    slots = shard_map.slots if isinstance(shard_map, SlotMap) else DEFAULT_SLOTS
    split = request.split
    count = request.units or default_units(slots, split.readers)
    units = plan_units(slots, count)
    if request.start is not None:
        request.start.check(split.reader, split.readers, count, request.seed)
    return ReadPlan(
        Source(keys, order_by, request.table, request.query, refs),
        columns,
        read_columns,
        units,
        reader_units(count, request.seed, split),
        shard_map,
        slots,
        aggregated(read_columns),
    )


def _chosen(described: Sequence[Column], wanted: Sequence[str] | None) -> tuple[Column, ...]:
    if wanted is None:
        return tuple(described)
    by_name = {c.name: c for c in described}
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise ConfigError(f"no column {missing[0]!r} to read (there are: {', '.join(by_name)})")
    return tuple(by_name[w] for w in wanted)
