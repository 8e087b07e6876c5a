"""Session pinning and retries driven through a fake node: the rooms, with no server.

The rooms talk to servers only through their nodes (the transport seam), so a
fake one that hands out scripted connections shows what runs where, and what
happens when a node fails mid-call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from mlscale import NodeUnavailableError, parse_config
from mlscale.core.route import Scope as RouteScope
from mlscale.core.sharding import EMPTY
from mlscale.engine.balancer import EVENTUAL, ReadOptions
from mlscale.engine.context import ClusterContext
from mlscale.engine.directory_sync import Directory
from mlscale.engine.fanout_sync import Fanout
from mlscale.engine.hooks import Committed
from mlscale.engine.lazy import OnFirstUse
from mlscale.engine.router_sync import Router
from mlscale.engine.runner_sync import Rooms
from mlscale.engine.samples import PRIMARY_SAMPLE, ReplicaSample
from mlscale.engine.scatter_sync import Scatter
from mlscale.engine.scopes_sync import Scope
from mlscale.engine.session_sync import Session
from mlscale.engine.translate import translating

CONFIG = parse_config(
    {
        "auth": {"password_env": "HOME"},
        "control": {"port": 1},
        "shard_groups": [
            {"name": "g0", "primary": {"port": 2}, "replicas": [{"port": 3}, {"port": 4}]}
        ],
    }
)


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self._conn = conn
        self.rows: list[Any] = []
        self.rowcount = -1

    def execute(self, text: Any, params: Any = None, *, prepare: Any = None) -> FakeCursor:
        self.rows, self.rowcount = self._conn.run(str(text))
        return self

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


class FakeInfo:
    def __init__(self) -> None:
        self.transaction_status = TransactionStatus.IDLE


class FakeConnection:
    """Answers every statement with its node's name (the WAL sample with a position
    that grows by one per statement); fails while its node is down. Autocommit, as
    the pools' connections are: BEGIN ... COMMIT / ROLLBACK is the only transaction."""

    def __init__(self, nodes: FakeNodes, node: str, number: int) -> None:
        self._nodes = nodes
        self.node = node
        self.number = number
        self.closed = False
        self.info = FakeInfo()

    def run(self, text: str) -> tuple[list[Any], int]:
        if self.node in self._nodes.down:
            self.closed = True
            raise psycopg.OperationalError(f"server closed the connection ({self.node})")
        self._nodes.log.append((self.node, self.number, text))
        if text in ("BEGIN", "COMMIT", "ROLLBACK"):
            intrans = text == "BEGIN"
            self.info.transaction_status = (
                TransactionStatus.INTRANS if intrans else TransactionStatus.IDLE
            )
        if text == PRIMARY_SAMPLE:
            return [(f"0/{len(self._nodes.log):X}", 7, 1)], 1
        return [(self.node,)], 1

    def execute(self, text: Any, params: Any = None, *, prepare: Any = None) -> FakeCursor:
        return FakeCursor(self).execute(text, params)

    def cursor(self, row_factory: Any = None, binary: bool = False) -> FakeCursor:
        return FakeCursor(self)


class FakeNodes:
    """The transport seam with fake connections: each borrow is a new connection,
    numbered, so a test can tell a pinned connection from a fresh one."""

    def __init__(self, context: ClusterContext[Any]) -> None:
        self._context = context
        self.log: list[tuple[str, int, str]] = []
        self.down: set[str] = set()
        self.released: list[int] = []
        self._count = 0

    def _new(self, name: str) -> FakeConnection:
        self._count += 1
        return FakeConnection(self, name, self._count)

    @contextmanager
    def connect(self, name: str, timeout_s: float | None = None) -> Iterator[FakeConnection]:
        role = self._context.roles[name]
        try:
            with translating(name, role):
                yield self._new(name)
        except NodeUnavailableError as err:
            if role == "replica":  # as the real nodes do: a failed replica is banned
                self._context.balancer.end(name, failed=str(err))
            raise

    def leader(self, scope: str, wait_s: float | None = None) -> str:
        return self._context.leadership.primary(scope)

    def connect_leader(self, scope: str) -> Any:
        return self.connect(self._context.leadership.primary(scope))

    def run_on_replica(self, name: str, work: Any, query: str, params: Any) -> Any:
        with self.connect(name) as conn:
            return work(conn, query, params)

    def hold(self, name: str) -> FakeConnection:
        return self._new(name)

    def release(self, name: str, conn: FakeConnection) -> None:
        self.released.append(conn.number)


