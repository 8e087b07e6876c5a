# Generated from admin_async.py by scripts/async_to_sync.py: do not edit.
# Change admin_async.py and run the script again.
"""Changes an operator makes through a cluster client (async source): replica bans,
shard maps, sharded tables. The catalog rows are written by catalog_sync.py, the
same functions the CLI calls, so both follow one set of rules.

``admin_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from ..core.keyroute import ShardedTable
from ..core.sharding import MOVE_GRACE_S
from ..core.shardmaps import ShardMap
from ..core.shardschema import TableDef, check_sharded_table
from ..core.topology import check_bannable
from ..errors import MlscaleError, SchemaError
from .catalog_sync import (
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
from .concurrency_sync import pause
from .context import ClusterContext
from .directory_sync import Directory
from .nodes_sync import Nodes

__all__ = ["Admin"]


class Admin:
    """Bans and sharding changes of one cluster, recorded in its catalog."""

    def __init__(
        self,
        context: ClusterContext[ConnectionPool[Any]],
        nodes: Nodes,
        directory: Directory,
    ) -> None:
        self._context = context
        self._nodes = nodes
        self._directory = directory

    # -- bans -----------------------------------------------------------------------

    def ban(self, node: str, reason: str) -> None:
        """Take replica ``node`` out of read rotation for every client (see
        :meth:`Cluster.ban`); applied in this process at once."""
        check_bannable(self._context.pools.node(node))
        if not reason.strip():
            raise MlscaleError("a ban needs a reason")
        with self._nodes.connect_leader("control") as conn:
            set_ban(conn, node, reason)
        self._context.balancer.ban(node, reason)

    def unban(self, node: str) -> None:
        """Lift the manual ban of ``node`` (and any error or lag ban in this process)."""
        check_bannable(self._context.pools.node(node))
        with self._nodes.connect_leader("control") as conn:
            clear_ban(conn, node)
        self._context.balancer.unban(node)

    # -- sharding -------------------------------------------------------------------

    def begin_move(self, family: str, reason: str) -> int:
        """Open a move of ``family`` (see :meth:`Cluster.begin_move`)."""
        if not reason.strip():
            raise MlscaleError("a move needs a reason")
        with self._nodes.connect_leader("control") as conn:
            move = begin_move(conn, family, reason)
        self._directory.refresh()
        # Every client has now seen the move (NOTIFY) or stopped trusting its directory.
        pause(MOVE_GRACE_S)
        return move

    def end_move(self, move: int) -> None:
        """Close move ``move`` (see :meth:`Cluster.end_move`)."""
        with self._nodes.connect_leader("control") as conn:
            end_move(conn, move)
        self._directory.refresh()

    def create_shard_map(self, shard_map: ShardMap, reason: str) -> int:
        """Publish ``shard_map`` (see :meth:`Cluster.create_shard_map`)."""
        with self._nodes.connect_leader("control") as conn:
            version = publish_map(conn, shard_map, reason, self._context.group_names)
        self._directory.refresh()
        return version

    def create_sharded_table(
        self, ddl: str, shard_key: str | Sequence[str], family: str
    ) -> TableDef:
        """Create and register a sharded table (see :meth:`Cluster.create_sharded_table`)."""
        keys = (shard_key,) if isinstance(shard_key, str) else tuple(shard_key)
        directory = self._directory.refresh()
        table = check_sharded_table(ddl, keys, directory.map_of(family).key_types)
        if table.schema not in (None, "public"):
            raise SchemaError(f"{table.name}: sharded tables live in schema public for now")
        if table.name in directory.tables:
            raise SchemaError(f"{table.name} is already a sharded table")
        groups = self._context.group_names
        for group in groups:
            with self._nodes.connect_leader("control") as conn:
                generator = allocate_generator(conn, group)
            with self._nodes.connect_leader(group) as conn:
                install_id_generator(conn, generator)
        with ExitStack() as stack:
            for group in groups:
                conn = stack.enter_context(self._nodes.connect_leader(group))
                stack.enter_context(conn.transaction())
                conn.execute(ddl)
        with self._nodes.connect_leader("control") as conn:
            register_table(conn, ShardedTable(table.name, keys, family), table.columns)
        self._directory.refresh()
        return table

    def drop_sharded_table(self, name: str) -> None:
        """Drop and forget a sharded table (see :meth:`Cluster.drop_sharded_table`)."""
        (self._directory.refresh()).table(name)  # a clear error if it is not sharded
        # Unqualified, as it was created: the name resolves the same way.
        drop = sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name))
        for group in self._context.group_names:
            with self._nodes.connect_leader(group) as conn:
                conn.execute(drop)
        with self._nodes.connect_leader("control") as conn:
            unregister_table(conn, name)
        self._directory.refresh()
