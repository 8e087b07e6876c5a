"""L1 coherence across processes: invalidations broadcast over Redis pub/sub.

Every process keeps its own L1 (:class:`~mlscale.cache.local.LocalCache`). When one
process invalidates keys, it calls :meth:`L1Broadcast.publish`; a listener thread in
every other process receives the keys on the namespace's channel
(:meth:`KeyBuilder.invalidation_channel`) and deletes them from its L1.

Pub/sub loses messages while a subscriber is disconnected, so the safety rules are:

1. **Drop = flush and bypass.** The moment the subscription connection drops (an
   error, the server closing it, a heartbeat PING unanswered within
   ``heartbeat_timeout_s``, a server-sent unsubscribe), the L1 is flushed (pinned,
   not yet flushed write-behind entries excepted) and :attr:`L1Broadcast.l1_trusted`
   turns false: no L1 read may be served until the listener is subscribed again.
2. **Epochs.** Each process has a local epoch, raised at every drop and at every
   (re)subscription, where it also takes the namespace's shared counter
   (``INCR`` of :meth:`KeyBuilder.epoch_key`) into account, so it never goes back even
   if Redis lost the counter. The L1 floor (:meth:`LocalCache.retire_epochs_below`)
   follows it: an entry stamped with an older epoch is dropped and a late set
   stamped with one is ignored. So a value loaded before a gap (e.g. a Redis
   restart) cannot be served after it, even when its fill lands after the flush.
3. **Subscribe first, then bump, then trust.** On reconnect the listener confirms
   the subscription, then bumps the epoch and clears the L1, then sets
   ``l1_trusted``: every invalidation published after the L1 was cleared reaches it.

Protocol for the cache façade (``tiered.py``)::

    if bc.l1_trusted: serve local.get(key) if it hits
    epoch, since = bc.epoch, local.generation   # read BEFORE loading from L2 or the DB
    value = load()
    local.set(key, value, ttl=..., epoch=epoch, since=since)
    # ignored if a gap happened meanwhile, or if the key was invalidated meanwhile
    ...
    remote.invalidate(keys); local.delete_many(keys); bc.publish(keys)
    # and the listener's deletions go through the façade (on_invalidate)

:class:`~.tiered.Cache` and :class:`~.tiered_async.AsyncCache` do all of this when
given an L1Broadcast over their own L1 as ``broadcast``.

Why pub/sub rather than RESP3 client-side tracking: tracking's default mode only
tracks keys read *on the tracking connection* (our L2 reads go through a pool, and
on Redis Cluster every node needs its own redirect connection); its BCAST mode
reports every write under a prefix, so every L2 *fill* by any process would evict
the entry from every L1. An explicit message carries exactly the keys the writer
invalidated, works on RESP2 and any Redis, costs one channel per namespace, and
carries the send time, so the delivery latency is measured (:class:`BroadcastStats`).

On Redis Cluster the broadcast uses **sharded pub/sub** (``SPUBLISH``/``SSUBSCRIBE``,
Redis >= 7.0): the channel hashes to one slot, publisher and subscribers talk to that
slot's primary, and nothing else is loaded. A classic ``PUBLISH`` on a cluster is
relayed over the cluster bus to every node, so each invalidation would cost work
on all N nodes whoever listens. When the slot moves (failover, resharding) the
server ends the sharded subscription; that is handled as a drop (rule 1). A
standalone Redis uses classic ``PUBLISH``/``SUBSCRIBE`` (any version).

Staleness bound while connected: the delivery latency (sub-millisecond on one
host). A silent network partition is noticed after at most ``heartbeat_timeout_s``,
during which the L1 may serve entries invalidated meanwhile.

Errors: :meth:`L1Broadcast.publish` raises
:class:`~mlscale.cache.remote.CacheUnavailable` when Redis cannot be reached; the
listener never raises, it logs and retries with backoff.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
import redis
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff
from redis.retry import Retry

from ..errors import CacheError
from .keys import KeyBuilder
from .local import LocalCache
from .remote import AnyRedis, translated

__all__ = [
    "Beat",
    "BroadcastStats",
    "CoherenceState",
    "Invalidation",
    "L1Broadcast",
    "decode_invalidation",
    "encode_invalidation",
]

log = logging.getLogger(__name__)

_FORMAT = 1  # first field of every message; a message of another format is malformed
_MAX_KEYS_PER_MESSAGE = 1_000  # bounds one message (and the time a listener holds it)


# -- messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One broadcast message: ``keys`` invalidated by process ``origin`` (an opaque
    id), sent at ``sent_at_ns`` (wall clock, ns since the epoch: comparable across
    processes of one host, and across hosts up to their clock skew)."""

    origin: bytes
    sent_at_ns: int
    keys: tuple[str, ...]


