"""The prediction log's writer for asyncio code: rows checked in the caller's task,
batched and written by background tasks (hand-written; its thread twin is
``writer_sync.py``, whose docstring tells the design).

The two fronts differ only in how they wait (an asyncio condition and tasks here,
a lock and threads there); what they decide is shared in
:mod:`mlscale.core.predictions.queueing`, and how a part is placed and written in
``flush_async.py`` (whose sync twin is generated). A batch's placing and encoding
run in a worker thread (``asyncio.to_thread``), so the event loop keeps serving the
groups' I/O meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from types import TracebackType
from typing import Any

from ...core.causal import CausalToken
from ...core.predictions.queueing import Backoff, BatchTicket, OnFull, WriterOptions, WriterState
from ...core.predictions.rejects import RejectedPrediction, is_permanent, rejected_from_copy
from ...core.predictions.results import FlushResult, WriterStats
from ...core.predictions.rows import (
    PredictionBatch,
    check_prediction,
    predictions_from_rows,
    to_predictions,
)
from ...core.predictions.spec import PredictionLog
from ...engine.cluster_async import AsyncCluster
from ...errors import PredictionError, QueryError, WriterQueueFull
from .flush_async import GroupPart, PartWritten, join_payloads, sift, split_encode, write_part
from .tables_async import AsyncPredictionTables

__all__ = ["AsyncPredictionWriter"]

log_ = logging.getLogger(__name__)

Chunk = PredictionBatch | list[tuple[Any, ...]]
# Batches at least this big are placed and encoded off the event loop.
_ENCODE_IN_THREAD_ROWS = 2_000


def _size(chunk: Chunk) -> int:
    return chunk.size if isinstance(chunk, PredictionBatch) else len(chunk)


class AsyncPredictionWriter:
    """Writes predictions to a log in the background (see ``writer_sync.py``'s
    docstring). Options as :class:`~mlscale.stores.predictions.PredictionWriter`'s.
    Its tasks start on first use, in the running loop. Use as an async context
    manager, or await :meth:`close`."""

    def __init__(
        self,
        cluster: AsyncCluster,
        tables: AsyncPredictionTables,
        log: PredictionLog,
        *,
        batch_rows: int = 50_000,
        flush_interval_s: float = 1.0,
        queue_rows: int = 500_000,
        on_full: OnFull = "block",
        block_timeout_s: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._cluster = cluster
        self._tables = tables
        self._log = log
        self._options = WriterOptions(
            batch_rows, flush_interval_s, queue_rows, on_full, block_timeout_s
        )
        self._backoff = backoff or Backoff()
        self._state = WriterState(self._options)
        self._cond: asyncio.Condition | None = None
        self._chunks: deque[tuple[Chunk, float]] = deque()
        self._parts: dict[str, deque[tuple[BatchTicket, GroupPart]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._batcher: asyncio.Task[None] | None = None
        self._token = CausalToken()
        self._forced = 0
        self._stopping = False
        self._abandon: asyncio.Event | None = None

    def _started(self) -> asyncio.Condition:
        """The writer's condition, its tasks started in the running loop."""
        if self._cond is None:
            self._cond = asyncio.Condition()
            self._abandon = asyncio.Event()
            self._batcher = asyncio.get_running_loop().create_task(
                self._batch_loop(), name=f"mlscale-pwriter-{self._log.name}"
            )
        return self._cond

    # -- taking rows --------------------------------------------------------------------

    async def log(
        self,
        entity: Any,
        model: str,
        model_version: str,
        score: float | None = None,
        predicted: str | None = None,
        prediction_id: uuid.UUID | str | None = None,
        ts: Any = None,
        extra: Any = None,
    ) -> uuid.UUID:
        """Queue one prediction, checked at once; its id (made if not given: a version 7
        uuid carrying the row's time, so a resend of the id alone is the same row)."""
        row = check_prediction(
            self._log, entity, model, model_version, score, predicted, prediction_id, ts, extra
        )
        cond = self._started()
        async with cond:
            await self._admit(1)
            self._state.take(1, time.monotonic())
            last = self._chunks[-1][0] if self._chunks else None
            if isinstance(last, list):
                last.append(row)
            else:
                self._chunks.append(([row], time.monotonic()))
            self._wake_batcher()
        return uuid.UUID(bytes=row[1])

    async def log_many(self, data: Any) -> int:
        """Queue a batch (a DataFrame, an Arrow table, a dict of columns or a list of
        dicts), checked whole before anything is queued; the rows taken."""
        if self._state.closed:
            raise PredictionError("the prediction writer is closed")
        batch = to_predictions(self._log, data)
        if not batch.size:
            return 0
        cond = self._started()
        async with cond:
            await self._admit(batch.size)
            now = time.monotonic()
            self._state.take(batch.size, now)
            self._chunks.append((batch, now))
            self._wake_batcher()
        return batch.size

    async def _admit(self, rows: int) -> None:
        """Wait for room for ``rows`` (the condition held), or raise WriterQueueFull."""
        state = self._state
        if state.closed:
            raise PredictionError("the prediction writer is closed")
        if state.has_room(rows):
            return
        if self._options.on_full == "raise":
            state.refused_full += rows
            raise WriterQueueFull(state.full_message(rows, None))
        assert self._cond is not None
        started = time.monotonic()
        limit = self._options.block_timeout_s
        deadline = None if limit is None else started + limit
        try:
            while not state.has_room(rows):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    state.refused_full += rows
                    raise WriterQueueFull(state.full_message(rows, time.monotonic() - started))
                await _wait(self._cond, left)
                if state.closed:
                    raise PredictionError("the prediction writer is closed")
        finally:
            state.blocked_s += time.monotonic() - started

    def _wake_batcher(self) -> None:
        assert self._cond is not None
        if self._state.pending >= self._options.batch_rows or len(self._chunks) == 1:
            self._cond.notify_all()

    # -- flushing -----------------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> FlushResult:
        """Return once every row queued before the call is committed (``timeout``
        seconds at most; None: as long as it takes). Raises a PredictionError naming
        the last write error if rows are still unwritten at the timeout (the writer
        keeps trying)."""
        started = time.monotonic()
        if self._state.closed:
            raise PredictionError("the prediction writer is closed")
        cond = self._started()
        async with cond:
            await self._wait_flushed(started, timeout)
            rows, duplicates, groups, rejected = self._state.pop_since()
            token = self._token
        took = time.monotonic() - started
        return FlushResult(rows, duplicates, groups, token, took, rejected)

    async def _wait_flushed(self, started: float, timeout: float | None) -> None:
        assert self._cond is not None
        state = self._state
        target = state.taken
        deadline = None if timeout is None else started + timeout
        self._forced += 1
        self._cond.notify_all()
        try:
            while not state.flushed(target):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    unwritten = target - state.durable
                    if state.error is not None:
                        raise PredictionError(
                            f"flush: {unwritten:,} rows not yet written after {timeout} s "
                            f"(the writer keeps trying): {state.error}"
                        )
                    raise PredictionError(
                        f"flush: {unwritten:,} rows not yet written after {timeout} s"
                    )
                await _wait(self._cond, left)
        finally:
            self._forced -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds), then stop the writer's tasks. If rows are
        still unwritten at the timeout they are given up and a PredictionError says
        how many. Calling it again does nothing."""
        started = time.monotonic()
        if self._state.closed:
            return
        if self._cond is None:  # never used: nothing to flush, no task to stop
            self._state.closed = True
            return
        cond = self._cond
        failure: PredictionError | None = None
        async with cond:
            try:
                await self._wait_flushed(started, timeout)
            except PredictionError as exc:
                failure = exc
            self._state.closed = True
            self._stopping = True
            if failure is not None and self._abandon is not None:
                self._abandon.set()
            cond.notify_all()
        tasks = [t for t in (self._batcher, *self._workers.values()) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if failure is not None:
            raise PredictionError(f"closed with rows unwritten: {failure}") from failure

    def stats(self) -> WriterStats:
        """Queue depth, rows written and their rate, flush latency, failures, rows
        refused for good."""
        return self._state.stats(time.monotonic())

    def rejected(self, *, clear: bool = False) -> list[RejectedPrediction]:
        """The rows the server refused for good and the writer set aside (the newest
        1,000, oldest first; ``stats().rejected_rows`` counts them all); forgotten
        if ``clear``. See ``writer_sync.PredictionWriter.rejected``."""
        return self._state.pop_rejects(clear)

    async def __aenter__(self) -> AsyncPredictionWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the batcher ----------------------------------------------------------------------

    async def _next_batch(self) -> tuple[list[Chunk], float, float | None] | None:
        assert self._cond is not None
        state = self._state
        while True:
            now = time.monotonic()
            if state.batch_due(now, self._forced > 0):
                break
            if self._stopping and state.pending == 0:
                return None
            await _wait(self._cond, state.wait_s(now) if state.pending else None)
        want = self._options.batch_rows
        chunks: list[Chunk] = []
        first = self._chunks[0][1]
        got = 0
        while self._chunks and got < want:
            chunk, at = self._chunks[0]
            size = _size(chunk)
            if got + size <= want:
                self._chunks.popleft()
                chunks.append(chunk)
                got += size
                continue
            cut = want - got
            if isinstance(chunk, PredictionBatch):
                head, tail = chunk.take(slice(0, cut)), chunk.take(slice(cut, size))  # views
                self._chunks[0] = (tail, at)
                chunks.append(head)
            else:
                self._chunks[0] = (chunk[cut:], at)
                chunks.append(chunk[:cut])
            got += cut
        rest = self._chunks[0][1] if self._chunks else None
        return chunks, first, rest

    async def _batch_loop(self) -> None:
        assert self._cond is not None
        cond = self._cond
        while True:
            async with cond:
                nxt = await self._next_batch()
            if nxt is None:
                return
            chunks, first, rest = nxt
            batch = PredictionBatch.concat(
                [c if isinstance(c, PredictionBatch) else predictions_from_rows(self._log, c)
                 for c in chunks]
            )  # fmt: skip
            # Placed and encoded here, ahead of the group tasks: a group's task
            # goes from one commit straight to its next COPY, so its server idles less.
            parts = await self._prepare(batch)
            async with cond:
                ticket = self._state.open_batch(batch.size, {p.group for p in parts}, first, rest)
                for part in parts:
                    group = part.group
                    self._parts.setdefault(group, deque()).append((ticket, part))
                    if group not in self._workers:
                        self._workers[group] = asyncio.get_running_loop().create_task(
                            self._group_loop(group),
                            name=f"mlscale-pwriter-{self._log.name}-{group}",
                        )
                cond.notify_all()

    async def _prepare(self, batch: PredictionBatch) -> list[GroupPart]:
        attempt = 0
        while True:
            try:
                shard_map = (await self._cluster.shards()).map_of(self._log.family)
                parts = (
                    await asyncio.to_thread(split_encode, shard_map, self._log, batch)
                    if batch.size >= _ENCODE_IN_THREAD_ROWS
                    else split_encode(shard_map, self._log, batch)
                )
                if attempt:
                    self._state.cleared("placing")
                return parts
            except Exception as exc:  # the rows are kept: retried, the error shown
                attempt += 1
                self._state.part_failed("placing", exc)
                log_.warning("prediction writer: placing a batch failed: %s", exc)
                if await self._abandoned(self._backoff.delay(attempt)):
                    raise

    async def _abandoned(self, seconds: float) -> bool:
        """Sleep ``seconds``; True as soon as close gave up on the unwritten rows."""
        assert self._abandon is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._abandon.wait(), seconds)
        return self._abandon.is_set()

    # -- one task per group -------------------------------------------------------------

    async def _group_loop(self, group: str) -> None:
        assert self._cond is not None
        cond = self._cond
        queue = self._parts[group]
        staged = False  # the last part had duplicates: stage the next one at once
        while True:
            async with cond:
                while not queue and not self._stopping:
                    await cond.wait()
                if not queue:
                    return
                items = _merged(queue, self._options.queue_rows)
            data = join_payloads([part.payload for _, part in items])
            rows = sum(part.rows for _, part in items)
            days = sorted({d for _, part in items for d in part.days})
            done = await self._attempt(group, days, data, rows, staged)
            if done is None:
                return  # close gave up on the rows
            refused: tuple[tuple[int, bytes, QueryError], ...] = ()
            if isinstance(done, QueryError):
                log_.warning(
                    "prediction writer: %s refused some of %d rows for good (%s): sifting",
                    group,
                    rows,
                    done,
                )
                sifted = await sift(
                    functools.partial(self._attempt, group, days), data, rows, staged, done
                )
                if not sifted.complete:
                    return
                done = _merged_written(group, sifted.written, staged)
                refused = sifted.refused
            async with cond:
                now = time.monotonic()
                self._token = self._token.merge(done.token)
                if refused:
                    kt = self._log.key_type
                    self._state.set_aside(
                        [rejected_from_copy(kt, raw, group, exc) for _, raw, exc in refused]
                    )
                duplicates = done.sent - done.inserted
                staged = duplicates > 0
                offset = 0
                for ticket, part in items:
                    queue.popleft()
                    mine = sum(offset <= i < offset + part.rows for i, _, _ in refused)
                    offset += part.rows
                    dup = min(duplicates, part.rows - mine)
                    duplicates -= dup
                    self._state.part_written(
                        ticket, group, part.rows, part.rows - mine - dup, now, refused=mine
                    )
                cond.notify_all()

    async def _attempt(
        self, group: str, days: list[Any], data: bytes, rows: int, staged: bool
    ) -> PartWritten | QueryError | None:
        """Write ``rows`` rows (payload ``data``) on ``group`` until they commit; the
        error if the server refuses some for good (class 22, 23502, 23503, 23514 other
        than a missing partition, 23P01, 54000: see
        :func:`~mlscale.core.predictions.rejects.is_permanent`); None if close gave up.
        Any other failure (connection, 40001/40P01, 53xxx, 57P0x, ...) is retried with
        backoff: the rows are kept whatever went wrong."""
        assert self._cond is not None
        attempt = 0
        while True:
            try:
                done = await write_part(
                    self._cluster, self._tables, self._log, group, rows, days, data, staged
                )
            except Exception as exc:
                if is_permanent(exc):
                    assert isinstance(exc, QueryError)
                    return exc
                attempt += 1
                async with self._cond:
                    self._state.part_failed(group, exc)
                    self._cond.notify_all()
                log_.warning(
                    "prediction writer: %d rows to %s failed (attempt %d), retrying: %s",
                    rows,
                    group,
                    attempt,
                    exc,
                )
                if await self._abandoned(self._backoff.delay(attempt)):
                    return None
            else:
                if attempt:
                    async with self._cond:
                        self._state.cleared(group)
                return done


async def _wait(cond: asyncio.Condition, seconds: float | None) -> None:
    """Wait on ``cond`` (held) for a notify, at most ``seconds`` (None: no limit)."""
    if seconds is None:
        await cond.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cond.wait(), max(0.0, seconds))


def _merged_written(group: str, pieces: tuple[PartWritten, ...], staged: bool) -> PartWritten:
    """The pieces of a sifted part as one (the rows sent count the refused ones too:
    see the caller)."""
    token = CausalToken()
    for piece in pieces:
        token = token.merge(piece.token)
    sent = sum(p.sent for p in pieces)
    inserted = sum(p.inserted for p in pieces)
    return PartWritten(group, sent, inserted, staged or any(p.staged for p in pieces), token)


def _merged(
    queue: deque[tuple[BatchTicket, GroupPart]], rows: int
) -> list[tuple[BatchTicket, GroupPart]]:
    """The parts at the head of a group's queue written as one COPY (see
    ``writer_sync._merged``)."""
    items = [queue[0]]
    total = queue[0][1].rows
    for item in list(queue)[1:]:
        if total + item[1].rows > rows:
            break
        items.append(item)
        total += item[1].rows
    return items
