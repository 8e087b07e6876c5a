"""The L1 tier: an in-process cache bounded by entries and by bytes, TTL + LRU.

Every method is plain (no ``await``), O(1) per key, and takes one
``threading.Lock`` for a few dictionary operations only: sizing a value (which
may encode it), reading the clock and drawing jitter all happen before the lock
is taken, and nothing under the lock does I/O. So the same instance serves many
threads and many asyncio tasks; an event loop is never blocked for longer than
a dictionary update.

Values are stored as given, not copied: callers share them and must treat them as
immutable (arrays decoded by :mod:`mlscale.cache.codec` are read-only already).

Misses and cached ``None``: :meth:`LocalCache.get` returns a :class:`Hit` or
``None``. A cached ``None`` (negative caching: "the loader found nothing") is a
``Hit`` whose ``negative`` is true, so it cannot be confused with a miss;
``negative_ttl`` caps how long such an entry lives.

Pinning keeps write-behind data safe: a pinned ("dirty") entry is never evicted
for space and never expires, until :meth:`LocalCache.unpin` is called as often
as :meth:`LocalCache.pin` was. When pinned entries alone would overflow a bound,
a set is refused with :class:`LocalCacheFull` instead of evicting dirty data.
Explicit deletion is not eviction: :meth:`LocalCache.delete` removes a pinned
entry too (the caller said the entry is wrong), while :meth:`LocalCache.clear`
keeps pinned entries unless told otherwise.

Pinned entries are kept apart from the LRU list, so eviction pops the least
recently used unpinned entry in O(1) however many entries are pinned.

Epochs close the race between a fill and a lost invalidation: a caller may stamp a
set with the epoch it read *before* loading (``set(..., epoch=e)``); once
:meth:`LocalCache.retire_epochs_below` has raised the floor past ``e`` (the
cross-process broadcast does so when its Redis subscription dropped, see
:mod:`.broadcast`), such a set is ignored and entries stamped below the floor are
gone, so a value loaded before the gap can never be served after it. Unstamped
entries are not affected (the broadcast clears them); pinned ones are exempt, as
from :meth:`LocalCache.clear`.

The same race exists per key: a fill reads the old value from L2, another process
invalidates the key, the broadcast deletes it here, and only then the fill lands.
:meth:`LocalCache.invalidate_many` (what the broadcast calls) marks each key with a
new generation; a set given ``since=`` the :attr:`LocalCache.generation` read before
loading is ignored if the key was invalidated since (outcome ``INVALIDATED``). The
marks are bounded (``max_marks``, oldest forgotten first); once one is forgotten,
every set that began before it is refused, which is safe, only less efficient.
"""

from __future__ import annotations

import enum
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import CacheError, CacheValueTooLarge
from .codec import encode

__all__ = [
    "EvictionReason",
    "Hit",
    "LocalCache",
    "LocalCacheFull",
    "LocalStats",
    "LookupTally",
    "SetOutcome",
    "SetResult",
]


class LocalCacheFull(CacheError):
    """A set was refused because pinned (not yet flushed) entries alone would exceed
    the L1 cache's bounds; nothing was evicted and the value was not cached."""


class EvictionReason(enum.StrEnum):
    """Why an entry left the cache without being deleted."""

    EXPIRED = "expired"  # its TTL had passed
    ENTRIES = "entries"  # least recently used, removed to stay within max_entries
    BYTES = "bytes"  # least recently used, removed to stay within max_bytes