def encode_invalidation(inv: Invalidation) -> bytes:
    """The message as bytes: msgpack ``[format, origin, sent_at_ns, [keys]]``."""
    return msgpack.packb([_FORMAT, inv.origin, inv.sent_at_ns, list(inv.keys)])  # type: ignore[no-any-return]


def decode_invalidation(data: object) -> Invalidation:
    """A message received on the channel; ``ValueError`` if it is not one of ours."""
    if not isinstance(data, bytes):
        raise ValueError(f"invalidation message is {type(data).__name__}, not bytes")
    try:
        fields = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"invalidation message is not msgpack: {exc}") from exc
    if (
        not isinstance(fields, list)
        or len(fields) != 4
        or fields[0] != _FORMAT
        or not isinstance(fields[1], bytes)
        or type(fields[2]) is not int
        or not isinstance(fields[3], list)
        or not all(isinstance(k, str) for k in fields[3])
    ):
        raise ValueError("invalidation message has an unknown layout")
    return Invalidation(fields[1], fields[2], tuple(fields[3]))


# -- the state machine (pure: no I/O, no clock of its own) ----------------------------


class Beat(enum.Enum):
    """What the heartbeat asks the listener to do now."""

    WAIT = "wait"  # the link was heard from recently enough
    PING = "ping"  # quiet for heartbeat_s: send a PING
    DEAD = "dead"  # nothing heard for heartbeat_timeout_s: treat as a drop


