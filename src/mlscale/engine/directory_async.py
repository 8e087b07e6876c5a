"""The sharding directory a process routes by (async source).

Loaded from the catalog on first use, then kept current by the catalog watcher
(NOTIFY, and a poll): a newer directory is adopted before the next call routes.

``directory_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ..core.classify import Classification
from ..core.keyroute import CopyIn
from ..core.sharding import EMPTY, ShardDirectory
from ..core.shardplan import NO_KEY, ShardPlan, split_copy_rows
from ..core.shardplan import plan as plan_shards
from ..core.sqltree import references_tables
from ..errors import NodeUnavailableError
from .catalog_async import load_directory
from .context import ClusterContext
from .lazy import OnFirstUse
from .nodes_async import AsyncNodes
from .watch_async import AsyncCatalogWatch

__all__ = ["AsyncDirectory"]

log = logging.getLogger(__name__)


class AsyncDirectory:
    """The current :class:`ShardDirectory`: maps and sharded tables, versioned."""

    def __init__(
        self,
        context: ClusterContext[AsyncConnectionPool[Any]],
        nodes: AsyncNodes,
        watch: OnFirstUse[AsyncCatalogWatch],
    ) -> None:
        self._context = context
        self._nodes = nodes
        self._watch = watch
        self._current: ShardDirectory = EMPTY
        self._loaded = False
        self._confirmed_at = 0.0  # when a refresh last read the catalog
        # Guards swapping the directory (threads of a sync cluster race there on
        # first use); never held across an await.
        self._lock = threading.Lock()

    async def current(self) -> ShardDirectory:
        """The directory to route by: loaded from the catalog on first use in this
        process, then the watcher's whenever it has a newer one."""
        if not self._loaded:
            await self._first()
            return self._current
        newer = self._watch.get().directory
        if newer.version > self._current.version:
            self.adopt(newer)
        return self._current

    async def for_call(self, query: str, keyed: bool, group_given: bool) -> ShardDirectory | None:
        """The directory to place ``query`` by; None if the catalog cannot be reached
        and the call needs none: it touches no table, or the caller named its group
        (and gave no shard key: ``keyed``). Anything else might be placed wrongly, so
        it fails, naming the control node."""
        try:
            return await self.current()
        except NodeUnavailableError as exc:
            if keyed or not (group_given or not references_tables(query)):
                raise
            log.info("no sharding directory (%s); running %r unplaced", exc, query[:60])
            return None

    async def plan(
        self,
        c: Classification,
        query: str,
        params: Any,
        shard_key: Any,
        broadcast: bool,
        group_given: bool,
    ) -> ShardPlan | None:
        """Where a statement on sharded tables runs (None: it touches none, or the
        caller named its group and the catalog cannot be reached: see :meth:`for_call`)."""
        keyed = shard_key is not NO_KEY or broadcast
        directory = await self.for_call(query, keyed, group_given)
        if directory is None or (not directory.tables and not keyed):
            return None
        routed = self._context.key_reader(directory).read(query, params)
        return plan_shards(
            routed,
            directory,
            query,
            params,
            write=not c.read_only,
            all_groups=self._context.group_names,
            shard_key=shard_key,
            broadcast=broadcast,
        )

    async def split_copy(self, query: str, rows: Iterable[Sequence[Any]]) -> ShardPlan | None:
        """COPY FROM into a sharded table as one part per shard group (None: not sharded)."""
        directory = await self.current()
        if not directory.tables:
            return None
        routed = self._context.key_reader(directory).read(query, None)
        if not isinstance(routed, CopyIn):
            return None
        return split_copy_rows(routed, directory, query, rows, self._context.group_names)

    def unconfirmed_s(self) -> float:
        """Seconds since the catalog last confirmed the directory (read by a refresh,
        or a watcher round that read every notification sent before it); inf: never."""
        watch = self._watch.peek()
        latest = max(self._confirmed_at, watch.confirmed_at if watch is not None else 0.0)
        return time.monotonic() - latest if latest else math.inf

    def adopt(self, directory: ShardDirectory) -> None:
        """Route by ``directory`` from now on, unless a newer one is already in use."""
        with self._lock:
            if not self._loaded or directory.version >= self._current.version:
                self._current = directory
            self._loaded = True

    async def refresh(self, timeout_s: float | None = None) -> ShardDirectory:
        """Read the directory from the catalog now (waiting at most ``timeout_s`` for a
        connection to the control node)."""
        self._watch.get()
        control = await self._nodes.leader("control", timeout_s)  # Patroni's leader, if HA
        async with self._nodes.connect(control, timeout_s) as conn:
            started = time.monotonic()
            directory = await load_directory(conn)
        self.adopt(directory)
        self._confirmed_at = started
        return self._current

    async def _first(self) -> None:
        """The directory a process routes its first call by. With one shard group
        there is nothing to place, so a catalog that cannot be reached does not stop
        the data path: routing starts without it (every key lives on that group) and
        the watcher brings the directory in once the control node answers. With
        several groups a statement waits for the catalog, or fails: a guess could
        put a row on the wrong group."""
        single = len(self._context.group_names) == 1
        limit = min(self._context.config.pools.timeout_s, 5.0) if single else None
        try:
            await self.refresh(limit)
        except NodeUnavailableError as exc:
            if not single:
                raise
            log.warning("no sharding directory yet (%s); one shard group: routing on", exc)
            self.adopt(self._current)

    def after_fork(self) -> None:
        """In a forked child: a lock a parent thread held at the fork is made anew."""
        self._lock = threading.Lock()
