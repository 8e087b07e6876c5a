"""The training-data reader: a table or a query from every shard group, as numpy
batches through binary ``COPY TO`` (async source).

Work is cut into units of slots (``mlscale.core.training.units``); this reader reads
its share of them, ``prefetch`` units at once (on different groups: see the unit
order), each unit whole into memory, decoded, re-ordered, then cut into batches.
Memory is bounded by ``(prefetch + 1)`` units, each about ``rows / units`` rows (its
raw COPY bytes while it decodes, then its numpy columns) plus one batch.

``reader_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from psycopg import sql

from ...core.consistency import Consistency
from ...core.copydecode import Decoded, Kind, decode_packed, decode_rows, kind_of_oid
from ...core.training.batch import Batch
from ...core.training.batching import Batcher
from ...core.training.columns import Column, masked
from ...core.training.plan import ReadPlan, Request, locate, plan_read
from ...core.training.position import Position
from ...core.training.progress import ReadProgress
from ...core.training.sqlplan import null_key_index, piece_sql, row_order
from ...core.training.units import Split, pieces, row_permutation
from ...errors import ConfigError
from .prefetch_async import ahead

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ...engine.cluster_async import AsyncCluster

__all__ = ["AsyncTrainingReader"]

Progress = bool | Callable[[ReadProgress], None]


@dataclass(frozen=True, slots=True)
class _Options:
    request: Request
    batch_size: int
    prefetch: int
    consistency: Consistency | str | None
    progress: Progress


@dataclass(slots=True)
class _UnitRows:
    step: int
    columns: dict[str, npt.NDArray[Any]]
    valid: dict[str, npt.NDArray[np.bool_]]
    rows: int
    size: int  # bytes of COPY data


class AsyncTrainingReader:
    """Reads ``table`` (a sharded table) or ``query`` (one SELECT over sharded tables of
    one key family, co-located joins on the shard key allowed) from every shard group
    as :class:`Batch` es of ``batch_size`` rows (the last may be shorter).

    - ``shard_key``: for a query, the output column(s) holding its rows' shard key;
      ``family``: the key family (default: the one of the tables it reads).
    - ``columns``: the columns to read (default: all); ``order_by``: columns unique
      among the rows (default: the table's primary key; for a query, ``shard_key``),
      by which rows of one slot are ordered so a re-read gives the same order.
    - ``seed``: units in a seeded permutation and each unit's rows shuffled by a
      per-unit RNG; the same seed (and split and units) gives the same order. Without
      one: units in bit-reversed order, rows by ``order_by``.
    - ``units``: how many slot ranges the work is cut into (a power of two; default
      at least 8 and 4 per reader; each unit's query scans its groups' tables:
      more units cost more scans, fewer hold more rows in memory).
    - ``split``: which reader this is (:meth:`split`, :meth:`worker_split`); readers
      read disjoint rows, together all of them.
    - ``prefetch``: units read at once ahead of the consumer (memory, see module doc).
    - ``consistency``: where each group's reads run (EVENTUAL: any replica; STRONG:
      the primary). ``start``: a batch's ``position`` (or its string) to resume after.
    - ``progress``: True for a line on stderr, or a callable given a
      :class:`ReadProgress` after each unit.
    """

    def __init__(
        self,
        cluster: AsyncCluster,
        table: str | None = None,
        *,
        query: str | None = None,
        shard_key: str | Sequence[str] | None = None,
        family: str | None = None,
        columns: Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        batch_size: int = 8192,
        seed: int | None = None,
        units: int | None = None,
        split: Split | None = None,
        prefetch: int = 4,
        consistency: Consistency | str | None = Consistency.EVENTUAL,
        start: Position | str | None = None,
        progress: Progress = False,
    ) -> None:
        if (table is None) == (query is None):
            raise ConfigError("a training reader reads a table or a query: give one of them")
        if query is not None and not shard_key:
            raise ConfigError(
                "a training read of a query needs shard_key=: the output "
                "column(s) holding each row's shard key"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, not {batch_size!r}")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigError(f"prefetch must be an int >= 1, not {prefetch!r}")
        self._cluster = cluster
        request = Request(
            table=table,
            query=query,
            shard_key=_names(shard_key),
            family=family,
            columns=None if columns is None else tuple(columns),
            order_by=_names(order_by),
            seed=seed,
            units=units,
            split=split or Split(),
            start=None if start is None else Position.parse(start),
        )
        self._o = _Options(request, batch_size, prefetch, consistency, progress)
        self._plan: ReadPlan | None = None
        self.last_progress: ReadProgress | None = None
        """The progress after the last unit read (None before the first)."""

    # -- variants -----------------------------------------------------------------------

    def _with(self, **changes: Any) -> AsyncTrainingReader:
        o = replace(self._o, request=replace(self._o.request, **changes))
        out = AsyncTrainingReader.__new__(AsyncTrainingReader)
        out._cluster, out._o, out._plan, out.last_progress = self._cluster, o, None, None
        return out

    def split(self, rank: int, world_size: int) -> AsyncTrainingReader:
        """This reader for process ``rank`` of ``world_size`` (DDP ranks)."""
        s = self._o.request.split
        return self._with(split=Split(rank, world_size, s.worker, s.num_workers))

    def worker_split(self, worker: int, num_workers: int) -> AsyncTrainingReader:
        """This reader for data-loading worker ``worker`` of ``num_workers``."""
        s = self._o.request.split
        return self._with(split=Split(s.rank, s.world_size, worker, num_workers))

    def resume(self, position: Position | str) -> AsyncTrainingReader:
        """This reader starting right after the batch that returned ``position``."""
        return self._with(start=Position.parse(position))

    # -- planning -----------------------------------------------------------------------

    async def plan(self) -> ReadPlan:
        """Read the shard map and the columns, and decide the units (once per reader)."""
        if self._plan is None:
            request = self._o.request
            shard_map, keys, refs = locate(request, await self._cluster.shards())
            described, primary_key = await self._describe(shard_map.groups[0])
            self._plan = plan_read(request, shard_map, keys, refs, described, primary_key)
        return self._plan

    async def _describe(self, group: str) -> tuple[list[Column], tuple[str, ...]]:
        """The source's columns (name, kind, nullable) and a table's primary key, read
        on ``group`` without reading a row."""
        o = self._o.request
        if o.query is not None:
            async with self._cluster.connection(self._cluster.primary_node(group)) as conn:
                probe = sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(sql.SQL(o.query))
                cur = await conn.execute(probe)
                fields = cur.description or ()
                described = [Column(d.name, kind_of_oid(d.type_code)) for d in fields]
            return described, ()
        scope = self._cluster.as_written(group)
        rows = await scope.fetch_all(
            "SELECT a.attname, a.atttypid::int, NOT a.attnotnull, "
            "coalesce(array_position(string_to_array(i.indkey::text, ' ')::int2[], a.attnum), 0) "
            "FROM pg_attribute a LEFT JOIN pg_index i "
            "ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (o.table,),
            consistency=Consistency.STRONG,
        )
        if not rows:
            raise ConfigError(f"table {o.table} has no columns on group {group}")
        described = [Column(str(n), kind_of_oid(int(t)), bool(null)) for n, t, null, _ in rows]
        primary = tuple(str(n) for n, _, _, k in sorted(rows, key=lambda r: r[3]) if k)
        return described, primary

    # -- reading ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self.batches()

    async def batches(self) -> AsyncIterator[Batch]:
        """Every batch of this reader, from its start position to its end."""
        plan = await self.plan()
        request = self._o.request
        split = request.split
        start = request.start or Position(
            split.reader, split.readers, len(plan.units), request.seed
        )
        started = time.monotonic()
        rows_read, bytes_read = 0, 0

        def reading(step: int) -> Callable[[], Any]:
            return lambda: self._read_unit(plan, step)

        calls = [reading(step) for step in range(start.step, len(plan.mine))]
        batcher = Batcher(self._o.batch_size, start)
        async for unit in ahead(calls, self._o.prefetch):
            rows_read += unit.rows
            bytes_read += unit.size
            elapsed = time.monotonic() - started
            self._report(
                ReadProgress(unit.step + 1, len(plan.mine), rows_read, bytes_read, elapsed)
            )
            done = batcher.add(unit.step, unit.columns, unit.valid, unit.rows)
            for batch in done:  # noqa: RUF100, UP028 (async: no "yield from")
                yield batch
        last = batcher.finish(len(plan.mine))
        if last is not None:
            yield last
        if self._o.progress is True:
            sys.stderr.write("\n")

    def _report(self, progress: ReadProgress) -> None:
        self.last_progress = progress
        if self._o.progress is True:
            sys.stderr.write(f"\rtraining read: {progress.line()}")
            sys.stderr.flush()
        elif callable(self._o.progress):
            self._o.progress(progress)

    async def _read_unit(self, plan: ReadPlan, step: int) -> _UnitRows:
        """Unit ``plan.mine[step]`` whole: each piece copied from its group, decoded,
        put in order (order columns), then (with a seed) shuffled."""
        import numpy as np

        index = plan.mine[step]
        kinds = [c.kind for c in plan.read_columns]
        flags = masked(plan.read_columns)
        key = null_key_index(plan.source, plan.read_columns)
        decoded: list[list[Decoded]] = []
        size = 0
        for piece in pieces(plan.units[index], plan.shard_map, plan.slots):
            statement = piece_sql(plan.source, plan.read_columns, piece, plan.shard_map, plan.slots)
            scope = self._cluster.as_written(piece.group)
            data = [c async for c in scope.copy_out(statement, consistency=self._o.consistency)]
            size += sum(len(c) for c in data)
            if plan.fast:
                decoded.append(decode_packed(data, kinds, flags, key))
            else:
                decoded.append(decode_rows(data, kinds))
            del data
        columns: dict[str, npt.NDArray[Any]] = {}
        valid: dict[str, npt.NDArray[np.bool_]] = {}
        for j, column in enumerate(plan.read_columns):
            parts = [d[j] for d in decoded]
            columns[column.name] = _joined([p.values for p in parts], column.kind)
            if column.nullable:
                masks = [
                    p.valid if p.valid is not None else np.ones(len(p.values), bool) for p in parts
                ]
                valid[column.name] = _joined(masks, Kind.BOOL)
        rows = len(columns[plan.read_columns[0].name]) if plan.read_columns else 0
        order = row_order([columns[c] for c in plan.source.order_by])
        seed = self._o.request.seed
        if seed is not None and rows:
            shuffle = row_permutation(rows, seed, index)
            order = shuffle if order is None else order[shuffle]
        names = [c.name for c in plan.columns]
        if order is not None:
            columns = {k: columns[k][order] for k in names}
            valid = {k: valid[k][order] for k in names if k in valid}
        return _UnitRows(
            step,
            {k: columns[k] for k in names},
            {k: valid[k] for k in names if k in valid},
            rows,
            size,
        )


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _joined(parts: Sequence[Any], kind: Kind) -> Any:
    import numpy as np

    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty(0, dtype=object if not kind.fixed else None)
    return np.concatenate(parts)