@dataclass
class CoherenceState:
    """Whether this process's L1 may be trusted, its epoch, and the heartbeat.

    Driven by the listener with events and the current time (seconds, monotonic);
    it decides, the listener acts. ``epoch`` only grows: it is the value fills are
    stamped with and the L1's floor.
    """

    heartbeat_s: float = 0.5
    heartbeat_timeout_s: float = 1.5
    epoch: int = 0
    trusted: bool = False
    shared_epoch: int | None = None  # the namespace counter as last bumped
    _last_heard: float = field(default=-math.inf, repr=False)
    _last_ping: float = field(default=-math.inf, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.heartbeat_timeout_s:
            raise ValueError(
                "need 0 < heartbeat_s < heartbeat_timeout_s, not "
                f"{self.heartbeat_s!r} and {self.heartbeat_timeout_s!r}"
            )

    def subscribed(self, shared_epoch: int, now: float) -> int:
        """The subscription is confirmed and the shared counter bumped to
        ``shared_epoch``: the new epoch (above the old one and the shared one), to
        which the L1 floor must be raised and the L1 cleared *before*
        :meth:`trust` is called."""
        self.epoch = max(self.epoch + 1, shared_epoch)
        self.shared_epoch = shared_epoch
        self._last_heard = now
        self._last_ping = -math.inf
        return self.epoch

    def trust(self) -> None:
        """The L1 was cleared after subscribing: serve it again."""
        self.trusted = True

    def dropped(self) -> tuple[bool, int]:
        """The subscription is gone (or was never made). Returns whether the L1 was
        trusted until now (so it must be flushed and the loss reported) and the new
        epoch, to which the L1 floor must be raised so a fill in flight is refused."""
        was = self.trusted
        self.trusted = False
        if was:
            self.epoch += 1
        return was, self.epoch

    def heard(self, now: float) -> None:
        """Anything arrived on the subscription (a message or a PONG)."""
        self._last_heard = now

    def beat(self, now: float) -> Beat:
        """The heartbeat decision at ``now``; a PING it asks for is taken as sent."""
        quiet = now - self._last_heard
        if quiet >= self.heartbeat_timeout_s:
            return Beat.DEAD
        if quiet >= self.heartbeat_s and now - self._last_ping >= self.heartbeat_s:
            self._last_ping = now
            return Beat.PING
        return Beat.WAIT


# -- stats ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BroadcastStats:
    """Counters of one :class:`L1Broadcast` since it was created.

    ``keys_dropped`` counts keys found in this L1 and deleted because of a received
    message; ``flushes`` counts L1 flushes (at every subscription, and after a
    drop or an unreadable message) and ``entries_flushed`` the entries they removed.
    ``reconnects`` counts subscriptions after the first. Latencies are from a
    message's send time (the publisher's wall clock) to its keys being deleted here,
    in milliseconds; None before the first message from another process.
    """

    sharded: bool
    l1_trusted: bool
    epoch: int
    shared_epoch: int | None
    messages_published: int
    keys_published: int
    publish_failures: int
    messages_received: int
    own_messages_ignored: int
    malformed_messages: int
    keys_received: int
    keys_dropped: int
    subscriptions: int
    reconnects: int
    drops: int
    flushes: int
    entries_flushed: int
    last_latency_ms: float | None
    max_latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """The counters as one flat dict (for JSON results)."""
        return asdict(self)


class _Counters:
    """Mutable counters behind a lock (the listener and publishing threads write)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages_published = self.keys_published = self.publish_failures = 0
        self.messages_received = self.own_messages_ignored = self.malformed_messages = 0
        self.keys_received = self.keys_dropped = 0
        self.subscriptions = self.drops = self.flushes = self.entries_flushed = 0
        self.last_latency_ms: float | None = None
        self.max_latency_ms: float | None = None


class _Dropped(Exception):
    """The subscription must be treated as lost (the reason is the message)."""


# -- I/O ------------------------------------------------------------------------------

# redis-py's Connection methods are untyped: the subscription connection is held as Any.
_Connection = Any
_IDENTITY = frozenset(
    {"host", "port", "path", "db", "username", "password", "credential_provider", "client_name"}
)
# Everything that means "the subscription is not (or no longer) working".
_LOST: tuple[type[BaseException], ...] = (redis.RedisError, OSError, CacheError, _Dropped)


class L1Broadcast:
    """Keeps ``local`` coherent with invalidations made by other processes.

    ``client``: a sync ``redis.Redis`` or ``redis.RedisCluster`` (used to publish,
    to bump the epoch, and for the address and credentials of the subscription,
    which gets a connection of its own with no silent reconnects). ``keys``: the
    namespace's :class:`KeyBuilder`. ``heartbeat_s``: PING the subscription after this
    many quiet seconds; ``heartbeat_timeout_s``: treat it as lost after this many
    with nothing heard. ``ignore_own``: skip messages this instance published (the
    publisher updates its own L1). ``reconnect_backoff``: redis-py backoff between
    subscription attempts (default 20 ms doubling to 1 s, jittered).

    ``on_invalidate``: what the listener calls with the keys another process
    invalidated; how many L1 entries it dropped. None (the default):
    ``local.invalidate_many``. A :class:`~.tiered.Cache` given this broadcast sets
    it to its ``forget_local``, which also voids the façade's fills in flight.

    Lifecycle: :meth:`start` (the L1 is untrusted until the first subscription),
    :meth:`stop` (untrusted again, L1 cleared). Not restartable.
    """

    def __init__(
        self,
        client: AnyRedis,
        keys: KeyBuilder,
        local: LocalCache,
        *,
        heartbeat_s: float = 0.5,
        heartbeat_timeout_s: float = 1.5,
        connect_timeout_s: float = 0.5,
        ignore_own: bool = True,
        reconnect_backoff: AbstractBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keys = keys
        self.local = local
        self.channel = keys.invalidation_channel()
        self.sharded = isinstance(client, redis.RedisCluster)
        self.ignore_own = ignore_own
        self.connect_timeout_s = connect_timeout_s
        self._state = CoherenceState(heartbeat_s, heartbeat_timeout_s)
        self._backoff = reconnect_backoff or ExponentialWithJitterBackoff(cap=1.0, base=0.02)
        self._clock = clock
        self._origin = os.urandom(8)
        self._counters = _Counters()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        # Polling period of the listener: bounds how late stop() and a heartbeat act;
        # messages are read as soon as they arrive, whatever it is.
        self._tick = min(0.05, heartbeat_s / 4)
        self.on_invalidate: Callable[[Sequence[str]], int] | None = None

    # -- public API ---------------------------------------------------------------

    @property
    def l1_trusted(self) -> bool:
        """Whether L1 reads may be served: subscribed, and the L1 cleared since."""
        return self._state.trusted

    @property
    def epoch(self) -> int:
        """The epoch to stamp a fill with (read it before loading the value)."""
        return self._state.epoch

    def start(self, *, wait_s: float = 2.0) -> bool:
        """Start the listener thread and wait up to ``wait_s`` seconds for the first
        subscription; whether the L1 is trusted on return (if not, the listener keeps
        trying in the background)."""
        if self._thread is not None:
            raise CacheError("this L1Broadcast was already started")
        self._thread = threading.Thread(
            target=self._run, name=f"mlscale-l1-broadcast-{self.keys.namespace}", daemon=True
        )
        self._thread.start()
        self._subscribed.wait(wait_s)
        return self.l1_trusted

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening; the L1 is untrusted and cleared afterwards (no invalidation
        reaches it any more)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._on_drop("stopped", warn=False)

    def publish(self, keys: Sequence[str]) -> None:
        """Tell every other process to drop ``keys`` from its L1. Call it after the
        invalidation in Redis (L2) completed, so a process that reloads on the message
        cannot read the old value from L2. Raises
        :class:`~mlscale.cache.remote.CacheUnavailable` when Redis is unreachable."""
        if isinstance(keys, str):
            raise TypeError("publish() takes a sequence of keys, not one str")
        keys = list(keys)
        for i in range(0, len(keys), _MAX_KEYS_PER_MESSAGE):
            chunk = tuple(keys[i : i + _MAX_KEYS_PER_MESSAGE])
            payload = encode_invalidation(Invalidation(self._origin, time.time_ns(), chunk))
            try:
                with translated():
                    if self.sharded:
                        self.client.spublish(self.channel, payload)
                    else:
                        self.client.publish(self.channel, payload)
            except CacheError:
                with self._counters.lock:
                    self._counters.publish_failures += 1
                raise
            with self._counters.lock:
                self._counters.messages_published += 1
                self._counters.keys_published += len(chunk)

    async def publish_async(self, keys: Sequence[str]) -> None:
        """:meth:`publish` for asyncio code: run in a worker thread, so the event
        loop is not blocked by the round trip. (The listener is a thread in either
        case; the L1 it updates is safe across threads and tasks.)"""
        await asyncio.to_thread(self.publish, list(keys))

    def stats(self) -> BroadcastStats:
        """A snapshot of the counters."""
        c = self._counters
        with c.lock:
            return BroadcastStats(
                sharded=self.sharded,
                l1_trusted=self._state.trusted,
                epoch=self._state.epoch,
                shared_epoch=self._state.shared_epoch,
                messages_published=c.messages_published,
                keys_published=c.keys_published,
                publish_failures=c.publish_failures,
                messages_received=c.messages_received,
                own_messages_ignored=c.own_messages_ignored,
                malformed_messages=c.malformed_messages,
                keys_received=c.keys_received,
                keys_dropped=c.keys_dropped,
                subscriptions=c.subscriptions,
                reconnects=max(0, c.subscriptions - 1),
                drops=c.drops,
                flushes=c.flushes,
                entries_flushed=c.entries_flushed,
                last_latency_ms=c.last_latency_ms,
                max_latency_ms=c.max_latency_ms,
            )

    # -- the listener ---------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            conn: _Connection | None = None
            try:
                conn = self._subscribe()
                with translated():
                    shared = int(self.client.incr(self.keys.epoch_key()))
                self._on_subscribed(shared)
                failures = 0
                self._listen(conn)
            except _LOST as exc:
                self._on_drop(str(exc) or type(exc).__name__, warn=True)
                self._refresh_slots()
            except BaseException:  # a bug: never leave the L1 trusted behind a dead thread
                self._on_drop("listener crashed", warn=True)
                log.exception("L1 broadcast listener for %s crashed", self.channel)
                raise
            finally:
                if conn is not None:
                    conn.disconnect()
            if not self._stopping.is_set():
                failures += 1
                self._stopping.wait(self._backoff.compute(failures))

    def _connection(self) -> _Connection:
        if isinstance(self.client, redis.RedisCluster):
            node = self.client.get_node_from_key(self.channel)  # type: ignore[no-untyped-call]
            pool = node.redis_connection.connection_pool
        else:
            pool = self.client.connection_pool
        # Where and who only (pool-level features such as maintenance notifications
        # need RESP3 and would fight the plain RESP2 reads below).
        opts = {
            k: v for k, v in pool.connection_kwargs.items() if k in _IDENTITY or k.startswith("ssl")
        }
        opts.update(
            # Bytes in, RESP2 pushes as plain replies, and no hidden reconnect: a
            # reconnect redis-py made for us would resubscribe behind our back and
            # hide the gap in which invalidations were lost.
            decode_responses=False,
            protocol=2,
            retry=Retry(ExponentialWithJitterBackoff(), 0),
            socket_connect_timeout=self.connect_timeout_s,
            socket_timeout=self._state.heartbeat_timeout_s,
            socket_keepalive=True,
        )
        conn: _Connection = pool.connection_class(**opts)
        return conn

    def _subscribe(self) -> _Connection:
        conn = self._connection()
        try:
            conn.connect()
            conn.send_command("SSUBSCRIBE" if self.sharded else "SUBSCRIBE", self.channel)
            reply = conn.read_response()
            if not (
                isinstance(reply, list) and reply and reply[0] in (b"subscribe", b"ssubscribe")
            ):
                raise _Dropped(f"unexpected reply to subscribe: {reply!r}")
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def _listen(self, conn: _Connection) -> None:
        state = self._state
        while not self._stopping.is_set():
            beat = state.beat(self._clock())
            if beat is Beat.DEAD:
                raise _Dropped(f"no reply from Redis for {state.heartbeat_timeout_s:.1f} s")
            if beat is Beat.PING:
                conn.send_command("PING")
            if conn.can_read(timeout=self._tick):
                self._handle(conn.read_response())

    def _handle(self, reply: Any) -> None:
        self._state.heard(self._clock())
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind in (b"message", b"smessage") and len(reply) == 3:
            self._received(reply[2])
        elif kind in (b"unsubscribe", b"sunsubscribe"):
            # Unasked: the server ended the subscription (a sharded channel's slot
            # moved to another node).
            raise _Dropped(f"Redis ended the subscription ({kind.decode()})")

    def _received(self, data: object) -> None:
        c = self._counters
        try:
            inv = decode_invalidation(data)
        except ValueError as exc:
            with c.lock:
                c.messages_received += 1
                c.malformed_messages += 1
            # An invalidation we cannot read is one we cannot apply: forget everything.
            log.warning("unreadable message on %s, L1 flushed: %s", self.channel, exc)
            self._flush()
            return
        if self.ignore_own and inv.origin == self._origin:
            with c.lock:
                c.messages_received += 1
                c.own_messages_ignored += 1
            return
        forget = self.on_invalidate
        dropped = forget(inv.keys) if forget is not None else self.local.invalidate_many(inv.keys)
        latency_ms = (time.time_ns() - inv.sent_at_ns) / 1e6
        with c.lock:
            c.messages_received += 1
            c.keys_received += len(inv.keys)
            c.keys_dropped += dropped
            c.last_latency_ms = latency_ms
            c.max_latency_ms = max(latency_ms, c.max_latency_ms or latency_ms)

    # -- state changes ----------------------------------------------------------------

    def _flush(self, retired: int = 0) -> None:
        n = retired + self.local.clear()
        with self._counters.lock:
            self._counters.flushes += 1
            self._counters.entries_flushed += n

    def _on_subscribed(self, shared_epoch: int) -> None:
        epoch = self._state.subscribed(shared_epoch, self._clock())
        # Floor first (a fill stamped before now is refused from here on), then clear
        # the unstamped rest, then trust: every message after the clear is applied.
        self._flush(self.local.retire_epochs_below(epoch))
        self._state.trust()
        with self._counters.lock:
            self._counters.subscriptions += 1
        self._subscribed.set()
        log.info("L1 broadcast subscribed to %s (epoch %d)", self.channel, epoch)

    def _on_drop(self, reason: str, *, warn: bool) -> None:
        was_trusted, epoch = self._state.dropped()
        if not was_trusted:
            log.debug("L1 broadcast not subscribed to %s: %s", self.channel, reason)
            return
        self._flush(self.local.retire_epochs_below(epoch))
        with self._counters.lock:
            self._counters.drops += 1
        if warn:
            log.warning(
                "L1 broadcast lost its subscription to %s (%s): L1 flushed and bypassed "
                "until resubscribed",
                self.channel,
                reason,
            )

    def _refresh_slots(self) -> None:
        # After a failover the channel's slot may have moved: ask the cluster again.
        if not isinstance(self.client, redis.RedisCluster):
            return
        try:
            self.client.nodes_manager.initialize()
        except Exception as exc:  # best effort: the next attempt tries again
            log.debug("could not refresh the cluster's slots: %s", exc)
