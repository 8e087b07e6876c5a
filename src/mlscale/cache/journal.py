"""The write-behind journal: a Redis Stream that holds every acknowledged write until
the flusher has committed it to the database.

Why a stream, and why this shape:

- **Durable before acknowledged.** A write is an ``XADD``; its reply is the
  acknowledgement. On a Redis with ``appendonly yes`` and ``appendfsync always``
  Redis fsyncs the append-only file before it replies, and it does so once per
  event-loop pass for every client served in it, so a pipeline of writes (or many
  concurrent writers) shares one fsync: group commit for free. The server's
  settings are read at start (``CONFIG GET``) and turned into a stated loss window
  (:class:`Durability`); with weaker settings the journal refuses to start unless
  the caller accepts the window.
- **Versions from the journal.** An entry's stream ID (``ms-seq``) increases
  strictly, over all keys, across restarts of Redis (Redis never issues an ID at or
  below the stream's last one, and its ms part follows the wall clock), so
  ``ms << 20 | seq`` is a version that increases per key without a counter to keep.
  A writer may supply its own versions instead (its own rows' versions, say); then
  it must make them increase per key.
- **The stream is the checkpoint.** The flusher reads the oldest entries
  (``XRANGE - +``), commits them, then trims the stream below the next ID
  (``XTRIM MINID``). So whatever is still in the stream is unflushed (or flushed and
  not yet trimmed: a replay the version guard makes harmless), the first remaining
  ID is the flushed watermark (every older write is in the database), and a new
  flusher after a crash simply starts from the beginning. No consumer-group state
  can be lost or left pending. One flusher per journal does the work; a second one
  is harmless (the version guard drops what the first applied) but wasted.
- **No retries.** The client sends each ``XADD`` once: a retry after a lost reply
  would journal the write twice under two versions. A write whose reply was lost
  raises :class:`WriteOutcomeUnknown`: it may or may not be journaled.

Errors::

    CacheError (mlscale.errors)
    ├── CacheUnavailable      Redis could not be reached before anything was sent
    │   └── WriteOutcomeUnknown  sent, but the reply was lost: journaled or not
    ├── JournalCorrupt        an entry the flusher cannot read (flushing stops)
    └── JournalNotDurable     the server's settings can lose acknowledged writes
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import CacheError
from .codec import CorruptEntry, decode, encode
from .remote import AnyRedis, CacheUnavailable, translated

__all__ = [
    "Append",
    "Durability",
    "DurabilityMode",
    "Journal",
    "JournalCorrupt",
    "JournalEntry",
    "JournalNotDurable",
    "JournalState",
    "WriteOutcomeUnknown",
    "next_id",
    "version_of",
]

SEQ_BITS = 20  # versions are ms << 20 | seq: 2**43 ms (year 2248) fits a bigint
_MAX_SEQ = (1 << SEQ_BITS) - 1

# Entry fields: table, key, row (both codec-encoded), and a writer-supplied version.
_TABLE, _KEY, _ROW, _VERSION = b"t", b"k", b"r", b"v"


class WriteOutcomeUnknown(CacheUnavailable):
    """The write was sent to the journal but its reply was lost (Redis died or the
    connection dropped): it may have been journaled, and then it will be flushed.
    Like ``CommitOutcomeUnknown`` of a database: not "failed"."""


class JournalCorrupt(CacheError):
    """A journal entry cannot be decoded or names a table the flusher does not know;
    flushing stops at it rather than drop a write."""


class JournalNotDurable(CacheError):
    """The journal's Redis can lose acknowledged writes on a crash (no append-only
    file, or not fsynced on every write) and the caller did not accept that."""


class DurabilityMode(enum.StrEnum):
    """How the journal's Redis persists an acknowledged write."""

    FSYNC_ALWAYS = "aof-fsync-always"  # fsynced before the reply: nothing lost
    FSYNC_EVERYSEC = "aof-fsync-everysec"  # fsynced about every second
    FSYNC_OS = "aof-fsync-os"  # written, fsynced whenever the kernel writes back
    NO_AOF = "no-aof"  # at best the last RDB snapshot survives
    UNKNOWN = "unknown"  # CONFIG GET is not allowed on this server