class SetOutcome(enum.StrEnum):
    """What a :meth:`LocalCache.set` did."""

    STORED = "stored"
    OLDER_VERSION = "older_version"  # ignored: the cached entry has a newer version
    OLDER_EPOCH = "older_epoch"  # ignored: stamped with an epoch the cache has retired
    INVALIDATED = "invalidated"  # ignored: the key was invalidated after the load began


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached entry as :meth:`LocalCache.get` found it.

    ``value`` is ``None`` for a negative entry (see ``negative``). ``version`` is the
    version it was set with, if any. ``expires_at`` is on the cache's clock (seconds;
    ``math.inf`` for no expiry); a pinned entry is served past it. ``size`` is the
    number of bytes the entry counts against ``max_bytes``.
    """

    value: Any
    version: int | None
    expires_at: float
    size: int

    @property
    def negative(self) -> bool:
        """Whether this is a cached "nothing" (the value None), not a value."""
        return self.value is None


@dataclass(frozen=True, slots=True)
class SetResult:
    """The result of :meth:`LocalCache.set`.

    ``version`` is the version cached under the key after the call (the newer one
    when the set was ignored); ``evicted`` counts entries evicted to make room.
    """

    outcome: SetOutcome
    version: int | None
    evicted: int = 0

    @property
    def stored(self) -> bool:
        """Whether the value is now cached."""
        return self.outcome is SetOutcome.STORED


@dataclass(frozen=True, slots=True)
class LocalStats:
    """Counters of one :class:`LocalCache` since it was created.

    ``hits`` counts lookups served from the cache, negative hits included;
    ``negative_hits`` is the part of them that served a cached None; every lookup
    is either a hit or a miss. ``entries`` and ``bytes`` include the pinned ones.
    """

    hits: int
    misses: int
    negative_hits: int
    evicted_expired: int
    evicted_entries: int
    evicted_bytes: int
    sets: int
    sets_ignored_older: int
    sets_refused: int
    sets_ignored_epoch: int
    sets_ignored_invalidated: int
    deletes: int
    entries: int
    bytes: int
    pinned_entries: int
    pinned_bytes: int
    max_entries: int
    max_bytes: int

    @property
    def lookups(self) -> int:
        """Keys looked up: ``hits + misses``."""
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        """``hits / lookups``, 0.0 before the first lookup."""
        return self.hits / self.lookups if self.lookups else 0.0

    @property
    def evictions(self) -> int:
        """Entries evicted for any reason."""
        return self.evicted_expired + self.evicted_entries + self.evicted_bytes

    def to_dict(self) -> dict[str, int | float]:
        """The counters and the derived ratios as one flat dict (for JSON results)."""
        out: dict[str, int | float] = asdict(self)
        out.update(lookups=self.lookups, hit_ratio=self.hit_ratio, evictions=self.evictions)
        return out


class LookupTally:
    """Hits and misses of one caller's lookups (:meth:`LocalCache.value`), counted
    under the cache's lock: exact across threads at no extra lock. A façade sharing
    an L1 with others keeps its own tally, apart from the cache's :class:`LocalStats`."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


class _Entry:
    __slots__ = ("epoch", "expires_at", "pins", "size", "value", "version")

    def __init__(
        self,
        value: Any,
        version: int | None,
        expires_at: float,
        size: int,
        pins: int,
        epoch: int | None = None,
    ) -> None:
        self.value = value
        self.version = version
        self.expires_at = expires_at
        self.size = size
        self.pins = pins
        self.epoch = epoch