class FakeMonitor:
    rounds = 1

    def start(self) -> None:
        pass

    def snapshot(self) -> tuple[dict[str, Any], dict[str, ReplicaSample]]:
        return {}, {
            name: ReplicaSample(name, "g0", up=True, at=0.0, lag_bytes=0, staleness_ms=0.0)
            for name in ("g0-replica1", "g0-replica2")
        }


class FakeWatch:
    bans: ClassVar[dict[str, str]] = {}
    directory = EMPTY

    def start(self) -> None:
        pass


@pytest.fixture()
def rooms() -> Rooms:
    context: ClusterContext[Any] = ClusterContext(CONFIG, lambda **kw: None)
    nodes: Any = FakeNodes(context)
    watch: Any = OnFirstUse(FakeWatch)
    directory = Directory(context, nodes, watch)
    directory.adopt(EMPTY)
    router = Router(context, nodes, OnFirstUse(FakeMonitor), watch)  # type: ignore[arg-type]
    scatter = Scatter(context, directory)
    return Rooms(context, nodes, router, directory, Fanout(context, nodes), scatter)


def _ran(rooms: Rooms, text: str) -> list[tuple[str, int]]:
    nodes: Any = rooms.nodes
    return [(node, number) for node, number, t in nodes.log if t == text]


def test_a_session_pins_one_primary_connection_while_it_holds_state(rooms: Rooms) -> None:
    nodes: Any = rooms.nodes
    with Session(rooms, None, EVENTUAL, monotonic=False) as s:
        assert s.fetch_value("SELECT 1") in ("g0-replica1", "g0-replica2")
        assert not s.pinned
        s.execute("SET work_mem = '64MB'")
        assert s.pinned
        s.fetch_one("SELECT 2")  # a read, but the session holds state: same connection
        s.execute("INSERT INTO t VALUES (1)")
        ((node, pinned),) = _ran(rooms, "SET work_mem = '64MB'")
        assert node == "g0-primary"
        assert _ran(rooms, "SELECT 2") == [("g0-primary", pinned)]
        assert _ran(rooms, "INSERT INTO t VALUES (1)") == [("g0-primary", pinned)]
        s.execute("RESET ALL")  # the state is gone: the connection goes back, reset
        assert not s.pinned and nodes.released == [pinned]
        assert s.fetch_value("SELECT 3") in ("g0-replica1", "g0-replica2")
        s.execute("CREATE TEMP TABLE x (i int)")
        assert s.pinned
    assert len(nodes.released) == 2  # closing the session gave the second one back


def test_a_read_whose_replica_fails_is_retried_once_elsewhere(rooms: Rooms) -> None:
    nodes: Any = rooms.nodes
    scope = Scope(rooms, RouteScope.AUTO, None)
    nodes.down.add("g0-replica1")
    served = {scope.fetch_value("SELECT 1") for _ in range(4)}
    assert served == {"g0-replica2"}  # no error reached the caller
    assert rooms.context.stats({}, {}).reads.retries == 1  # one failure, then banned
    assert rooms.context.balancer.bans_now()["g0-replica1"].kind == "error"
    # A second failure in the same call is not retried again.
    nodes.down.update({"g0-replica2", "g0-primary"})
    rooms.context.balancer.unban("g0-replica1")
    with pytest.raises(NodeUnavailableError):
        scope.fetch_value("SELECT 1")


def test_a_write_is_retried_only_when_marked_idempotent(rooms: Rooms) -> None:
    nodes: Any = rooms.nodes
    scope = Scope(rooms, RouteScope.AUTO, None)
    failures = iter([True])  # the primary fails the first statement sent to it

    original = FakeConnection.run

    def flaky(conn: FakeConnection, text: str) -> tuple[list[Any], int]:
        if conn.node == "g0-primary" and next(failures, False):
            conn.closed = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return original(conn, text)

    FakeConnection.run = flaky  # type: ignore[method-assign]
    try:
        with pytest.raises(NodeUnavailableError) as caught:
            scope.execute("UPDATE t SET x = 1")
        assert caught.value.node == "g0-primary" and caught.value.node_role == "primary"
        assert _ran(rooms, "UPDATE t SET x = 1") == []  # not sent twice
        failures = iter([True])
        assert scope.execute("UPDATE t SET x = 1", idempotent=True) == 1
        assert [n for n, _ in _ran(rooms, "UPDATE t SET x = 1")] == ["g0-primary"]
        # Inside a session that holds state, even an idempotent write is not repeated.
        with Session(rooms, None, ReadOptions(), monotonic=False) as s:
            s.execute("SET work_mem = '1MB'")
            failures = iter([True])
            with pytest.raises(NodeUnavailableError):
                s.execute("UPDATE t SET x = 2", idempotent=True)
            assert _ran(rooms, "UPDATE t SET x = 2") == []
            assert not s.pinned  # the dead connection took the session state with it
    finally:
        FakeConnection.run = original  # type: ignore[method-assign]
    assert nodes.down == set()


