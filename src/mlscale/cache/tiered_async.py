"""The cache façade for asyncio: :class:`AsyncCache`, the twin of
:class:`~mlscale.cache.tiered.Cache` over :class:`~.remote_async.AsyncAsyncRemoteCache`.

Every decision comes from the same :class:`~.policy.CacheCore`; semantics are those
of :mod:`.tiered`. Differences: loaders, ``write`` callables and the broadcast's
``publish`` may be sync or async (awaited when they return an awaitable); callers
of one event loop coalesce on a per-key ``asyncio.Lock``; ``invalidates`` is an
``async with`` block whose declared invalidations are applied when the block ends
(after the commits it saw: a commit hook cannot await), and the decorator takes
async functions only (use :class:`Cache` for sync ones).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from ..core.causal import CausalToken
from ..engine.hooks import Committed
from .keys import KeyBuilder, KeyPart
from .local import LocalCache
from .policy import (
    MISSING,
    AsyncBroadcaster,
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
)
from .remote import CacheUnavailable, Entry, LeaseOutcome
from .remote_async import AsyncRemoteCache

__all__ = ["AsyncCache"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncCache:
    """A namespaced cache over an L1, an L2 (asyncio), or both; see ``Cache``.

    Safe to share across the tasks of one event loop.
    """

    def __init__(
        self,
        namespace: str | KeyBuilder,
        *,
        local: LocalCache | None = None,
        remote: AsyncRemoteCache | None = None,
        broadcast: Broadcaster | AsyncBroadcaster | None = None,
        policy: CachePolicy | None = None,
    ) -> None:
        if local is None and remote is None:
            raise ValueError("an AsyncCache needs a local (L1) tier, a remote (L2) tier, or both")
        keys = namespace if isinstance(namespace, KeyBuilder) else KeyBuilder(namespace)
        settings = remote.plans.settings if remote is not None else None
        coherence = coherence_of(broadcast, local, self.forget_local)
        self.core = CacheCore(
            keys, local, policy or CachePolicy(), remote is not None, settings, coherence
        )
        self.remote = remote
        self.broadcast = broadcast
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
        """Counters since creation (see :class:`CacheStats`)."""
        return self.core.stats()

    # -- reads ------------------------------------------------------------------------

    async def get(
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
            value = await self._get_remote(name, self.core.stamp(name))
            if value is MISSING:
                self.core.count("misses")
                return default
            return value
        return await self._read_through(name, loader, ttl, negative_ttl, tags, allow_stale)

    async def _get_remote(self, name: str, stamp: Stamp) -> Any:
        if self.remote is None:
            return MISSING
        try:
            got = await self.remote.get(name)
        except CacheUnavailable as exc:
            self.core.unavailable(exc, "a get")
            return MISSING
        value = self.core.got_value(got)
        if value is not MISSING:
            self.core.fill_local(
                name, value, got.version or 0, self.core.ttl(value, None, None), stamp, None
            )
        return value

    async def _read_through(
        self,
        name: str,
        loader: Callable[..., Any],
        ttl: float | None,
        negative_ttl: float | None,
        tags: Sequence[KeyPart],
        allow_stale: bool,
    ) -> Any:
        deadline = self.core.deadline()
        lock: asyncio.Lock = self._flights.enter(name, asyncio.Lock)
        try:
            try:
                await asyncio.wait_for(lock.acquire(), max(0.0, deadline - time.monotonic()))
                held = True
            except TimeoutError:
                held = False
            try:
                if not held:
                    # Another task of this loop has been filling for too long.
                    self.core.count("lease_waits")
                    self.core.count("lease_wait_timeouts")
                    self.core.count("misses")
                    return (await self._load(loader, None))[0]
                value = self.core.get_local(name, recheck=True)
                if value is not MISSING:
                    return value  # filled by the task we waited for
                return await self._fill(
                    name, loader, ttl, negative_ttl, tags, allow_stale, deadline
                )
            finally:
                if held:
                    lock.release()
        finally:
            self._flights.leave(name)

    async def _fill(
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
            value, version = await self._load(loader, None)
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
                lease = await self.remote.lease_get(name, allow_stale=allow_stale, tags=tag_names)
            except CacheUnavailable as exc:
                core.unavailable(exc, "a read-through")
                core.count("misses")
                return (await self._load(loader, None))[0]
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
                        await self.remote.invalidate([name])
                    except CacheUnavailable as exc:
                        core.unavailable(exc, "repairing a corrupt entry")
                    continue
                core.count("misses")
                return (await self._load(loader, None))[0]
            if lease.outcome is LeaseOutcome.GRANTED:
                core.count("misses")
                value, version = await self._load(loader, lease.causal_token)
                blob = core.encode(value)
                ttl_s = core.ttl(value, ttl, negative_ttl)
                try:
                    stored = await self.remote.lease_set(
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
                return (await self._load(loader, lease.causal_token))[0]
            await asyncio.sleep(delay)

    async def _load(self, loader: Callable[..., Any], token: str | None) -> tuple[Any, int]:
        started = time.perf_counter()
        try:
            loaded = self.core.loader_call(loader, token)()
            if inspect.isawaitable(loaded):
                loaded = await loaded
        except BaseException:
            self.core.loaded(started, ok=False)
            raise
        self.core.loaded(started, ok=True)
        return unwrap(loaded)

    async def get_many(self, keys: Iterable[Key]) -> dict[Key, Any]:
        """The cached values of ``keys`` (a cached None is None; misses are absent):
        L1 first, then one L2 round trip per node for the rest."""
        core = self.core
        wanted = [(k, core.name(k)) for k in keys]
        out, rest = core.lookup_local_many(wanted)
        if rest and self.remote is not None:
            stamps = core.stamps(rest)  # before L2 is read: see fill_local
            try:
                gots = await self.remote.get_many([name for _, name in rest])
            except CacheUnavailable as exc:
                core.unavailable(exc, "a get_many")
                gots = []
            core.took_remote_many(rest, gots, stamps, out)
        core.count("misses", len(wanted) - len(out))
        return out

    # -- writes -----------------------------------------------------------------------

    async def set(
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
            await self.set_many(
                {key: value if version is None else Versioned(value, version)}, ttl=ttl, tags=tags
            )
            == 1
        )

    async def set_many(
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
                stored = [bool(s) for s in await self.remote.set_many(entries)]
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
        await self._publish(names)
        return sum(stored)

    async def write_through(
        self,
        key: Key,
        value: Any,
        version: int,
        *,
        write: Callable[[], Any] | None = None,
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
        if inspect.isawaitable(result):
            result = await result
        cached = await self.set(key, value, version=version, ttl=ttl, tags=tags)
        return WriteResult(result, cached)

    # -- invalidation -------------------------------------------------------------------

    async def delete(self, key: Key) -> bool:
        """Invalidate one key; whether it held a fresh value."""
        return await self.invalidate([key]) > 0

    async def invalidate(
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
        return await self._invalidate_names([self.core.name(k) for k in keys], token, version)

    async def invalidate_tag(
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
            return await self._invalidate_names(core.pop_local_tag(tag_name), token, version)
        try:
            members = await self.remote.tag_members(tag_name)
        except CacheUnavailable as exc:
            core.count("invalidations_failed")
            # We cannot tell which L1 entries carry the tag: drop them all.
            core.clear_local()
            core.unavailable(exc, "a tag invalidation")
            return 0
        return await self._invalidate_names(members, token, version)

    async def _invalidate_names(
        self, names: list[str], token: CausalToken | str | None, version: int | None
    ) -> int:
        core = self.core
        if not names:
            return 0
        removed = core.forget_local(names)
        core.count("invalidations", len(names))
        if self.remote is not None:
            try:
                removed = await self.remote.invalidate(names, causal_text(token), version=version)
            except CacheUnavailable as exc:
                core.count("invalidations_failed", len(names))
                core.forget_local(names)
                core.unavailable(exc, "an invalidation")
                return 0
        # Again: a read that began before the L2 invalidation may have filled L1.
        core.forget_local(names)
        await self._publish(names)
        return removed

    def forget_local(self, names: Sequence[str]) -> int:
        """Drop full key ``names`` from L1 and void L1 fills in flight: what a
        broadcast listener calls when another process changed them."""
        return self.core.forget_local(names)

    async def _publish(self, names: Sequence[str]) -> None:
        if self.broadcast is None or not names:
            return
        try:
            sent = self.broadcast.publish(names)
            if inspect.isawaitable(sent):
                await sent
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

    @asynccontextmanager
    async def invalidates(
        self,
        *,
        keys: Sequence[Key] = (),
        tags: Sequence[KeyPart] = (),
        version: int | None = None,
    ) -> AsyncIterator[Declared]:
        """Declare what the writes in this block invalidate: when the block ends (even
        by an exception) and a watched cluster committed writes in it (in this task),
        ``keys`` and ``tags`` are invalidated with the commits' merged causal token.
        Nothing is invalidated if nothing committed."""
        decl, reset = self.core.declare(self, keys, tags, version)
        try:
            yield decl
        finally:
            self.core.undeclare(reset)
            if decl.commits:
                await self._apply(decl)

    def _on_commit(self, event: Committed) -> None:
        # A hook cannot await: record the commit; the block applies it as it ends.
        for decl in self.core.declared(self):
            decl.commit(event)

    async def _apply(self, decl: Declared) -> None:
        token = decl.token_text
        await self._invalidate_names(list(decl.keys), token, decl.version)
        for tag in decl.tags:
            await self.invalidate_tag(tag, token, version=decl.version)

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
        """Cache an async function's results by its arguments (see ``Cache.cached``);
        ``invalidate(*args, **kwargs)`` is a coroutine function here."""

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            ns = namespace or default_namespace(fn)
            keys_of = CallKeys(fn, ns, key)
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(
                    f"AsyncCache.cached decorates async functions; {fn.__qualname__} is not "
                    "one (use Cache.cached for a sync function)"
                )

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                parts = keys_of(args, kwargs)
                return await self.get(
                    parts,
                    lambda: fn(*args, **kwargs),
                    ttl=ttl,
                    negative_ttl=negative_ttl,
                    tags=tags,
                    allow_stale=allow_stale,
                )

            def cache_key(*args: Any, **kwargs: Any) -> tuple[KeyPart, ...]:
                return keys_of(args, kwargs)

            async def invalidate(*args: Any, **kwargs: Any) -> bool:
                return await self.delete(cache_key(*args, **kwargs))

            wrapper.cache_key = cache_key  # type: ignore[attr-defined]
            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return wrapper  # type: ignore[return-value]

        return decorate
