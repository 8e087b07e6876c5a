# Generated from cluster_async.py by scripts/async_to_sync.py: do not edit.
# Change cluster_async.py and run the script again.
"""The cluster: one topology's client, and the façade over its rooms (async source).

It builds the rooms -- nodes (connections by node name), router (which node),
directory (sharding), fanout (several groups), admin (bans, shard maps) -- and
hands them to the scopes, sessions and transactions it makes. The cluster
itself is the automatic scope: ``cluster.execute / fetch_one / fetch_all /
fetch_value / copy`` route each call on its own, reads to a replica of the
group that meets the call's consistency, everything else to the primary.

``cluster_sync.py`` is generated from this file by ``scripts/async_to_sync.py``
(a test fails if they drift).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

from ..core.causal import CausalToken
from ..core.consistency import Consistency
from ..core.pooling import PoolSize
from ..core.route import Scope as RouteScope
from ..core.route import route
from ..core.sharding import ShardDirectory
from ..core.shardmaps import ShardMap
from ..core.shardplan import NO_KEY
from ..core.shardschema import TableDef
from ..core.topology import Node
from .admin_sync import Admin
from .balancer import ReadOptions
from .context import ClusterContext, ClusterState
from .directory_sync import Directory
from .fanout_sync import Fanout
from .follower_sync import Follower
from .hooks import Committed
from .lazy import OnFirstUse
from .monitor_sync import Monitor
from .nodepool_sync import NodePool
from .nodes_sync import Nodes
from .patroni import scope_endpoints
from .router_sync import Router
from .runner_sync import Rooms
from .samples import ReplicaSample
from .scatter_sync import Scatter
from .scopes_sync import Scope, Transaction, open_transaction
from .session_sync import Session
from .statements import Isolation
from .stats import ClusterStats, FanOut, RouteExplanation
from .watch_sync import CatalogWatch

if TYPE_CHECKING:
    from ..config import ClusterConfig

log = logging.getLogger(__name__)

__all__ = ["Cluster"]

# Every cluster of this process, told when the process forks.
_CLUSTERS: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cluster in list(_CLUSTERS):
        cluster.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Cluster(Scope):
    """A topology: one pool per node, statements routed by what they do.

    ``nodes`` replaces the connections by node name (a test's fake transport).
    """

    def __init__(self, config: ClusterConfig, *, nodes: Nodes | None = None) -> None:
        self.config = config
        context: ClusterContext[ConnectionPool[Any]] = ClusterContext(config, NodePool)
        interval_s = config.policies.monitor_interval_s
        self._monitor = OnFirstUse(
            lambda: Monitor(
                config,
                interval_s=interval_s,
                on_change=transport.observe,
                members=context.members if context.follows_patroni else None,
            )
        )
        self._watch = OnFirstUse(
            lambda: CatalogWatch(
                config,
                on_change=transport.observe,
                control=lambda: context.pools.node(context.control_node()),
            )
        )
        # Patroni's view of every scope with endpoints (none: nothing is started).
        self._follower = OnFirstUse(lambda: Follower(context.leadership, scope_endpoints(config)))
        transport = nodes if nodes is not None else Nodes(context, self._start_watchers)
        context.leadership.listeners.append(lambda _scope, renew: transport.renew(renew))
        directory = Directory(context, transport, self._watch)
        rooms = Rooms(
            context=context,
            nodes=transport,
            router=Router(context, transport, self._monitor, self._watch),
            directory=directory,
            fanout=Fanout(context, transport),
            scatter=Scatter(context, directory),
        )
        super().__init__(rooms, RouteScope.AUTO, None)
        self._admin = Admin(context, transport, directory)
        _CLUSTERS.add(self)

    def _start_watchers(self) -> None:
        if self._context.follows_patroni:
            self._follower.get()
        self._monitor.get()
        self._watch.get()

    @classmethod
    def from_file(cls, path: str | Path) -> Cluster:
        """A cluster from a TOML topology config (e.g. ``.mlscale/mlscale.toml``)."""
        from ..config import load_config  # pydantic loads with the first config

        return cls(load_config(path))

    def after_fork(self) -> None:
        """In a forked child (called by itself): the parent's background loops did not
        come along (the child starts its own on first use, and keeps the inherited
        directory); locks a parent thread held at the fork are made anew (the pools
        reset themselves: pools.py)."""
        self._monitor.after_fork()
        self._watch.after_fork()
        self._follower.after_fork()
        self._rooms.directory.after_fork()
        self._context.after_fork()
        self._rooms.hooks.after_fork()
        self._rooms.nodes.after_fork()

    # -- what it is made of --------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return self._context.nodes

    @property
    def pool_size(self) -> PoolSize:
        """Bounds every node's pool uses, in connections."""
        return self._context.pool_size

    @property
    def state(self) -> ClusterState:
        return self._context.state

    def primary_node(self, group: str | None = None) -> str:
        """Name of the primary of ``group`` (default: the first shard group)."""
        return self._context.primary_node(group)

    def replica_nodes(self, group: str | None = None) -> list[str]:
        """Names of the replicas of ``group`` (default: the first shard group)."""
        return list(self._context.replica_nodes(group))

    def stats(self) -> ClusterStats:
        """Pool counters per node, read routing metrics, bans, classifier cache hits, and
        each primary's last known WAL position (what replicas are measured against
        while it is down)."""
        monitor = self._monitor.peek()
        return self._context.stats(
            monitor.last_primary_positions() if monitor is not None else {},
            dict(self._rooms.nodes.down),
        )

    def metrics(self, caches: Sequence[Any] = ()) -> str:
        """This client's counters and gauges (reads, writes, fallbacks, lag, bans, pools;
        the ``stats()`` of each of ``caches``) and the process's latency histograms, in
        Prometheus's text exposition format (see :mod:`mlscale.metrics`)."""
        from ..metrics import render_cluster  # prometheus_client only when asked

        return render_cluster(self, caches)

    def replica_samples(self) -> dict[str, ReplicaSample]:
        """The monitor's latest sample of every replica (empty before the first read)."""
        monitor = self._monitor.peek()
        return monitor.snapshot()[1] if monitor is not None else {}

    def explain_route(
        self,
        query: str,
        params: Any = None,
        *,
        group: str | None = None,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        shard_key: Any = NO_KEY,
    ) -> RouteExplanation:
        """Where ``query`` would run if called now from outside any session, and why:
        the groups its shard key places it in, primary or replica, and the node the
        balancer would pick with this moment's bans and samples."""
        c = self._context.classify(query)
        options = ReadOptions.of(consistency, token)
        directory = self._rooms.directory
        plan = directory.plan(c, query, params, shard_key, False, self._group_given())
        placed_by = "not sharded: the caller's group"
        groups = [self._context.group(group)]
        if plan is not None:
            placed_by = plan.reason
            groups = list(plan.groups) if not plan.any_group else groups
        if plan is None or len(plan.parts) == 1:
            self._context.check_one_call(c)
        role, node = self._rooms.router.explain(c, RouteScope.AUTO, groups[0], options)
        chosen = route(role, groups, self._context.group_names, placed_by)
        fanout = None
        if plan is not None and plan.merged:
            planned = self._rooms.scatter.planned(plan)
            fanout = FanOut(planned.queries(params), planned.plan)
        return RouteExplanation(
            chosen,
            node,
            role.reason,
            options.consistency.value if c.read_only else None,
            self._context.balancer.bans_now(),
            fanout,
        )

    # -- scopes, sessions, transactions ----------------------------------------------------

    def primary(self, group: str | None = None) -> Scope:
        """Calls that all run on the primary of ``group``."""
        return Scope(self._rooms, RouteScope.PRIMARY, group)

    def replica(self, group: str | None = None) -> Scope:
        """Calls that all run on replicas of ``group``; a write is refused."""
        return Scope(self._rooms, RouteScope.REPLICA, group)

    def group(self, group: str) -> Scope:
        """Calls routed within shard group ``group``."""
        return Scope(self._rooms, RouteScope.AUTO, group)

    def as_written(self, group: str) -> Scope:
        """Calls that run as written on shard group ``group``: reads on its replicas
        (by the call's consistency), writes on its primary, and a sharded table is
        that group's own rows -- no shard key is read, nothing is split or merged.
        For code that places its own work per group (stores, loaders, readers)."""
        return Scope(self._rooms, RouteScope.AUTO, group, as_written=True)

    def session(
        self,
        group: str | None = None,
        *,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        monotonic: bool = False,
    ) -> Session:
        """Calls that share session state (``with cluster.session() as s``).

        ``consistency`` is the session's default for reads (READ_YOUR_WRITES
        if a ``token`` is given, else EVENTUAL); a READ_YOUR_WRITES session keeps
        ``s.token`` up to date after each write; ``monotonic`` sessions never
        read older data than they have already seen.
        """
        return Session(self._rooms, group, ReadOptions.of(consistency, token), monotonic)

    @contextmanager
    def transaction(
        self,
        *,
        isolation: Isolation | None = None,
        readonly: bool = False,
        group: str | None = None,
        as_written: bool = False,
    ) -> Iterator[Transaction]:
        """A transaction on the primary of ``group``: committed if the block ends
        normally, rolled back if it raises. ``tx.token`` holds its causal token
        once it has committed. ``as_written``: its statements run as written, sharded
        tables being the group's own rows (see :meth:`as_written`)."""
        # The leader (in a Patroni group waited for up to failover_wait_s) before BEGIN.
        group = self._context.group(group)
        with self._rooms.nodes.connect_leader(group) as conn:
            name = self._context.primary_node(group)
            with open_transaction(
                self._rooms, conn, name, isolation, readonly, as_written=as_written
            ) as tx:
                yield tx

    @contextmanager
    def connection(self, node: str | None = None) -> Iterator[Connection[Any]]:
        """A pooled connection to ``node`` (default: the first primary), unrouted.

        Connections are in autocommit mode; use ``conn.transaction()`` for a
        transaction. Whatever session state the block leaves is discarded when
        the connection goes back to the pool (one extra round trip: hot paths
        should use the query methods, which know when no reset is needed).
        """
        with self._rooms.nodes.connect_and_reset(node or self._context.primary_node()) as conn:
            yield conn

    # -- bans and sharding (recorded in the catalog) -------------------------------------

    def on_commit(self, hook: Callable[[Committed], None]) -> None:
        """Call ``hook`` with a :class:`Committed` after each write this client runs has
        committed (in the calling thread or task; keep it quick). Caches, stores and
        controllers hear of writes this way, without the cluster knowing them."""
        self._rooms.hooks.add(hook)

    def remove_commit_hook(self, hook: Callable[[Committed], None]) -> None:
        """Stop calling ``hook`` (see :meth:`on_commit`)."""
        self._rooms.hooks.remove(hook)

    def ban(self, node: str, reason: str) -> None:
        """Take replica ``node`` out of read rotation for every client, until :meth:`unban`.

        Recorded in the catalog (clients pick it up at once, by NOTIFY, or within
        about a second) and applied in this process at once. Manual bans are never
        lifted by themselves.
        """
        self._admin.ban(node, reason)

    def unban(self, node: str) -> None:
        """Lift the manual ban of ``node`` (and any error or lag ban in this process)."""
        self._admin.unban(node)

    def shards(self) -> ShardDirectory:
        """The sharding directory this client routes by: maps and sharded tables."""
        return self._rooms.directory.current()

    def locate(self, table_or_family: str, key: Any) -> str:
        """The shard group of ``key`` in a sharded table's (or a key family's) map."""
        return (self._rooms.directory.current()).locate(table_or_family, key)

    def refresh_shards(self, timeout_s: float | None = None) -> ShardDirectory:
        """Read the sharding directory from the catalog now (clients also learn of
        changes by themselves: NOTIFY, and a poll every ``shard_map_poll_s``)."""
        return self._rooms.directory.refresh(timeout_s)

    def create_shard_map(self, shard_map: ShardMap, reason: str = "created") -> int:
        """Publish ``shard_map`` as its key family's current map (its version must be
        the next one). Every client routes by it within about a second. The catalog's
        new sharding version."""
        return self._admin.create_shard_map(shard_map, reason)

    def begin_move(self, family: str, reason: str) -> int:
        """Record that rows of key family ``family`` may exist on two groups from now on
        (a copy to a new group under way, a source not yet cleaned), until
        :meth:`end_move`; the move's id. Meanwhile every client's cross-shard reads of
        the family keep each group to the rows its map gives it, so no row is counted
        twice (otherwise that filter is skipped: it costs a hash per row). Returns after
        a grace of 1.5 s, once every client has seen the move by NOTIFY or, its catalog
        watcher not having confirmed the directory for a second, filters every
        cross-shard read anyway: rows may be copied from then on."""
        return self._admin.begin_move(family, reason)

    def end_move(self, move: int) -> None:
        """Close move ``move``: each row of its family is on one group again."""
        self._admin.end_move(move)

    def create_sharded_table(
        self, ddl: str, *, shard_key: str | Sequence[str], family: str
    ) -> TableDef:
        """Create the table of ``ddl`` (one CREATE TABLE) on every shard group, sharded
        on ``shard_key`` (a column, or columns for a composite key) by key family
        ``family``'s map. The shard key must be in the primary key and in every unique
        constraint. ``mlscale_sys.next_id()`` is there for ids that stay unique when rows
        move between groups. Nothing is created unless every group accepts the DDL."""
        return self._admin.create_sharded_table(ddl, shard_key, family)

    def drop_sharded_table(self, name: str) -> None:
        """Drop sharded table ``name`` on every shard group, then forget it.

        Dropped first, forgotten last: until then clients still route it by key (and
        fail loudly on a group where it is gone), never as an ordinary table on one
        group. If a group fails, the table stays registered; call again to finish.
        """
        self._admin.drop_sharded_table(name)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the background loops and close every pool; the cluster cannot be used
        afterwards."""
        self._context.state = ClusterState.CLOSED
        for loop in (self._monitor.take(), self._watch.take(), self._follower.take()):
            if loop is not None:
                loop.stop()
        self._rooms.nodes.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
