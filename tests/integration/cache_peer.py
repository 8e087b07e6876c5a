"""A second process holding a :class:`~mlscale.cache.Cache` over L1 + L2 +
L1Broadcast, driven by commands over a multiprocessing pipe (spawned: it shares
nothing with the test process but the Redis server).

The "database" of its loaders is a plain Redis string per key (``truth:<key>``),
written by the test process; ``get`` answers what the façade serves.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from mlscale.cache import Cache, KeyBuilder, LocalCache, RemoteCache
from mlscale.cache.broadcast import L1Broadcast


def serve(conn: Connection, port: int, password: str, namespace: str) -> None:
    """Run commands from ``conn`` until ``stop``; every command gets one reply."""
    remote = RemoteCache.connect("127.0.0.1", port, password=password)
    local = LocalCache(max_entries=100_000)
    bc = L1Broadcast(remote.client, KeyBuilder(namespace), local)
    cache = Cache(namespace, local=local, remote=remote, broadcast=bc)
    conn.send(("started", bc.start(wait_s=10.0)))
    truth = remote.client

    def get(key: str, fixed: Any = None) -> Any:
        def load() -> Any:
            if fixed is not None:
                return fixed
            raw = truth.get(f"truth:{namespace}:{key}")
            return None if raw is None else int(raw)

        return cache.get(key, load)

    try:
        while True:
            cmd, *args = conn.recv()
            reply: Any
            if cmd == "get":
                reply = get(*args)
            elif cmd == "get_many":
                keys, fixed = args
                reply = [get(k, fixed) for k in keys]
            elif cmd == "await_fresh":
                # Poll the façade until it serves ``want``: the time of the first
                # fresh read, and how many stale reads came after ``stale_after_ns``.
                key, want, stale_after_ns, timeout_s = args
                deadline = time.monotonic() + timeout_s
                stale, fresh_at = 0, None
                while time.monotonic() < deadline:
                    got = get(key)
                    now = time.time_ns()
                    if got == want:
                        fresh_at = now
                        break
                    stale += now > stale_after_ns
                reply = (fresh_at, stale)
            elif cmd == "status":
                stats = {**bc.stats().to_dict(), "cache": cache.stats().to_dict()}
                reply = (bc.l1_trusted, len(local), stats)
            elif cmd == "stop":
                conn.send("stopped")
                return
            else:
                reply = ValueError(f"unknown command {cmd!r}")
            conn.send(reply)
    finally:
        bc.stop()
        remote.close()
