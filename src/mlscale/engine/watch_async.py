"""The catalog watcher: what the catalog says, kept current in the background.

One loop per process holds a connection to the control node, LISTENs on the
channels the catalog's writers notify (catalog_async.py), and reloads what
changed: the manual bans (``mlscale_bans``) and the sharding directory
(``mlscale_sharding``). A notification sent while no one listened is lost,
so both are also re-read on a poll (bans about once a second, the sharding
counter every ``shard_map_poll_s``). Readers take :attr:`bans` and
:attr:`directory` as they are: each reload replaces them whole.

``watch_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection, sql

from ..core.sharding import EMPTY, ShardDirectory
from ..core.topology import Node, nodes_of
from .catalog_async import BANS_CHANNEL, SHARDING_CHANNEL, load_directory, read_bans
from .catalog_async import sharding_version as read_sharding_version
from .concurrency_async import Background, Stop
from .connect import connect_kwargs, describe_failure

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["AsyncCatalogWatch"]

log = logging.getLogger(__name__)

BANS_POLL_S = 1.0


class AsyncCatalogWatch:
    """Follows the catalog of ``config``'s control node in the background."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        interval_s: float = 0.1,
        on_change: Callable[[str, str | None], None] | None = None,
        control: Callable[[], Node] | None = None,
    ) -> None:
        self.config = config
        # on_change(node, error): the control node seen down, or back (None).
        self._on_change = on_change
        self._control_down = False
        self.interval_s = interval_s
        # control(): the node holding the catalog now -- when the control database is
        # a Patroni cluster, its leader: after a failover the watcher reconnects there.
        first = nodes_of(config)[0]
        self._control_of = control or (lambda: first)
        self._control = first
        self._conn: AsyncConnection[Any] | None = None
        self._stop = Stop()
        self._loop = Background("mlscale-catalog-watch", self._run)
        # Manual bans (node -> reason) and the sharding directory, as last read.
        self.bans: dict[str, str] = {}
        self.directory: ShardDirectory = EMPTY
        self.directory_loads = 0
        self.rounds = 0
        # When a round last succeeded: every notification sent before it was read.
        self.confirmed_at = 0.0
        self._directory_poll_s = config.policies.shard_map_poll_s
        self._next_bans = 0.0
        self._next_directory = 0.0

    def start(self) -> None:
        """Start watching in the background (idempotent)."""
        if not self._loop.running:
            self._loop.start()

    async def stop(self) -> None:
        """Stop watching and close the connection."""
        self._stop.set()
        await self._loop.join(5.0)
        await self._drop()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.check_once()
            except Exception:  # the watcher must outlive any one bad round
                log.warning("catalog watch round failed", exc_info=True)
                if await self._stop.wait(self.interval_s):
                    return

    async def _connect(self) -> AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and self._control_of().name != self._control.name:
            await self._drop()  # another node leads the control database now
            conn = None
        if conn is None or conn.closed:
            self._control = self._control_of()
            kwargs = connect_kwargs(self._control, self.config, connect_timeout=1.0)
            kwargs["application_name"] = "mlscale-catalog-watch"
            conn = await AsyncConnection.connect(autocommit=True, **kwargs)
            for channel in (SHARDING_CHANNEL, BANS_CHANNEL):
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            # What was sent while no one listened is lost: read everything now.
            self._next_bans = self._next_directory = 0.0
            self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def check_once(self) -> None:
        """Wait up to one interval for a notification, then reload what changed or is due."""
        try:
            conn = await self._connect()
            channels = set()
            async for note in conn.notifies(timeout=self.interval_s if self.rounds else 0):
                channels.add(note.channel)
            now = time.monotonic()
            if BANS_CHANNEL in channels or now >= self._next_bans:
                self._next_bans = now + BANS_POLL_S
                await self._reload_bans(conn)
            if SHARDING_CHANNEL in channels or now >= self._next_directory:
                self._next_directory = now + self._directory_poll_s
                await self._reload_directory(conn)
            if self._control_down and self._on_change is not None:
                self._on_change(self._control.name, None)
            self._control_down = False
            self.confirmed_at = now
        except (psycopg.Error, OSError) as exc:
            log.info("could not read the catalog: %s", describe_failure(exc))
            await self._drop()
            if not self._control_down and self._on_change is not None:
                self._on_change(self._control.name, describe_failure(exc))
            self._control_down = True
            await self._stop.wait(self.interval_s)
            return
        finally:
            self.rounds += 1

    async def _reload_bans(self, conn: AsyncConnection[Any]) -> None:
        try:
            bans = await read_bans(conn)
        except psycopg.errors.UndefinedTable:
            bans = {}  # a catalog from before bans existed
        if bans != self.bans:
            self.bans = bans

    async def _reload_directory(self, conn: AsyncConnection[Any]) -> None:
        try:
            if await read_sharding_version(conn) != self.directory.version:
                self.directory = await load_directory(conn)
                self.directory_loads += 1
        except psycopg.Error:
            raise
        except Exception:  # a bad catalog row must not stop the watching of bans
            log.warning(
                "could not load the sharding directory; keeping the last one", exc_info=True
            )
