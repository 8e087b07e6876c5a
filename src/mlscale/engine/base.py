"""What sync and async clusters share that does no I/O: nodes, routing, bookkeeping.

``cluster_async.py`` holds the I/O (and ``cluster_sync.py`` is generated from
it); both lean on :class:`ClusterCore` for every decision, so the twins cannot
drift apart in what they decide.
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..config import ClusterConfig
from ..core.classify import Classification, Classifier, SessionEffect, Target
from ..core.keyroute import KeyRouter
from ..core.pooling import PoolSize
from ..core.route import Route, RouteRefused, Scope, ToPrimary, route
from ..core.sharding import EMPTY, ShardDirectory
from ..core.topology import Node, Role, primary_name
from ..errors import MlscaleError, NodeUnavailableError, RoutingError
from .pools import PoolSet
from .readrouter import ReadRouter

__all__ = ["RESET_SESSION", "ClusterCore", "ClusterState", "Isolation"]

P = TypeVar("P", ConnectionPool[Any], AsyncConnectionPool[Any])


class ClusterState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Isolation(enum.StrEnum):
    """Transaction isolation levels."""

    READ_COMMITTED = "read committed"
    REPEATABLE_READ = "repeatable read"
    SERIALIZABLE = "serializable"


def set_transaction(isolation: Isolation | None, readonly: bool) -> sql.Composed | None:
    """``SET TRANSACTION ...`` for the options given, or None if there are none."""
    parts: list[sql.Composable] = []
    if isolation is not None:
        parts.append(sql.SQL("ISOLATION LEVEL ") + sql.SQL(Isolation(isolation).value.upper()))
    if readonly:
        parts.append(sql.SQL("READ ONLY"))
    if not parts:
        return None
    return sql.SQL("SET TRANSACTION ") + sql.SQL(", ").join(parts)


# DISCARD ALL minus DEALLOCATE ALL: the driver's prepared statements stay (it
# tracks them); the last result lists statements the user PREPAREd, to deallocate.
RESET_SESSION = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; "
    "SELECT name FROM pg_prepared_statements WHERE name !~ '^_pg3_'"
)

# State a one-call statement may create without losing anything the caller relies on.
_HARMLESS_OUTSIDE_SESSION = frozenset({SessionEffect.SEQUENCE})


class ClusterCore(Generic[P]):
    """Nodes, pools, classifier and routing of one cluster; no I/O of its own."""

    def __init__(self, config: ClusterConfig, factory: Callable[..., P]) -> None:
        self.config = config
        self.classifier = Classifier(read_only_functions=config.routing.read_only_functions)
        self.pools: PoolSet[P] = PoolSet(config, factory)
        self.reads = ReadRouter(config)
        self._groups = frozenset(g.name for g in config.shard_groups)
        self.roles = {n.name: n.role.value for n in self.pools.nodes.values()}
        # Per group, computed once: the read path asks on every read. Do not mutate.
        self._replicas = {
            g: [n.name for n in self.nodes if n.role is Role.REPLICA and n.group == g]
            for g in self._groups
        }
        self._default_group = config.shard_groups[0].name
        self.group_names = tuple(g.name for g in config.shard_groups)
        # The sharding directory calls route by, and the key router built for it.
        self.shards: ShardDirectory = EMPTY
        self._key_router: tuple[int, KeyRouter] | None = None
        self.state = ClusterState.OPEN
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()

    # -- nodes -------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return list(self.pools.nodes.values())

    @property
    def pool_size(self) -> PoolSize:
        return self.pools.size

    def group(self, group: str | None) -> str:
        if group is None:
            return self._default_group
        if group in self._groups:
            return group
        name = group
        if name not in self._groups:
            known = ", ".join(g.name for g in self.config.shard_groups)
            raise MlscaleError(f"no shard group named {name!r}; known: {known}")
        return name

    def primary_node(self, group: str | None = None) -> str:
        """Name of the primary of ``group`` (default: the first shard group)."""
        return primary_name(self.group(group))

    def replica_nodes(self, group: str | None = None) -> list[str]:
        """Names of the replicas of ``group`` (default: the first shard group)."""
        return self._replicas[self.group(group)]

    # -- decisions ----------------------------------------------------------------

    def check_open(self) -> None:
        if self.state is ClusterState.CLOSED:
            raise MlscaleError("this cluster is closed; create a new one to keep working")

    def classify(self, statement: str) -> Classification:
        return self.classifier.classify(statement)

    def after_fork(self) -> None:
        """In a forked child: locks a parent thread may have held at the fork are made
        anew, and in-flight bookkeeping that only the parent's threads would undo is
        dropped."""
        self._turn_lock = threading.Lock()
        self.classifier.after_fork()
        self.reads.after_fork()
        self._key_router = None

    def key_router(self, directory: ShardDirectory) -> KeyRouter:
        """The key router for ``directory``'s sharded tables (kept per version: it
        caches what it learned of each statement)."""
        cached = self._key_router
        if cached is None or cached[0] != directory.version:
            # No column lists from the catalog: an INSERT or COPY into a sharded table
            # must name its columns, so DDL made elsewhere can never shift the key.
            cached = (directory.version, KeyRouter(directory.tables))
            self._key_router = cached
        return cached[1]

    def check_one_call(self, c: Classification) -> None:
        """Refuse what would silently lose its effect outside a session or transaction."""
        if c.transaction is not None:
            raise RoutingError(
                f"{c.reason}: transaction control needs one connection; "
                "use `with cluster.transaction():` or a session"
            )
        lost = c.creates - _HARMLESS_OUTSIDE_SESSION
        if lost:
            what = ", ".join(sorted(e.value for e in lost))
            raise RoutingError(
                f"{c.reason}: the {what} would be lost when the connection returns to the "
                "pool; run it inside `with cluster.session():`"
            )

    def route(self, c: Classification, scope: Scope, group: str | None) -> tuple[Route, str]:
        """(route, node name) for ``c``; replicas are taken in turn."""
        replicas = self.replica_nodes(group)
        try:
            chosen = route(c, scope=scope, has_replicas=bool(replicas))
        except RouteRefused as exc:
            raise RoutingError(str(exc)) from None
        if isinstance(chosen, ToPrimary):
            return chosen, self.primary_node(group)
        with self._turn_lock:
            turn = next(self._turn)
        return chosen, replicas[turn % len(replicas)]

    def explain(self, statement: str, group: str | None = None) -> dict[str, str]:
        """Where ``statement`` would go from outside any session, and why."""
        c = self.classify(statement)
        chosen, node = self.route(c, Scope.AUTO, group)
        target = Target.PRIMARY if isinstance(chosen, ToPrimary) else Target.REPLICA
        return {"target": target.value, "node": node, "reason": chosen.reason}

    def unavailable(
        self, name: str, exc: Exception, timeout_s: float | None = None
    ) -> NodeUnavailableError:
        node = self.pools.node(name)
        waited = self.config.pools.timeout_s if timeout_s is None else timeout_s
        err = NodeUnavailableError(
            f"couldn't get a connection to node {name} at {node.address} after {waited:.2f} s"
        )
        err.node, err.node_role = name, node.role.value
        return err

    def stats(self) -> dict[str, Any]:
        """Pool counters per node, the cluster's own counters and the classifier cache."""
        return {
            "pools": self.pools.stats(),
            "cluster": dict(self.pools.counters),
            "classifier": {"hits": self.classifier.hits, "misses": self.classifier.misses},
            "reads": self.reads.snapshot(),
            "bans": self.reads.describe_bans(),
        }
