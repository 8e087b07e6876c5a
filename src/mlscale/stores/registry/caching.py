"""A registry cache made from a cluster's config: L1 in process, L2 on the cluster's
Redis, and the L1 broadcast that keeps every process's L1 coherent.

    with registry_cache(cluster.config) as cache:
        registry = ModelRegistry(cluster, cache=cache)

    async with async_registry_cache(cluster.config) as cache:
        registry = AsyncModelRegistry(cluster, cache=cache)

Every process that should agree on a model's aliases uses the same ``namespace``.
Both builders follow one :class:`_Plan` (the Redis endpoint, the keys, the L1 and its
broadcast); they differ only in the L2 client and in starting the broadcast off the
event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

import redis

from ...cache.broadcast import L1Broadcast
from ...cache.keys import KeyBuilder
from ...cache.local import LocalCache
from ...cache.policy import CachePolicy
from ...cache.remote import AnyRedis, RemoteCache
from ...cache.remote_async import AsyncRemoteCache
from ...cache.tiered import Cache
from ...cache.tiered_async import AsyncCache
from ...config import ClusterConfig, RedisConfig
from ...engine.connect import redis_password
from ...errors import RegistryError

__all__ = ["NAMESPACE", "async_registry_cache", "registry_cache"]

NAMESPACE = "mlscale-registry"


@dataclass(frozen=True)
class _Plan:
    """What both builders decide alike, before any connection: the cluster's Redis,
    its password, the namespace's keys, and the L1's size (None: no L1)."""

    endpoint: RedisConfig
    password: str | None
    keys: KeyBuilder
    l1_entries: int | None

    @classmethod
    def of(cls, config: ClusterConfig, namespace: str, l1: bool, l1_entries: int) -> _Plan:
        if config.redis is None:
            raise RegistryError(
                "the registry's cache needs a [redis] section in the cluster config"
            )
        return cls(
            config.redis, redis_password(config), KeyBuilder(namespace), l1_entries if l1 else None
        )

    def l1(self, client: AnyRedis) -> tuple[LocalCache | None, L1Broadcast | None]:
        """A fresh L1 and its broadcast over ``client`` (not started yet), or none."""
        if self.l1_entries is None:
            return None, None
        local = LocalCache(max_entries=self.l1_entries)
        return local, L1Broadcast(client, self.keys, local)


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
    plan = _Plan.of(config, namespace, l1, l1_entries)
    rc = plan.endpoint
    with ExitStack() as stack:
        remote = stack.enter_context(RemoteCache.connect(rc.host, rc.port, password=plan.password))
        local, broadcast = plan.l1(remote.client)
        if broadcast is not None:
            broadcast.start(wait_s=wait_s)
            stack.callback(broadcast.stop)
        cache = Cache(plan.keys, local=local, remote=remote, broadcast=broadcast, policy=policy)
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
    plan = _Plan.of(config, namespace, l1, l1_entries)
    rc = plan.endpoint
    async with AsyncExitStack() as stack:
        remote = AsyncRemoteCache.connect(rc.host, rc.port, password=plan.password)
        stack.push_async_callback(remote.aclose)
        local, broadcast = None, None
        if plan.l1_entries is not None:
            client = redis.Redis(
                host=rc.host, port=rc.port, password=plan.password, socket_timeout=1.0
            )
            stack.callback(client.close)
            local, broadcast = plan.l1(client)
        if broadcast is not None:
            await asyncio.to_thread(broadcast.start, wait_s=wait_s)  # off the loop
            stack.callback(broadcast.stop)
        cache = AsyncCache(
            plan.keys, local=local, remote=remote, broadcast=broadcast, policy=policy
        )
        stack.callback(cache.close)
        yield cache
