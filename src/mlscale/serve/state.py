"""What one service process holds between requests: the cluster, the stores on it,
the key verifier and a prediction writer per log; and how it all closes."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from ..config import load_config
from ..core.predictions.spec import PredictionLog
from ..engine.cluster_async import AsyncCluster
from ..metrics import MetricsMirror, start_mirror
from ..stores.features import AsyncFeatureStore
from ..stores.predictions import AsyncPredictionStore, AsyncPredictionWriter
from ..stores.registry import AsyncModelRegistry
from ..stores.registry.caching import async_registry_cache
from .keys import ApiKeys, KeyVerifier
from .settings import ServeSettings

__all__ = ["ServeState"]

log_ = logging.getLogger(__name__)


class ServeState:
    """The open cluster and stores of one process (made by the app's lifespan)."""

    def __init__(self, settings: ServeSettings, cluster: AsyncCluster) -> None:
        self.settings = settings
        self.cluster = cluster
        self.features = AsyncFeatureStore(cluster)
        self.predictions = AsyncPredictionStore(cluster)
        self.registry = AsyncModelRegistry(cluster)  # with its cache once started
        self.keys = ApiKeys(cluster)
        self.verifier = KeyVerifier(self.keys, settings.key_cache_s)
        self._writers: dict[str, tuple[PredictionLog, AsyncPredictionWriter]] = {}
        self._lock = asyncio.Lock()
        self._closing = False
        self._stack = AsyncExitStack()
        self._mirror: MetricsMirror | None = None

    async def start(self) -> None:
        """Open what needs I/O: the registry's cache (L1 + the cluster's Redis + the
        broadcast that keeps every worker's L1 coherent; none without a Redis) and the
        metrics mirror that carries this worker's counters to ``/metrics``."""
        caches = []
        if self.cluster.config.redis is not None:
            cache = await self._stack.enter_async_context(async_registry_cache(self.cluster.config))
            self.registry = AsyncModelRegistry(self.cluster, cache=cache)
            caches.append(cache)
        self._mirror = start_mirror(self.cluster, caches)

    @classmethod
    def open(cls, settings: ServeSettings) -> ServeState:
        """The state of a process serving the cluster of ``settings.config_path``."""
        return cls(settings, AsyncCluster(load_config(settings.config_path)))

    async def writer(self, name: str) -> tuple[PredictionLog, AsyncPredictionWriter]:
        """Log ``name`` and this process's writer of it (made on first use); a
        PredictionError if there is no such log."""
        found = self._writers.get(name)
        if found is not None:
            return found
        async with self._lock:
            found = self._writers.get(name)
            if found is None:
                log = await self.predictions.get(name)
                # A full queue makes a request wait at most flush_wait_s, then 503.
                writer = await self.predictions.writer(
                    log,
                    flush_interval_s=self.settings.flush_interval_s,
                    block_timeout_s=self.settings.flush_wait_s,
                )
                found = self._writers[name] = (log, writer)
            return found

    async def close(self) -> None:
        """Write what the writers acknowledged (up to ``shutdown_flush_s`` seconds each,
        at once), then close the cluster. Runs after the server stopped taking
        requests and the ones in flight finished."""
        timeout = self.settings.shutdown_flush_s
        writers = list(self._writers.items())
        try:
            results = await asyncio.gather(
                *(w.close(timeout=timeout) for _, (_, w) in writers), return_exceptions=True
            )
            for (name, _), result in zip(writers, results, strict=True):
                if isinstance(result, BaseException):
                    log_.error("closing the prediction writer of %s: %s", name, result)
                else:
                    log_.info("prediction writer of %s flushed and closed", name)
        finally:
            try:
                if self._mirror is not None:
                    self._mirror.stop()
                await self._stack.aclose()
            finally:
                await self.cluster.close()
