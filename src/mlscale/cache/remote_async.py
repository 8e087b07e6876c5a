"""The Redis tier for asyncio: :class:`AsyncRemoteCache`, the twin of
:class:`~mlscale.cache.remote.RemoteCache` over ``redis.asyncio``.

Only the sending differs: every decision (script calls, slot groups, phases,
reading replies, validation) comes from the same :class:`RemotePlans`, and errors
are translated by the same :func:`translated`. Semantics: see :mod:`.remote`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from ..errors import CacheError
from . import scripts
from .remote import (
    CacheUnavailable,
    Call,
    Entry,
    Got,
    LeaseGet,
    Plan,
    RemotePlans,
    RemoteSettings,
    Stored,
    check_replies,
    translated,
)

__all__ = ["AsyncRemoteCache"]

T = TypeVar("T")

AnyAsyncRedis = aioredis.Redis | aioredis.RedisCluster


class AsyncRemoteCache:
    """The Redis tier over ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``.

    Give it a client whose socket timeouts are set (``connect`` does). Safe to
    share across the tasks of one event loop.

    ``max_in_flight``: at most this many calls at once; the others wait up to
    ``wait_s`` seconds for one to end, then raise CacheUnavailable. ``connect``
    bounds a standalone client so (with a plain connection pool of as many
    connections), rather than with redis-py's asyncio BlockingConnectionPool, whose
    condition and timeout on every call cost about 15% of an L2 hit even when a
    connection is free; an uncontended semaphore costs nothing.
    """

    def __init__(
        self,
        client: AnyAsyncRedis,
        *,
        settings: RemoteSettings | None = None,
        max_in_flight: int | None = None,
        wait_s: float = 1.0,
    ) -> None:
        self.client = client
        self.plans = RemotePlans(
            settings or RemoteSettings(), cluster=isinstance(client, aioredis.RedisCluster)
        )
        self._closed = False
        if max_in_flight is not None and (type(max_in_flight) is not int or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be an int >= 1 or None, not {max_in_flight!r}")
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._max_in_flight = max_in_flight
        self._wait_s = wait_s

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        password: str | None = None,
        cluster: bool = False,
        connect_timeout_s: float = 0.5,
        timeout_s: float = 1.0,
        max_connections: int = 64,
        settings: RemoteSettings | None = None,
    ) -> AsyncRemoteCache:
        """A cache over a new client with timeouts set (no I/O until the first call);
        ``cluster`` for Redis Cluster (``host:port`` is any node). Seconds for the
        timeouts; ``max_connections`` per node (standalone callers beyond it wait
        up to ``timeout_s`` for a connection)."""
        opts: dict[str, Any] = {
            "host": host,
            "port": port,
            "password": password,
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": timeout_s,
            # As the sync default_retry(), in the asyncio Retry class.
            "retry": AsyncRetry(ExponentialBackoff(cap=0.05, base=0.01), 1),
            "max_connections": max_connections,
        }
        with translated():
            if cluster:
                return cls(aioredis.RedisCluster(**opts), settings=settings)
            pool = aioredis.ConnectionPool(**opts)
        # Callers beyond max_connections wait for a call to end (up to timeout_s)
        # rather than fail: a stampede of tasks must queue, not error.
        return cls(
            aioredis.Redis(connection_pool=pool),
            settings=settings,
            max_in_flight=max_connections,
            wait_s=timeout_s,
        )

    # -- sending ------------------------------------------------------------------

    async def _send(self, calls: list[Call]) -> list[Any]:
        slots = self._slots
        if slots is None:
            return await self._send_now(calls)
        if slots.locked():
            try:
                async with asyncio.timeout(self._wait_s):
                    await slots.acquire()
            except TimeoutError as exc:
                raise CacheUnavailable(
                    f"no Redis connection came free within {self._wait_s} s "
                    f"({self._max_in_flight} calls in flight)"
                ) from exc
        else:
            await slots.acquire()  # free: returns at once
        try:
            return await self._send_now(calls)
        finally:
            slots.release()

    async def _send_now(self, calls: list[Call]) -> list[Any]:
        if len(calls) == 1:
            c = calls[0]
            try:
                return [await self.client.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)]
            except redis.exceptions.NoScriptError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for c in calls:
            pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _load_scripts(self) -> None:
        for script in scripts.ALL_SCRIPTS:
            await self.client.script_load(script.source)

    async def _run(self, plan: Plan[T]) -> T:
        if self._closed:
            raise CacheError("this AsyncRemoteCache is closed")
        phases = plan.phases if self.plans.cluster else [[c for p in plan.phases for c in p]]
        replies: list[Any] = []
        with translated():
            for phase in phases:
                got = await self._send(phase) if phase else []
                missing = check_replies(got)
                if missing:
                    await self._load_scripts()
                    again = await self._send([phase[i] for i in missing])
                    if check_replies(again):
                        raise CacheError("Redis did not keep the cache's Lua scripts")
                    for i, reply in zip(missing, again, strict=True):
                        got[i] = reply
                replies += got
        return plan.finish(replies)

    # -- the API (documented on RemoteCache) ------------------------------------------

    async def get(self, key: str) -> Got:
        """The fresh value or cached absence of ``key``, or a miss."""
        return await self._run(self.plans.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[Got]:
        """``get`` of every key in one round trip per node; in the order of ``keys``."""
        return await self._run(self.plans.get_many(keys))

    async def lease_get(
        self,
        key: str,
        *,
        lease_ttl_ms: int | None = None,
        allow_stale: bool = False,
        tags: Sequence[str] = (),
    ) -> LeaseGet:
        """A hit, or a lease to fill the key (exactly one caller at a time), or WAIT."""
        return await self._run(
            self.plans.lease_get(key, lease_ttl_ms=lease_ttl_ms, allow_stale=allow_stale, tags=tags)
        )

    async def lease_set(
        self,
        key: str,
        token: str,
        value: bytes | None,
        version: int,
        *,
        ttl_ms: int | None = None,
        tags: Sequence[str] = (),
    ) -> Stored:
        """Fill ``key`` with the lease ``token``; refused if voided, expired or older."""
        return await self._run(
            self.plans.lease_set(key, token, value, version, ttl_ms=ttl_ms, tags=tags)
        )

    async def set(
        self,
        key: str,
        value: bytes | None,
        version: int,
        *,
        ttl_ms: int | None = None,
        tags: Sequence[str] = (),
    ) -> Stored:
        """Write-through: store unless a newer version is or was cached; voids leases."""
        plan = self.plans.set_many([Entry(key, value, version, ttl_ms, tags)])
        return (await self._run(plan))[0]

    async def set_many(self, entries: Sequence[Entry]) -> list[Stored]:
        """``set`` of many entries in one round trip per node (two with tags on a cluster)."""
        return await self._run(self.plans.set_many(entries))

    async def invalidate(
        self,
        keys: Iterable[str],
        causal_token: str | None = None,
        *,
        version: int | None = None,
        tombstone_ttl_ms: int | None = None,
    ) -> int:
        """Remove values, void leases, leave tombstones; how many held a fresh value."""
        return await self._run(
            self.plans.invalidate(
                keys, causal_token, version=version, tombstone_ttl_ms=tombstone_ttl_ms
            )
        )

    async def invalidate_tag(
        self,
        tag: str,
        causal_token: str | None = None,
        *,
        version: int | None = None,
        tombstone_ttl_ms: int | None = None,
    ) -> int:
        """``invalidate`` every member of ``tag``; how many held a fresh value."""
        members = await self.tag_members(tag)
        return await self.invalidate(
            members, causal_token, version=version, tombstone_ttl_ms=tombstone_ttl_ms
        )

    async def tag_members(self, tag: str) -> list[str]:
        """The keys whose membership of ``tag`` is not over (e.g. to drop them from L1)."""
        return await self._run(self.plans.tag_members(tag))

    async def aclose(self) -> None:
        """Close the client's connections; later calls raise CacheError."""
        self._closed = True
        await self.client.aclose()

    async def __aenter__(self) -> AsyncRemoteCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
