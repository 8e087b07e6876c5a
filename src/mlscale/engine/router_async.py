"""Where a call goes: the primary, or the replica that meets its read guarantee (async source).

A write (or anything in a primary scope) goes to its group's primary. A read
asks the balancer, with the monitor's latest samples and the catalog's bans,
for a replica that meets its consistency; a causal token a replica has not
replayed yet is waited for (up to a bound), else the primary serves it. The
hot path -- EVENTUAL reads under round robin -- skips the decision and takes
the next available replica (:meth:`AsyncRouter.quick_replica`).

``router_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from ..core.balance import NoReplica, UsePrimary, UseReplica, WaitFor
from ..core.classify import Classification
from ..core.consistency import Consistency
from ..core.lsn import format_lsn, parse_lsn
from ..core.route import OnPrimary, OnReplica, Role
from ..core.route import Scope as RouteScope
from ..errors import NoReplicaAvailable, RoutingError
from .balancer import ReadOptions, Seen
from .concurrency_async import pause
from .context import ClusterContext
from .lazy import OnFirstUse
from .monitor_async import AsyncMonitor
from .nodes_async import AsyncNodes
from .samples import ReplicaSample
from .watch_async import AsyncCatalogWatch

__all__ = ["AsyncRouter"]

# Looked up once: attribute access on an enum class costs the hot read path.
_EVENTUAL_LEVEL = Consistency.EVENTUAL
_PRIMARY_SCOPE = RouteScope.PRIMARY
# Whether a standby has replayed a position, and whose history it follows (a token
# from another cluster or timeline must not be served by it).
_REPLAYED = (
    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, "
    "(SELECT system_identifier FROM pg_control_system()), "
    "(SELECT received_tli FROM pg_stat_wal_receiver)"
)
_REPLAY_POSITION = "SELECT pg_last_wal_replay_lsn()::text"
_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"


async def _first_value(cur: AsyncCursor[Any]) -> Any:
    row = await cur.fetchone()
    return row[0] if row else None


class AsyncRouter:
    """Picks the node of each call and lends a connection to it."""

    def __init__(
        self,
        context: ClusterContext[AsyncConnectionPool[Any]],
        nodes: AsyncNodes,
        monitor: OnFirstUse[AsyncMonitor],
        watch: OnFirstUse[AsyncCatalogWatch],
    ) -> None:
        self._context = context
        self._nodes = nodes
        self._monitor = monitor
        self._watch = watch
        self._balancer = context.balancer

    # -- what the background loops know ---------------------------------------------

    def samples(self) -> dict[str, ReplicaSample]:
        """The monitor's latest replica samples (the monitor and catalog watcher start
        on first use); the catalog's manual bans applied to the balancer."""
        monitor = self._monitor.get()
        self._balancer.sync_manual(self._watch.get().bans)
        return monitor.snapshot()[1]

    def _round(self) -> int:
        """The monitor's round count; -1 if this process has no monitor yet."""
        monitor = self._monitor.peek()
        return -1 if monitor is None else monitor.rounds

    # -- choosing -----------------------------------------------------------------------

    def connection(
        self,
        c: Classification,
        scope: RouteScope,
        group: str | None,
        options: ReadOptions,
        seen: Seen | None = None,
    ) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A connection to the node that runs ``c`` in ``group`` under ``scope``: a
        replica meeting ``options`` for a read, else the primary. ``seen``: what the
        caller has read already (a monotonic session), kept up to date."""
        if c.read_only and scope is not RouteScope.PRIMARY:
            replica_only = scope is RouteScope.REPLICA
            return self._read(self._context.group(group), options, seen, replica_only)
        self._context.check_one_call(c)
        self._context.check_role(c, scope, group)  # refuses a write in a replica scope
        # The leader only: in a Patroni group, waiting through a failover for the next.
        return self._nodes.connect_leader(self._context.group(group))

    async def quick_replica(
        self, c: Classification, scope: RouteScope, group: str | None, options: ReadOptions
    ) -> str | None:
        """The replica for an EVENTUAL read under round robin with equal weights,
        or None for every other call: the hot path of replica reads, which pays
        a turn counter instead of a balancing decision, and one flat borrow (see
        :meth:`AsyncNodes.run_on_replica`) instead of nested context managers.
        The choice is the one the general path would make."""
        balancer = self._balancer
        if not (
            balancer.quick
            and c.read_only
            and options.consistency is _EVENTUAL_LEVEL
            and scope is not _PRIMARY_SCOPE
        ):
            return None
        name = self._context.group(group)
        return balancer.quick_pick(
            name, self._context.replica_nodes(name), self.samples, self._round()
        )

    def explain(
        self, c: Classification, scope: RouteScope, group: str | None, options: ReadOptions
    ) -> tuple[Role, str | None]:
        """The role and node a call of ``c`` made now would get (the node is None when
        a read would first wait for a replica to replay its token), as the balancer
        decides it with the bans and samples of this moment."""
        group = self._context.group(group)
        primary = self._context.primary_node(group)
        if not c.read_only or scope is RouteScope.PRIMARY:
            self._context.check_role(c, scope, group)
            reason = "primary scope" if scope is RouteScope.PRIMARY else c.reason
            return OnPrimary(reason), primary
        balancer = self._balancer
        states = balancer.states(group, self._context.replica_nodes(group), self.samples())
        history = self._context.leadership.switch_points(group)
        decision = balancer.decide(states, balancer.requirement(options, group, None, history))
        if isinstance(decision, UseReplica):
            return OnReplica(f"{c.reason}; {decision.reason}"), decision.name
        if isinstance(decision, UsePrimary):
            return OnPrimary(f"{c.reason}; {decision.reason}"), primary
        if isinstance(decision, WaitFor):
            return OnReplica(
                f"{c.reason}; waits up to {decision.timeout_ms:.0f} ms for "
                f"{', '.join(decision.replicas)} to replay the token, else the primary"
            ), None
        raise RoutingError(f"no node may serve this read: {decision.reason}")

    @asynccontextmanager
    async def _read(
        self, group: str, options: ReadOptions, seen: Seen | None, replica_only: bool = False
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection for a read in ``group`` that meets ``options``: a replica
        that has replayed what it must, else (after a bounded wait) the primary --
        never the primary with ``replica_only`` (an explicit replica scope)."""
        balancer = self._balancer
        names = self._context.replica_nodes(group)
        primary = self._context.primary_node(group)
        seen_lsn = seen.seen_lsn(group) if seen is not None else None
        history = self._context.leadership.switch_points(group)
        req = balancer.requirement(options, group, seen_lsn, history)
        decision = balancer.decide(balancer.states(group, names, self.samples()), req)
        if isinstance(decision, WaitFor):
            started = time.monotonic()
            deadline = started + decision.timeout_ms / 1000
            while True:
                for name in decision.replicas:
                    async with self._nodes.connect(name) as conn:
                        cur = await conn.execute(
                            _REPLAYED, (format_lsn(decision.lsn),), prepare=True
                        )
                        row = await cur.fetchone()
                        if row is not None and req.serves(row[0], row[1], row[2]):
                            balancer.record_wait((time.monotonic() - started) * 1000, True)
                            balancer.record(
                                UseReplica(name, "replayed"), options.consistency, primary
                            )
                            yield conn
                            await self._saw(conn, group, seen, replica=True)
                            return
                if time.monotonic() >= deadline:
                    break
                await pause(0.002)
            balancer.record_wait((time.monotonic() - started) * 1000, False)
            decision = balancer.decide(
                balancer.states(group, names, self.samples()), req.without_wait()
            )
        if replica_only and isinstance(decision, UsePrimary):
            refused = NoReplica(decision.cause, decision.reason)
            balancer.record(refused, options.consistency, primary)
            raise NoReplicaAvailable(
                f"no replica of {group} may serve this read ({decision.reason}); a replica "
                "scope never reads from the primary"
            )
        balancer.record(decision, options.consistency, primary)
        if isinstance(decision, NoReplica):
            raise RoutingError(f"no node may serve this read: {decision.reason}")
        node = decision.name if isinstance(decision, UseReplica) else primary
        async with self._nodes.connect(node) as conn:
            yield conn
            await self._saw(conn, group, seen, replica=node != primary)

    async def _saw(
        self, conn: AsyncConnection[Any], group: str, seen: Seen | None, *, replica: bool
    ) -> None:
        """After a read on ``conn``: tell ``seen`` how new the data was."""
        if seen is None:
            return
        cur = await conn.execute(_REPLAY_POSITION if replica else _PRIMARY_POSITION, prepare=True)
        position = await _first_value(cur)
        if position:
            seen.saw(group, parse_lsn(position))
