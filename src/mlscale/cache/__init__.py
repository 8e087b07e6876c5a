"""The cache tier (ARCHITECTURE.md decision 8): an in-process L1 and a Redis L2 kept
coherent with writes.

Start with :class:`Cache` (or :class:`AsyncCache`): cache-aside and read-through with
leases (one load per cold key across processes), write-through, invalidation by key,
by tag and after commits of the mlscale Cluster, negative caching, TTL jitter, and
typed :class:`CacheStats`. The pieces under it:

- :mod:`.tiered` / :mod:`.tiered_async` and :mod:`.policy`: the façade and the
  decisions it makes (tunables in :class:`CachePolicy`).
- :mod:`.codec`: entries as bytes (msgpack, numpy arrays as raw buffers; never pickle).
- :mod:`.keys`: namespaced, versioned, Redis-Cluster-aware key names.
- :mod:`.local`: the L1 tier (TTL + LRU, bounded by entries and bytes, pins).
- :mod:`.remote` / :mod:`.remote_async` and :mod:`.scripts`: the L2 tier on Redis or
  Redis Cluster (leases, tombstones with causal tokens, version-guarded sets, tags).

Write-behind and cross-process L1 invalidation are built separately (issue 13).
"""

from .codec import CorruptEntry
from .keys import KeyBuilder
from .local import LocalCache
from .policy import (
    AsyncBroadcaster,
    Broadcaster,
    CachePolicy,
    CacheStats,
    Key,
    OnUnavailable,
    TierStats,
    Versioned,
    WriteResult,
)
from .remote import CacheUnavailable, RemoteCache, RemoteSettings
from .remote_async import AsyncRemoteCache
from .tiered import Cache
from .tiered_async import AsyncCache

__all__ = [
    "AsyncBroadcaster",
    "AsyncCache",
    "AsyncRemoteCache",
    "Broadcaster",
    "Cache",
    "CachePolicy",
    "CacheStats",
    "CacheUnavailable",
    "CorruptEntry",
    "Key",
    "KeyBuilder",
    "LocalCache",
    "OnUnavailable",
    "RemoteCache",
    "RemoteSettings",
    "TierStats",
    "Versioned",
    "WriteResult",
]
