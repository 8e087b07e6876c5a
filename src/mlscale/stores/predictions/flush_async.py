"""One batch of predictions written: placed on shard groups, and per group one
transaction with a binary COPY straight into the partitioned table (async source).

The straight COPY is the fast path: no staging table, no upsert. Only a part that
hits a unique violation (a prediction id already stored: a resend after a crash, or
the same id twice in the batch) is written again, in a new transaction, through a
temporary staging table and ``INSERT ... ON CONFLICT DO NOTHING``, which stores
each id once and says how many rows were new. The day partitions a part needs are
made first (remembered, so a steady writer checks nothing).

A part the server refuses for good (a row with a value its type or a constraint
refuses: :func:`~mlscale.core.predictions.rejects.is_permanent`) is *sifted*
(:func:`sift`): written in pieces, so that the rows it takes are stored and the ones
it refuses are found, one by one, and set aside by the writer.

The writers (``writer_async.py``, ``writer_sync.py``) decide when and retry; this
module only writes. ``flush_sync.py`` is generated from this file by
``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...core.causal import CausalToken
from ...core.copybinary import COPY_HEADER, COPY_TRAILER, row_spans, rows_payload
from ...core.predictions.layout import PredictionLayout
from ...core.predictions.rejects import copy_line, no_partition
from ...core.predictions.rows import PredictionBatch
from ...core.predictions.spec import PredictionLog
from ...core.shardmaps import SlotMap
from ...core.slots import KeyType, slots_of
from ...engine.cluster_async import AsyncCluster
from ...errors import IntegrityViolation, QueryError
from .tables_async import AsyncPredictionTables

__all__ = [
    "GroupPart",
    "PartWritten",
    "Sifted",
    "group_index",
    "join_payloads",
    "prepare",
    "sift",
    "split_encode",
    "write_part",
]

_UNIQUE = "23505"


@dataclass(frozen=True, slots=True)
class PartWritten:
    """One group's part committed: ``sent`` rows, ``inserted`` of them new (the rest
    were already stored), whether it went through the staging table, the commit's
    causal ``token``."""

    group: str
    sent: int
    inserted: int
    staged: bool
    token: CausalToken


def group_index(shard_map: Any, log: PredictionLog, entity: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The index in ``shard_map.groups`` of each entity key's group (keys as a batch
    holds them: int64, str objects, or (n, 16) uuid bytes)."""
    kt = log.key_type
    if isinstance(shard_map, SlotMap) and kt.is_integer:
        # Hashed in numpy: ~20 ns a row.
        found: npt.NDArray[Any] = shard_map.locate_slots(slots_of(entity, kt, shard_map.slots))
        return found
    if kt is KeyType.UUID:
        raw = entity.tobytes()
        keys: list[Any] = [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]
    else:
        keys = entity.tolist()
    if isinstance(shard_map, SlotMap):
        return shard_map.locate_slots(slots_of(keys, kt, shard_map.slots))
    index = {g: i for i, g in enumerate(shard_map.groups)}
    return np.array([index[shard_map.locate(k)] for k in keys], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class GroupPart:
    """A batch's rows of one shard group, ready to send: how many, the UTC days of
    the batch (partitions to have), and their binary COPY payload."""

    group: str
    rows: int
    days: tuple[dt.date, ...]
    payload: bytes


def split_encode(shard_map: Any, log: PredictionLog, batch: PredictionBatch) -> list[GroupPart]:
    """``batch`` placed on ``shard_map``'s groups and encoded, one payload per group, in
    one pass (no copy of the batch per group). Pure CPU work (numpy), no I/O."""
    groups = shard_map.groups
    where = group_index(shard_map, log, batch.entity)
    counts = np.bincount(where, minlength=len(groups)).tolist()
    payloads = batch.copy_payloads(where, len(groups))
    days = tuple(batch.days())
    return [
        GroupPart(group, count, days, payload)
        for group, count, payload in zip(groups, counts, payloads, strict=True)
        if count
    ]


async def prepare(
    cluster: AsyncCluster, log: PredictionLog, batch: PredictionBatch
) -> list[GroupPart]:
    """:func:`split_encode` by the cluster's current map of the log's key family."""
    shard_map = (await cluster.shards()).map_of(log.family)
    return split_encode(shard_map, log, batch)


def join_payloads(payloads: list[bytes]) -> bytes:
    """Binary COPY payloads made one (their rows in order, one header and trailer)."""
    if len(payloads) == 1:
        return payloads[0]
    body = b"".join(memoryview(p)[len(COPY_HEADER) : len(p) - len(COPY_TRAILER)] for p in payloads)
    return COPY_HEADER + body + COPY_TRAILER


async def write_part(
    cluster: AsyncCluster,
    tables: AsyncPredictionTables,
    log: PredictionLog,
    group: str,
    rows: int,
    days: Iterable[dt.date],
    data: bytes,
    staged: bool = False,
) -> PartWritten:
    """Write ``rows`` predictions on ``group`` (see the module docstring): ``data``
    is their binary COPY payload, ``days`` the UTC days of their times. ``staged``:
    go through the staging table at once (the group's last part had duplicates: a
    resend is under way, whose straight COPY would fail). Raises what the server or
    the connection raised."""
    layout = PredictionLayout(log)
    days = list(days)
    await tables.ensure_days(log, days, [group])
    if not staged:
        try:
            async with cluster.transaction(group=group, as_written=True) as tx:
                await tx.copy(layout.copy_sql(), data)
            return PartWritten(group, rows, rows, False, tx.token or CausalToken())
        except IntegrityViolation as exc:
            if no_partition(exc):
                # A day this process made was dropped since (retention elsewhere):
                # forget it, make it again, and let the retry write the part.
                tables.forget_days(log, days, group)
                raise
            if exc.sqlstate != _UNIQUE:
                raise
    try:
        async with cluster.transaction(group=group, as_written=True) as tx:
            await tx.execute(layout.stage_ddl())
            await tx.copy(layout.copy_sql("mlscale_pstage"), data)
            inserted = max(0, await tx.execute(layout.insert_new_sql()))
    except IntegrityViolation as exc:
        if no_partition(exc):
            tables.forget_days(log, days, group)
        raise
    return PartWritten(group, rows, inserted, True, tx.token or CausalToken())


# A writer's attempt at some rows: their payload, how many, whether to stage them.
# It returns once they commit, or with the error the server refused them with for
# good, or None when the writer gives up (closed with rows unwritten); errors that
# may pass it retries itself.
Attempt = Callable[[bytes, int, bool], Awaitable["PartWritten | QueryError | None"]]


@dataclass(frozen=True, slots=True)
class Sifted:
    """A part sifted: the pieces ``written``, and the rows ``refused`` for good (their
    index in the part, their binary COPY row, the error). ``complete`` is False when
    the writer gave up midway (the rest is neither written nor refused)."""

    written: tuple[PartWritten, ...]
    refused: tuple[tuple[int, bytes, QueryError], ...]
    complete: bool


async def sift(
    attempt: Attempt, data: bytes, rows: int, staged: bool, failure: QueryError
) -> Sifted:
    """Write what the server takes of a part it refused with ``failure`` (permanent):
    ``data`` holds its ``rows`` rows. Rows are tried in pieces, each its own
    transaction: a piece that fails for good is cut in two, until the rows refused
    stand alone; when the server names the row a COPY failed at ("line N"), the
    pieces are cut there (that row alone, those before it, those after it), so a
    part with k bad rows takes about 3k transactions instead of 2k log2(rows).
    A row is only refused when it failed alone, so no row is set aside for its
    neighbours. Pieces are written in the part's order."""
    spans = row_spans(data)
    written: list[PartWritten] = []
    refused: list[tuple[int, bytes, QueryError]] = []
    todo: list[tuple[int, int, QueryError | None]] = [(0, rows, failure)]  # a stack
    while todo:
        lo, hi, error = todo.pop()
        if error is None:
            got = await attempt(rows_payload(data, spans, lo, hi), hi - lo, staged)
            if got is None:
                return Sifted(tuple(written), tuple(refused), False)
            if isinstance(got, PartWritten):
                written.append(got)
                staged = staged or got.inserted < got.sent
                continue
            error = got
        if hi - lo == 1:
            refused.append((lo, data[spans[lo] : spans[lo + 1]], error))
            continue
        line = copy_line(error)
        if line is not None and 1 <= line <= hi - lo:
            bad = lo + line - 1
            cuts = [(lo, bad), (bad, bad + 1), (bad + 1, hi)]
        else:
            mid = (lo + hi) // 2
            cuts = [(lo, mid), (mid, hi)]
        todo.extend((a, b, None) for a, b in reversed(cuts) if b > a)
    return Sifted(tuple(written), tuple(refused), True)
