"""What the cache façade decides, apart from I/O: shared by :class:`~.tiered.Cache`
(sync) and :class:`~.tiered_async.AsyncCache` (asyncio), which only send.

Here: the tunables (:class:`CachePolicy`), typed results (:class:`CacheStats`,
:class:`WriteResult`, :class:`Versioned`), the broadcast protocols, and
:class:`CacheCore`: key names, encoding and the reading of L2 replies (a corrupt
entry is a counted miss), the L1 fills and their guard, the counters, the
rate-limited warning of an unavailable Redis, the lease-wait schedule, calling a
loader (with the causal token when it takes one), the keys of a decorated call,
and the invalidations a write declares for the after-commit hook.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import inspect
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ..core.causal import CausalToken
from ..engine.hooks import Committed
from .codec import CorruptEntry, decode, encode
from .keys import KeyBuilder, KeyPart
from .local import LocalCache, LocalStats, LookupTally
from .remote import CacheUnavailable, EntryState, Got, LeaseGet
from .remote import RemoteSettings as _RemoteSettings

if TYPE_CHECKING:
    from .writebehind import WriteBehindStats

__all__ = [
    "AsyncBroadcaster",
    "AsyncCoherentBroadcaster",
    "Broadcaster",
    "CacheCore",
    "CachePolicy",
    "CacheStats",
    "CallKeys",
    "CoherentBroadcaster",
    "Declared",
    "Key",
    "L1Coherence",
    "LeaseWait",
    "OnUnavailable",
    "Stamp",
    "TierStats",
    "Versioned",
    "WriteResult",
    "coherence_of",
    "write_behind_key",
]

log = logging.getLogger("mlscale.cache")

Key = KeyPart | tuple[KeyPart, ...]
"""A cache key as callers give it: one part (``42``, ``"user:42"``) or a tuple of
parts (``("user", 42)``). The façade turns it into a namespaced Redis name."""

FILL_VERSION = 0
"""The version of a value a loader returned without :class:`Versioned`."""


class OnUnavailable(enum.StrEnum):
    """What a call does when Redis cannot be reached."""

    FALLBACK = "fallback"  # serve from the loader (database); log a warning, count it
    RAISE = "raise"  # raise CacheUnavailable (a CacheError)


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    """Tunables of the façade; durations in seconds.

    ``ttl_s``: life of a value in L2 (and L1, capped by ``local_ttl_s``).
    ``negative_ttl_s``: life of a cached ``None`` (the loader found nothing).
    ``local_ttl_s``: L1 entries live at most this long, which bounds how long a
    process can serve a value whose invalidation message it missed. ``jitter``: each
    TTL is shortened by a random share up to this fraction, so keys filled together
    do not expire together. ``lease_wait_s``: how long a caller waits for another
    caller's fill (polling L2 with backoff from ``poll_first_s`` doubling up to
    ``poll_max_s``) before loading itself. ``on_unavailable``: see
    :class:`OnUnavailable`. ``warn_every_s``: at most one "Redis unavailable" warning
    per this interval (the rest are counted). ``max_value_bytes``: the largest
    encoded value cached; over it, CacheValueTooLarge and nothing is stored.
    ``key_names``: how many keys' full names are remembered (least recently used
    forgotten first, 0: none), so a hot key's name is not rebuilt and escaped on
    every call (about 1 µs each, as much as the rest of an L1 hit); an entry costs
    about 200 bytes.
    """

    ttl_s: float = 5 * 60.0
    negative_ttl_s: float = 30.0
    local_ttl_s: float = 60.0
    jitter: float = 0.1
    lease_wait_s: float = 3.0
    poll_first_s: float = 0.002
    poll_max_s: float = 0.05
    on_unavailable: OnUnavailable = OnUnavailable.FALLBACK
    warn_every_s: float = 10.0
    max_value_bytes: int = 8 * 1024 * 1024
    key_names: int = 16_384

    def __post_init__(self) -> None:
        for name in ("ttl_s", "negative_ttl_s", "local_ttl_s", "poll_first_s", "poll_max_s"):
            _positive(name, getattr(self, name))
        if not isinstance(self.lease_wait_s, int | float) or self.lease_wait_s < 0:
            raise ValueError(f"lease_wait_s must be >= 0 seconds, not {self.lease_wait_s!r}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be a fraction in [0, 1), not {self.jitter!r}")
        if type(self.max_value_bytes) is not int or self.max_value_bytes < 1:
            raise ValueError(f"max_value_bytes must be an int >= 1, not {self.max_value_bytes!r}")
        if type(self.key_names) is not int or self.key_names < 0:
            raise ValueError(f"key_names must be an int >= 0, not {self.key_names!r}")
        object.__setattr__(self, "on_unavailable", OnUnavailable(self.on_unavailable))


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class Versioned:
    """What a loader returns to give its value a version (the row's version column,
    an updated-at in microseconds, ...). A fill is refused when a newer version is
    or was cached; without Versioned a fill has version 0, so keys also written by
    :meth:`write_through` with versions should be loaded with Versioned too."""

    value: Any
    version: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The result of ``write_through``: ``result`` is what ``write`` returned;
    ``cached`` whether the value is now cached (False when a newer version is or
    was cached, or Redis was unavailable under the fallback policy)."""

    result: Any
    cached: bool


