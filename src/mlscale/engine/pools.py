"""One connection pool per node, sync or async, that survives ``fork``.

ML data loaders fork worker processes. A pooled connection copied into a child
shares its socket with the parent; if both used it, the protocol streams would
interleave. So in a forked child every inherited pool is abandoned untouched
(psycopg only closes a connection in the process that opened it) and fresh
pools are made on first use. The parent's connections stay valid.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..core.pooling import PoolSize, pool_size
from ..core.topology import Node, control_nodes_of, nodes_of
from ..errors import MlscaleError
from .connect import connect_kwargs

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["PoolSet", "make_lifo", "pool_parameters", "usable_cpus"]

P = TypeVar("P", ConnectionPool[Any], AsyncConnectionPool[Any])

# Pools inherited through fork: kept referenced so that no finalizer touches them
# while the child runs (psycopg itself only closes connections in the process
# that opened them, so exit-time finalizers are harmless).
_ABANDONED: list[object] = []
_LIVE: weakref.WeakSet[PoolSet[Any]] = weakref.WeakSet()


def usable_cpus() -> int:
    """CPUs this process may run on (affinity), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Stack(deque[Any]):
    """A deque whose left end is its right: psycopg_pool takes idle connections
    with ``popleft`` and returns them with ``append``, so this makes it LIFO.

    LIFO hands a request the connection returned last, whose backend has its
    plan, catalog and CPU caches warm; FIFO rotates through every idle backend.
    On this project's 2-core VM a single-threaded point read costs about 20 us
    more with 4 pooled connections rotating than with one reused (see
    ``mlscale bench replicas``). Shrinking an idle pool closes the
    most recently returned connection; the others are as good.
    """

    def popleft(self) -> Any:
        return self.pop()


def make_lifo(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> None:
    """Make an unopened psycopg_pool ``pool`` reuse connections last-in first-out."""
    idle = getattr(pool, "_pool", None)
    if not isinstance(idle, deque) or idle:
        raise MlscaleError(
            "this psycopg_pool version keeps idle connections differently; "
            'set [pools] reuse = "fifo" or install psycopg-pool 3.2-3.3'
        )
    pool._pool = _Stack()  # psycopg_pool has no public hook: the test of rooms allows this one


def pool_parameters(node: Node, config: ClusterConfig, size: PoolSize) -> dict[str, Any]:
    """Keyword arguments for a psycopg_pool pool serving ``node``."""
    pc = config.pools
    return {
        "conninfo": "",
        # Autocommit: a one-statement call costs one round trip, not BEGIN + it + COMMIT;
        # transactions are opened explicitly.
        "kwargs": {**connect_kwargs(node, config), "autocommit": True},
        "min_size": size.min_size,
        "max_size": size.max_size,
        "timeout": pc.timeout_s,
        "max_idle": pc.max_idle_s,
        "max_lifetime": pc.max_lifetime_s,
        "name": f"mlscale-{node.name}",
        "open": False,
    }


class PoolSet(Generic[P]):
    """The pools of one cluster, one per node, created on first use of each node.

    ``factory`` makes a pool from psycopg_pool's keyword arguments plus ``node`` and
    ``config`` (see :class:`~mlscale.engine.nodepool_async.AsyncNodePool`).
    """

    def __init__(self, config: ClusterConfig, factory: Callable[..., P]) -> None:
        self.config = config
        # The control database's standbys too (a Patroni scope: any may lead it).
        self.nodes = {n.name: n for n in [*nodes_of(config), *control_nodes_of(config)[1:]]}
        self.size = pool_size(config.pools, usable_cpus())
        self._factory: Callable[..., P] = factory
        self._pools: dict[str, P] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.closed = False
        self.counters: Counter[str] = Counter()
        _LIVE.add(self)

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise MlscaleError(
                f"no node named {name!r} in this cluster; known: {', '.join(self.nodes)}"
            ) from None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's pools without closing them."""
        _ABANDONED.extend(self._pools.values())
        self._pools = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.counters["fork_resets"] += 1

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self.after_fork()

    def peek(self, name: str) -> P | None:
        """The open pool of node ``name``, if one was published."""
        self._check_pid()
        pool = self._pools.get(name)
        if pool is None:
            self.node(name)  # an unknown name is an error, not a miss
        return pool

    def make(self, name: str) -> P:
        """A new, unopened pool for node ``name`` (open it, then :meth:`publish` it)."""
        node = self.node(name)
        pool = self._factory(
            node=node, config=self.config, **pool_parameters(node, self.config, self.size)
        )
        if self.config.pools.reuse == "lifo":
            make_lifo(pool)
        return pool

    def publish(self, name: str, pool: P) -> P:
        """Share an opened ``pool``; if another caller won the race, theirs (close yours)."""
        with self._lock:
            if self.closed:
                raise MlscaleError("this cluster is closed; create a new one to keep working")
            existing = self._pools.get(name)
            if existing is not None:
                return existing
            self._pools[name] = pool
            self.counters["pools_opened"] += 1
            return pool

    def retire(self, name: str, pool: P) -> P | None:
        """Stop sharing ``pool`` as node ``name``'s (the next user makes a new one);
        it, to close, unless another caller retired it first."""
        with self._lock:
            if self._pools.get(name) is not pool:
                return None
            del self._pools[name]
        return pool

    def take_all(self) -> list[P]:
        """Close the set: no pool is published after this. Every pool, to close them."""
        self._check_pid()
        with self._lock:
            self.closed = True
            pools, self._pools = list(self._pools.values()), {}
        return pools

    def stats(self) -> dict[str, dict[str, int]]:
        """Per node, psycopg_pool's counters (pool_size, requests_num, ...)."""
        if self._pid != os.getpid():
            return {}
        with self._lock:
            pools = dict(self._pools)
        return {name: pool.get_stats() for name, pool in pools.items()}


def _after_fork_in_child() -> None:
    for pools in list(_LIVE):
        pools.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _QuietReconnects(logging.Filter):
    """psycopg_pool warns on every failed reconnect attempt of a pool, many times a
    second while a node is down: pass the first warning of each pool, then none until
    its node is seen back up (:meth:`reset`)."""

    def __init__(self) -> None:
        super().__init__()
        self._warned: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.msg.startswith("error connecting in"):
            return True
        pool = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        if pool in self._warned:
            return False
        self._warned.add(pool)
        return True

    def reset(self, node: str) -> None:
        """Node ``node`` is back: its pool's next failure is worth a warning again."""
        self._warned.discard(f"mlscale-{node}")


quiet_reconnects = _QuietReconnects()
logging.getLogger("psycopg.pool").addFilter(quiet_reconnects)