def test_a_forked_child_forgets_what_the_parents_monitor_saw() -> None:
    """The child's monitor tells only of changes it sees itself: a node the parent
    saw down must not stay marked down in the child."""
    import os

    from mlscale import Cluster

    with Cluster(CONFIG) as cluster:
        nodes: Any = cluster._rooms.nodes  # as the monitor would tell it
        nodes.observe("g0-replica1", "connection refused")
        assert cluster.stats().down == {"g0-replica1": "connection refused"}
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the mark is gone
            os._exit(0 if cluster.stats().down == {} else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert cluster.stats().down == {"g0-replica1": "connection refused"}  # the parent's


def test_a_plain_write_tells_the_hooks_its_position_read_after_it_committed(
    rooms: Rooms,
) -> None:
    nodes: Any = rooms.nodes
    scope = Scope(rooms, RouteScope.AUTO, None)
    events: list[Committed] = []
    rooms.hooks.add(events.append)
    scope.execute("UPDATE t SET x = 1")
    ((event,),) = [(e,) for e in events]
    assert event.groups == ("g0",) and event.statement == "UPDATE t SET x = 1"
    assert event.token is not None and set(event.token) == {"g0"}
    # Read on the same connection, right after the statement (the log's next line).
    assert [t for _, _, t in nodes.log] == ["UPDATE t SET x = 1", PRIMARY_SAMPLE]
    assert len({number for _, number, _ in nodes.log}) == 1
    assert event.token["g0"].lsn == 2  # the sample answers len(log)
    assert event.token["g0"].system_identifier == 7
    # A read commits nothing: no sample, no event.
    scope.fetch_value("SELECT 1")
    assert len(events) == 1 and [t for _, _, t in nodes.log].count(PRIMARY_SAMPLE) == 1


def test_without_hooks_a_write_costs_no_extra_statement(rooms: Rooms) -> None:
    nodes: Any = rooms.nodes
    scope = Scope(rooms, RouteScope.AUTO, None)
    for _ in range(5):
        scope.execute("UPDATE t SET x = 1")
    with Session(rooms, None, EVENTUAL, monotonic=False) as s:
        s.execute("UPDATE t SET x = 9")
    assert PRIMARY_SAMPLE not in [t for _, _, t in nodes.log]
    assert len(nodes.log) == 6  # the writes themselves, one statement each
    rooms.hooks.add(lambda e: None)
    scope.execute("UPDATE t SET x = 10")
    assert [t for _, _, t in nodes.log][-2:] == ["UPDATE t SET x = 10", PRIMARY_SAMPLE]


def test_writes_in_sessions_and_transactions_carry_one_token_read_once(rooms: Rooms) -> None:
    nodes: Any = rooms.nodes
    events: list[Committed] = []
    rooms.hooks.add(events.append)
    with Session(rooms, None, EVENTUAL, monotonic=False) as s:
        s.execute("UPDATE t SET x = 1")  # an eventual session: marked for the hooks
        assert events[-1].token is not None
        s.execute("BEGIN")
        s.execute("UPDATE t SET x = 2")  # inside its own transaction: not yet committed
        assert len(events) == 1
    with Session(rooms, None, ReadOptions.of("read_your_writes", None), monotonic=False) as s:
        s.execute("UPDATE t SET x = 3")
        assert events[-1].token == s.token  # the session's own token, read once
    texts = [t for _, _, t in nodes.log]
    at = texts.index("UPDATE t SET x = 3")
    assert texts[at:] == ["UPDATE t SET x = 3", PRIMARY_SAMPLE]
