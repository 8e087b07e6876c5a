"""The cache façade: :class:`Cache` over an L1 (:class:`~.local.LocalCache`) and an L2
(:class:`~.remote.RemoteCache`), either or both. Its asyncio twin is
:class:`~.tiered_async.AsyncCache`; the decisions both make live in :mod:`.policy`.

Policies:

- **cache-aside / read-through**: ``get(key, loader)`` answers from L1, else L2, else
  takes an L2 lease and calls ``loader`` (exactly one caller per key at a time, over
  every process; callers of one process also coalesce on a per-key lock). Others
  wait, polling with backoff up to ``lease_wait_s``, or take a stale value when the
  call says ``allow_stale=True``; after the bound they load themselves (counted in
  ``lease_wait_timeouts``). A loader returning None is cached as absence with
  ``negative_ttl_s``. ``@cache.cached(...)`` does the same for a function's calls.
- **fresh enough fills**: when an invalidation left a tombstone carrying a causal
  token, the lease comes with it, and a loader that accepts a ``token`` keyword is
  called with it. Pass it on to the read, so a lagging replica cannot put the old
  row back::

      def load(token=None):
          return cluster.fetch_one("SELECT ... WHERE id = %s", (42,), token=token)

      cache.get(("item", 42), load)

  Every write of a watched cluster (plain ``cluster.execute`` included) gives
  its invalidation the commit's token (tests/integration/test_cache_coherence.py
  counts 0 stale reads over 1,000 rounds against a delayed replica).
- **write-through**: ``write_through(key, value, version, write=...)`` runs the
  database write, then a version-guarded set: L2's script keeps the newer of two
  racing writers, L1's version guard likewise.
- **invalidation**: ``invalidate(keys, token)``, ``invalidate_tag(tag)``;
  ``watch(cluster)`` plus ``with cache.invalidates(keys=..., tags=...)`` around
  writes: applied after each commit with the commit's causal token.

Faults: an unreachable Redis is counted and warned about (rate-limited), and the
call is served from the loader (``on_unavailable=RAISE`` raises CacheUnavailable
instead); a corrupt or foreign L2 entry is a counted miss (and is replaced); a
value over ``max_value_bytes`` raises CacheValueTooLarge before anything is
stored (before ``write`` runs, for write_through).

L1 coherence: every invalidation and write bumps the key's epoch, and an L1 fill
decided before the bump is dropped (and drops the key), so a value read just before
an invalidation, or the older of two racing writes, is not put back into L1.
Other processes' L1 hear of changes through ``broadcast``. Given an
:class:`~.broadcast.L1Broadcast` (any :class:`~.policy.L1Coherence`), the façade
serves L1 only while it is ``l1_trusted``, stamps each fill with the broadcast's
epoch and L1's generation read before loading (a fill that raced a lost
subscription or another process's invalidation is refused), and its listener
goes through :meth:`Cache.forget_local`. ``local_ttl_s`` bounds what a lost
message can cost without one.

**write-behind**: ``Cache(..., write_behind=WriteBehind(...))`` and
``cache.write_behind(table, key, row)``: acknowledged once journaled, pinned in
L1 until the flusher has written it to PostgreSQL, and in ``stats()``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from ..core.causal import CausalToken
from ..engine.hooks import Committed
from ..errors import CacheError
from .keys import KeyBuilder, KeyPart
from .local import LocalCache
from .policy import (
    MISSING,
    Broadcaster,
    CacheCore,
    CachePolicy,
    CacheStats,
    CallKeys,
    Declared,
    Key,
    KeyLocks,
    Stamp,
    Versioned,
    WriteResult,
    blob_size,
    causal_text,
    coherence_of,
    default_namespace,
    log,
    unwrap,
    write_behind_key,
)
from .remote import MAX_VERSION, CacheUnavailable, Entry, LeaseOutcome, RemoteCache
from .writebehind import Ack, WriteBehind

__all__ = ["Cache"]

P = ParamSpec("P")
R = TypeVar("R")


class Cache:
    """A namespaced cache over an L1, an L2, or both (see the module docstring).

    ``namespace``: a name (or a :class:`KeyBuilder`) that keeps this application's
    keys apart from others' on the same Redis. Safe to share across threads.
    """

    def __init__(
        self,
        namespace: str | KeyBuilder,
        *,
        local: LocalCache | None = None,
        remote: RemoteCache | None = None,
        broadcast: Broadcaster | None = None,
        policy: CachePolicy | None = None,
        write_behind: WriteBehind | None = None,
    ) -> None:
        if local is None and remote is None:
            raise ValueError("a Cache needs a local (L1) tier, a remote (L2) tier, or both")
        keys = namespace if isinstance(namespace, KeyBuilder) else KeyBuilder(namespace)
        settings = remote.plans.settings if remote is not None else None
        coherence = coherence_of(broadcast, local, self.forget_local)
        self.core = CacheCore(
            keys, local, policy or CachePolicy(), remote is not None, settings, coherence
        )
        self.remote = remote
        self.broadcast = broadcast
        self._write_behind = write_behind
        if write_behind is not None and local is not None:
            # Its pins are this cache's L1 entries, under this cache's names.
            write_behind.bind_l1(local, lambda table, key: self.name(write_behind_key(table, key)))
        self._flights = KeyLocks()
        self._watching: list[Any] = []

    @property
    def keys(self) -> KeyBuilder:
        """The key builder of this cache's namespace."""
        return self.core.keys

    def name(self, key: Key) -> str:
        """The full Redis name of ``key`` (as broadcasts and tombstones carry it)."""
        return self.core.name(key)

    def stats(self) -> CacheStats:
        """Counters since creation (see :class:`CacheStats`); with a write-behind
        attached, its journal too (one Redis round trip)."""
        wb = None
        if self._write_behind is not None:
            try:
                wb = self._write_behind.stats()
            except CacheError as exc:
                log.warning("cache: the write-behind journal could not be read: %s", exc)
        return self.core.stats(wb)

    # -- reads ------------------------------------------------------------------------

    def get(
        self,
        key: Key,
        loader: Callable[..., Any] | None = None,
        *,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        tags: Sequence[KeyPart] = (),
        allow_stale: bool = False,
        default: Any = None,
    ) -> Any:
        """The value of ``key``; on a miss, ``loader()``'s (cached for ``ttl``
        seconds, or ``negative_ttl`` when it returned None), else ``default``.

        ``loader`` may return :class:`Versioned` to version its value and may take a
        ``token`` keyword (see the module docstring). ``tags``: tags the filled
        entry carries. ``allow_stale``: while another caller fills, answer with the
        expired or invalidated value if L2 kept one (``stale_ms`` of its settings).
        """
        core = self.core
        name = core.name(key)
        local = core.local
        if local is not None:
            # CacheCore.get_local, inlined: this is the L1 hit, the hottest path.
            coherence = core.coherence
            if coherence is None or coherence.l1_trusted:
                value = local.value(name, MISSING, core.tally)
                if value is not MISSING:
                    return value
        if loader is None:
            # The stamp is read before L2 is: a fill of what L2 said then is dropped
            # if the key is invalidated meanwhile.
            value = self._get_remote(name, self.core.stamp(name))
            if value is MISSING:
                self.core.count("misses")
                return default
            return value
        return self._read_through(name, loader, ttl, negative_ttl, tags, allow_stale)

    def _get_remote(self, name: str, stamp: Stamp) -> Any:
        if self.remote is None:
            return MISSING
        try:
            got = self.remote.get(name)
        except CacheUnavailable as exc:
            self.core.unavailable(exc, "a get")
            return MISSING
        value = self.core.got_value(got)
        if value is not MISSING:
            self.core.fill_local(
                name, value, got.version or 0, self.core.ttl(value, None, None), stamp, None
            )
        return value

    def _read_through(
        self,
        name: str,
        loader: Callable[..., Any],
        ttl: float | None,
        negative_ttl: float | None,
        tags: Sequence[KeyPart],
        allow_stale: bool,
    ) -> Any:
        deadline = self.core.deadline()
        lock = self._flights.enter(name, threading.Lock)
        try:
            held = lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            try:
                if not held:
                    # Another thread of this process has been filling for too long.
                    self.core.count("lease_waits")
                    self.core.count("lease_wait_timeouts")
                    self.core.count("misses")
                    return self._load(loader, None)[0]
                value = self.core.get_local(name, recheck=True)
                if value is not MISSING:
                    return value  # filled by the thread we waited for
                return self._fill(name, loader, ttl, negative_ttl, tags, allow_stale, deadline)
            finally:
                if held:
                    lock.release()
        finally:
            self._flights.leave(name)

    def _fill(
        self,
        name: str,
        loader: Callable[..., Any],
        ttl: float | None,
        negative_ttl: float | None,
        tags: Sequence[KeyPart],
        allow_stale: bool,
        deadline: float,
    ) -> Any:
        core = self.core
        stamp = core.stamp(name)
        if self.remote is None:
            core.count("misses")
            value, version = self._load(loader, None)
            blob = core.encode(value)
            core.fill_local(
                name, value, version, core.ttl(value, ttl, negative_ttl), stamp, blob_size(blob)
            )
            core.add_local_tags(name, core.tag_names(tags))
            return value
        tag_names = core.tag_names(tags)
        wait = None
        repaired = False
        first = True
        while True:
            try:
                lease = self.remote.lease_get(name, allow_stale=allow_stale, tags=tag_names)
            except CacheUnavailable as exc:
                core.unavailable(exc, "a read-through")
                core.count("misses")
                return self._load(loader, None)[0]
            value = core.hit_value(lease) if lease.outcome is LeaseOutcome.HIT else MISSING
            if first:
                core.count("l2_misses" if value is MISSING else "l2_hits")
                first = False
            if lease.outcome is LeaseOutcome.HIT:
                if value is not MISSING:
                    core.count("hits")
                    core.fill_local(
                        name, value, lease.version or 0, core.ttl(value, None, None), stamp, None
                    )
                    return value
                if not repaired:
                    # Corrupt: drop it (the tombstone keeps fills coherent) and fill anew.
                    repaired = True
                    try:
                        self.remote.invalidate([name])
                    except CacheUnavailable as exc:
                        core.unavailable(exc, "repairing a corrupt entry")
                    continue
                core.count("misses")
                return self._load(loader, None)[0]
            if lease.outcome is LeaseOutcome.GRANTED:
                core.count("misses")
                value, version = self._load(loader, lease.causal_token)
                blob = core.encode(value)
                ttl_s = core.ttl(value, ttl, negative_ttl)
                try:
                    stored = self.remote.lease_set(
                        name,
                        lease.token or "",
                        blob,
                        version,
                        ttl_ms=core.ttl_ms(ttl_s),
                        tags=tag_names,
                    )
                except CacheUnavailable as exc:
                    core.unavailable(exc, "a fill")
                    return value
                if stored:
                    core.fill_local(name, value, version, ttl_s, stamp, blob_size(blob))
                else:
                    core.count("fills_refused")
                return value
            stale = core.stale_value(lease) if allow_stale else MISSING
            if stale is not MISSING:
                core.count("stale_serves")
                core.count("hits")
                return stale
            if wait is None:
                core.count("lease_waits")
                wait = core.wait(deadline)
            delay = wait.next()
            if delay is None:
                core.count("lease_wait_timeouts")
                core.count("misses")
                return self._load(loader, lease.causal_token)[0]
            time.sleep(delay)

    def _load(self, loader: Callable[..., Any], token: str | None) -> tuple[Any, int]:
        started = time.perf_counter()
        try:
            loaded = self.core.loader_call(loader, token)()
        except BaseException:
            self.core.loaded(started, ok=False)
            raise
        self.core.loaded(started, ok=True)
        return unwrap(loaded)

    def get_many(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """The cached values of ``keys`` (a cached None is None; misses are absent):
        L1 first, then one L2 round trip per node for the rest."""
        core = self.core
        wanted = [(k, core.name(k)) for k in keys]
        out, rest = core.lookup_local_many(wanted)
        if rest and self.remote is not None:
            stamps = core.stamps(rest)  # before L2 is read: see fill_local
            try:
                gots = self.remote.get_many([name for _, name in rest])
            except CacheUnavailable as exc:
                core.unavailable(exc, "a get_many")
                gots = []
            core.took_remote_many(rest, gots, stamps, out)
        core.count("misses", len(wanted) - len(out))
        return out

    # -- writes -----------------------------------------------------------------------

    def set(
        self,
        key: Key,
        value: Any,
        *,
        version: int | None = None,
        ttl: float | None = None,
        tags: Sequence[KeyPart] = (),
    ) -> bool:
        """Cache ``value`` (None: cached absence) under ``key``; whether it is now
        cached (False if a newer ``version`` is or was cached, or Redis was
        unavailable). Other processes are told to drop their L1 copy."""
        return (
            self.set_many(
                {key: value if version is None else Versioned(value, version)}, ttl=ttl, tags=tags
            )
            == 1
        )

    def set_many(
        self,
        items: Mapping[Key, Any],
        *,
        ttl: float | None = None,
        tags: Sequence[KeyPart] = (),
    ) -> int:
        """``set`` of many keys (values may be :class:`Versioned`) in one round trip
        per node; how many are now cached. Every value is encoded (and checked
        against ``max_value_bytes``) before anything is stored."""
        core = self.core
        tag_names = core.tag_names(tags)
        rows = []
        for key, item in items.items():
            value, version = unwrap(item)
            rows.append((core.name(key), value, version, core.encode(value), ttl))
        names = [r[0] for r in rows]
        if self.remote is not None:
            # L2 arbitrates between writers: drop the old L1 copies first, so a fill
            # skipped below cannot leave them. (L1 alone keeps the newer by itself.)
            core.forget_local(names)
        stamps = [core.stamp(name) for name in names]
        stored = [True] * len(rows)
        if self.remote is not None:
            entries = [
                Entry(n, blob, ver, core.ttl_ms(core.ttl(v, t, t)), tag_names)
                for n, v, ver, blob, t in rows
            ]
            try:
                stored = [bool(s) for s in self.remote.set_many(entries)]
            except CacheUnavailable as exc:
                core.forget_local(names)  # this process's L1 may now be older than L2
                core.unavailable(exc, "a set")
                return 0
        for i, (name, value, version, blob, t) in enumerate(rows):
            if stored[i]:
                ttl_s = core.ttl(value, t, t)
                in_l1 = core.fill_local(name, value, version, ttl_s, stamps[i], blob_size(blob))
                if self.remote is None:
                    stored[i] = in_l1
                    core.add_local_tags(name, tag_names)
            if not stored[i]:
                core.count("fills_refused")
        self._publish(names)
        return sum(stored)

    def write_through(
        self,
        key: Key,
        value: Any,
        version: int,
        *,
        write: Callable[[], R] | None = None,
        ttl: float | None = None,
        tags: Sequence[KeyPart] = (),
    ) -> WriteResult:
        """Run ``write()`` (the database write), then cache ``value`` at ``version``
        unless a newer version is or was cached. Two racing writers leave the newer
        value cached whatever the order their sets arrive in; ``write`` itself must
        be version-guarded in the database (``UPDATE ... WHERE version < %s``) for
        the database to keep the newer one too. Raises CacheValueTooLarge before
        ``write`` runs if the value cannot be cached."""
        self.core.encode(value)  # refuse an oversize value before the database write
        result = write() if write is not None else None
        cached = self.set(key, value, version=version, ttl=ttl, tags=tags)
        return WriteResult(result, cached)

    def write_behind(
        self,
        table: str,
        key: Any,
        row: Mapping[str, Any],
        *,
        version: int | None = None,
        ttl: float | None = None,
    ) -> Ack:
        """Journal ``row`` for ``table``'s row ``key`` through the attached
        :class:`~.writebehind.WriteBehind`: durable when this returns (the Ack's
        ``version`` is the row's), written to PostgreSQL later by its flusher.

        The row (a dict) is then cached under ``write_behind_key(table, key)``:
        pinned in L1 until flushed (read back with ``get((table, key))``), set in
        L2 at its version (a writer-supplied ``version`` up to 2**53-1; with the
        journal's own versions, which are larger, L2's old value is invalidated
        instead), and other processes' L1 told to drop their copy. Raises
        what ``WriteBehind.write`` raises (CacheUnavailable: nothing journaled;
        WriteOutcomeUnknown); once journaled, an unreachable L2 is only counted."""
        wb = self._write_behind
        if wb is None:
            raise CacheError("this Cache has no write-behind: give write_behind= to Cache()")
        core = self.core
        name = core.name(write_behind_key(table, key))
        value = dict(row)
        blob = core.encode(value)  # refuse an oversize value before journaling it
        ack = wb.write(table, key, row, version=version)
        core.bump([name])  # a fill of the old value in flight must not land now
        if self.remote is not None:
            try:
                if ack.version <= MAX_VERSION:
                    entry = Entry(name, blob, ack.version, core.ttl_ms(core.ttl(value, ttl, ttl)))
                    if not self.remote.set_many([entry])[0]:
                        core.count("fills_refused")
                else:
                    # A journal-assigned version (ms << 20) is beyond what L2's
                    # version guard holds: drop the old L2 value instead.
                    self.remote.invalidate([name])
            except CacheUnavailable as exc:
                core.count("unavailable")
                log.warning("cache: a journaled write-behind row did not reach L2: %s", exc)
        self._publish([name])
        return ack

    # -- invalidation -------------------------------------------------------------------

    def delete(self, key: Key) -> bool:
        """Invalidate one key; whether it held a fresh value."""
        return self.invalidate([key]) > 0

    def invalidate(
        self,
        keys: Iterable[Key],
        token: CausalToken | str | None = None,
        *,
        version: int | None = None,
    ) -> int:
        """Remove ``keys`` from both tiers and void fills in flight; L2 keeps a short
        tombstone carrying the writer's causal ``token``, so the next fill reads at
        least that fresh, and ``version`` (if given) as a floor no older fill may
        cross. Returns how many keys held a fresh value."""
        return self._invalidate_names([self.core.name(k) for k in keys], token, version)

    def invalidate_tag(
        self,
        tag: KeyPart,
        token: CausalToken | str | None = None,
        *,
        version: int | None = None,
    ) -> int:
        """:meth:`invalidate` every key filled or set with ``tag``."""
        core = self.core
        tag_name = core.tag_name(tag)
        if self.remote is None:
            return self._invalidate_names(core.pop_local_tag(tag_name), token, version)
        try:
            members = self.remote.tag_members(tag_name)
        except CacheUnavailable as exc:
            core.count("invalidations_failed")
            # We cannot tell which L1 entries carry the tag: drop them all.
            core.clear_local()
            core.unavailable(exc, "a tag invalidation")
            return 0
        return self._invalidate_names(members, token, version)

    def _invalidate_names(
        self, names: list[str], token: CausalToken | str | None, version: int | None
    ) -> int:
        core = self.core
        if not names:
            return 0
        removed = core.forget_local(names)
        core.count("invalidations", len(names))
        if self.remote is not None:
            try:
                removed = self.remote.invalidate(names, causal_text(token), version=version)
            except CacheUnavailable as exc:
                core.count("invalidations_failed", len(names))
                core.forget_local(names)
                core.unavailable(exc, "an invalidation")
                return 0
        # Again: a read that began before the L2 invalidation may have filled L1.
        core.forget_local(names)
        self._publish(names)
        return removed

    def forget_local(self, names: Sequence[str]) -> int:
        """Drop full key ``names`` from L1 and void L1 fills in flight: what a
        broadcast listener calls when another process changed them."""
        return self.core.forget_local(names)

    def _publish(self, names: Sequence[str]) -> None:
        if self.broadcast is None or not names:
            return
        try:
            self.broadcast.publish(names)
        except Exception:
            log.warning("cache: broadcasting %d invalidated keys failed", len(names), exc_info=True)

    # -- writes through the mlscale Cluster ------------------------------------------------

    def watch(self, cluster: Any) -> None:
        """Apply the invalidations declared with :meth:`invalidates` after each write
        ``cluster`` (a Cluster or AsyncCluster) commits, with its causal token."""
        cluster.on_commit(self._on_commit)
        self._watching.append(cluster)

    def unwatch(self, cluster: Any) -> None:
        """Stop hearing of ``cluster``'s commits."""
        cluster.remove_commit_hook(self._on_commit)
        self._watching.remove(cluster)

    @contextmanager
    def invalidates(
        self,
        *,
        keys: Sequence[Key] = (),
        tags: Sequence[KeyPart] = (),
        version: int | None = None,
    ) -> Iterator[Declared]:
        """Declare what the writes in this block invalidate: after each of them
        commits (on a watched cluster, in this thread or task), ``keys`` and ``tags``
        are invalidated with the commit's causal token. Nothing is invalidated if
        nothing commits."""
        decl, reset = self.core.declare(self, keys, tags, version)
        try:
            yield decl
        finally:
            self.core.undeclare(reset)

    def _on_commit(self, event: Committed) -> None:
        for decl in self.core.declared(self):
            decl.commit(event)
            self._apply(decl)

    def _apply(self, decl: Declared) -> None:
        token = decl.token_text
        self._invalidate_names(list(decl.keys), token, decl.version)
        for tag in decl.tags:
            self.invalidate_tag(tag, token, version=decl.version)

    def close(self) -> None:
        """Stop watching clusters (the tiers belong to the caller, who closes them)."""
        for cluster in list(self._watching):
            self.unwatch(cluster)

    # -- the decorator ----------------------------------------------------------------------

    def cached(
        self,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        key: Callable[..., Key] | None = None,
        tags: Sequence[KeyPart] = (),
        allow_stale: bool = False,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Cache a function's results by its arguments (a sync or an async function).

        The key is ``namespace`` (default: the function's qualified name) then
        ``key(*args, **kwargs)`` if given, else the str/int arguments themselves.
        The decorated function gains ``cache_key(*args, **kwargs)`` and
        ``invalidate(*args, **kwargs)``. An async function's cache calls run in a
        worker thread (this is the sync cache) unless L1 has the value; prefer
        :class:`AsyncCache` there.
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            ns = namespace or default_namespace(fn)
            keys_of = CallKeys(fn, ns, key)
            wrapper: Callable[..., Any]
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    parts = keys_of(args, kwargs)
                    # An L1 lookup never blocks (a lock held for dict updates only):
                    # answer a hit here rather than hop to a thread for it (a miss is
                    # counted once, by the get in the thread).
                    value = self.core.get_local(self.core.name(parts), recheck=True)
                    if value is not MISSING:
                        return value
                    loop = asyncio.get_running_loop()

                    def load() -> Any:
                        coro = fn(*args, **kwargs)
                        return asyncio.run_coroutine_threadsafe(coro, loop).result()

                    return await asyncio.to_thread(
                        self.get,
                        parts,
                        load,
                        ttl=ttl,
                        negative_ttl=negative_ttl,
                        tags=tags,
                        allow_stale=allow_stale,
                    )

            else:

                @functools.wraps(fn)
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    parts = keys_of(args, kwargs)
                    return self.get(
                        parts,
                        lambda: fn(*args, **kwargs),
                        ttl=ttl,
                        negative_ttl=negative_ttl,
                        tags=tags,
                        allow_stale=allow_stale,
                    )

            def cache_key(*args: Any, **kwargs: Any) -> tuple[KeyPart, ...]:
                return keys_of(args, kwargs)

            def invalidate(*args: Any, **kwargs: Any) -> bool:
                return self.delete(cache_key(*args, **kwargs))

            wrapper.cache_key = cache_key  # type: ignore[attr-defined]
            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return wrapper

        return decorate
