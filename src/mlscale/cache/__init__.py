"""The cache tier (ARCHITECTURE.md decision 8): an in-process L1 and a Redis L2 kept
coherent with writes (issue 13).

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
- :mod:`.journal` and :mod:`.writebehind`: durable write-behind (a Redis Stream journal
  fsynced before each acknowledgement; a flusher upserting batches into PostgreSQL with
  a version guard, so a replay after a crash takes effect once; dirty L1 entries pinned).
  Through :class:`Cache`: ``Cache(..., write_behind=...)`` and ``cache.write_behind``
  (not yet through :class:`AsyncCache`).
- :mod:`.broadcast`: L1 coherence across processes (invalidations over Redis pub/sub,
  L1 flushed and bypassed while the subscription is down, epochs against late fills).
  :class:`Cache` takes it as its ``broadcast``: publishes after invalidations, serves
  L1 only while it is trusted, stamps fills with its epoch, and hears invalidations
  through ``Cache.forget_local``.
"""

from .codec import CorruptEntry
from .keys import KeyBuilder
from .local import LocalCache
from .policy import (
    AsyncBroadcaster,
    AsyncCoherentBroadcaster,
    Broadcaster,
    CachePolicy,
    CacheStats,
    CoherentBroadcaster,
    Key,
    L1Coherence,
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
    "AsyncCoherentBroadcaster",
    "AsyncRemoteCache",
    "Broadcaster",
    "Cache",
    "CachePolicy",
    "CacheStats",
    "CacheUnavailable",
    "CoherentBroadcaster",
    "CorruptEntry",
    "Key",
    "KeyBuilder",
    "L1Coherence",
    "LocalCache",
    "OnUnavailable",
    "RemoteCache",
    "RemoteSettings",
    "TierStats",
    "Versioned",
    "WriteResult",
]
