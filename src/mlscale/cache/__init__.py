"""The cache tier (ARCHITECTURE.md decision 8): an in-process L1 and a Redis L2 kept
coherent with writes. Work in progress (issue 13): the pieces below are built and
tested; of the policies over them, write-behind is built (cache-aside and
write-through are not yet).

- :mod:`.codec`: entries as bytes (msgpack, numpy arrays as raw buffers; never pickle).
- :mod:`.keys`: namespaced, versioned, Redis-Cluster-aware key names.
- :mod:`.local`: the L1 tier (TTL + LRU, bounded by entries and bytes, pins).
- :mod:`.remote` / :mod:`.remote_async` and :mod:`.scripts`: the L2 tier on Redis or
  Redis Cluster (leases, tombstones with causal tokens, version-guarded sets, tags).
- :mod:`.journal` and :mod:`.writebehind`: durable write-behind (a Redis Stream journal
  fsynced before each acknowledgement; a flusher upserting batches into PostgreSQL with
  a version guard, so a replay after a crash takes effect once; dirty L1 entries pinned).
- :mod:`.broadcast`: L1 coherence across processes (invalidations over Redis pub/sub,
  L1 flushed and bypassed while the subscription is down, epochs against late fills).
"""
