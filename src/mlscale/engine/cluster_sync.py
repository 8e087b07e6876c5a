# Generated from cluster_async.py by scripts/async_to_sync.py: do not edit.
# Change cluster_async.py and run the script again.
"""The client API: a cluster, its sessions, transactions and scopes (async source).

This file is the one written by hand: ``cluster_sync.py`` is generated from it
by ``scripts/async_to_sync.py`` (a test fails if they drift). Every decision is
made by :class:`~mlscale.engine.base.ClusterCore` and core/; this module only
borrows connections and runs statements on them.

- ``cluster.execute / fetch_one / fetch_all / fetch_value / copy``: each call is
  routed on its own: reads to a replica of the group that meets the call's
  consistency (per the background monitor), everything else to the primary.
  Statements whose session state would be lost are refused.
- ``cluster.session()``: calls that share session state; the session pins one
  primary connection while it holds state, and lets it go when the state is gone.
- ``cluster.transaction()``: everything inside on one primary connection.
- ``cluster.primary()`` / ``cluster.replica()``: explicit scopes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ..config import ClusterConfig, load_config
from ..core.balance import NoReplica, UseReplica, WaitFor
from ..core.causal import CausalToken, GroupPosition
from ..core.classify import Classification, TxAction
from ..core.consistency import Consistency
from ..core.keyroute import CopyIn, ShardedTable
from ..core.lsn import format_lsn, parse_lsn
from ..core.route import Scope as RouteScope
from ..core.session import SessionState
from ..core.sharding import ShardDirectory
from ..core.shardmaps import ShardMap
from ..core.shardplan import NO_KEY, ShardPlan, split_copy_rows
from ..core.shardplan import plan as plan_shards
from ..core.shardschema import TableDef, check_sharded_table
from ..errors import (
    ConfigError,
    MlscaleError,
    NodeUnavailableError,
    PartialWriteError,
    RoutingError,
    SchemaError,
)
from . import catalog
from .base import (
    RESET_SESSION,
    ClusterCore,
    ClusterState,
    Isolation,
    set_transaction,
)
from .concurrency_sync import pause
from .monitor_sync import Monitor
from .readrouter import EVENTUAL, ReadOptions
from .samples import PRIMARY_SAMPLE, ReplicaSample
from .shards_sync import (
    allocate_generator,
    install_id_generator,
    load_directory,
    publish_map,
    register_table,
    unregister_table,
)
from .translate import translate

log = logging.getLogger(__name__)

# Looked up once: attribute access on an enum class costs the hot read path.
_EVENTUAL_LEVEL = Consistency.EVENTUAL
_PRIMARY_SCOPE = RouteScope.PRIMARY
# Every cluster of this process, told when the process forks.
_CLUSTERS: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cluster in list(_CLUSTERS):
        cluster._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["Cluster", "Scope", "Session", "Transaction"]


def reset_session(conn: Connection[Any]) -> None:
    """Leave ``conn`` as a new session would find it, in one round trip (usually).

    As DISCARD ALL, except the driver's own prepared statements stay: the driver
    tracks them, and a DISCARD ALL would leave its cache pointing at nothing.
    A connection that is broken is left for the pool to throw away.
    """
    if conn.closed:
        return
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.rollback()
    cur = conn.execute(RESET_SESSION, prepare=False)
    while cur.nextset():
        pass
    for (name,) in cur.fetchall():
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))


Params = Sequence[Any] | Mapping[str, Any] | None
# work(conn, statement, params): what a query method does on the connection it got.
Work = Callable[..., Any]
# How the results of a statement split over shard groups are put together.
Combine = Callable[[list[Any]], Any]


def _total(counts: list[Any]) -> int:
    """Rows affected in all groups (-1 if some group could not say)."""
    return -1 if any(n < 0 for n in counts) else sum(counts)


def _concat(results: list[Any]) -> list[Any]:
    return [row for rows in results for row in rows]


def _first(rows: list[Any]) -> Any:
    return next((row for row in rows if row is not None), None)


def _within(own: str | None, group: str | None) -> str | None:
    """The shard group a call runs in: the statement's ``group`` (None: not placed by
    a key), which must be the scope's ``own`` group if it has one."""
    if group is None:
        return own
    if own is not None and own != group:
        raise RoutingError(
            f"the statement's shard key lives on shard group {group}, but this scope runs "
            f"on {own}; open it with group=cluster.locate(table, key)"
        )
    return group