@dataclass(frozen=True, slots=True)
class Durability:
    """The journal's stated durability: ``loss_window_s`` is how many seconds of
    acknowledged writes a crash of the Redis server (or its machine) can lose: 0.0
    with ``appendfsync always``, 2.0 with ``everysec`` (Redis's own worst case when
    an fsync is slow), 30.0 with ``no`` (the Linux writeback default), ``math.inf``
    without an append-only file or when the settings cannot be read."""

    mode: DurabilityMode
    loss_window_s: float

    @property
    def durable(self) -> bool:
        """Whether no acknowledged write can be lost."""
        return self.loss_window_s == 0.0

    @classmethod
    def of(cls, appendonly: str | None, appendfsync: str | None) -> Durability:
        """The durability of a server with these ``CONFIG GET`` values (None: unread)."""
        if appendonly is None or appendfsync is None:
            return cls(DurabilityMode.UNKNOWN, math.inf)
        if appendonly.lower() != "yes":
            return cls(DurabilityMode.NO_AOF, math.inf)
        return {
            "always": cls(DurabilityMode.FSYNC_ALWAYS, 0.0),
            "everysec": cls(DurabilityMode.FSYNC_EVERYSEC, 2.0),
        }.get(appendfsync.lower(), cls(DurabilityMode.FSYNC_OS, 30.0))

    @classmethod
    def weakest(cls, found: Sequence[Durability]) -> Durability:
        """Of several nodes' (a Redis Cluster's), the one that can lose the most."""
        return max(found, key=lambda d: d.loss_window_s)