@runtime_checkable
class Broadcaster(Protocol):
    """Tells other processes to drop keys from their L1 (e.g. Redis pub/sub)."""

    def publish(self, keys: Sequence[str]) -> None:
        """Announce that ``keys`` (full key names) changed."""


@runtime_checkable
class AsyncBroadcaster(Protocol):
    """:class:`Broadcaster` with an awaitable ``publish``."""

    def publish(self, keys: Sequence[str]) -> Awaitable[None]:
        """Announce that ``keys`` (full key names) changed."""


@runtime_checkable
class L1Coherence(Protocol):
    """Whether this process's L1 may be served, and the epoch its fills are stamped
    with (:class:`~.broadcast.L1Broadcast`: see its module docstring). A façade
    given a broadcast offering these serves L1 only while ``l1_trusted``, and
    stamps each fill with ``epoch`` and ``LocalCache.generation`` as read before
    the value was loaded, so a fill that raced a lost subscription or another
    process's invalidation is refused."""

    @property
    def l1_trusted(self) -> bool:
        """Whether L1 reads may be served now."""

    @property
    def epoch(self) -> int:
        """The epoch to stamp a fill with (read before loading)."""


@runtime_checkable
class CoherentBroadcaster(Broadcaster, L1Coherence, Protocol):
    """A :class:`Broadcaster` that also says when L1 may be trusted. If it has an
    ``on_invalidate`` attribute, :class:`~.tiered.Cache` sets it to its
    ``forget_local``, so the invalidations it hears also void the façade's fills in
    flight."""


@runtime_checkable
class AsyncCoherentBroadcaster(AsyncBroadcaster, L1Coherence, Protocol):
    """:class:`CoherentBroadcaster` with an awaitable ``publish``."""


class Stamp(NamedTuple):
    """What an L1 fill read before its value was loaded: ``key`` the façade's epoch
    of the key's stripe, ``epoch`` the broadcast's epoch and ``since`` the L1's
    generation (both None without an :class:`L1Coherence` broadcast)."""

    key: int
    epoch: int | None
    since: int | None


