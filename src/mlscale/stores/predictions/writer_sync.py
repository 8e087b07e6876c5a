"""The prediction log's writer for sync code: rows checked in the caller's thread,
batched and written by background threads (hand-written; its asyncio twin is
``writer_async.py``).

``log``/``log_many`` check their rows at once (a :class:`PredictionError` to the
caller, never a silent drop) and queue them; a full queue blocks the caller or
raises :class:`WriterQueueFull`, by option. A batcher thread makes batches of
``batch_rows`` rows (or fewer, ``flush_interval_s`` seconds after their first row
was queued, or when a flush asks), places their rows on shard groups and encodes
each group's binary COPY payload in one pass (:func:`.flush_sync.split_encode`).
One thread per group sends: each of its transactions is one COPY straight into the
partitioned table, of every part waiting for that group (while the server is the
bottleneck parts queue up, and one commit for several saves a commit each), so a
group's server goes from one commit to the next COPY without waiting for the
client. Groups run in parallel: their threads mostly wait on sockets, which
releases the GIL. A failed write is kept and tried again with backoff until it
commits, unless the server refused some of its rows for good (a value its type or
a constraint refuses: SQLSTATE class 22, 23502, 23503, 23514 other than a missing
partition, 23P01, 54000; see :func:`~mlscale.core.predictions.rejects.is_permanent`):
then the part is sifted (:func:`.flush_sync.sift`), its other rows written and the
refused ones set aside (``stats().rejected_rows``, :meth:`PredictionWriter.rejected`),
so a flush returns and the group's queue moves on. ``log``/``log_many`` refuse at
once what can be checked in Python (a NUL or a lone surrogate in text or in
``extra``, a time out of range), so the server refusing a row is the rare case (a
constraint the log's owner added, say). A part that committed is never written
again; after a part found duplicates (a resend) the group's next part goes through
the staging table at once instead of failing its straight COPY first.

Delivery is at least once, made exactly once by the prediction id: a row resent
after a crash is found stored and counted as a duplicate, not stored twice.

Decisions (room, due batches, accounting, stats) live in
:mod:`mlscale.core.predictions.queueing`.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
import uuid
import weakref
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
from ...engine.cluster_sync import Cluster
from ...errors import PredictionError, QueryError, WriterQueueFull
from .flush_sync import GroupPart, PartWritten, join_payloads, prepare, sift, write_part
from .tables_sync import PredictionTables

__all__ = ["PredictionWriter"]

log_ = logging.getLogger(__name__)

Chunk = PredictionBatch | list[tuple[Any, ...]]

# At interpreter exit, writers still open are closed (their queued rows flushed) for up
# to this many seconds each: their threads are daemons, which exit would otherwise stop
# with rows in hand. A writer belongs to the process that made it (threads do not
# cross a fork).
EXIT_FLUSH_S = 30.0
_OPEN: weakref.WeakSet[PredictionWriter] = weakref.WeakSet()


def _close_open_writers() -> None:
    for writer in list(_OPEN):
        if writer.pid != os.getpid():
            continue
        try:
            writer.close(timeout=EXIT_FLUSH_S)
        except Exception as exc:  # at exit: say so, never raise
            log_.warning("prediction writer of %s at exit: %s", writer.log_name, exc)


atexit.register(_close_open_writers)


def _size(chunk: Chunk) -> int:
    return chunk.size if isinstance(chunk, PredictionBatch) else len(chunk)


class PredictionWriter:
    """Writes predictions to a log in the background (see the module docstring).

    ``batch_rows``: rows per batch (one COPY per group); ``flush_interval_s``: the
    longest a row waits before its batch is written (seconds); ``queue_rows``: the
    most rows taken and not yet committed; ``on_full``: ``"block"`` (wait for room,
    up to ``block_timeout_s`` seconds, None: as long as it takes) or ``"raise"``
    (:class:`WriterQueueFull` at once). Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        cluster: Cluster,
        tables: PredictionTables,
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
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[tuple[Chunk, float]] = deque()  # taken, not yet batched
        self._parts: dict[str, deque[tuple[BatchTicket, GroupPart]]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._token = CausalToken()
        self._forced = 0  # flushes waiting for every queued row to be batched
        self._stopping = False
        self._abandon = threading.Event()  # close gave up: stop retrying
        self._batcher = threading.Thread(
            target=self._batch_loop, name=f"mlscale-pwriter-{log.name}", daemon=True
        )
        self._batcher.start()
        self.pid = os.getpid()
        """The process the writer belongs to (its threads do not cross a fork)."""
        _OPEN.add(self)

    @property
    def log_name(self) -> str:
        """The name of the log the writer writes."""
        return self._log.name

    def _check_process(self) -> None:
        if os.getpid() != self.pid:
            raise PredictionError(
                f"this prediction writer was made in process {self.pid}; its threads did "
                "not cross the fork: make a writer in this process"
            )

    # -- taking rows --------------------------------------------------------------------

    def log(
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
        self._check_process()
        row = check_prediction(
            self._log, entity, model, model_version, score, predicted, prediction_id, ts, extra
        )
        with self._cond:
            self._admit(1)
            self._state.take(1, time.monotonic())
            last = self._chunks[-1][0] if self._chunks else None
            if isinstance(last, list):
                last.append(row)
            else:
                self._chunks.append(([row], time.monotonic()))
            self._wake_batcher()
        return uuid.UUID(bytes=row[1])

    def log_many(self, data: Any) -> int:
        """Queue a batch (a DataFrame, an Arrow table, a dict of columns or a list of
        dicts), checked whole before anything is queued; the rows taken."""
        self._check_process()
        if self._state.closed:
            raise PredictionError("the prediction writer is closed")
        batch = to_predictions(self._log, data)
        if not batch.size:
            return 0
        with self._cond:
            self._admit(batch.size)
            now = time.monotonic()
            self._state.take(batch.size, now)
            self._chunks.append((batch, now))
            self._wake_batcher()
        return batch.size

    def _admit(self, rows: int) -> None:
        """Wait for room for ``rows`` (the lock held), or raise WriterQueueFull."""
        state = self._state
        if state.closed:
            raise PredictionError("the prediction writer is closed")
        if state.has_room(rows):
            return
        if self._options.on_full == "raise":
            state.refused_full += rows
            raise WriterQueueFull(state.full_message(rows, None))
        started = time.monotonic()
        limit = self._options.block_timeout_s
        deadline = None if limit is None else started + limit
        try:
            while not state.has_room(rows):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    state.refused_full += rows
                    raise WriterQueueFull(state.full_message(rows, time.monotonic() - started))
                self._cond.wait(left)
                if state.closed:
                    raise PredictionError("the prediction writer is closed")
        finally:
            state.blocked_s += time.monotonic() - started

    def _wake_batcher(self) -> None:
        if self._state.pending >= self._options.batch_rows or len(self._chunks) == 1:
            self._cond.notify_all()

    # -- flushing -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Return once every row queued before the call is committed (``timeout``
        seconds at most; None: as long as it takes). Raises the last write error if
        rows are still unwritten at the timeout (the writer keeps trying), or a
        PredictionError if there was none."""
        self._check_process()
        started = time.monotonic()
        with self._cond:
            if self._state.closed:
                raise PredictionError("the prediction writer is closed")
            self._wait_flushed(started, timeout)
            rows, duplicates, groups, rejected = self._state.pop_since()
            token = self._token
        took = time.monotonic() - started
        return FlushResult(rows, duplicates, groups, token, took, rejected)

    def _wait_flushed(self, started: float, timeout: float | None) -> None:
        """Wait (the lock held) until every row taken so far is committed."""
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
                self._cond.wait(left)
        finally:
            self._forced -= 1

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds), then stop the writer's threads. If rows
        are still unwritten at the timeout they are given up and a PredictionError
        says how many. Calling it again does nothing."""
        started = time.monotonic()
        with self._cond:
            if self._state.closed:
                return
            failure: PredictionError | None = None
            try:
                self._wait_flushed(started, timeout)
            except PredictionError as exc:
                failure = exc
            self._state.closed = True
            self._stopping = True
            if failure is not None:
                self._abandon.set()
            self._cond.notify_all()
        self._batcher.join()
        for worker in list(self._workers.values()):
            worker.join()
        if failure is not None:
            raise PredictionError(f"closed with rows unwritten: {failure}") from failure

    def stats(self) -> WriterStats:
        """Queue depth, rows written and their rate, flush latency, failures, rows
        refused for good."""
        with self._cond:
            return self._state.stats(time.monotonic())

    def rejected(self, *, clear: bool = False) -> list[RejectedPrediction]:
        """The rows the server refused for good and the writer set aside, oldest first:
        the newest 1,000 (``stats().rejected_rows`` counts them all), each with its
        values as sent, its group and the server's error, so they can be fixed and
        logged again. Forgotten once read if ``clear``."""
        with self._cond:
            return self._state.pop_rejects(clear)

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the batcher ----------------------------------------------------------------------

    def _next_batch(self) -> tuple[list[Chunk], float, float | None] | None:
        """The chunks of the next batch (the lock held; waits until one is due), when
        its first row was taken, and when the oldest row left was; None to stop."""
        state = self._state
        while True:
            now = time.monotonic()
            if state.batch_due(now, self._forced > 0):
                break
            if self._stopping and state.pending == 0:
                return None
            self._cond.wait(state.wait_s(now) if state.pending else None)
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

    def _batch_loop(self) -> None:
        while True:
            with self._cond:
                nxt = self._next_batch()
            if nxt is None:
                return
            chunks, first, rest = nxt
            batch = PredictionBatch.concat(
                [c if isinstance(c, PredictionBatch) else predictions_from_rows(self._log, c)
                 for c in chunks]
            )  # fmt: skip
            # Placed and encoded here, ahead of the group threads: a group's thread
            # goes from one commit straight to its next COPY, so its server idles less.
            parts = self._prepare(batch)
            with self._cond:
                ticket = self._state.open_batch(batch.size, {p.group for p in parts}, first, rest)
                for part in parts:
                    group = part.group
                    self._parts.setdefault(group, deque()).append((ticket, part))
                    if group not in self._workers:
                        worker = threading.Thread(
                            target=self._group_loop,
                            args=(group,),
                            name=f"mlscale-pwriter-{self._log.name}-{group}",
                            daemon=True,
                        )
                        self._workers[group] = worker
                        worker.start()
                self._cond.notify_all()

    def _prepare(self, batch: PredictionBatch) -> list[GroupPart]:
        """``batch`` placed and encoded per group; retried while the shard map cannot
        be had."""
        attempt = 0
        while True:
            try:
                parts = prepare(self._cluster, self._log, batch)
                if attempt:
                    with self._cond:
                        self._state.cleared("placing")
                return parts
            except Exception as exc:  # the rows are kept: retried, the error shown
                attempt += 1
                with self._cond:
                    self._state.part_failed("placing", exc)
                log_.warning("prediction writer: placing a batch failed: %s", exc)
                if self._abandon.wait(self._backoff.delay(attempt)):
                    raise

    # -- one thread per group -----------------------------------------------------------

    def _group_loop(self, group: str) -> None:
        queue = self._parts[group]
        staged = False  # the last part had duplicates: stage the next one at once
        while True:
            with self._cond:
                while not queue and not self._stopping:
                    self._cond.wait()
                if not queue:
                    return
                items = _merged(queue, self._options.queue_rows)
            data = join_payloads([part.payload for _, part in items])
            rows = sum(part.rows for _, part in items)
            days = sorted({d for _, part in items for d in part.days})
            done = self._attempt(group, days, data, rows, staged)
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
                sifted = sift(
                    functools.partial(self._attempt, group, days), data, rows, staged, done
                )
                if not sifted.complete:
                    return
                done = _merged_written(group, sifted.written, staged)
                refused = sifted.refused
            with self._cond:
                now = time.monotonic()
                self._token = self._token.merge(done.token)
                if refused:
                    kt = self._log.key_type
                    self._state.set_aside(
                        [rejected_from_copy(kt, raw, group, exc) for _, raw, exc in refused]
                    )
                duplicates = done.sent - done.inserted
                staged = duplicates > 0
                offset = 0  # the refused rows' index in the merged payload -> their part
                for ticket, part in items:
                    queue.popleft()
                    mine = sum(offset <= i < offset + part.rows for i, _, _ in refused)
                    offset += part.rows
                    dup = min(duplicates, part.rows - mine)
                    duplicates -= dup
                    self._state.part_written(
                        ticket, group, part.rows, part.rows - mine - dup, now, refused=mine
                    )
                self._cond.notify_all()

    def _attempt(
        self, group: str, days: list[Any], data: bytes, rows: int, staged: bool
    ) -> PartWritten | QueryError | None:
        """Write ``rows`` rows (payload ``data``) on ``group`` until they commit; the
        error if the server refuses some for good (class 22, 23502, 23503, 23514 other
        than a missing partition, 23P01, 54000: see
        :func:`~mlscale.core.predictions.rejects.is_permanent`); None if close gave up.
        Any other failure (connection, 40001/40P01, 53xxx, 57P0x, ...) is retried with
        backoff: the rows are kept whatever went wrong."""
        attempt = 0
        while True:
            try:
                done = write_part(
                    self._cluster, self._tables, self._log, group, rows, days, data, staged
                )
            except Exception as exc:
                if is_permanent(exc):
                    assert isinstance(exc, QueryError)
                    return exc
                attempt += 1
                with self._cond:
                    self._state.part_failed(group, exc)
                    self._cond.notify_all()
                log_.warning(
                    "prediction writer: %d rows to %s failed (attempt %d), retrying: %s",
                    rows,
                    group,
                    attempt,
                    exc,
                )
                if self._abandon.wait(self._backoff.delay(attempt)):
                    return None
            else:
                if attempt:
                    with self._cond:
                        self._state.cleared(group)
                return done


def _merged_written(group: str, pieces: tuple[PartWritten, ...], staged: bool) -> PartWritten:
    """The pieces of a sifted part as one (its refused rows are not among their
    ``sent``: the caller counts them apart)."""
    token = CausalToken()
    for piece in pieces:
        token = token.merge(piece.token)
    sent = sum(p.sent for p in pieces)
    inserted = sum(p.inserted for p in pieces)
    return PartWritten(group, sent, inserted, staged or any(p.staged for p in pieces), token)


def _merged(
    queue: deque[tuple[BatchTicket, GroupPart]], rows: int
) -> list[tuple[BatchTicket, GroupPart]]:
    """The parts at the head of a group's queue written as one COPY: while the server
    is the bottleneck parts wait, and one transaction for several of them (up to
    ``rows`` rows) saves a commit each (at 12,500 rows a part, commits cost a third
    of the writer's rate on this machine)."""
    items = [queue[0]]
    total = queue[0][1].rows
    for item in list(queue)[1:]:
        if total + item[1].rows > rows:
            break
        items.append(item)
        total += item[1].rows
    return items
