"""Durable write-behind: acknowledge a write once it is journaled, write it to
PostgreSQL later, in batches, with effect exactly once.

::

    journal = Journal.connect("wb:features", port=6380, password=pw)   # fsync-always Redis
    target = Target("features", key="id", columns=("score", "label"))
    wb = WriteBehind(journal, [target], sink=PostgresSink(cluster.connection, [target]))
    wb.start()                                    # a flusher thread (or run_flusher())
    wb.write("features", 42, {"score": 0.5, "label": "a"})   # durable when it returns
    wb.drain(); wb.stats(); wb.close()

The path of a write:

1. ``write`` appends it to the :class:`~.journal.Journal` (a Redis Stream fsynced
   before the reply) and returns an :class:`Ack` with its version. With an L1
   :class:`~.local.LocalCache` the value is then cached there with that version,
   pinned: a dirty entry is never evicted or expired before it is flushed.
2. The flusher reads the oldest journal entries, keeps the newest version of each
   key in the batch, and upserts them in one transaction::

       INSERT INTO t AS cur (key, cols..., version) VALUES ...
       ON CONFLICT (key) DO UPDATE SET cols... = EXCLUDED..., version = EXCLUDED.version
       WHERE EXCLUDED.version > cur.version

   then trims the flushed entries from the journal and unpins them in L1.
3. A crash anywhere leaves the entries in the journal; the next flusher replays them.
   Those the database already has carry a version that is not newer than the row's,
   so the guard skips them: each write takes effect once (counted in
   ``skipped_not_newer``).

Versions come from the journal (stream IDs, increasing over all keys) unless the
writer supplies its own, increasing per key; use one source per table. A key's row
in the database only ever moves to a newer version, so replays, overlapping flushers
and batches in any order converge to the newest acknowledged write.

Not covered: deletes (journal a tombstone row, e.g. a ``deleted`` column, instead:
a real DELETE would lose the version that keeps old replays out); sharded tables
(give the sink connections to the right primary per table: one sink per group).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import psycopg
import redis
from psycopg import sql

from ..errors import CacheError, MlscaleError
from .journal import Append, DurabilityMode, Journal, JournalCorrupt, JournalEntry, version_of
from .local import LocalCache

__all__ = [
    "Ack",
    "FlushResult",
    "PostgresSink",
    "Sink",
    "Target",
    "WriteBehind",
    "WriteBehindStats",
]

log = logging.getLogger(__name__)

# Rows per INSERT statement: 500 rows x a few columns stays far below PostgreSQL's
# 65,535 bind parameters and keeps one statement's text small.
_ROWS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class Target:
    """A table that receives write-behind rows: ``key`` is its primary key column
    (or columns: then keys are tuples), ``columns`` the value columns a write sets,
    ``version`` the bigint column the guard compares. ``schema`` qualifies the table."""

    table: str
    key: str | tuple[str, ...]
    columns: tuple[str, ...]
    version: str = "version"
    schema: str | None = None

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The key as a tuple of column names."""
        return (self.key,) if isinstance(self.key, str) else self.key

    def check_row(self, row: Mapping[str, Any]) -> None:
        """Refuse a row that does not set exactly the target's value columns."""
        if set(row) != set(self.columns):
            raise ValueError(
                f"a write to {self.table} must set columns {sorted(self.columns)}, "
                f"not {sorted(row)}"
            )

    def upsert(self, rows: int) -> sql.Composed:
        """The version-guarded upsert of ``rows`` rows (identifiers quoted, values
        bound): an older or equal version never replaces the stored row."""
        table = (
            sql.Identifier(self.schema, self.table) if self.schema else sql.Identifier(self.table)
        )
        names = [*self.key_columns, *self.columns, self.version]
        one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(names)))
        return sql.SQL(
            "INSERT INTO {table} AS cur ({names}) VALUES {values} "
            "ON CONFLICT ({keys}) DO UPDATE SET {sets} "
            "WHERE EXCLUDED.{version} > cur.{version}"
        ).format(
            table=table,
            names=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=sql.SQL(", ").join([one] * rows),
            keys=sql.SQL(", ").join(map(sql.Identifier, self.key_columns)),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                for c in (*self.columns, self.version)
            ),
            version=sql.Identifier(self.version),
        )

    def params(self, entries: Sequence[JournalEntry]) -> list[Any]:
        """The bind values of :meth:`upsert` for ``entries``, row after row."""
        out: list[Any] = []
        width = len(self.key_columns)
        for e in entries:
            key = e.key if width > 1 else (e.key,)
            if not isinstance(key, tuple | list) or len(key) != width:
                raise JournalCorrupt(
                    f"journal entry {e.id}: key {e.key!r} does not fit {self.key_columns}"
                )
            out.extend(key)
            try:
                out.extend(e.row[c] for c in self.columns)
            except KeyError as exc:
                raise JournalCorrupt(f"journal entry {e.id} lacks column {exc}") from exc
            out.append(e.version)
        return out


