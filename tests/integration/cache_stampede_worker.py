"""One process of the cache stampede test: ``threads`` threads through a sync Cache
and ``tasks`` asyncio tasks through an AsyncCache, all asking for one cold key at
``start_at`` (wall clock). The loader's SQL bumps a counter row on the primary, so
the database itself counts the reads. Run by multiprocessing (spawn)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from mlscale import AsyncCluster, Cluster
from mlscale.cache import (
    AsyncCache,
    AsyncRemoteCache,
    Cache,
    CachePolicy,
    LocalCache,
    RemoteCache,
)


def run(spec: dict[str, Any], out: Any) -> None:
    """Run the callers of one process; put ``(values, stats dicts)`` on ``out``."""
    sql = spec["sql"]
    conn = {"password": spec["password"], "cluster": spec["kind"] == "cluster"}
    policy = CachePolicy(lease_wait_s=10.0)
    values: list[Any] = []
    lock = threading.Lock()
    with (
        Cluster.from_file(spec["config"]) as cluster,
        RemoteCache.connect("127.0.0.1", spec["port"], **conn) as remote,
    ):
        cache = Cache(spec["namespace"], local=LocalCache(), remote=remote, policy=policy)

        def load() -> Any:
            return cluster.primary().fetch_value(sql, (spec["item"],))

        def caller() -> None:
            time.sleep(max(0.0, spec["start_at"] - time.time()))
            v = cache.get(spec["key"], load)
            with lock:
                values.append(v)

        async def tasks() -> tuple[list[Any], Any]:
            async with (
                AsyncCluster.from_file(spec["config"]) as acluster,
                AsyncRemoteCache.connect("127.0.0.1", spec["port"], **conn) as aremote,
            ):
                acache = AsyncCache(
                    spec["namespace"], local=LocalCache(), remote=aremote, policy=policy
                )

                async def aload() -> Any:
                    return await acluster.primary().fetch_value(sql, (spec["item"],))

                async def one() -> Any:
                    await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
                    return await acache.get(spec["key"], aload)

                got = await asyncio.gather(*[one() for _ in range(spec["tasks"])])
                return list(got), acache.stats()

        async_out: list[Any] = []
        loop_thread = threading.Thread(target=lambda: async_out.append(asyncio.run(tasks())))
        threads = [threading.Thread(target=caller) for _ in range(spec["threads"])]
        loop_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        loop_thread.join()
        got, astats = async_out[0]
        out.put((values + got, [cache.stats().to_dict(), astats.to_dict()]))