@dataclass(frozen=True, slots=True)
class TierStats:
    """Lookups of one tier by the façade: ``hits`` (cached ``None`` included) and
    ``misses``."""

    hits: int
    misses: int

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``, 0.0 before the first lookup."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one façade since it was created.

    ``hits``/``misses``: lookups answered by some tier vs not (a miss leads to a
    load when a loader was given). ``loads``: loader calls, ``load_errors`` of them
    raised, ``load_time_s`` their total time. ``lease_waits``: calls that waited for
    another caller's fill; ``lease_wait_timeouts``: of them, those that waited past
    ``lease_wait_s`` and loaded themselves. ``stale_serves``: calls answered with a
    stale value (``allow_stale=True``). ``unavailable``: calls that found Redis
    unreachable (served from the loader under the fallback policy).
    ``corrupt_entries``: L2 entries that did not decode (served as misses).
    ``fills_refused``: fills and write-through sets refused by a lease or version
    guard. ``invalidations``: keys invalidated; ``invalidations_failed``: keys whose
    invalidation did not reach Redis. ``evictions``: L1 evictions (from ``local``).
    ``write_behind``: the attached write-behind's journal (``queue_depth``,
    ``lag_s``, ``journal_bytes``, ``loss_window_s``, ...); None without one, or when
    its journal could not be read.
    """

    l1: TierStats | None
    l2: TierStats | None
    hits: int
    misses: int
    loads: int
    load_errors: int
    load_time_s: float
    lease_waits: int
    lease_wait_timeouts: int
    stale_serves: int
    unavailable: int
    corrupt_entries: int
    fills_refused: int
    invalidations: int
    invalidations_failed: int
    evictions: int
    local: LocalStats | None = None
    write_behind: WriteBehindStats | None = None

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``, 0.0 before the first lookup."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    @property
    def mean_load_s(self) -> float:
        """Mean loader time in seconds, 0.0 before the first load."""
        return self.load_time_s / self.loads if self.loads else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counters and derived ratios as plain data (for JSON results)."""
        out = asdict(self)
        for tier in ("l1", "l2"):
            stats = getattr(self, tier)
            if stats is not None:
                out[tier]["hit_ratio"] = stats.hit_ratio
        if self.local is not None:
            out["local"] = self.local.to_dict()
        if self.write_behind is not None:
            out["write_behind"] = self.write_behind.to_dict()
        out.update(hit_ratio=self.hit_ratio, mean_load_s=self.mean_load_s)
        return out


class LeaseWait:
    """The schedule of one caller waiting for another's fill: sleeps doubling from
    ``first_s`` up to ``max_s`` (with a little jitter, so waiters spread out), until
    ``deadline`` (``time.monotonic()``); then :meth:`next` says None: load yourself."""

    def __init__(self, first_s: float, max_s: float, deadline: float) -> None:
        self._delay = first_s
        self._max = max_s
        self.deadline = deadline

    def next(self) -> float | None:
        """Seconds to sleep before polling again, or None once the bound is reached."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        delay = min(self._delay, left) * (0.75 + 0.5 * random.random())
        self._delay = min(self._delay * 2, self._max)
        return max(delay, 0.0)


@dataclass(slots=True)
class Declared:
    """Keys and tags a block of writes invalidates (``cache.invalidates(...)``): the
    after-commit hook merges each commit's causal token into ``token``."""

    owner: object
    keys: tuple[str, ...]
    tags: tuple[KeyPart, ...]
    version: int | None
    token: CausalToken | None = None
    commits: int = 0

    def commit(self, event: Committed) -> None:
        """Record a commit of the block."""
        self.commits += 1
        if event.token is not None:
            self.token = event.token if self.token is None else self.token.merge(event.token)

    @property
    def token_text(self) -> str | None:
        """The merged causal token as the tombstones carry it."""
        return self.token.to_string() if self.token else None


_DECLARED: contextvars.ContextVar[tuple[Declared, ...]] = contextvars.ContextVar(
    "mlscale_cache_declared", default=()
)

_COUNTERS = (
    "l1_hits",
    "l1_misses",
    "l2_hits",
    "l2_misses",
    "hits",
    "misses",
    "loads",
    "load_errors",
    "lease_waits",
    "lease_wait_timeouts",
    "stale_serves",
    "unavailable",
    "corrupt_entries",
    "fills_refused",
    "invalidations",
    "invalidations_failed",
)

_MISSING = object()
_STRIPES = 1024


