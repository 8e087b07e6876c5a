"""The second process of the L1 coherence tests: its own L1 and L1Broadcast, driven
by commands over a multiprocessing pipe (started with the spawn method, so it shares
nothing with the test process but the Redis server).

It reads its L1 the way the cache façade must: only while ``l1_trusted``, and
stamping each fill with the epoch read before the value was loaded.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from mlscale.cache.broadcast import L1Broadcast
from mlscale.cache.keys import KeyBuilder
from mlscale.cache.local import LocalCache
from mlscale.cache.remote import RemoteCache


def serve(
    conn: Connection,
    port: int,
    password: str,
    cluster: bool,
    namespace: str,
    heartbeat_s: float,
    heartbeat_timeout_s: float,
) -> None:
    """Run commands from ``conn`` until ``stop``; every command gets one reply
    (``await_drop`` first sends ``("polling",)``)."""
    cache = RemoteCache.connect("127.0.0.1", port, password=password, cluster=cluster)
    local = LocalCache(max_entries=100_000)
    bc = L1Broadcast(
        cache.client,
        KeyBuilder(namespace),
        local,
        heartbeat_s=heartbeat_s,
        heartbeat_timeout_s=heartbeat_timeout_s,
    )
    conn.send(("started", bc.start(wait_s=10.0)))
    pending: dict[str, tuple[int, int]] = {}  # key -> (epoch, generation) at fill start

    def served(keys: list[str]) -> list[str]:
        return [k for k in keys if bc.l1_trusted and local.get(k) is not None]

    try:
        while True:
            cmd, *args = conn.recv()
            reply: Any
            if cmd == "fill":
                keys, value = args
                epoch = bc.epoch
                reply = [local.set(k, value, ttl=600, epoch=epoch).stored for k in keys]
            elif cmd == "begin_fill":
                pending[args[0]] = (bc.epoch, local.generation)
                reply = bc.epoch
            elif cmd == "finish_fill":
                key, value = args
                epoch, since = pending.pop(key)
                reply = local.set(key, value, ttl=600, epoch=epoch, since=since).outcome.value
            elif cmd == "served":
                reply = served(args[0])
            elif cmd == "await_drop":
                key, timeout_s = args
                conn.send(("polling",))
                deadline = time.monotonic() + timeout_s
                reply = None
                while time.monotonic() < deadline:
                    if local.get(key) is None:
                        reply = time.time_ns()
                        break
                    time.sleep(0.0002)
            elif cmd == "status":
                reply = (bc.l1_trusted, len(local), bc.stats().to_dict())
            elif cmd == "stop":
                conn.send("stopped")
                return
            else:
                reply = ValueError(f"unknown command {cmd!r}")
            conn.send(reply)
    finally:
        bc.stop()
        cache.close()