class _Runner:
    """The query methods, written once: subclasses say which connection runs a statement.

    Reads take a guarantee per call: ``consistency`` (STRONG, READ_YOUR_WRITES,
    BOUNDED_STALENESS, EVENTUAL), a causal ``token`` (a :class:`CausalToken` or
    its string), and for bounded staleness ``max_lag_ms`` / ``max_lag_bytes``.
    A read whose replica fails is retried once elsewhere; a write never is.
    """

    _core: ClusterCore[Any]
    _cluster: Cluster

    def _lease(self, c: Classification, options: ReadOptions, group: str | None) -> Any:
        """An async context manager yielding the connection that runs ``c`` in shard
        group ``group`` (None: the runner's own group)."""
        raise NotImplementedError

    def _quick(self, c: Classification, options: ReadOptions, group: str | None) -> str | None:
        """The replica of ``group`` for ``c`` if it may take the quick path (see
        :meth:`Cluster._quick_replica`), else None."""
        return None

    def _run(
        self,
        query: str,
        params: Params,
        options: ReadOptions,
        work: Work,
        combine: Combine,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
    ) -> Any:
        """``work(conn, query, params)`` where ``query`` must run. A read whose replica
        fails is retried once elsewhere; anything else only if ``idempotent``."""
        c = self._core.classify(query)
        shard_plan = self._shard_plan(c, query, params, shard_key, broadcast)
        # Decided before the attempt: a failure may reset a session's state.
        may_repeat = idempotent and self._may_repeat(c)
        try:
            return self._attempt(c, query, params, options, work, combine, shard_plan)
        except NodeUnavailableError as exc:
            if c.read_only and exc.node_role == "replica":
                self._core.reads.record_retry()
                log.info("read failed on %s (%s); retrying once elsewhere", exc.node, exc)
            elif may_repeat:
                log.info("failed on %s (%s); retrying once: marked idempotent", exc.node, exc)
            else:
                raise
        return self._attempt(c, query, params, options, work, combine, shard_plan)

    def _may_repeat(self, c: Classification) -> bool:
        """Whether ``c`` may run again on a new connection after its node failed: not
        when it belongs to a transaction or session state the failure took away."""
        return True

    def _attempt(
        self,
        c: Classification,
        query: str,
        params: Params,
        options: ReadOptions,
        work: Work,
        combine: Combine,
        shard_plan: ShardPlan | None,
    ) -> Any:
        if shard_plan is not None:
            return self._run_plan(c, shard_plan, options, work, combine)
        quick = self._quick(c, options, None)
        if quick is not None:
            return self._cluster._run_on_replica(quick, work, query, params)
        with self._lease(c, options, None) as conn:
            return work(conn, query, params)

    def _shard_plan(
        self, c: Classification, query: str, params: Params, shard_key: Any, broadcast: bool
    ) -> ShardPlan | None:
        """Where a statement on sharded tables runs (None: it touches none)."""
        directory = self._cluster._directory()
        if not directory.tables and shard_key is NO_KEY and not broadcast:
            return None
        routed = self._core.key_router(directory).route(query, params)
        return plan_shards(
            routed,
            directory,
            query,
            params,
            write=not c.read_only,
            all_groups=self._core.group_names,
            shard_key=shard_key,
            broadcast=broadcast,
        )

    def _run_plan(
        self,
        c: Classification,
        shard_plan: ShardPlan,
        options: ReadOptions,
        work: Work,
        combine: Combine,
    ) -> Any:
        parts = shard_plan.parts
        if len(parts) == 1:
            (part,) = parts
            group = None if shard_plan.any_group else part.group
            quick = self._quick(c, options, group)
            if quick is not None:
                return self._cluster._run_on_replica(quick, work, part.sql, part.params)
            with self._lease(c, options, group) as conn:
                return work(conn, part.sql, part.params)
        if not c.read_only:
            return self._write_parts(c, shard_plan, work, combine)
        results = []
        for part in parts:
            with self._lease(c, options, part.group) as conn:
                results.append(work(conn, part.sql, part.params))
        return combine(results)

    def _write_parts(
        self, c: Classification, shard_plan: ShardPlan, work: Work, combine: Combine
    ) -> Any:
        """A write split over shard groups: each part in a transaction on its group's
        primary, all committed once every part has run (any error rolls back all).
        A failure while committing can leave some groups committed: two-phase
        commit closes that window (a later release)."""
        raise RoutingError(
            f"this write spans shard groups {', '.join(shard_plan.groups)}; a session or "
            "transaction holds one group's connection: run it on the cluster"
        )

    def execute(
        self,
        query: str,
        params: Params = None,
        *,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
    ) -> int:
        """Run a statement; the number of rows it affected (-1 if not applicable).

        On sharded tables the key is read from the statement, or given as
        ``shard_key``; a write without one runs on every shard group only with
        ``broadcast=True``. A write whose node is found unavailable (say, a pooled
        connection left over from before the server restarted) is retried once on a
        new connection only if ``idempotent``: running it twice must be harmless.
        """

        def work(conn: Connection[Any], text: str, values: Params) -> int:
            cur = conn.execute(text, values)
            return int(cur.rowcount)

        result: int = self._run(
            query,
            params,
            EVENTUAL,
            work,
            _total,
            shard_key=shard_key,
            broadcast=broadcast,
            idempotent=idempotent,
        )
        return result

    def fetch_all(
        self,
        query: str,
        params: Params = None,
        *,
        as_dict: bool = False,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
    ) -> list[Any]:
        """Every row, as tuples (or dicts with ``as_dict``)."""

        options = self._options(consistency, token, max_lag_ms, max_lag_bytes)
        rows: list[Any] = self._fetch(
            query, params, as_dict, options, False, shard_key, broadcast, idempotent
        )
        return rows

    def fetch_one(
        self,
        query: str,
        params: Params = None,
        *,
        as_dict: bool = False,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
        shard_key: Any = NO_KEY,
        broadcast: bool = False,
        idempotent: bool = False,
    ) -> Any:
        """The first row (tuple, or dict with ``as_dict``), or None."""
        options = self._options(consistency, token, max_lag_ms, max_lag_bytes)
        return self._fetch(query, params, as_dict, options, True, shard_key, broadcast, idempotent)

    def _fetch(
        self,
        query: str,
        params: Params,
        as_dict: bool,
        options: ReadOptions,
        one: bool,
        shard_key: Any,
        broadcast: bool,
        idempotent: bool,
    ) -> Any:
        """The rows of ``query`` (or only the first, with ``one``), read under ``options``."""

        def work(conn: Connection[Any], text: str, values: Params) -> Any:
            cur = conn.cursor(row_factory=dict_row if as_dict else tuple_row)
            cur.execute(text, values)
            return cur.fetchone() if one else cur.fetchall()

        combine = _first if one else _concat
        return self._run(
            query,
            params,
            options,
            work,
            combine,
            shard_key=shard_key,
            broadcast=broadcast,
            idempotent=idempotent,
        )

    def fetch_value(
        self,
        query: str,
        params: Params = None,
        *,
        consistency: Consistency | str | None = None,
        token: CausalToken | str | None = None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
        shard_key: Any = NO_KEY,
        idempotent: bool = False,
    ) -> Any:
        """The first column of the first row, or None if there is no row."""
        row = self.fetch_one(
            query,
            params,
            consistency=consistency,
            token=token,
            max_lag_ms=max_lag_ms,
            max_lag_bytes=max_lag_bytes,
            shard_key=shard_key,
            idempotent=idempotent,
        )
        return None if row is None else row[0]

    def copy(self, query: str, rows: Iterable[Sequence[Any]] | None = None) -> Any:
        """``COPY ... FROM STDIN`` writes ``rows`` and returns how many;
        ``COPY ... TO STDOUT`` returns the rows it produced (as text tuples).

        Into a sharded table, rows are split by their shard key (slots computed in
        batches) and each group's rows copied in one transaction per group.
        """

        def copy_rows(conn: Connection[Any], text: str, data: Any) -> Any:
            cur = conn.cursor()
            with cur.copy(text) as copy:
                if data is not None:
                    count = 0
                    for row in data:
                        copy.write_row(row)
                        count += 1
                    return count
                return [row for row in copy.rows()]

        def given_rows(conn: Connection[Any], text: str, _: Params) -> Any:
            return copy_rows(conn, text, rows)

        if rows is not None:
            split = self._split_copy(query, rows)
            if split is not None:
                c = self._core.classify(query)
                if len(split.parts) == 1:
                    (part,) = split.parts
                    with self._lease(c, EVENTUAL, part.group) as conn:
                        return copy_rows(conn, part.sql, part.params)
                return self._write_parts(c, split, copy_rows, _total)
        return self._run(query, None, EVENTUAL, given_rows, _total if rows is not None else _concat)

    def _split_copy(self, query: str, rows: Iterable[Sequence[Any]]) -> ShardPlan | None:
        """COPY FROM into a sharded table as one part per shard group (None: not sharded)."""
        directory = self._cluster._directory()
        if not directory.tables:
            return None
        routed = self._core.key_router(directory).route(query, None)
        if not isinstance(routed, CopyIn):
            return None
        return split_copy_rows(routed, directory, query, rows, self._core.group_names)

    def _options(
        self,
        consistency: Consistency | str | None,
        token: CausalToken | str | None,
        max_lag_ms: float | None,
        max_lag_bytes: int | None,
    ) -> ReadOptions:
        return ReadOptions.of(consistency, token, max_lag_ms, max_lag_bytes)


