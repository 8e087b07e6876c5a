"""The cache tier (ARCHITECTURE.md decision 8): an in-process L1 and a Redis L2 kept
coherent with writes (issue 13: built and tested piece by piece; the façade does not
yet drive the cross-process broadcast or the write-behind, see below).

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
  Used on its own for now, not yet through :class:`Cache`.
- :mod:`.broadcast`: L1 coherence across processes (invalidations over Redis pub/sub,
  L1 flushed and bypassed while the subscription is down, epochs against late fills).
  :class:`Cache` takes it as its ``broadcast`` (publish after invalidations); its
  listener does not yet go through ``Cache.forget_local``.
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
