"""A registry cache made from a cluster's config: L1 in process, L2 on the cluster's
Redis, and the L1 broadcast that keeps every process's L1 coherent.

    with registry_cache(cluster.config) as cache:
        registry = ModelRegistry(cluster, cache=cache)

    async with async_registry_cache(cluster.config) as cache:
        registry = AsyncModelRegistry(cluster, cache=cache)

Every process that should agree on a model's aliases uses the same ``namespace``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager

import redis

from ...cache.broadcast import L1Broadcast
from ...cache.keys import KeyBuilder
from ...cache.local import LocalCache
from ...cache.policy import CachePolicy
from ...cache.remote import RemoteCache
from ...cache.remote_async import AsyncRemoteCache
from ...cache.tiered import Cache
from ...cache.tiered_async import AsyncCache
from ...config import ClusterConfig
from ...engine.connect import redis_password
from ...errors import RegistryError

__all__ = ["NAMESPACE", "async_registry_cache", "registry_cache"]

NAMESPACE = "mlscale-registry"


@contextmanager
def registry_cache(
    config: ClusterConfig,
    namespace: str = NAMESPACE,
    *,
    l1: bool = True,
    l1_entries: int = 10_000,
    policy: CachePolicy | None = None,
    wait_s: float = 5.0,
) -> Iterator[Cache]:
    """A :class:`~mlscale.cache.Cache` over the Redis of ``config`` (L2) with, if ``l1``,
    an L1 of ``l1_entries`` kept coherent by an L1 broadcast (started here, waiting up
    to ``wait_s`` seconds for its subscription; stopped on exit). ``l1=False``: L2 only,
    every lookup a Redis round trip."""
    rc = config.redis
    if rc is None:
        raise RegistryError("the registry's cache needs a [redis] section in the cluster config")
    with ExitStack() as stack:
        remote = stack.enter_context(
            RemoteCache.connect(rc.host, rc.port, password=redis_password(config))
        )
        keys = KeyBuilder(namespace)
        if not l1:
            cache = Cache(keys, remote=remote, policy=policy)
            stack.callback(cache.close)
            yield cache
            return
        local = LocalCache(max_entries=l1_entries)
        broadcast = L1Broadcast(remote.client, keys, local)
        broadcast.start(wait_s=wait_s)
        stack.callback(broadcast.stop)
        cache = Cache(keys, local=local, remote=remote, broadcast=broadcast, policy=policy)
        stack.callback(cache.close)
        yield cache


@asynccontextmanager
async def async_registry_cache(
    config: ClusterConfig,
    namespace: str = NAMESPACE,
    *,
    l1: bool = True,
    l1_entries: int = 10_000,
    policy: CachePolicy | None = None,
    wait_s: float = 5.0,
) -> AsyncIterator[AsyncCache]:
    """:func:`registry_cache` for asyncio: an :class:`~mlscale.cache.AsyncCache` whose
    L2 calls are awaited. The L1 broadcast keeps its own thread and a sync client (it
    publishes only on changes, rare next to lookups, and listens off the loop)."""
    rc = config.redis
    if rc is None:
        raise RegistryError("the registry's cache needs a [redis] section in the cluster config")
    password = redis_password(config)
    async with AsyncExitStack() as stack:
        remote = AsyncRemoteCache.connect(rc.host, rc.port, password=password)
        stack.push_async_callback(remote.aclose)
        keys = KeyBuilder(namespace)
        if not l1:
            cache = AsyncCache(keys, remote=remote, policy=policy)
            stack.callback(cache.close)
            yield cache
            return
        local = LocalCache(max_entries=l1_entries)
        client = redis.Redis(host=rc.host, port=rc.port, password=password, socket_timeout=1.0)
        stack.callback(client.close)
        broadcast = L1Broadcast(client, keys, local)
        await asyncio.to_thread(broadcast.start, wait_s=wait_s)  # off the loop
        stack.callback(broadcast.stop)
        cache = AsyncCache(keys, local=local, remote=remote, broadcast=broadcast, policy=policy)
        stack.callback(cache.close)
        yield cache