class Cluster(_Runner):
    """A topology: one pool per node, statements routed by what they do."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._core: ClusterCore[ConnectionPool[Any]] = ClusterCore(config, self._make_pool)
        self._cluster = self
        self._monitor: Monitor | None = None
        self._shards_loaded = False
        # Guards starting the monitor and swapping the directory (threads of a sync
        # cluster race there on first use); never held across an await.
        self._lock = threading.Lock()
        _CLUSTERS.add(self)

    def _forked(self) -> None:
        """In a forked child: the parent's monitor thread did not come along (the child
        starts its own, which keeps the inherited directory up to date); locks a parent
        thread held at the fork are made anew (the pools reset themselves: pools.py)."""
        self._monitor = None
        self._lock = threading.Lock()
        self._core.after_fork()

    @classmethod
    def from_file(cls, path: str | Path) -> Cluster:
        """A cluster from a TOML topology config (e.g. ``.mlscale/mlscale.toml``)."""
        return cls(load_config(path))

    def _make_pool(self, **kwargs: Any) -> ConnectionPool[Any]:
        return ConnectionPool(**kwargs)

    # -- nodes, stats, bans --------------------------------------------------------------

    @property
    def nodes(self) -> list[Any]:
        return self._core.nodes

    @property
    def pool_size(self) -> Any:
        """Bounds every node's pool uses, in connections."""
        return self._core.pool_size

    @property
    def state(self) -> ClusterState:
        return self._core.state

    def primary_node(self, group: str | None = None) -> str:
        """Name of the primary of ``group`` (default: the first shard group)."""
        return self._core.primary_node(group)

    def replica_nodes(self, group: str | None = None) -> list[str]:
        """Names of the replicas of ``group`` (default: the first shard group)."""
        return list(self._core.replica_nodes(group))

    def stats(self) -> dict[str, Any]:
        """Pool counters per node, read routing metrics, bans, classifier cache hits."""
        return self._core.stats()

    def explain_route(self, query: str, group: str | None = None) -> dict[str, str]:
        """Where ``query`` would go from outside any session, and why."""
        return self._core.explain(query, group)

    def ban(self, node: str, reason: str) -> None:
        """Take replica ``node`` out of read rotation for every client, until :meth:`unban`.

        Recorded in the catalog (clients pick it up within about a second) and
        applied in this process at once. Manual bans are never lifted by themselves.
        """
        self._check_replica(node)
        if not reason.strip():
            raise MlscaleError("a ban needs a reason")
        with self._control() as conn:
            conn.execute(catalog.SET_BAN, (node, reason))
        self._core.reads.ban(node, reason)

    def unban(self, node: str) -> None:
        """Lift the manual ban of ``node`` (and any error or lag ban in this process)."""
        self._check_replica(node)
        with self._control() as conn:
            conn.execute(catalog.CLEAR_BAN, (node,))
        self._core.reads.unban(node)

    def _check_replica(self, node: str) -> None:
        if self._core.pools.node(node).role.value != "replica":
            raise MlscaleError(f"only replicas can be banned from reads; {node} is not one")

    # -- sharding ---------------------------------------------------------------------------

    def shards(self) -> ShardDirectory:
        """The sharding directory this client routes by: maps and sharded tables."""
        return self._directory()

    def locate(self, table_or_family: str, key: Any) -> str:
        """The shard group of ``key`` in a sharded table's (or a key family's) map."""
        return (self._directory()).locate(table_or_family, key)

    def create_shard_map(self, shard_map: ShardMap, reason: str = "created") -> int:
        """Publish ``shard_map`` as its key family's current map (its version must be
        the next one). Every client routes by it within about a second. The catalog's
        new sharding version."""
        directory = self.refresh_shards()
        family = shard_map.family.name
        tables = sorted(t.name for t in directory.tables.values() if t.family == family)
        if family in directory.maps and tables:
            raise ConfigError(
                f"key family {family} has sharded tables ({', '.join(tables)}): a new map "
                "would place their keys elsewhere without moving their rows; moving rows "
                "between groups is online resharding (a later release)"
            )
        unknown = sorted(set(shard_map.groups) - set(self._core.group_names))
        if unknown:
            raise ConfigError(
                f"the map places keys on {', '.join(unknown)}, which this cluster does not "
                f"have (its shard groups: {', '.join(self._core.group_names)})"
            )
        with self._control() as conn:
            version = publish_map(conn, shard_map, reason)
        self.refresh_shards()
        return version

    def create_sharded_table(
        self, ddl: str, *, shard_key: str | Sequence[str], family: str
    ) -> TableDef:
        """Create the table of ``ddl`` (one CREATE TABLE) on every shard group, sharded
        on ``shard_key`` (a column, or columns for a composite key) by key family
        ``family``'s map. The shard key must be in the primary key and in every unique
        constraint. ``mlscale_sys.next_id()`` is there for ids that stay unique when rows
        move between groups. Nothing is created unless every group accepts the DDL."""
        keys = (shard_key,) if isinstance(shard_key, str) else tuple(shard_key)
        directory = self.refresh_shards()
        table = check_sharded_table(ddl, keys, directory.map_of(family).key_types)
        if table.schema not in (None, "public"):
            raise SchemaError(f"{table.name}: sharded tables live in schema public for now")
        if table.name in directory.tables:
            raise SchemaError(f"{table.name} is already a sharded table")
        for group in self._core.group_names:
            with self._control() as conn:
                generator = allocate_generator(conn, group)
            with self._on(self._core.primary_node(group)) as conn:
                install_id_generator(conn, generator)
        with ExitStack() as stack:
            for group in self._core.group_names:
                conn = stack.enter_context(self._on(self._core.primary_node(group)))
                stack.enter_context(conn.transaction())
                conn.execute(ddl)
        with self._control() as conn:
            register_table(conn, ShardedTable(table.name, keys, family), table.columns)
        self.refresh_shards()
        return table

    def drop_sharded_table(self, name: str) -> None:
        """Drop sharded table ``name`` on every shard group, then forget it.

        Dropped first, forgotten last: until then clients still route it by key (and
        fail loudly on a group where it is gone), never as an ordinary table on one
        group. If a group fails, the table stays registered; call again to finish.
        """
        (self.refresh_shards()).table(name)  # a clear error if it is not sharded
        # Unqualified, as it was created: the name resolves the same way.
        drop = sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name))
        for group in self._core.group_names:
            with self._on(self._core.primary_node(group)) as conn:
                conn.execute(drop)
        with self._control() as conn:
            unregister_table(conn, name)
        self.refresh_shards()

    @contextmanager
    def _control(self) -> Iterator[Connection[Any]]:
        with self._on("control") as conn:
            yield conn

    def replica_samples(self) -> dict[str, ReplicaSample]:
        """The monitor's latest sample of every replica (empty before the first read)."""
        return self._monitor.snapshot()[1] if self._monitor is not None else {}

    # -- connections ------------------------------------------------------------------

    def _pool(self, name: str) -> ConnectionPool[Any]:
        self._core.check_open()
        pool = self._core.pools.peek(name)
        if pool is not None:
            return pool
        # Opened before it is shared, so no caller ever sees an unopened pool.
        fresh = self._core.pools.make(name)
        fresh.open(wait=False)
        pool = self._core.pools.publish(name, fresh)
        if pool is not fresh:
            fresh.close()
        return pool

    @contextmanager
    def connection(self, node: str | None = None) -> Iterator[Connection[Any]]:
        """A pooled connection to ``node`` (default: the first primary), unrouted.

        Connections are in autocommit mode; use ``conn.transaction()`` for a
        transaction. Whatever session state the block leaves is discarded when
        the connection goes back to the pool (one extra round trip: hot paths
        should use the query methods, which know when no reset is needed).
        """
        name = node or self._core.primary_node()
        pool = self._pool(name)
        try:
            with pool.connection() as conn:
                try:
                    yield conn
                finally:
                    reset_session(conn)
        except PoolTimeout as exc:
            raise self._core.unavailable(name, exc) from exc

    @contextmanager
    def _on(self, name: str, timeout_s: float | None = None) -> Iterator[Connection[Any]]:
        """A pooled connection to ``name`` (waiting at most ``timeout_s``, default the
        pool's); driver errors become mlscale errors, and a replica that fails is
        banned for a while."""
        role = self._core.roles[name]
        replica = role == "replica"
        pool = self._pool(name)
        if replica:
            self._core.reads.begin(name)
        try:
            with pool.connection(timeout=timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            if replica:
                self._core.reads.end(name, failed="no connection within the pool timeout")
            raise self._core.unavailable(name, exc, timeout_s) from exc
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):  # translated already, for a node nested inside
                if replica:
                    self._core.reads.end(name)
                raise
            raise self._failed(name, role, pool, exc) from exc
        except BaseException:
            if replica:
                self._core.reads.end(name)
            raise
        if replica:
            self._core.reads.end(name)

    def _monitor_here(self) -> Monitor:
        # One monitor per process: a forked child starts its own (see _forked).
        monitor = self._monitor
        if monitor is None:
            with self._lock:
                monitor = self._monitor
                if monitor is None:
                    monitor = Monitor(
                        self.config, interval_s=self.config.policies.monitor_interval_s
                    )
                    monitor.start()
                    self._monitor = monitor
        return monitor

    def _samples(self) -> dict[str, ReplicaSample]:
        monitor = self._monitor_here()
        self._core.reads.sync_manual(monitor.manual_bans)
        return monitor.snapshot()[1]

    def _directory(self) -> ShardDirectory:
        """The sharding directory to route by: loaded from the catalog on first use in
        this process, then the monitor's whenever it has a newer one."""
        if not self._shards_loaded:
            self._first_directory()
            return self._core.shards
        newer = self._monitor_here().directory
        if newer.version > self._core.shards.version:
            self._adopt(newer)
        return self._core.shards

    def _adopt(self, directory: ShardDirectory) -> None:
        """Route by ``directory`` from now on, unless a newer one is already in use."""
        with self._lock:
            if not self._shards_loaded or directory.version >= self._core.shards.version:
                self._core.shards = directory
            self._shards_loaded = True

    def refresh_shards(self, timeout_s: float | None = None) -> ShardDirectory:
        """Read the sharding directory from the catalog now (clients also learn of
        changes by themselves: NOTIFY, and a poll every ``shard_map_poll_s``)."""
        self._monitor_here()
        with self._on("control", timeout_s) as conn:
            directory = load_directory(conn)
        self._adopt(directory)
        return self._core.shards

    def _first_directory(self) -> None:
        """The directory a process routes its first call by. With one shard group
        there is nothing to place, so a catalog that cannot be reached does not stop
        the data path: routing starts without it (every key lives on that group) and
        the monitor brings the directory in once the control node answers. With
        several groups a statement waits for the catalog, or fails: a guess could
        put a row on the wrong group."""
        single = len(self._core.group_names) == 1
        try:
            self.refresh_shards(min(self.config.pools.timeout_s, 5.0) if single else None)
        except NodeUnavailableError as exc:
            if not single:
                raise
            log.warning("no sharding directory yet (%s); one shard group: routing on", exc)
            self._adopt(self._core.shards)

    def _monitor_round(self) -> int:
        """The monitor's round count; -1 if this process has no monitor yet."""
        monitor = self._monitor
        return -1 if monitor is None else monitor.rounds

    def _routed(
        self,
        c: Classification,
        scope: RouteScope,
        group: str | None,
        options: ReadOptions,
        tracker: Session | None = None,
    ) -> Any:
        if c.read_only and scope is not RouteScope.PRIMARY:
            return self._read(self._core.group(group), options, tracker)
        self._core.check_one_call(c)
        _, node = self._core.route(c, scope, group)  # refuses a write in a replica scope
        return self._on(node)

    def _lease(self, c: Classification, options: ReadOptions, group: str | None) -> Any:
        return self._routed(c, RouteScope.AUTO, group, options)

    def _write_parts(
        self, c: Classification, shard_plan: ShardPlan, work: Work, combine: Combine
    ) -> Any:
        results = []
        # Checked once, before any part runs: every part is a cut of the same statement.
        self._core.check_one_call(c)
        with ExitStack() as stack:
            conns: list[tuple[str, Connection[Any]]] = []
            try:
                for part in shard_plan.parts:  # in group order: see shardplan._in_order
                    conn = stack.enter_context(self._on(self._core.primary_node(part.group)))
                    conn.execute("BEGIN")
                    conns.append((part.group, conn))
                    results.append(work(conn, part.sql, part.params))
            except BaseException:
                for _, conn in conns:  # nothing committed yet: undo every group
                    if not conn.closed:
                        conn.execute("ROLLBACK")
                raise
            committed: list[str] = []
            for group, conn in conns:
                try:
                    conn.execute("COMMIT")
                except psycopg.Error as exc:
                    for _, rest in conns[len(committed) + 1 :]:
                        if not rest.closed:
                            rest.execute("ROLLBACK")
                    if not committed:
                        raise
                    err = PartialWriteError(
                        f"the write committed on {', '.join(committed)} but failed to commit "
                        f"on {group} ({exc}); the remaining groups were rolled back"
                    )
                    err.committed, err.failed = tuple(committed), group
                    raise err from exc
                committed.append(group)
        return combine(results)

    def _quick(self, c: Classification, options: ReadOptions, group: str | None) -> str | None:
        return self._quick_replica(c, RouteScope.AUTO, group, options)

    def _quick_replica(
        self, c: Classification, scope: RouteScope, group: str | None, options: ReadOptions
    ) -> str | None:
        """The replica for an EVENTUAL read under round robin with equal weights,
        or None for every other call: the hot path of replica reads, which pays
        a turn counter instead of a balancing decision, and one flat lease (see
        :meth:`_run_on_replica`) instead of nested context managers. The choice
        is the one the general path would make."""
        reads = self._core.reads
        if not (
            reads.quick
            and c.read_only
            and options.consistency is _EVENTUAL_LEVEL
            and scope is not _PRIMARY_SCOPE
        ):
            return None
        name = self._core.group(group)
        return reads.quick_pick(
            name, self._core.replica_nodes(name), self._samples, self._monitor_round()
        )

    def _run_on_replica(self, name: str, work: Work, query: str, params: Params) -> Any:
        """``work(conn)`` on a pooled connection to replica ``name``: what ``_on``
        does for a replica under round robin, without its context managers."""
        pool = self._core.pools.peek(name) or self._pool(name)
        reads = self._core.reads
        try:
            conn = pool.getconn()
        except PoolTimeout as exc:
            reads.end(name, failed="no connection within the pool timeout")
            raise self._core.unavailable(name, exc) from exc
        try:
            result = work(conn, query, params)
        except psycopg.Error as exc:
            pool.putconn(conn)
            raise self._failed(name, "replica", pool, exc) from exc
        except BaseException:
            pool.putconn(conn)
            raise
        pool.putconn(conn)
        reads.end(name)
        return result

    def _failed(
        self, name: str, role: str, pool: ConnectionPool[Any], exc: psycopg.Error
    ) -> MlscaleError:
        """The mlscale error for driver error ``exc`` on node ``name``. A node found
        unavailable has its other idle connections checked now (they died with it),
        and a replica is banned for a while."""
        err = translate(exc, name, role)
        if isinstance(err, NodeUnavailableError):
            pool.check()
            if role == "replica":
                self._core.reads.end(name, failed=str(err))
        elif role == "replica":
            self._core.reads.end(name)
        return err

    @contextmanager
    def _read(
        self, group: str, options: ReadOptions, tracker: Session | None
    ) -> Iterator[Connection[Any]]:
        """A connection for a read in ``group`` that meets ``options``: a replica
        that has replayed what it must, else (after a bounded wait) the primary."""
        reads = self._core.reads
        names = self._core.replica_nodes(group)
        samples = self._samples()
        primary = self._core.primary_node(group)
        seen = tracker.seen.get(group) if tracker is not None else None
        req = reads.requirement(options, group, seen)
        decision = reads.decide(reads.states(group, names, samples), req)
        if isinstance(decision, WaitFor):
            started = time.monotonic()
            deadline = started + decision.timeout_ms / 1000
            while True:
                for name in decision.replicas:
                    with self._on(name) as conn:
                        if _replayed(conn, decision.lsn):
                            reads.record_wait((time.monotonic() - started) * 1000, True)
                            reads.record(UseReplica(name, "replayed"), options.consistency, primary)
                            yield conn
                            if tracker is not None:
                                tracker.observe(conn, group, replica=True)
                            return
                if time.monotonic() >= deadline:
                    break
                pause(0.002)
            reads.record_wait((time.monotonic() - started) * 1000, False)
            states = reads.states(group, names, self._samples())
            decision = reads.decide(states, req.without_wait())
        reads.record(decision, options.consistency, primary)
        if isinstance(decision, NoReplica):
            raise RoutingError(f"no node may serve this read: {decision.reason}")
        if isinstance(decision, UseReplica):
            with self._on(decision.name) as conn:
                yield conn
                if tracker is not None:
                    tracker.observe(conn, group, replica=True)
            return
        with self._on(primary) as conn:
            yield conn
            if tracker is not None:
                tracker.observe(conn, group, replica=False)

    # -- scopes, sessions, transactions ----------------------------------------------------

    def primary(self, group: str | None = None) -> Scope:
        """Calls that all run on the primary of ``group``."""
        return Scope(self, RouteScope.PRIMARY, group)

    def replica(self, group: str | None = None) -> Scope:
        """Calls that all run on replicas of ``group``; a write is refused."""
        return Scope(self, RouteScope.REPLICA, group)

    def group(self, group: str) -> Scope:
        """Calls routed within shard group ``group``."""
        return Scope(self, RouteScope.AUTO, group)

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
        return Session(self, group, ReadOptions.of(consistency, token), monotonic)

    @contextmanager
    def transaction(
        self,
        *,
        isolation: Isolation | None = None,
        readonly: bool = False,
        group: str | None = None,
    ) -> Iterator[Transaction]:
        """A transaction on the primary of ``group``: committed if the block ends
        normally, rolled back if it raises. ``tx.token`` holds its causal token
        once it has committed."""
        name = self._core.primary_node(group)
        with self._on(name) as conn:
            tx = Transaction(self, conn, name)
            try:
                with conn.transaction():
                    options = set_transaction(isolation, readonly)
                    if options is not None:
                        conn.execute(options)
                    yield tx
                tx.token = CausalToken({self._core.group(group): _position(conn)})
            finally:
                if tx.dirty:
                    reset_session(conn)

    def close(self) -> None:
        """Stop the monitor and close every pool; the cluster cannot be used afterwards."""
        self._core.state = ClusterState.CLOSED
        if self._monitor is not None:
            self._monitor.stop()
        for pool in self._core.pools.take_all():
            try:
                pool.close()
            except Exception:  # one failing pool must not keep the others open
                log.warning("closing a pool failed", exc_info=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replayed(conn: Connection[Any], lsn: int) -> bool:
    """Whether the standby behind ``conn`` has replayed WAL position ``lsn`` (bytes)."""
    cur = conn.execute(
        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (format_lsn(lsn),), prepare=True
    )
    row = cur.fetchone()
    return bool(row and row[0])


def _position(conn: Connection[Any]) -> GroupPosition:
    """The primary's WAL position now, read on ``conn`` after its commit returned."""
    cur = conn.execute(PRIMARY_SAMPLE, prepare=True)
    row = cur.fetchone()
    if row is None:
        raise MlscaleError("the primary returned no WAL position")
    return GroupPosition(int(row[1]) % 2**64, int(row[2]), parse_lsn(row[0]))


class Scope(_Runner):
    """Calls with an explicit target: the primary, replicas, or one shard group."""

    def __init__(self, cluster: Cluster, scope: RouteScope, group: str | None) -> None:
        self._cluster = cluster
        self._core = cluster._core
        self._scope = scope
        self._group = group

    def _lease(self, c: Classification, options: ReadOptions, group: str | None) -> Any:
        return self._cluster._routed(c, self._scope, _within(self._group, group), options)

    def _write_parts(
        self, c: Classification, shard_plan: ShardPlan, work: Work, combine: Combine
    ) -> Any:
        if self._scope is RouteScope.REPLICA:
            raise RoutingError("a write cannot run in a replica scope")
        for part in shard_plan.parts:
            _within(self._group, part.group)
        return self._cluster._write_parts(c, shard_plan, work, combine)

    def _quick(self, c: Classification, options: ReadOptions, group: str | None) -> str | None:
        return self._cluster._quick_replica(c, self._scope, _within(self._group, group), options)

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Transaction(_Runner):
    """Statements inside one transaction, on one primary connection."""

    def __init__(self, cluster: Cluster, conn: Connection[Any], node: str) -> None:
        self._cluster = cluster
        self._core = cluster._core
        self._conn = conn
        self.node = node
        self.group = self._core.pools.node(node).group
        self.dirty = False  # whether a statement left session state on the connection
        self.token: CausalToken | None = None  # set once committed

    def _may_repeat(self, c: Classification) -> bool:
        return False  # the transaction died with its connection

    @contextmanager
    def _lease(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> Iterator[Connection[Any]]:
        _within(self.group, group)
        if c.transaction in (TxAction.BEGIN, TxAction.END):
            raise RoutingError(
                f"{c.reason}: inside a transaction block, end it by leaving the block "
                "(or use tx.savepoint())"
            )
        if c.creates:
            self.dirty = True
        try:
            yield self._conn
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):
                raise
            raise translate(exc, self.node, "primary") from exc

    @contextmanager
    def savepoint(self) -> Iterator[Transaction]:
        """A nested transaction (SAVEPOINT): rolled back alone if its block raises."""
        try:
            with self._conn.transaction():
                yield self
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):
                raise
            raise translate(exc, self.node, "primary") from exc