def newest_per_key(entries: Iterable[JournalEntry]) -> dict[str, list[JournalEntry]]:
    """Per table, the newest version of each key among ``entries`` (one upsert may
    not touch a row twice); on equal versions the later entry wins."""
    newest: dict[tuple[str, Any], JournalEntry] = {}
    for e in entries:
        slot = (e.table, _hashable(e.key))
        seen = newest.get(slot)
        if seen is None or e.version >= seen.version:
            newest[slot] = e
    out: dict[str, list[JournalEntry]] = {}
    for e in newest.values():
        out.setdefault(e.table, []).append(e)
    return out


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


class Sink(Protocol):
    """Where flushed writes go: ``apply`` commits every table's rows in one
    transaction and returns how many rows it inserted or changed."""

    def apply(self, rows: Mapping[str, Sequence[JournalEntry]]) -> int: ...


class PostgresSink:
    """Upserts into PostgreSQL through ``connection``, a callable giving a context
    manager of an autocommit psycopg connection: ``cluster.connection`` (the first
    primary), ``lambda: cluster.connection(node)``, or ``psycopg.connect`` wrapped."""

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
        targets: Sequence[Target],
    ) -> None:
        self._connection = connection
        self.targets = {t.table: t for t in targets}

    def apply(self, rows: Mapping[str, Sequence[JournalEntry]]) -> int:
        """One transaction for the whole batch; rows inserted or updated."""
        applied = 0
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            for table, entries in rows.items():
                target = self.targets.get(table)
                if target is None:
                    raise JournalCorrupt(f"journal entry for table {table!r}, which has no Target")
                for start in range(0, len(entries), _ROWS_PER_STATEMENT):
                    chunk = entries[start : start + _ROWS_PER_STATEMENT]
                    cur.execute(target.upsert(len(chunk)), target.params(chunk))
                    applied += max(cur.rowcount, 0)
        return applied


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledged (journaled, durable) write: its stream ``id`` and ``version``."""

    id: str
    version: int


@dataclass(frozen=True, slots=True)
class FlushResult:
    """One batch: ``entries`` read from the journal, ``rows`` upserted after keeping
    the newest version per key, ``applied`` rows the database took, and
    ``skipped_not_newer`` rows it already had at that version or newer (replays)."""

    entries: int
    rows: int
    applied: int
    last_id: str | None

    @property
    def skipped_not_newer(self) -> int:
        """Rows the version guard skipped."""
        return self.rows - self.applied


@dataclass(frozen=True, slots=True)
class WriteBehindStats:
    """The journal as it is now and this process's counters since start.

    Journal: ``queue_depth`` unflushed entries, ``lag_s`` age of the oldest one
    (seconds), ``journal_bytes``; ``durability`` and ``loss_window_s`` as read from
    the server (0.0: no acknowledged write can be lost). Writer: ``writes`` acked,
    ``write_failures`` (not sent or outcome unknown), ``l1_refused`` acknowledged
    values L1 had no room to pin, ``pinned`` L1 pins not yet released. Flusher:
    ``batches``, ``flushed_entries``, ``flushed_rows``, ``applied``,
    ``skipped_not_newer``, ``flush_errors`` and the ``last_error``.
    """

    queue_depth: int
    lag_s: float
    journal_bytes: int
    durability: DurabilityMode
    loss_window_s: float
    writes: int
    write_failures: int
    l1_refused: int
    pinned: int
    batches: int
    flushed_entries: int
    flushed_rows: int
    applied: int
    skipped_not_newer: int
    flush_errors: int
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a flat dict (for JSON results)."""
        out = asdict(self)
        out["durability"] = self.durability.value
        return out