class CacheCore:
    """The state and decisions one façade (sync or async) shares; no Redis I/O.

    ``keys``: the namespace's key builder; ``local``: the L1 tier or None; ``has_remote``:
    whether an L2 tier is configured (its client lives in the façade).
    """

    def __init__(
        self,
        keys: KeyBuilder,
        local: LocalCache | None,
        policy: CachePolicy,
        has_remote: bool,
        remote_settings: _RemoteSettings | None = None,
        coherence: L1Coherence | None = None,
    ) -> None:
        self.keys = keys
        self.local = local
        self.policy = policy
        self.has_remote = has_remote
        self.remote_settings = remote_settings
        # L1 is served only while this says so; fills carry its epoch (see Stamp).
        self.coherence = coherence if local is not None else None
        self._lock = threading.Lock()
        self._n: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        # L1 lookups of the hot path, counted under L1's own lock (no second lock).
        self.tally = LookupTally()
        # Typed: key 1 and key True are told apart (True is refused, never aliased to 1),
        # as are a str and a str subclass; a key that cannot be built is not remembered.
        self._name_of = functools.lru_cache(maxsize=policy.key_names, typed=True)(keys.key)
        self._load_time = 0.0
        # Epochs of key stripes, bumped by every invalidation and write this process
        # makes or hears of: an L1 fill decided before the bump may carry the old
        # value, so it is dropped. Striped so a bump voids few unrelated fills.
        self._epochs = [0] * _STRIPES
        self._last_warning = -math.inf
        self._unwarned = 0
        # L1-only caches keep tag memberships here (with L2 they live in Redis).
        self._local_tags: dict[str, set[str]] = {}

    # -- keys ---------------------------------------------------------------------

    def name(self, key: Key) -> str:
        """The full Redis name of ``key`` in this namespace (remembered, see
        ``CachePolicy.key_names``)."""
        if isinstance(key, tuple):
            return self._name_of(*key)
        return self._name_of(key)

    def tag_name(self, tag: KeyPart) -> str:
        """The namespaced name of a tag (two applications' tags never mix)."""
        return self.keys.tag_key(tag)

    def tag_names(self, tags: Sequence[KeyPart]) -> list[str]:
        """:meth:`tag_name` of each tag."""
        return [self.tag_name(t) for t in tags]

    # -- counters -------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._n[name] += n

    def stats(self, write_behind: WriteBehindStats | None = None) -> CacheStats:
        """A snapshot of the counters (with ``write_behind``'s, if given)."""
        local = self.local.stats() if self.local is not None else None
        with self._lock:
            n = dict(self._n)
            load_time = self._load_time
        l1_hits, l1_misses = self.tally.hits, self.tally.misses
        return CacheStats(
            l1=(
                TierStats(n["l1_hits"] + l1_hits, n["l1_misses"] + l1_misses)
                if self.local is not None
                else None
            ),
            l2=TierStats(n["l2_hits"], n["l2_misses"]) if self.has_remote else None,
            hits=n["hits"] + l1_hits,
            misses=n["misses"],
            loads=n["loads"],
            load_errors=n["load_errors"],
            load_time_s=load_time,
            lease_waits=n["lease_waits"],
            lease_wait_timeouts=n["lease_wait_timeouts"],
            stale_serves=n["stale_serves"],
            unavailable=n["unavailable"],
            corrupt_entries=n["corrupt_entries"],
            fills_refused=n["fills_refused"],
            invalidations=n["invalidations"],
            invalidations_failed=n["invalidations_failed"],
            evictions=local.evictions if local is not None else 0,
            local=local,
            write_behind=write_behind,
        )

    # -- L1 -------------------------------------------------------------------------

    def stamp(self, name: str) -> Stamp:
        """What a fill of ``name`` must read before loading (see :meth:`fill_local`):
        the key's invalidation epoch, and the broadcast's epoch and L1's generation."""
        coherence, key = self.coherence, self._epochs[hash(name) % _STRIPES]
        if coherence is None or self.local is None:
            return Stamp(key, None, None)
        # The generation first: an invalidation heard between the two reads then
        # refuses the fill (the other order could miss it).
        since = self.local.generation
        return Stamp(key, coherence.epoch, since)

    def trusted(self) -> bool:
        """Whether L1 may be read and filled now (always, without a broadcast that
        says otherwise)."""
        coherence = self.coherence
        return coherence is None or coherence.l1_trusted

    def get_local(self, name: str, *, recheck: bool = False) -> Any:
        """The L1 value of ``name`` (None for a cached None), or ``_MISSING``; counted.
        A hit is a hit of the whole cache; a miss is counted by the caller's next tier.
        ``recheck``: a second look by a caller that waited, whose miss was counted.

        The hot path of every façade read: no allocation, no lock but L1's own."""
        local = self.local
        if local is None or not self.trusted():
            return _MISSING
        if not recheck:
            return local.value(name, _MISSING, self.tally)
        value = local.value(name, _MISSING)
        if value is not _MISSING:
            with self._lock:
                self._n["l1_hits"] += 1
                self._n["hits"] += 1
        return value

    def fill_local(
        self,
        name: str,
        value: Any,
        version: int,
        ttl_s: float,
        stamp: Stamp,
        size: int | None,
    ) -> bool:
        """Put a value read, loaded or written since ``stamp`` (of ``name``) into L1,
        unless the key was invalidated or written meanwhile (here or, as the
        broadcast heard, elsewhere), a newer version is there (L1's version guard),
        the broadcast's subscription dropped since (``stamp.epoch`` retired), or L1 is
        not trusted now. Whether the value is now in L1.

        A fill that comes too late does not just skip: it drops the key from L1 and
        bumps its epoch, so no other fill decided before it lands either. Two racing
        write-throughs of one process could otherwise leave the older in L1: the
        newer one's fill skipped for the older one's bump, the older one's fill done.
        """
        if self.local is None or not self.trusted():
            return False
        if stamp.key != self._epochs[hash(name) % _STRIPES]:
            self.forget_local([name])
            return False
        ttl = min(ttl_s, self.policy.local_ttl_s)
        done = self.local.set(
            name,
            value,
            ttl=ttl,
            version=version,
            size=size,
            jitter=0.0,
            epoch=stamp.epoch,
            since=stamp.since,
        )
        if stamp.key != self._epochs[hash(name) % _STRIPES]:
            # Invalidated while we stored: the invalidation may have found nothing to drop.
            self.forget_local([name])
            return False
        return done.stored

    def bump(self, names: Sequence[str]) -> None:
        """Void the L1 fills of ``names`` in flight (see :meth:`fill_local`)."""
        with self._lock:
            for name in names:
                self._epochs[hash(name) % _STRIPES] += 1

    def forget_local(self, names: Sequence[str]) -> int:
        """Drop ``names`` from L1 and void their L1 fills in flight; how many were
        there. The broadcast listener calls this (through ``Cache.forget_local``)
        for keys others changed. L1 marks them too (``LocalCache.invalidate_many``),
        so a fill stamped before now is refused however it reached L1."""
        self.bump(names)
        return self.local.invalidate_many(names) if self.local is not None else 0

    def clear_local(self) -> None:
        """Drop every unpinned L1 entry and void every L1 fill in flight."""
        with self._lock:
            self._epochs = [e + 1 for e in self._epochs]
        if self.local is not None:
            self.local.clear()

    def add_local_tags(self, name: str, tags: Sequence[str]) -> None:
        """Record tag memberships of an L1-only cache."""
        if self.has_remote or not tags:
            return
        with self._lock:
            for tag in tags:
                self._local_tags.setdefault(tag, set()).add(name)

    def pop_local_tag(self, tag: str) -> list[str]:
        """The members of an L1-only cache's tag, forgotten."""
        with self._lock:
            return sorted(self._local_tags.pop(tag, ()))

    # -- values -----------------------------------------------------------------------

    def ttl(self, value: Any, ttl_s: float | None, negative_ttl_s: float | None) -> float:
        """The TTL in seconds of ``value`` (None: the negative TTL), jittered."""
        if value is None:
            base = self.policy.negative_ttl_s if negative_ttl_s is None else negative_ttl_s
        else:
            base = self.policy.ttl_s if ttl_s is None else ttl_s
        _positive("ttl", base)
        if self.policy.jitter:
            base *= 1.0 - self.policy.jitter * random.random()
        return base

    @staticmethod
    def ttl_ms(ttl_s: float) -> int:
        """Seconds as the L2 tier's whole milliseconds (at least 1)."""
        return max(1, int(ttl_s * 1000))

    def encode(self, value: Any) -> bytes | None:
        """The L2 bytes of ``value`` (None for a cached None). Raises
        CacheValueTooLarge over ``max_value_bytes``, before anything is stored."""
        if value is None:
            return None
        limit = self.policy.max_value_bytes
        if self.remote_settings is not None:
            limit = min(limit, self.remote_settings.max_value_bytes)
        return encode(value, max_bytes=limit)

    def decode(self, name: str, state: EntryState, raw: bytes | None) -> Any:
        """The value of an L2 entry, or ``_MISSING`` if it is corrupt or foreign
        (counted and logged: it is a miss, not an error)."""
        if state is EntryState.ABSENT:
            return None
        if state is EntryState.MISS or raw is None:
            return _MISSING
        try:
            return decode(raw)
        except CorruptEntry as exc:
            self.count("corrupt_entries")
            log.warning("cache entry %s is corrupt or foreign, served as a miss: %s", name, exc)
            return _MISSING

    def got_value(self, got: Got) -> Any:
        """:meth:`decode` of a ``get`` reply; counts the L2 hit or miss."""
        value = self.decode(got.key, got.state, got.value)
        with self._lock:
            if value is _MISSING:
                self._n["l2_misses"] += 1
            else:
                self._n["l2_hits"] += 1
                self._n["hits"] += 1
        return value

    def lookup_local_many(
        self, wanted: Sequence[tuple[Key, str]]
    ) -> tuple[dict[Key, Any], list[tuple[Key, str]]]:
        """The L1 hits among ``wanted`` (key, name) pairs, and the rest; counted."""
        out: dict[Key, Any] = {}
        local = self.local
        if local is None or not self.trusted():
            return out, list(wanted)
        rest: list[tuple[Key, str]] = []
        value_of, tally = local.value, self.tally
        for key, name in wanted:
            value = value_of(name, _MISSING, tally)
            if value is _MISSING:
                rest.append((key, name))
            else:
                out[key] = value
        return out, rest

    def stamps(self, wanted: Sequence[tuple[Key, str]]) -> list[Stamp] | None:
        """The stamps of ``wanted`` names, read before L2 is (None without an L1)."""
        if self.local is None:
            return None
        return [self.stamp(name) for _, name in wanted]

    def took_remote_many(
        self,
        wanted: Sequence[tuple[Key, str]],
        gots: Sequence[Got],
        stamps: Sequence[Stamp] | None,
        out: dict[Key, Any],
    ) -> None:
        """Decode a ``get_many`` reply of ``wanted`` into ``out``, count the L2 hits
        and misses (one lock for the batch), and fill L1 from the hits."""
        hits = 0
        for i, ((key, name), got) in enumerate(zip(wanted, gots, strict=False)):
            value = self.decode(name, got.state, got.value)
            if value is _MISSING:
                continue
            hits += 1
            out[key] = value
            if stamps is not None:
                self.fill_local(
                    name, value, got.version or 0, self.ttl(value, None, None), stamps[i], None
                )
        with self._lock:
            self._n["l2_hits"] += hits
            self._n["l2_misses"] += len(gots) - hits
            self._n["hits"] += hits

    def hit_value(self, lease: LeaseGet) -> Any:
        """:meth:`decode` of a lease_get HIT (``_MISSING`` if corrupt)."""
        return self.decode(lease.key, lease.state, lease.value)

    def stale_value(self, lease: LeaseGet) -> Any:
        """The stale value a WAIT or GRANTED reply carried, or ``_MISSING``."""
        if not lease.stale:
            return _MISSING
        return self.decode(lease.key, lease.state, lease.value)

    # -- faults ----------------------------------------------------------------------

    def unavailable(self, exc: CacheUnavailable, what: str) -> None:
        """Redis could not be reached during ``what``: raise under the RAISE policy,
        else count it and warn at most once per ``warn_every_s``."""
        self.count("unavailable")
        if self.policy.on_unavailable is OnUnavailable.RAISE:
            raise exc
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning < self.policy.warn_every_s:
                self._unwarned += 1
                return
            self._last_warning = now
            quiet, self._unwarned = self._unwarned, 0
        log.warning(
            "cache: Redis unavailable during %s, serving from the database "
            "(%d more since the last warning): %s",
            what,
            quiet,
            exc,
        )

    # -- loads ------------------------------------------------------------------------

    def wait(self, deadline: float) -> LeaseWait:
        """The polling schedule of a caller waiting for a fill until ``deadline``."""
        return LeaseWait(self.policy.poll_first_s, self.policy.poll_max_s, deadline)

    def deadline(self) -> float:
        """When a caller starting now stops waiting for others' fills."""
        return time.monotonic() + self.policy.lease_wait_s

    @staticmethod
    def loader_call(loader: Callable[..., Any], token: str | None) -> Callable[[], Any]:
        """``loader`` as a call of no arguments: with ``token=`` when it accepts that
        keyword (the causal token a fill must read at least as fresh as, or None)."""
        if takes_token(loader):
            return lambda: loader(token=token)
        return loader

    def loaded(self, started: float, ok: bool) -> None:
        """Count a load that began at ``started`` (``time.perf_counter()``)."""
        spent = time.perf_counter() - started
        with self._lock:
            self._n["loads"] += 1
            self._n["load_errors"] += not ok
            self._load_time += spent

    # -- declared invalidations ----------------------------------------------------------

    def declare(
        self, owner: object, keys: Sequence[Key], tags: Sequence[KeyPart], version: int | None
    ) -> tuple[Declared, contextvars.Token[tuple[Declared, ...]]]:
        """Start a declaration of ``owner`` (a façade) in the current context."""
        decl = Declared(owner, tuple(self.name(k) for k in keys), tuple(tags), version)
        return decl, _DECLARED.set((*_DECLARED.get(), decl))

    @staticmethod
    def undeclare(reset: contextvars.Token[tuple[Declared, ...]]) -> None:
        """End the declaration :meth:`declare` started."""
        _DECLARED.reset(reset)

    @staticmethod
    def declared(owner: object) -> list[Declared]:
        """The declarations of ``owner`` active in the current context."""
        return [d for d in _DECLARED.get() if d.owner is owner]


