"""Changes an operator makes through a cluster client (async source): replica bans,
shard maps, sharded tables. The catalog rows are written by catalog_async.py, the
same functions the CLI calls, so both follow one set of rules.

``admin_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ..core.keyroute import ShardedTable
from ..core.sharding import MOVE_GRACE_S
from ..core.shardmaps import ShardMap
from ..core.shardschema import TableDef, check_sharded_table
from ..core.topology import check_bannable
from ..errors import MlscaleError, SchemaError
from .catalog_async import (
    allocate_generator,
    begin_move,
    clear_ban,
    end_move,
    install_id_generator,
    publish_map,
    register_table,
    set_ban,
    unregister_table,
)
from .concurrency_async import pause
from .context import ClusterContext
from .directory_async import AsyncDirectory
from .nodes_async import AsyncNodes

__all__ = ["AsyncAdmin"]


class AsyncAdmin:
    """Bans and sharding changes of one cluster, recorded in its catalog."""

    def __init__(
        self,
        context: ClusterContext[AsyncConnectionPool[Any]],
        nodes: AsyncNodes,
        directory: AsyncDirectory,
    ) -> None:
        self._context = context
        self._nodes = nodes
        self._directory = directory

    # -- bans -----------------------------------------------------------------------

    async def ban(self, node: str, reason: str) -> None:
        """Take replica ``node`` out of read rotation for every client (see
        :meth:`AsyncCluster.ban`); applied in this process at once."""
        check_bannable(self._context.pools.node(node))
        if not reason.strip():
            raise MlscaleError("a ban needs a reason")
        async with self._nodes.connect_leader("control") as conn:
            await set_ban(conn, node, reason)
        self._context.balancer.ban(node, reason)

    async def unban(self, node: str) -> None:
        """Lift the manual ban of ``node`` (and any error or lag ban in this process)."""
        check_bannable(self._context.pools.node(node))
        async with self._nodes.connect_leader("control") as conn:
            await clear_ban(conn, node)
        self._context.balancer.unban(node)

    # -- sharding -------------------------------------------------------------------

    async def begin_move(self, family: str, reason: str) -> int:
        """Open a move of ``family`` (see :meth:`AsyncCluster.begin_move`)."""
        if not reason.strip():
            raise MlscaleError("a move needs a reason")
        async with self._nodes.connect_leader("control") as conn:
            move = await begin_move(conn, family, reason)
        await self._directory.refresh()
        # Every client has now seen the move (NOTIFY) or stopped trusting its directory.
        await pause(MOVE_GRACE_S)
        return move

    async def end_move(self, move: int) -> None:
        """Close move ``move`` (see :meth:`AsyncCluster.end_move`)."""
        async with self._nodes.connect_leader("control") as conn:
            await end_move(conn, move)
        await self._directory.refresh()

    async def create_shard_map(self, shard_map: ShardMap, reason: str) -> int:
        """Publish ``shard_map`` (see :meth:`AsyncCluster.create_shard_map`)."""
        async with self._nodes.connect_leader("control") as conn:
            version = await publish_map(conn, shard_map, reason, self._context.group_names)
        await self._directory.refresh()
        return version

    async def create_sharded_table(
        self, ddl: str, shard_key: str | Sequence[str], family: str
    ) -> TableDef:
        """Create and register a sharded table (see :meth:`AsyncCluster.create_sharded_table`)."""
        keys = (shard_key,) if isinstance(shard_key, str) else tuple(shard_key)
        directory = await self._directory.refresh()
        table = check_sharded_table(ddl, keys, directory.map_of(family).key_types)
        if table.schema not in (None, "public"):
            raise SchemaError(f"{table.name}: sharded tables live in schema public for now")
        if table.name in directory.tables:
            raise SchemaError(f"{table.name} is already a sharded table")
        groups = self._context.group_names
        for group in groups:
            async with self._nodes.connect_leader("control") as conn:
                generator = await allocate_generator(conn, group)
            async with self._nodes.connect_leader(group) as conn:
                await install_id_generator(conn, generator)
        async with AsyncExitStack() as stack:
            for group in groups:
                conn = await stack.enter_async_context(
                    self._nodes.connect_leader(group)
                )
                await stack.enter_async_context(conn.transaction())
                await conn.execute(ddl)
        async with self._nodes.connect_leader("control") as conn:
            await register_table(conn, ShardedTable(table.name, keys, family), table.columns)
        await self._directory.refresh()
        return table

    async def drop_sharded_table(self, name: str) -> None:
        """Drop and forget a sharded table (see :meth:`AsyncCluster.drop_sharded_table`)."""
        (await self._directory.refresh()).table(name)  # a clear error if it is not sharded
        # Unqualified, as it was created: the name resolves the same way.
        drop = sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name))
        for group in self._context.group_names:
            async with self._nodes.connect_leader(group) as conn:
                await conn.execute(drop)
        async with self._nodes.connect_leader("control") as conn:
            await unregister_table(conn, name)
        await self._directory.refresh()
