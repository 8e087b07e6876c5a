"""A registry cache made from a cluster's config: L1 in process, L2 on the cluster's
Redis, and the L1 broadcast that keeps every process's L1 coherent.

    with registry_cache(cluster.config) as cache:
        registry = ModelRegistry(cluster, cache=cache)

Every process that should agree on a model's aliases uses the same ``namespace``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ...cache.broadcast import L1Broadcast
from ...cache.keys import KeyBuilder
from ...cache.local import LocalCache
from ...cache.policy import CachePolicy
from ...cache.remote import RemoteCache
from ...cache.tiered import Cache
from ...config import ClusterConfig
from ...engine.connect import redis_password
from ...errors import RegistryError

__all__ = ["NAMESPACE", "registry_cache"]

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