def coherence_of(
    broadcast: object, local: LocalCache | None, forget: Callable[[Sequence[str]], int]
) -> L1Coherence | None:
    """The façade's view of ``broadcast``: itself if it says when L1 may be trusted
    (:class:`L1Coherence`), else None. When it has an ``on_invalidate`` hook (as
    :class:`~.broadcast.L1Broadcast` does), the invalidations it hears from other
    processes go to ``forget`` (the façade's ``forget_local``) from now on, so they
    also void the façade's fills in flight. Its L1 must be the façade's."""
    if local is None or not isinstance(broadcast, L1Coherence):
        return None
    theirs = getattr(broadcast, "local", local)
    if theirs is not local:
        raise ValueError("the broadcast keeps another L1 than this cache's local tier")
    if hasattr(broadcast, "on_invalidate"):
        broadcast.on_invalidate = forget
    return broadcast


def write_behind_key(table: str, key: Any) -> tuple[KeyPart, ...]:
    """The cache key of a write-behind row: ``(table, key)``, or ``(table, *key)``
    for a composite key. ``cache.get(write_behind_key("t", 42))`` reads it back."""
    return (table, *key) if isinstance(key, tuple | list) else (table, key)


def takes_token(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a ``token`` keyword argument."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("token")
    if p is not None:
        return p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    return any(q.kind is q.VAR_KEYWORD for q in params.values())


def blob_size(blob: bytes | None) -> int | None:
    """The L1 size of an encoded value (None: let L1 size it)."""
    return len(blob) if blob is not None else None


def unwrap(loaded: Any) -> tuple[Any, int]:
    """A loader's result as (value, version)."""
    if isinstance(loaded, Versioned):
        return loaded.value, loaded.version
    return loaded, FILL_VERSION


def causal_text(token: CausalToken | str | None) -> str | None:
    """A causal token as tombstones carry it."""
    if token is None:
        return None
    text = token if isinstance(token, str) else token.to_string()
    return text or None


class CallKeys:
    """The keys of one decorated function's calls (see :func:`call_key`), with the
    function's signature read once: a call passing exactly its positional
    parameters, positionally, skips binding (an L1 hit through the decorator would
    otherwise spend most of its time in :mod:`inspect`)."""

    __slots__ = ("_arity", "_skip", "fn", "key", "namespace", "signature")

    def __init__(
        self, fn: Callable[..., Any], namespace: str, key: Callable[..., Key] | None
    ) -> None:
        self.fn = fn
        self.namespace = namespace
        self.key = key
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None  # raised again, by name, at the first call
        params = list(self.signature.parameters.values()) if self.signature else []
        plain = self.signature is not None and all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
        )
        self._arity = len(params) if plain else -1
        first = params[0] if params else None
        self._skip = int(
            first is not None
            and first.name in ("self", "cls")
            and first.kind is first.POSITIONAL_OR_KEYWORD
        )

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[KeyPart, ...]:
        """The key of the call ``fn(*args, **kwargs)``."""
        if self.key is None and not kwargs and len(args) == self._arity:
            values = args[self._skip :]
            for v in values:
                if type(v) is not str and type(v) is not int:
                    break  # the slow path names the argument
            else:
                return (self.namespace, *values)
        return self._bound(args, kwargs)

    def _bound(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[KeyPart, ...]:
        fn, namespace, key = self.fn, self.namespace, self.key
        if key is not None:
            made = key(*args, **kwargs)
            return (namespace, *(made if isinstance(made, tuple) else (made,)))
        signature = self.signature or inspect.signature(fn)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        parts: list[KeyPart] = [namespace]
        for pname, value in bound.arguments.items():
            param = bound.signature.parameters[pname]
            if pname in ("self", "cls") and param.kind is param.POSITIONAL_OR_KEYWORD:
                continue
            if param.kind is param.VAR_POSITIONAL:
                items: list[tuple[str, Any]] = [(pname, v) for v in value]
            elif param.kind is param.VAR_KEYWORD:
                # Each keyword's name and value: f(a=1) and f(b=1) must differ.
                items = []
                for name in sorted(value):
                    items += [(name, name), (name, value[name])]
            else:
                items = [(pname, value)]
            for arg_name, v in items:
                if type(v) not in (str, int):
                    raise TypeError(
                        f"cannot build a cache key from argument {arg_name}={v!r} "
                        f"({type(v).__name__}) of {fn.__qualname__}: only str and int "
                        "arguments make keys; pass key=lambda ...: (...) to @cached"
                    )
                parts.append(v)
        return tuple(parts)


def call_key(
    fn: Callable[..., Any],
    namespace: str,
    key: Callable[..., Key] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> tuple[KeyPart, ...]:
    """The key of a call of a decorated function: ``namespace`` then ``key(*args,
    **kwargs)`` if given, else the bound arguments in signature order (``self`` and
    ``cls`` left out; ``**kwargs`` sorted by name). Only str and int arguments make
    keys: anything else needs ``key=`` (a key must name the value exactly).
    A decorator builds one :class:`CallKeys` per function instead."""
    return CallKeys(fn, namespace, key)(args, kwargs)


def default_namespace(fn: Callable[..., Any]) -> str:
    """The first key part of a decorated function's entries: its qualified name."""
    return f"{fn.__module__}.{fn.__qualname__}"


MISSING: Any = _MISSING
"""The marker :class:`CacheCore` returns for "not cached" (a cached None is None)."""


@dataclass(slots=True)
class KeyLocks:
    """One lock per key name while someone holds or waits for it, so the callers of
    one process coalesce: the first runs the read-through, the others wait for it
    and then find the value in L1 (or in L2, one round trip each)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _held: dict[str, list[Any]] = field(default_factory=dict)

    def enter(self, name: str, factory: Callable[[], Any]) -> Any:
        """The lock of ``name`` (made by ``factory``), reference counted."""
        with self._lock:
            entry = self._held.get(name)
            if entry is None:
                entry = self._held[name] = [factory(), 0]
            entry[1] += 1
            return entry[0]

    def leave(self, name: str) -> None:
        """Drop one reference taken by :meth:`enter`."""
        with self._lock:
            entry = self._held[name]
            entry[1] -= 1
            if entry[1] == 0:
                del self._held[name]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._held))