class Session(_Runner):
    """Calls that share session state, and a read guarantee.

    Reads go to replicas while the session holds no state. A statement that
    creates state (SET, PREPARE, CREATE TEMP, nextval, advisory locks, LISTEN,
    WITH HOLD cursors, BEGIN) pins the session to one primary connection, and
    every later call runs there until the state is gone or the session ends.
    The connection is reset (as by DISCARD ALL) before another caller gets it.

    A READ_YOUR_WRITES session keeps ``token`` (a causal token: pass
    ``str(s.token)`` to another process) at its latest write; a monotonic
    session remembers the newest position it has read from in each group.
    """

    def __init__(
        self, cluster: Cluster, group: str | None, options: ReadOptions, monotonic: bool
    ) -> None:
        self._cluster = cluster
        self._core = cluster._core
        self._group = group
        self._node = self._core.primary_node(group)
        self.options = options
        self.token = options.token or CausalToken()
        self.monotonic = monotonic
        self.seen: dict[str, int] = {}
        self.state = SessionState()
        self._conn: Connection[Any] | None = None
        self._pool: ConnectionPool[Any] | None = None
        self._closed = False

    @property
    def pinned(self) -> bool:
        """Whether the session holds a primary connection now."""
        return self._conn is not None

    def _may_repeat(self, c: Classification) -> bool:
        return not self.pinned and not self.state.needs_pin(c)

    def _quick(self, c: Classification, options: ReadOptions, group: str | None) -> str | None:
        if self.monotonic or self.state.needs_pin(c):
            return None
        target = group if group is not None else self._group
        return self._cluster._quick_replica(c, RouteScope.AUTO, target, options)

    def _options(
        self,
        consistency: Consistency | str | None,
        token: CausalToken | str | None,
        max_lag_ms: float | None,
        max_lag_bytes: int | None,
    ) -> ReadOptions:
        call = ReadOptions.of(
            consistency or self.options.consistency, token, max_lag_ms, max_lag_bytes
        )
        merged = self.token.merge(call.token) if call.token else self.token
        return ReadOptions(call.consistency, merged or None, call.max_lag_ms, call.max_lag_bytes)

    def observe(self, conn: Connection[Any], group: str, *, replica: bool) -> None:
        """After a read on ``conn``: remember how new the data was (monotonic sessions)."""
        if not self.monotonic:
            return
        query = (
            "SELECT pg_last_wal_replay_lsn()::text"
            if replica
            else ("SELECT pg_current_wal_lsn()::text")
        )
        cur = conn.execute(query, prepare=True)
        row = cur.fetchone()
        if row and row[0]:
            self.seen[group] = max(self.seen.get(group, 0), parse_lsn(row[0]))

    def _wrote(self, conn: Connection[Any], group: str | None = None) -> None:
        """After a write committed on ``conn`` (a primary of ``group``, default the
        session's): advance the token and the monotonic mark."""
        if self.options.consistency is not Consistency.READ_YOUR_WRITES and not self.monotonic:
            return
        position = _position(conn)
        group = self._core.group(group if group is not None else self._group)
        self.token = self.token.merge(CausalToken({group: position}))
        if self.monotonic:
            self.seen[group] = max(self.seen.get(group, 0), position.lsn)

    def _pin(self) -> Connection[Any]:
        if self._closed:
            raise MlscaleError("this session is closed")
        if self._conn is None:
            self._pool = self._cluster._pool(self._node)
            try:
                self._conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise self._core.unavailable(self._node, exc) from exc
        return self._conn

    def _unpin(self) -> None:
        conn, pool = self._conn, self._pool
        self._conn = self._pool = None
        if conn is not None and pool is not None:
            try:
                reset_session(conn)
            finally:
                pool.putconn(conn)

    @contextmanager
    def _lease(
        self, c: Classification, options: ReadOptions, group: str | None
    ) -> Iterator[Connection[Any]]:
        if not self.state.needs_pin(c):
            # Unpinned calls may go to any shard group: the token keeps one position per group.
            target = group if group is not None else self._group
            if c.read_only:
                with self._cluster._routed(
                    c, RouteScope.AUTO, target, options, tracker=self
                ) as conn:
                    yield conn
                return
            with self._cluster._routed(c, RouteScope.AUTO, target, options) as conn:
                yield conn
                self._wrote(conn, target)
            return
        _within(self._core.group(self._group), group)
        conn = self._pin()
        try:
            yield conn
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):
                raise
            if conn.closed:
                self.state = SessionState()
                self._unpin()
            raise translate(exc, self._node, "primary") from exc
        self.state = self.state.after(c)
        if not c.read_only and not self.state.in_transaction:
            self._wrote(conn)
        if not self.state.pinned:
            self._unpin()

    @contextmanager
    def transaction(
        self, *, isolation: Isolation | None = None, readonly: bool = False
    ) -> Iterator[Transaction]:
        """A transaction on the session's (pinned) primary connection."""
        conn = self._pin()
        try:
            with conn.transaction():
                options = set_transaction(isolation, readonly)
                if options is not None:
                    conn.execute(options)
                yield Transaction(self._cluster, conn, self._node)
            self._wrote(conn)
        except psycopg.Error as exc:
            if isinstance(exc, MlscaleError):
                raise
            raise translate(exc, self._node, "primary") from exc
        finally:
            if not self.state.pinned:
                self._unpin()

    def close(self) -> None:
        """End the session: its connection (if any) is reset and goes back to the pool."""
        self.state = SessionState()
        self._unpin()
        self._closed = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
