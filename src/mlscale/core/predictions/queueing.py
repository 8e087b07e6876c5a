"""The prediction writer's decisions, apart from its threads and tasks: options, room in
the queue, when a batch is due, when a failed group write is tried again, which rows
a flush waits for, the counters its stats report, and the rows the server refused
for good (set aside: see :mod:`.rejects`).

Both writers (a background thread, an asyncio task) hold one :class:`WriterState`
under their own lock and ask it; nothing here sleeps, waits or does I/O.

Rows are numbered in the order they are taken (``seq``). A batch is a run of
consecutive numbers; it is done when every group's part of it has committed. The
writer's *durable* mark is the end of the longest run of done batches from the
start, so :meth:`WriterState.flushed` says whether every row taken before a flush
call is committed, whatever order the groups finished in.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ...errors import PredictionError
from .rejects import RejectedPrediction
from .results import WriterStats

__all__ = ["Backoff", "BatchTicket", "WriterOptions", "WriterState"]

OnFull = Literal["block", "raise"]
# Flush latencies kept for the percentiles in stats().
LATENCY_WINDOW = 1_000
# Rows refused for good kept for the caller to read (the newest; the count is exact).
REJECTED_KEPT = 1_000


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """A writer's options, checked: ``batch_rows`` rows make a batch (a COPY per group);
    a batch is also written ``flush_interval_s`` seconds after its first row was taken;
    at most ``queue_rows`` rows wait (taken, not yet committed); a full queue blocks
    the caller (``on_full="block"``, up to ``block_timeout_s`` seconds, None: no limit)
    or raises :class:`~mlscale.errors.WriterQueueFull` (``"raise"``)."""

    batch_rows: int = 50_000
    flush_interval_s: float = 1.0
    queue_rows: int = 500_000
    on_full: OnFull = "block"
    block_timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("batch_rows", "queue_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PredictionError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.queue_rows < self.batch_rows:
            raise PredictionError(
                f"queue_rows ({self.queue_rows}) must be at least batch_rows ({self.batch_rows})"
            )
        if not _positive(self.flush_interval_s):
            raise PredictionError(
                f"flush_interval_s must be a number > 0, got {self.flush_interval_s!r}"
            )
        if self.on_full not in ("block", "raise"):
            raise PredictionError(f"on_full must be 'block' or 'raise', got {self.on_full!r}")
        if self.block_timeout_s is not None and not (
            _positive(self.block_timeout_s) or self.block_timeout_s == 0
        ):
            raise PredictionError(
                f"block_timeout_s must be a number >= 0 or None, got {self.block_timeout_s!r}"
            )


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts of a failed group write: ``first_s`` doubling up to
    ``max_s`` seconds. A write failing for a reason that may pass is never given up:
    its rows stay queued (rows the server refuses for good are set aside instead:
    see :func:`~mlscale.core.predictions.rejects.is_permanent`)."""

    first_s: float = 0.05
    max_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` + 1 (``attempt`` >= 1 failed)."""
        return float(min(self.max_s, self.first_s * 2.0 ** max(0, min(attempt - 1, 30))))


@dataclass(slots=True)
class BatchTicket:
    """One batch being written: its rows ``[start, end)``, when its first row was
    taken (monotonic seconds), and the groups whose parts have not committed."""

    start: int
    end: int
    first_taken: float
    groups_left: set[str] = field(default_factory=set)


@dataclass(slots=True)
class WriterState:
    """The writer's queue accounting and counters (see the module docstring). The
    caller holds the writer's lock around every method."""

    options: WriterOptions
    started: float = field(default_factory=time.monotonic)
    queued: int = 0  # rows taken, not yet committed (the queue depth)
    taken: int = 0  # rows taken since the start (the next row's seq)
    pending: int = 0  # rows taken but not yet made into a batch
    pending_since: float | None = None  # when the oldest of those was taken
    durable: int = 0  # every row below this seq is committed
    written: int = 0
    duplicates: int = 0
    flushes: int = 0
    blocked_s: float = 0.0
    refused_full: int = 0
    failures: int = 0
    error: str | None = None
    failing: dict[str, str] = field(default_factory=dict)  # group -> its last error
    rejected_rows: int = 0  # rows the server refused for good, set aside
    rejected_error: str | None = None
    rejects: deque[RejectedPrediction] = field(default_factory=lambda: deque(maxlen=REJECTED_KEPT))
    closed: bool = False
    tickets: deque[BatchTicket] = field(default_factory=deque)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    # Since the last flush() returned: rows stored, duplicates, rows sent per group.
    since_rows: int = 0
    since_duplicates: int = 0
    since_groups: dict[str, int] = field(default_factory=dict)
    since_rejected: int = 0

    # -- taking rows ----------------------------------------------------------------------

    def has_room(self, rows: int) -> bool:
        """Whether ``rows`` more rows fit. A call larger than the whole queue is let
        into an empty one, alone, so it is never refused for ever."""
        return self.queued == 0 or self.queued + rows <= self.options.queue_rows

    def full_message(self, rows: int, waited_s: float | None) -> str:
        how = f" after waiting {waited_s:.2f} s" if waited_s is not None else ""
        return (
            f"prediction writer queue is full ({self.queued:,} of {self.options.queue_rows:,} "
            f"rows waiting){how}: {rows:,} rows not taken; send them again later"
        )

    def take(self, rows: int, now: float) -> int:
        """Account ``rows`` taken; the seq of the first."""
        first = self.taken
        self.taken += rows
        self.queued += rows
        if self.pending == 0:
            self.pending_since = now
        self.pending += rows
        return first

    # -- making batches -------------------------------------------------------------------

    def batch_due(self, now: float, forced: bool) -> bool:
        """Whether the rows waiting make a batch now: a full batch's worth, rows older
        than ``flush_interval_s``, or ``forced`` (a flush or close is waiting)."""
        if self.pending == 0:
            return False
        if forced or self.pending >= self.options.batch_rows:
            return True
        since = self.pending_since if self.pending_since is not None else now
        return now - since >= self.options.flush_interval_s

    def wait_s(self, now: float) -> float:
        """How long the batcher may sleep before a batch can be due by time."""
        if self.pending == 0 or self.pending_since is None:
            return self.options.flush_interval_s
        return max(0.0, self.pending_since + self.options.flush_interval_s - now)

    def open_batch(
        self, rows: int, groups: set[str], first_taken: float, rest_since: float | None
    ) -> BatchTicket:
        """A batch of the next ``rows`` pending rows, written to ``groups``, taken
        from ``first_taken`` on; ``rest_since``: when the oldest row still pending after
        it was taken (None if none is)."""
        start = self.durable_end()
        ticket = BatchTicket(start, start + rows, first_taken, set(groups))
        self.pending -= rows
        self.pending_since = rest_since if self.pending else None
        self.tickets.append(ticket)
        if not groups:
            self._settle(first_taken)
        return ticket

    def durable_end(self) -> int:
        """The seq after the last row already in a batch."""
        return self.tickets[-1].end if self.tickets else self.durable

    # -- writes ending --------------------------------------------------------------------

    def part_written(
        self,
        ticket: BatchTicket,
        group: str,
        sent: int,
        inserted: int,
        now: float,
        refused: int = 0,
    ) -> None:
        """A group's part of ``ticket`` done: of ``sent`` rows, ``inserted`` new,
        ``refused`` set aside (refused for good), the rest already stored."""
        ticket.groups_left.discard(group)
        self.cleared(group)
        self.written += inserted
        self.duplicates += sent - inserted - refused
        self.rejected_rows += refused
        self.queued -= sent
        self.since_rows += inserted
        self.since_duplicates += sent - inserted - refused
        self.since_rejected += refused
        self.since_groups[group] = self.since_groups.get(group, 0) + sent
        self._settle(now)

    def set_aside(self, rows: Sequence[RejectedPrediction]) -> None:
        """Keep ``rows`` (refused for good; counted by :meth:`part_written`) for the
        caller, the newest :data:`REJECTED_KEPT` of them."""
        self.rejects.extend(rows)
        if rows:
            last = rows[-1]
            self.rejected_error = f"{last.group}: {last.error}"

    def pop_rejects(self, clear: bool) -> list[RejectedPrediction]:
        """The rows set aside and kept, oldest first; forgotten if ``clear``."""
        out = list(self.rejects)
        if clear:
            self.rejects.clear()
        return out

    def part_failed(self, group: str, error: BaseException) -> None:
        """A group's write failed; it will be tried again (rows kept)."""
        self.failures += 1
        self.error = f"{group}: {type(error).__name__}: {error}"
        self.failing[group] = self.error

    def cleared(self, where: str) -> None:
        """``where`` (a group, or the placing of batches) works again."""
        self.failing.pop(where, None)
        if not self.failing:
            self.error = None

    def _settle(self, now: float) -> None:
        while self.tickets and not self.tickets[0].groups_left:
            done = self.tickets.popleft()
            self.durable = done.end
            self.flushes += 1
            self.latencies_ms.append((now - done.first_taken) * 1000.0)

    # -- flushes ----------------------------------------------------------------------------

    def flushed(self, target: int) -> bool:
        """Whether every row whose seq is below ``target`` is committed."""
        return self.durable >= target

    def pop_since(self) -> tuple[int, int, dict[str, int], int]:
        """Rows stored, duplicates, rows sent per group, and rows set aside since the
        last call."""
        out = (
            self.since_rows,
            self.since_duplicates,
            dict(self.since_groups),
            self.since_rejected,
        )
        self.since_rows = self.since_duplicates = self.since_rejected = 0
        self.since_groups = {}
        return out

    def stats(self, now: float) -> WriterStats:
        """The counters as :class:`WriterStats`."""
        lat = sorted(self.latencies_ms)
        alive = max(1e-9, now - self.started)
        return WriterStats(
            queued=self.queued,
            queue_limit=self.options.queue_rows,
            written=self.written,
            duplicates=self.duplicates,
            rows_per_s=self.written / alive,
            flushes=self.flushes,
            flush_p50_ms=_pick(lat, 0.50),
            flush_p99_ms=_pick(lat, 0.99),
            blocked_s=self.blocked_s,
            refused_full=self.refused_full,
            failures=self.failures,
            error=self.error,
            rejected_rows=self.rejected_rows,
            rejected_error=self.rejected_error,
        )


def _pick(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