def _id_parts(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def version_of(entry_id: bytes | str) -> int:
    """The version a journal-assigned write gets: its stream ID ``ms-seq`` as
    ``ms << 20 | seq``, increasing with the ID. Raises ValueError for the (never
    seen) case of over a million entries in one millisecond."""
    ms, seq = _id_parts(entry_id)
    if seq > _MAX_SEQ:
        raise ValueError(f"stream ID {entry_id!r}: sequence over {_MAX_SEQ} in one ms")
    return ms << SEQ_BITS | seq


def next_id(entry_id: bytes | str) -> str:
    """The smallest stream ID above ``entry_id`` (XTRIM MINID keeps IDs >= it)."""
    ms, seq = _id_parts(entry_id)
    return f"{ms}-{seq + 1}" if seq < 2**64 - 1 else f"{ms + 1}-0"


@dataclass(frozen=True, slots=True)
class Append:
    """One write to journal: ``row`` maps the target's value columns to values;
    ``version`` is the writer's, or None to take the journal's (see module doc)."""

    table: str
    key: Any
    row: Mapping[str, Any]
    version: int | None = None

    def fields(self) -> dict[bytes, bytes]:
        """The stream entry's fields."""
        out = {
            _TABLE: self.table.encode(),
            _KEY: encode(self.key),
            _ROW: encode(dict(self.row)),
        }
        if self.version is not None:
            out[_VERSION] = str(self.version).encode()
        return out


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A journaled write as the flusher reads it; ``version`` is the writer's or the
    one derived from ``id``."""

    id: str
    table: str
    key: Any
    row: dict[str, Any]
    version: int

    @classmethod
    def parse(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> JournalEntry:
        """Decode a stream entry; :class:`JournalCorrupt` if it is not one of ours."""
        sid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        try:
            row = decode(fields[_ROW])
            if not isinstance(row, dict) or not all(isinstance(c, str) for c in row):
                raise CorruptEntry("the row is not a mapping of column names")
            given = fields.get(_VERSION)
            version = int(given) if given is not None else version_of(sid)
            return cls(sid, fields[_TABLE].decode(), decode(fields[_KEY]), row, version)
        except (KeyError, ValueError, UnicodeDecodeError, CorruptEntry) as exc:
            raise JournalCorrupt(f"journal entry {sid} cannot be read: {exc}") from exc


@dataclass(frozen=True, slots=True)
class JournalState:
    """What the journal holds now: ``depth`` unflushed entries (flushed ones not yet
    trimmed included), the ``oldest_id`` among them (the flushed watermark: every
    older write is in the database), its age on the Redis server's clock, and the
    stream's memory use in bytes (Redis's sampled estimate)."""

    depth: int
    oldest_id: str | None
    oldest_age_s: float
    bytes: int


class Journal:
    """One stream on one Redis (or Redis Cluster) holding write-behind writes.

    ``durability`` is read from the server now; unless ``accept_loss_window`` is
    true, a server that can lose acknowledged writes is refused with
    :class:`JournalNotDurable`. Prefer :meth:`connect`, which builds a client that
    never resends a write; a given ``client`` must not retry either.
    """

    def __init__(self, client: AnyRedis, stream: str, *, accept_loss_window: bool = False) -> None:
        self.client = client
        self.stream = stream
        self.durability = self.read_durability()
        if not self.durability.durable and not accept_loss_window:
            raise JournalNotDurable(
                f"the write-behind journal's Redis runs {self.durability.mode.value}: a crash "
                f"can lose up to {self.durability.loss_window_s} s of acknowledged writes; set "
                "'appendonly yes' and 'appendfsync always', or pass accept_loss_window=True"
            )

    @classmethod
    def connect(
        cls,
        stream: str,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        password: str | None = None,
        cluster: bool = False,
        timeout_s: float = 5.0,
        accept_loss_window: bool = False,
    ) -> Journal:
        """A journal over a new client that sends every command once (no retries);
        ``timeout_s`` (seconds) bounds connecting and each reply. On Redis Cluster
        give ``stream`` a hash tag only if other keys must share its slot."""
        opts: dict[str, Any] = {
            "host": host,
            "port": port,
            "password": password,
            "socket_connect_timeout": timeout_s,
            "socket_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 0),
        }
        with translated():
            client: AnyRedis = (
                redis.RedisCluster(**opts, cluster_error_retry_attempts=0)
                if cluster
                else redis.Redis(**opts)
            )
        return cls(client, stream, accept_loss_window=accept_loss_window)

    def read_durability(self) -> Durability:
        """The server's persistence settings as a :class:`Durability` (on Redis
        Cluster, the weakest primary's)."""
        try:
            with translated():
                if isinstance(self.client, redis.RedisCluster):
                    found = self.client.config_get(
                        "append*", target_nodes=redis.RedisCluster.PRIMARIES
                    )
                    replies: list[Any] = list(found.values()) if _per_node(found) else [found]
                else:
                    replies = [self.client.config_get("append*")]
        except CacheUnavailable:
            raise
        except CacheError:  # CONFIG renamed or forbidden (managed Redis)
            return Durability.of(None, None)
        return Durability.weakest(
            [
                Durability.of(_text(r.get("appendonly")), _text(r.get("appendfsync")))
                for r in replies
            ]
        )

    # -- writing -----------------------------------------------------------------

    def append(self, writes: Sequence[Append]) -> list[str]:
        """Journal ``writes`` in one round trip (one fsync on the server); their stream
        IDs, in order. Durable once this returns. Raises :class:`CacheUnavailable` if
        nothing was sent, :class:`WriteOutcomeUnknown` if the replies were lost (any
        of the writes may be journaled)."""
        if not writes:
            return []
        pipe = self.client.pipeline(transaction=False)
        for w in writes:
            pipe.xadd(self.stream, w.fields())  # type: ignore[arg-type]
        with _outcome_guard():
            replies = pipe.execute()
        return [r.decode() if isinstance(r, bytes) else str(r) for r in replies]

    # -- flushing ----------------------------------------------------------------

    def oldest(self, count: int) -> list[JournalEntry]:
        """The ``count`` oldest entries, decoded, oldest first."""
        with translated():
            raw: Any = self.client.xrange(self.stream, "-", "+", count=count)
        return [JournalEntry.parse(eid, fields) for eid, fields in raw]

    def trim_through(self, entry_id: str) -> int:
        """Drop every entry up to and including ``entry_id`` (they are committed);
        how many were dropped. Exact, not approximate: the first remaining ID is the
        flushed watermark."""
        with translated():
            return int(self.client.xtrim(self.stream, minid=next_id(entry_id), approximate=False))

    def state(self) -> JournalState:
        """Depth, watermark, lag and bytes, read in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xrange(self.stream, "-", "+", count=1)
        pipe.memory_usage(self.stream)
        pipe.time()
        with translated():
            depth, first, size, now = pipe.execute()
        if not first:
            return JournalState(int(depth), None, 0.0, int(size or 0))
        oldest = first[0][0]
        oldest = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
        now_ms = now[0] * 1000 + now[1] / 1000
        age = max(0.0, (now_ms - _id_parts(oldest)[0]) / 1000)
        return JournalState(int(depth), oldest, age, int(size or 0))

    def watermark(self) -> str | None:
        """The oldest unflushed entry's ID (every older write is in the database), or
        None when nothing is unflushed."""
        with translated():
            first = self.client.xrange(self.stream, "-", "+", count=1)
        if not first:
            return None
        eid = first[0][0]
        return eid.decode() if isinstance(eid, bytes) else str(eid)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _per_node(found: Mapping[Any, Any]) -> bool:
    return bool(found) and all(isinstance(v, Mapping) for v in found.values())


@contextlib.contextmanager
def _outcome_guard() -> Iterator[None]:
    """Translate redis errors of a write: a failure to connect sent nothing
    (CacheUnavailable); a connection lost or timed out after sending is
    :class:`WriteOutcomeUnknown`."""
    try:
        yield
    except CacheError:
        raise
    except redis.exceptions.BusyLoadingError as exc:  # refused while loading: not run
        raise CacheUnavailable(f"the write-behind journal's Redis is loading: {exc}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        if _before_send(exc):
            raise CacheUnavailable(
                f"the write-behind journal's Redis is unavailable: {exc}"
            ) from exc
        raise WriteOutcomeUnknown(
            f"the write-behind journal's Redis did not answer ({exc}): the write may or may "
            "not be journaled"
        ) from exc
    except redis.RedisError as exc:
        raise CacheError(f"the write-behind journal's Redis refused a write: {exc}") from exc


def _before_send(exc: BaseException) -> bool:
    # redis-py raises "Error N connecting to host:port" when the connection could not
    # be made, so nothing of the pipeline left this process.
    return "connecting to" in str(exc)
