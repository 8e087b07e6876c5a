"""What every room of one cluster shares, with no I/O: nodes, groups, pools, decisions.

The async rooms (``*_async.py``) and their generated sync twins hold the I/O;
each leans on one :class:`ClusterContext` for what it decides, so the twins
cannot drift apart in what they decide.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..core.classify import Classification, Classifier
from ..core.keyroute import KeyReader
from ..core.lsn import format_lsn
from ..core.pooling import PoolSize
from ..core.route import RouteRefused, Scope, choose_role
from ..core.sharding import ShardDirectory
from ..core.shardplan import ShardPlan
from ..core.topology import Node, Role, control_nodes_of, primary_name
from ..errors import MlscaleError, NodeUnavailableError, RoutingError
from .balancer import ReplicaBalancer
from .leadership import Leadership
from .pools import PoolSet
from .stats import ClassifierStats, ClusterStats, LeaderInfo, NodeInfo, PrimaryPosition

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["ClusterContext", "ClusterState"]

P = TypeVar("P", ConnectionPool[Any], AsyncConnectionPool[Any])


class ClusterState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class ClusterContext(Generic[P]):
    """Nodes, groups, pools, classifier and replica balancing of one cluster."""

    def __init__(self, config: ClusterConfig, factory: Callable[..., P]) -> None:
        self.config = config
        self.classifier = Classifier(read_only_functions=config.routing.read_only_functions)
        self.pools: PoolSet[P] = PoolSet(config, factory)
        self.balancer = ReplicaBalancer(config)
        self._groups = frozenset(g.name for g in config.shard_groups)
        # Each scope's leader and replicas: Patroni's where the config names its
        # endpoints (the follower keeps it current), else the config's roles.
        followed = frozenset(
            ["control"] * bool(config.control.patroni)
            + [g.name for g in config.shard_groups if g.patroni]
        )
        scopes = {"control": control_nodes_of(config)} | {
            g: [n for n in self.nodes if n.group == g] for g in self._groups
        }
        self.leadership = Leadership(scopes, followed)
        self.leadership.listeners.append(self._leaders_changed)
        # Role by node as it serves now (updated in place when a leader changes).
        self.roles = {n.name: n.role.value for n in self.pools.nodes.values()}
        # Per group, computed once (and again when its members change): the read path
        # asks on every read. Do not mutate.
        self._replicas = {
            g: [n.name for n in self.nodes if n.role is Role.REPLICA and n.group == g]
            for g in self._groups
        }
        self._default_group = config.shard_groups[0].name
        self.group_names = tuple(g.name for g in config.shard_groups)
        self._key_router: tuple[int, KeyReader] | None = None
        self.state = ClusterState.OPEN
        # Write statements by primary node: one increment under a lock per write.
        self._writes: Counter[str] = Counter()
        self._writes_lock = threading.Lock()

    # -- nodes -------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return list(self.pools.nodes.values())

    @property
    def pool_size(self) -> PoolSize:
        return self.pools.size

    def group(self, group: str | None) -> str:
        """``group`` checked (None: the first shard group)."""
        if group is None:
            return self._default_group
        if group not in self._groups:
            known = ", ".join(self.group_names)
            raise MlscaleError(f"no shard group named {group!r}; known: {known}")
        return group

    def primary_node(self, group: str | None = None) -> str:
        """Name of the primary of ``group`` (default: the first shard group): in a
        Patroni group its leader (while it has none, the last one known)."""
        group = self.group(group)
        if group in self.leadership.followed:
            return self.leadership.primary(group)
        return primary_name(group)

    def replica_nodes(self, group: str | None = None) -> list[str]:
        """Names of the replicas of ``group`` (default: the first shard group): in a
        Patroni group its streaming members other than the leader."""
        return self._replicas[self.group(group)]

    def members(self) -> tuple[list[Node], list[Node]]:
        """The nodes serving now: each group's primary (its leader), and its replicas."""
        node = self.pools.node
        primaries = [node(self.primary_node(g)) for g in self.group_names]
        replicas = [node(r) for g in self.group_names for r in self.replica_nodes(g)]
        return primaries, replicas

    def control_node(self) -> str:
        """The node holding the catalog now: ``control``, or the control scope's
        leader when it is a Patroni cluster (while it has none, the last one known)."""
        return self.leadership.primary("control")

    @property
    def follows_patroni(self) -> bool:
        """Whether any scope of this cluster is a Patroni cluster followed here."""
        return bool(self.leadership.followed)

    def _leaders_changed(self, scope: str, renew: frozenset[str]) -> None:
        """A scope's leader or replicas changed: roles and replica lists follow."""
        lead = self.leadership
        for name in self.pools.nodes:
            if lead.scope_of(name) == scope:
                self.roles[name] = lead.role(name)
        if scope in self._groups:
            self._replicas = {**self._replicas, scope: list(lead.replicas(scope))}
        self.balancer.members_changed()

    def unavailable(
        self, name: str, exc: Exception, timeout_s: float | None = None
    ) -> NodeUnavailableError:
        """The error for a node no connection could be had to within ``timeout_s``."""
        node = self.pools.node(name)
        waited = self.config.pools.timeout_s if timeout_s is None else timeout_s
        return NodeUnavailableError(
            f"couldn't get a connection to node {name} at {node.address} after {waited:.2f} s",
            node=name,
            node_role=node.role.value,
        )

    def record_write(self, plan: ShardPlan | None, home_group: str) -> None:
        """Count a write statement sent to the primary of each group of ``plan`` (None,
        or a plan any group may run: the caller's ``home_group``)."""
        groups = (home_group,) if plan is None or plan.any_group else plan.groups
        with self._writes_lock:
            for group in groups:
                self._writes[primary_name(group)] += 1

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
        self.classifier.after_fork()
        self.balancer.after_fork()
        self.leadership.after_fork()
        self._key_router = None
        self._writes_lock = threading.Lock()

    def key_reader(self, directory: ShardDirectory) -> KeyReader:
        """The key reader for ``directory``'s sharded tables (kept per version: it
        caches what it learned of each statement)."""
        cached = self._key_router
        if cached is None or cached[0] != directory.version:
            # No column lists from the catalog: an INSERT or COPY into a sharded table
            # must name its columns, so DDL made elsewhere can never shift the key.
            cached = (directory.version, KeyReader(directory.tables))
            self._key_router = cached
        return cached[1]

    def check_one_call(self, c: Classification) -> None:
        """Refuse what would silently lose its effect outside a session or transaction."""
        if c.transaction is not None:
            raise RoutingError(
                f"{c.reason}: transaction control needs one connection; "
                "use `with cluster.transaction():` or a session"
            )
        lost = c.lost_outside_session
        if lost:
            what = ", ".join(sorted(e.value for e in lost))
            raise RoutingError(
                f"{c.reason}: the {what} would be lost when the connection returns to the "
                "pool; run it inside `with cluster.session():`"
            )

    def check_role(self, c: Classification, scope: Scope, group: str | None) -> None:
        """Refuse ``c`` where ``scope`` cannot run it (a write in a replica scope)."""
        try:
            choose_role(c, scope=scope, has_replicas=bool(self.replica_nodes(group)))
        except RouteRefused as exc:
            raise RoutingError(str(exc)) from None

    def stats(self, primaries: dict[str, tuple[int, float]], down: dict[str, str]) -> ClusterStats:
        """Pool counters per node, the cluster's own counters, reads, bans, classifier;
        ``primaries``: each group's last known primary position and when it was seen
        (monotonic s); ``down``: nodes seen down, with why."""
        reads, outstanding = self.balancer.metrics_now()
        with self._writes_lock:
            writes = dict(self._writes)
        now = time.monotonic()
        return ClusterStats(
            primaries={
                group: PrimaryPosition(format_lsn(lsn), round(now - at, 3))
                for group, (lsn, at) in primaries.items()
            },
            down=down,
            pools=self.pools.stats(),
            cluster=dict(self.pools.counters),
            classifier=ClassifierStats(self.classifier.hits, self.classifier.misses),
            reads=reads,
            outstanding=outstanding,
            bans=self.balancer.bans_now(),
            writes=writes,
            nodes={n.name: NodeInfo(n.group or "", self.roles[n.name]) for n in self.nodes},
            leaders={scope: self._leader_info(scope, now) for scope in self.leadership.scopes},
        )

    def _leader_info(self, scope: str, now: float) -> LeaderInfo:
        """``scope``'s leader as this client sees it (``now``: monotonic s)."""
        lead = self.leadership
        if not lead.follows(scope):
            return LeaderInfo(lead.leader(scope), followed=False)
        st = lead.state(scope)
        return LeaderInfo(
            st.view.leader if st.view is not None else None,
            followed=True,
            timeline=st.view.timeline if st.view is not None else None,
            changed_s_ago=None if st.changed_at is None else round(now - st.changed_at, 3),
            seen_s_ago=round(now - st.seen_at, 3) if st.view is not None else None,
            error=st.error,
        )