class LocalCache:
    """An in-process cache: TTL per entry, LRU eviction, bounded by entries and bytes.

    ``max_entries`` and ``max_bytes`` bound the cache; an entry's bytes are the size
    its caller gives, or else the length of its :func:`~mlscale.cache.codec.encode`
    encoding (bookkeeping overhead, about 200 bytes per entry, is bounded through
    ``max_entries`` instead). ``jitter`` (a fraction in [0, 1)) shortens each TTL by a
    random share of up to that fraction, so entries filled together do not all expire
    together; it never lengthens a TTL, which callers rely on as a staleness bound.
    ``negative_ttl`` (seconds) caps the TTL of cached ``None`` values. ``clock``
    (seconds, monotonic) and ``rng`` (uniform in [0, 1)) are injectable for tests.
    ``max_marks`` bounds the keys remembered by :meth:`invalidate_many` (about 100
    bytes each) to refuse fills that began before their invalidation.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        jitter: float = 0.0,
        negative_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        max_marks: int = 100_000,
    ) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError(f"max_entries must be an int >= 1, not {max_entries!r}")
        if type(max_bytes) is not int or max_bytes < 1:
            raise ValueError(f"max_bytes must be an int >= 1, not {max_bytes!r}")
        _check_jitter(jitter)
        if negative_ttl is not None:
            _check_ttl(negative_ttl, "negative_ttl")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.jitter = jitter
        self.negative_ttl = negative_ttl
        if type(max_marks) is not int or max_marks < 1:
            raise ValueError(f"max_marks must be an int >= 1, not {max_marks!r}")
        self.max_marks = max_marks
        self._clock = clock
        self._random = rng
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, _Entry] = OrderedDict()  # unpinned, oldest use first
        self._pinned: dict[str, _Entry] = {}
        self._bytes = 0  # all entries, pinned included
        self._pinned_bytes = 0
        self._hits = self._misses = self._negative_hits = 0
        self._evicted = dict.fromkeys(EvictionReason, 0)
        self._sets = self._sets_ignored = self._sets_refused = self._deletes = 0
        self._epoch_floor = 0
        self._sets_ignored_epoch = 0
        self._generation = 0
        self._marks: OrderedDict[str, int] = OrderedDict()  # key -> generation, oldest first
        self._marks_floor = 0  # generation of the newest mark forgotten
        self._sets_ignored_invalidated = 0

    # -- reads -------------------------------------------------------------------

    def get(self, key: str) -> Hit | None:
        """The live entry under ``key`` as a :class:`Hit` (marked most recently used),
        or ``None`` on a miss. A cached ``None`` value is a Hit, not a miss."""
        now = self._clock()
        with self._lock:
            return self._lookup(key, now)

    def value(self, key: str, missing: Any, tally: LookupTally | None = None) -> Any:
        """The live value under ``key`` (marked most recently used; None for a cached
        None), or ``missing``: :meth:`get` without building a :class:`Hit`, for hot
        paths. ``tally``: also counted there (under the same lock)."""
        now = self._clock()
        lock = self._lock
        # acquire/try/finally: half the cost of a `with` block on CPython 3.11, and
        # this is most of an L1 hit.
        lock.acquire()
        try:
            entry = self._lru.get(key)
            if entry is not None and entry.expires_at > now:
                # The common case, inlined: a live unpinned entry.
                self._lru.move_to_end(key)
                self._hits += 1
                value = entry.value
                if value is None:
                    self._negative_hits += 1
                if tally is not None:
                    tally.hits += 1
                return value
            hit = self._lookup(key, now)  # expired, pinned or absent
            if tally is not None:
                if hit is None:
                    tally.misses += 1
                else:
                    tally.hits += 1
            return missing if hit is None else hit.value
        finally:
            lock.release()

    def get_many(self, keys: Iterable[str]) -> dict[str, Hit]:
        """The hits among ``keys`` (misses are absent), under one lock acquisition."""
        now = self._clock()
        out: dict[str, Hit] = {}
        with self._lock:
            for key in keys:
                hit = self._lookup(key, now)
                if hit is not None:
                    out[key] = hit
        return out

    def _lookup(self, key: str, now: float) -> Hit | None:
        entry = self._lru.get(key)
        if entry is not None:
            if entry.expires_at <= now:
                self._drop_unpinned(key, entry, EvictionReason.EXPIRED)
                entry = None
            else:
                self._lru.move_to_end(key)
        else:
            entry = self._pinned.get(key)
        if entry is None:
            self._misses += 1
            return None
        self._hits += 1
        if entry.value is None:
            self._negative_hits += 1
        return Hit(entry.value, entry.version, entry.expires_at, entry.size)

    # -- writes ------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float,
        version: int | None = None,
        size: int | None = None,
        jitter: float | None = None,
        pin: bool = False,
        epoch: int | None = None,
        since: int | None = None,
    ) -> SetResult:
        """Cache ``value`` under ``key`` for ``ttl`` seconds (``math.inf``: no expiry).

        Version guard: when the live entry has a version, a set without one or with
        an older one is ignored (outcome ``OLDER_VERSION``); an equal version
        replaces it (a refresh). ``size`` (bytes) defaults to the encoded length;
        ``jitter`` overrides the cache's fraction for this entry; ``pin=True`` stores
        and pins in one step, so the entry cannot be evicted in between. ``epoch``
        stamps the entry with the epoch the caller read before loading the value: an
        unpinned set stamped below the floor of :meth:`retire_epochs_below` is ignored
        (outcome ``OLDER_EPOCH``). ``since``: the :attr:`generation` the caller read
        before loading; the set is ignored if :meth:`invalidate_many` named the key
        after that (outcome ``INVALIDATED``).

        Raises :class:`~mlscale.errors.CacheValueTooLarge` if ``size`` alone exceeds
        ``max_bytes``, and :class:`LocalCacheFull` if pinned entries leave no room. In
        both cases an older unpinned entry under ``key`` is dropped, so it cannot be
        served in place of the newer value; an older pinned entry is kept.
        """
        _check_ttl(ttl, "ttl")
        if version is not None and type(version) is not int:
            raise ValueError(f"version must be an int or None, not {version!r}")
        if size is None:
            size = len(encode(value))
        elif type(size) is not int or size < 0:
            raise ValueError(f"size must be an int >= 0 (bytes), not {size!r}")
        if value is None and self.negative_ttl is not None:
            ttl = min(ttl, self.negative_ttl)
        share = self.jitter if jitter is None else _check_jitter(jitter)
        if share and math.isfinite(ttl):
            ttl *= 1.0 - share * self._random()
        if epoch is not None and type(epoch) is not int:
            raise ValueError(f"epoch must be an int or None, not {epoch!r}")
        now = self._clock()
        with self._lock:
            if epoch is not None and epoch < self._epoch_floor and not pin:
                # Loaded before a gap in which invalidations may have been lost.
                self._sets_ignored_epoch += 1
                return SetResult(SetOutcome.OLDER_EPOCH, None)
            if since is not None and not pin and self._invalidated_since(key, since):
                self._sets_ignored_invalidated += 1
                return SetResult(SetOutcome.INVALIDATED, None)
            return self._store(key, value, now + ttl, version, size, pin, now, epoch)

    def _store(
        self,
        key: str,
        value: Any,
        expires_at: float,
        version: int | None,
        size: int,
        pin: bool,
        now: float,
        epoch: int | None,
    ) -> SetResult:
        old = self._lru.get(key)
        if old is not None and old.expires_at <= now:
            self._drop_unpinned(key, old, EvictionReason.EXPIRED)
            old = None
        if old is None:
            old = self._pinned.get(key)
        if (
            old is not None
            and old.version is not None
            and (version is None or version < old.version)
        ):
            self._sets_ignored += 1
            return SetResult(SetOutcome.OLDER_VERSION, old.version)
        old_pinned = old is not None and old.pins > 0
        if size > self.max_bytes:
            self._refuse(key, old)
            raise CacheValueTooLarge(
                f"value for {key!r} is {size:,} bytes, over the L1 cache's "
                f"max_bytes of {self.max_bytes:,}"
            )
        other_pinned = len(self._pinned) - old_pinned
        old_pinned_bytes = old.size if old is not None and old_pinned else 0
        other_pinned_bytes = self._pinned_bytes - old_pinned_bytes
        if other_pinned + 1 > self.max_entries or other_pinned_bytes + size > self.max_bytes:
            self._refuse(key, old)
            raise LocalCacheFull(
                f"L1 cache cannot take {key!r} ({size:,} bytes): {other_pinned:,} pinned "
                f"entries hold {other_pinned_bytes:,} bytes of max {self.max_bytes:,} bytes "
                f"and max {self.max_entries:,} entries, and pinned entries are never evicted"
            )
        pins = (old.pins if old is not None else 0) + pin
        if old is not None:
            self._remove(key, old)
        entry = _Entry(value, version, expires_at, size, pins, epoch)
        if pins:
            self._pinned[key] = entry
            self._pinned_bytes += size
        else:
            self._lru[key] = entry
        self._bytes += size
        self._sets += 1
        evicted = self._evict(now)
        return SetResult(SetOutcome.STORED, version, evicted)

    def _refuse(self, key: str, old: _Entry | None) -> None:
        self._sets_refused += 1
        if old is not None and old.pins == 0:
            self._remove(key, old)

    def _evict(self, now: float) -> int:
        # Feasibility was checked before storing: unpinned entries other than the new
        # one (which sits at the most-recent end) suffice to get back within bounds.
        evicted = 0
        while len(self._lru) + len(self._pinned) > self.max_entries or self._bytes > self.max_bytes:
            key, entry = next(iter(self._lru.items()))
            if entry.expires_at <= now:
                reason = EvictionReason.EXPIRED
            elif self._bytes > self.max_bytes:
                reason = EvictionReason.BYTES
            else:
                reason = EvictionReason.ENTRIES
            self._drop_unpinned(key, entry, reason)
            evicted += 1
        return evicted

    def _drop_unpinned(self, key: str, entry: _Entry, reason: EvictionReason) -> None:
        del self._lru[key]
        self._bytes -= entry.size
        self._evicted[reason] += 1

    def _remove(self, key: str, entry: _Entry) -> None:
        if entry.pins:
            del self._pinned[key]
            self._pinned_bytes -= entry.size
        else:
            del self._lru[key]
        self._bytes -= entry.size

    def delete(self, key: str) -> bool:
        """Remove the entry under ``key``, pinned or not (its pins go with it);
        whether there was one."""
        with self._lock:
            return self._delete(key)

    @property
    def generation(self) -> int:
        """The count of :meth:`invalidate_many` calls: read it before loading a value,
        pass it to ``set(..., since=)``."""
        return self._generation

    def invalidate_many(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (see :meth:`delete`) and mark them, so a set whose load began
        before this call is ignored; how many entries there were."""
        with self._lock:
            self._generation += 1
            n = 0
            for key in keys:
                n += self._delete(key)
                self._marks[key] = self._generation
                self._marks.move_to_end(key)
            while len(self._marks) > self.max_marks:
                _, gen = self._marks.popitem(last=False)
                self._marks_floor = max(self._marks_floor, gen)
            return n

    def _invalidated_since(self, key: str, since: int) -> bool:
        return since < self._marks_floor or self._marks.get(key, 0) > since

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the entries under ``keys`` (see :meth:`delete`); how many there were."""
        with self._lock:
            return sum(self._delete(key) for key in keys)

    def _delete(self, key: str) -> bool:
        entry = self._lru.get(key) or self._pinned.get(key)
        if entry is None:
            return False
        self._remove(key, entry)
        self._deletes += 1
        return True

    def clear(self, *, keep_pinned: bool = True) -> int:
        """Drop every entry, except pinned ones unless ``keep_pinned=False``; how many
        were dropped. Called when the connection to Redis drops, since invalidations
        sent meanwhile are lost; pinned entries are this process's own unflushed
        writes, which no invalidation could have made stale."""
        with self._lock:
            dropped = len(self._lru)
            self._lru.clear()
            self._bytes = self._pinned_bytes
            if not keep_pinned:
                dropped += len(self._pinned)
                self._pinned.clear()
                self._bytes = self._pinned_bytes = 0
            return dropped

    def retire_epochs_below(self, epoch: int) -> int:
        """Raise the epoch floor to ``epoch`` (it never goes down): drop the unpinned
        entries stamped with an older epoch and ignore later sets stamped with one.
        How many entries were dropped. Atomic with respect to every get and set."""
        if type(epoch) is not int:
            raise ValueError(f"epoch must be an int, not {epoch!r}")
        with self._lock:
            if epoch <= self._epoch_floor:
                return 0
            self._epoch_floor = epoch
            old = [k for k, e in self._lru.items() if e.epoch is not None and e.epoch < epoch]
            for key in old:
                self._remove(key, self._lru[key])
            return len(old)

    @property
    def epoch_floor(self) -> int:
        """The lowest epoch a stamped set may carry (0 until first raised)."""
        return self._epoch_floor

    # -- pins --------------------------------------------------------------------

    def pin(self, key: str) -> bool:
        """Pin the live entry under ``key`` (pins nest); False if there is none.
        A pinned entry is never evicted and never expires. Prefer ``set(..., pin=True)``
        for a new entry, which cannot lose a race with eviction."""
        now = self._clock()
        with self._lock:
            entry = self._pinned.get(key)
            if entry is not None:
                entry.pins += 1
                return True
            entry = self._lru.get(key)
            if entry is None:
                return False
            if entry.expires_at <= now:
                self._drop_unpinned(key, entry, EvictionReason.EXPIRED)
                return False
            del self._lru[key]
            entry.pins = 1
            self._pinned[key] = entry
            self._pinned_bytes += entry.size
            return True

    def unpin(self, key: str) -> bool:
        """Undo one :meth:`pin`; after the last one the entry is evictable again (as
        the most recently used) and expires as set. False if ``key`` is not pinned."""
        with self._lock:
            entry = self._pinned.get(key)
            if entry is None:
                return False
            entry.pins -= 1
            if entry.pins == 0:
                del self._pinned[key]
                self._pinned_bytes -= entry.size
                self._lru[key] = entry
            return True

    # -- introspection -----------------------------------------------------------

    def __len__(self) -> int:
        """Entries held, pinned included (expired ones not yet noticed too)."""
        with self._lock:
            return len(self._lru) + len(self._pinned)

    def stats(self) -> LocalStats:
        """A consistent snapshot of the counters (taken under the lock)."""
        with self._lock:
            return LocalStats(
                hits=self._hits,
                misses=self._misses,
                negative_hits=self._negative_hits,
                evicted_expired=self._evicted[EvictionReason.EXPIRED],
                evicted_entries=self._evicted[EvictionReason.ENTRIES],
                evicted_bytes=self._evicted[EvictionReason.BYTES],
                sets=self._sets,
                sets_ignored_older=self._sets_ignored,
                sets_refused=self._sets_refused,
                sets_ignored_epoch=self._sets_ignored_epoch,
                sets_ignored_invalidated=self._sets_ignored_invalidated,
                deletes=self._deletes,
                entries=len(self._lru) + len(self._pinned),
                bytes=self._bytes,
                pinned_entries=len(self._pinned),
                pinned_bytes=self._pinned_bytes,
                max_entries=self.max_entries,
                max_bytes=self.max_bytes,
            )


def _check_ttl(ttl: float, name: str) -> float:
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not ttl > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, not {ttl!r}")
    return ttl


def _check_jitter(jitter: float) -> float:
    if not isinstance(jitter, int | float) or isinstance(jitter, bool) or not 0 <= jitter < 1:
        raise ValueError(f"jitter must be a fraction in [0, 1), not {jitter!r}")
    return jitter