@dataclass
class _Counters:
    writes: int = 0
    write_failures: int = 0
    l1_refused: int = 0
    batches: int = 0
    flushed_entries: int = 0
    flushed_rows: int = 0
    applied: int = 0
    skipped: int = 0
    flush_errors: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class WriteBehind:
    """Write-behind over a :class:`~.journal.Journal`: writers call :meth:`write`;
    one process also flushes (:meth:`start` a thread, or :meth:`run_flusher`).

    ``targets`` (optional on a writer) validate rows at write time. ``sink`` is
    needed to flush. ``l1`` caches each written value pinned under
    ``l1_key(table, key)`` until it is flushed, with ``l1_ttl`` (seconds) once
    unpinned. ``batch_size`` entries per flush; an idle flusher polls every
    ``poll_s`` seconds. ``after_commit`` is called with each batch's result after
    its transaction committed and before the journal is trimmed (for tests of
    crashes in that gap; a real flusher leaves it None).
    """

    def __init__(
        self,
        journal: Journal,
        targets: Sequence[Target] = (),
        *,
        sink: Sink | None = None,
        l1: LocalCache | None = None,
        l1_key: Callable[[str, Any], str] = lambda table, key: f"{table}:{key!r}",
        l1_ttl: float = 60.0,
        batch_size: int = 1000,
        poll_s: float = 0.05,
        after_commit: Callable[[FlushResult], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size!r}")
        self.journal = journal
        self.targets = {t.table: t for t in targets}
        self.sink = sink
        self.l1 = l1
        self._l1_key = l1_key
        self.l1_ttl = l1_ttl
        self.batch_size = batch_size
        self.poll_s = poll_s
        self._after_commit = after_commit
        self._c = _Counters()
        self._dirty: deque[tuple[str, str]] = deque()  # (stream id, L1 key), in id order
        self._dirty_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def bind_l1(self, l1: LocalCache, l1_key: Callable[[str, Any], str]) -> None:
        """Cache written values in ``l1`` under ``l1_key(table, key)`` (what
        :class:`~.tiered.Cache` calls with its own L1 and key names). Refused when
        another L1 is already given, or once values are pinned (their release
        needs the names they were pinned under)."""
        if self.l1 is not None and self.l1 is not l1:
            raise ValueError("this WriteBehind already caches in another LocalCache")
        with self._dirty_lock:
            if self._dirty:
                raise CacheError("this WriteBehind has pinned values: bind its L1 first")
            self.l1 = l1
            self._l1_key = l1_key

    # -- writing -----------------------------------------------------------------

    def write(
        self, table: str, key: Any, row: Mapping[str, Any], *, version: int | None = None
    ) -> Ack:
        """Journal one write; durable when it returns (see :meth:`write_many`)."""
        return self.write_many([Append(table, key, row, version)])[0]

    def write_many(self, writes: Sequence[Append]) -> list[Ack]:
        """Journal ``writes`` in one round trip and one fsync; their acks, in order.

        Raises :class:`~.remote.CacheUnavailable` (nothing journaled) or
        :class:`~.journal.WriteOutcomeUnknown` (any of them may be journaled).
        Once acknowledged, each value is cached in L1, pinned until flushed; if L1
        cannot take it (pinned entries fill it) the key is dropped from L1 instead,
        so L1 never serves an older value than the acknowledged one (counted in
        ``l1_refused``; the write stays durable).
        """
        for w in writes:
            target = self.targets.get(w.table)
            if target is not None:
                target.check_row(w.row)
            elif self.targets:
                raise ValueError(f"no write-behind target for table {w.table!r}")
        try:
            ids = self.journal.append(writes)
        except BaseException:
            with self._c.lock:
                self._c.write_failures += len(writes)
            if self.l1 is not None:
                # The outcome may be unknown: L1 must not serve what may never flush.
                self.l1.delete_many(self._l1_key(w.table, w.key) for w in writes)
            raise
        acks = [
            Ack(sid, w.version if w.version is not None else version_of(sid))
            for w, sid in zip(writes, ids, strict=True)
        ]
        if self.l1 is not None:
            self._pin(writes, acks)
        with self._c.lock:
            self._c.writes += len(writes)
        return acks

    def _pin(self, writes: Sequence[Append], acks: Sequence[Ack]) -> None:
        # Each stored set adds one pin, and its (id, key) pair takes it away once the
        # flusher has passed the id, so pins and releases match one for one. A set
        # refused as older needs no pin: a newer value is cached (itself pinned if
        # it is an unflushed write).
        assert self.l1 is not None
        pinned: list[tuple[str, str]] = []
        refused = 0
        for w, ack in zip(writes, acks, strict=True):
            k = self._l1_key(w.table, w.key)
            try:
                if self.l1.set(
                    k, dict(w.row), ttl=self.l1_ttl, version=ack.version, pin=True
                ).stored:
                    pinned.append((ack.id, k))
            except CacheError:  # LocalCacheFull, CacheValueTooLarge
                self.l1.delete(k)
                refused += 1
        with self._dirty_lock:
            self._dirty.extend(pinned)
        if refused:
            log.warning(
                "write-behind: L1 refused %s acknowledged values; dropped their keys", refused
            )
            with self._c.lock:
                self._c.l1_refused += refused

    def release_flushed(self) -> int:
        """Unpin the L1 entries of writes the flusher has committed (those below the
        journal's watermark, wherever the flusher runs); how many were released."""
        if self.l1 is None:
            return 0
        return self._release_below(self.journal.watermark())

    def _release_below(self, watermark: str | None) -> int:
        assert self.l1 is not None
        mark = None if watermark is None else _id_key(watermark)
        released = 0
        with self._dirty_lock:
            while self._dirty and (mark is None or _id_key(self._dirty[0][0]) < mark):
                _, k = self._dirty.popleft()
                self.l1.unpin(k)
                released += 1
        return released

    # -- flushing ----------------------------------------------------------------

    def flush_once(self) -> FlushResult:
        """Flush the oldest batch: read, upsert newest-per-key in one transaction,
        then trim the journal. Safe to interrupt anywhere (a replay is skipped by the
        version guard)."""
        if self.sink is None:
            raise CacheError("this WriteBehind has no sink: give sink= to flush")
        with self._flush_lock:
            entries = self.journal.oldest(self.batch_size)
            if not entries:
                return FlushResult(0, 0, 0, None)
            rows = newest_per_key(entries)
            applied = self.sink.apply(rows)
            result = FlushResult(
                len(entries), sum(map(len, rows.values())), applied, entries[-1].id
            )
            if self._after_commit is not None:
                self._after_commit(result)
            self.journal.trim_through(entries[-1].id)
            with self._c.lock:
                self._c.batches += 1
                self._c.flushed_entries += result.entries
                self._c.flushed_rows += result.rows
                self._c.applied += result.applied
                self._c.skipped += result.skipped_not_newer
        if self.l1 is not None:
            self._release_below(_id_after(entries[-1].id))
        return result

    def drain(self, timeout_s: float = 60.0) -> int:
        """Flush until the journal is empty; entries flushed. Raises TimeoutError if
        writers keep it from emptying within ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while True:
            result = self.flush_once()
            total += result.entries
            if result.entries == 0:
                return total
            if time.monotonic() > deadline:
                raise TimeoutError(f"the write-behind journal did not empty in {timeout_s} s")

    def run_flusher(self, stop: threading.Event | None = None) -> None:
        """Flush until ``stop`` is set (or :meth:`stop` is called), polling when idle;
        errors (database or Redis down) are logged, counted and retried with backoff."""
        stop = stop or self._stop
        backoff = self.poll_s
        while not stop.is_set():
            try:
                result = self.flush_once()
            except (MlscaleError, psycopg.Error, redis.RedisError, OSError) as exc:
                with self._c.lock:
                    self._c.flush_errors += 1
                    self._c.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("write-behind flush failed, retrying in %.2f s: %s", backoff, exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = self.poll_s
            if result.entries < self.batch_size:
                stop.wait(self.poll_s)

    def start(self) -> WriteBehind:
        """Run the flusher in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise CacheError("this WriteBehind's flusher is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_flusher, name="mlscale-write-behind", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the flusher thread (after its current batch)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def close(self) -> None:
        """Stop the flusher and close the journal's connections; unflushed entries
        stay journaled for the next flusher."""
        self.stop()
        with contextlib.suppress(CacheError):
            self.journal.close()

    # -- introspection -----------------------------------------------------------

    def stats(self) -> WriteBehindStats:
        """The journal's depth, lag and bytes (one round trip) and the counters."""
        state = self.journal.state()
        with self._dirty_lock:
            pinned = len(self._dirty)
        c = self._c
        with c.lock:
            return WriteBehindStats(
                queue_depth=state.depth,
                lag_s=state.oldest_age_s,
                journal_bytes=state.bytes,
                durability=self.journal.durability.mode,
                loss_window_s=self.journal.durability.loss_window_s,
                writes=c.writes,
                write_failures=c.write_failures,
                l1_refused=c.l1_refused,
                pinned=pinned,
                batches=c.batches,
                flushed_entries=c.flushed_entries,
                flushed_rows=c.flushed_rows,
                applied=c.applied,
                skipped_not_newer=c.skipped,
                flush_errors=c.flush_errors,
                last_error=c.last_error,
            )


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _id_after(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"
