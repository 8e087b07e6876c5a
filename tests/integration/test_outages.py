"""Outages, counted: a dead primary, a dead control node, dead pooled connections.

Each test kills real servers (kill -9 of a postmaster) on a cluster of its own and
says what a caller sees meanwhile; the figures are printed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from mlscale import (
    Cluster,
    LocalCluster,
    MlscaleError,
    NodeUnavailableError,
    NoReplicaAvailable,
    RoutingError,
)
from mlscale.core.topology import find_node, nodes_of
from mlscale.engine.connect import connect_kwargs
from mlscale.local import procs
from mlscale.local.tempdirs import reachable_tempdir

OUTAGE_S = 60.0


@pytest.fixture()
def small() -> Iterator[LocalCluster]:
    """One group of a primary and one replica."""
    base = reachable_tempdir("mlscale-outage-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=1, replicas=1, redis=False)
        yield local
    finally:
        local.destroy()


def _kill(local: LocalCluster, node: str) -> None:
    pid = local.processes()[node][0]
    os.kill(pid, signal.SIGKILL)
    assert procs.wait_dead(pid, 10)


def _timed(fn: Callable[[], Any]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def _replicated(cluster: Cluster, sql: str, expected: Any) -> None:
    for node in cluster.replica_nodes():
        for _ in range(500):
            try:
                with cluster.connection(node) as conn:
                    row = conn.execute(sql).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None  # not replayed yet
            if row is not None and row[0] == expected:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"{node} never showed {expected!r} for {sql}")


def _direct(local: LocalCluster, node: str) -> psycopg.Connection[Any]:
    """A connection of the test's own to ``node``, outside any pool."""
    config = local.config()
    kwargs = connect_kwargs(find_node(nodes_of(config), node), config, connect_timeout=1)
    return psycopg.connect(autocommit=True, **kwargs)


def _accepting(local: LocalCluster, node: str) -> bool:
    try:
        _direct(local, node).close()
    except psycopg.OperationalError:
        return False
    return True


def test_a_dead_primary_for_a_minute_under_mixed_load(small: LocalCluster) -> None:
    """kill -9 of the primary for 60 s under eventual reads, strong reads and writes:
    eventual reads never fail (the replica holds everything the primary was last
    seen to have), writes and strong reads fail within 1 s each naming the node and
    the cause, and after the restart the first write succeeds within 2 s of the
    primary accepting connections."""
    with Cluster.from_file(small.layout.config) as cluster:
        cluster.execute("CREATE TABLE outage (id bigserial PRIMARY KEY, at float8)")
        cluster.execute("INSERT INTO outage (at) VALUES (0)")
        _replicated(cluster, "SELECT count(*) FROM outage", 1)
        stop = threading.Event()
        down = threading.Event()
        log: dict[str, list[tuple[float, float, BaseException | None]]] = {
            "eventual": [], "bounded": [], "strong": [], "write": []
        }

        def loop(kind: str, call: Callable[[], Any]) -> None:
            while not stop.is_set():
                at = time.monotonic()
                took, err = _timed(call)
                log[kind].append((at, took, err))
                time.sleep(0.05)

        calls: dict[str, Callable[[], Any]] = {
            "eventual": lambda: cluster.fetch_value("SELECT count(*) FROM outage"),
            "bounded": lambda: cluster.fetch_value(
                "SELECT count(*) FROM outage", consistency="bounded_staleness", max_lag_ms=2_000
            ),
            "strong": lambda: cluster.fetch_value(
                "SELECT count(*) FROM outage", consistency="strong"
            ),
            "write": lambda: cluster.execute("INSERT INTO outage (at) VALUES (1)"),
        }
        threads = [threading.Thread(target=loop, args=(k, c)) for k, c in calls.items()]
        for t in threads:
            t.start()
        try:
            time.sleep(2.0)
            killed_at = time.monotonic()
            _kill(small, "g0-primary")
            down.set()
            time.sleep(OUTAGE_S)
            restart_at = time.monotonic()
            small.up()
            accepting_at = None
            while accepting_at is None:
                if _accepting(small, "g0-primary"):
                    accepting_at = time.monotonic()
                else:
                    time.sleep(0.01)
            time.sleep(5.0)
            stats = cluster.stats()
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    during = {k: [e for e in v if killed_at + 0.5 < e[0] < restart_at] for k, v in log.items()}
    eventual_errors = [e for _, _, e in during["eventual"] + during["bounded"] if e is not None]
    assert during["eventual"] and not eventual_errors, eventual_errors[:3]
    for kind in ("write", "strong"):
        failures = [(took, e) for _, took, e in during[kind]]
        assert failures and all(isinstance(e, NodeUnavailableError) for _, e in failures), (
            failures[:3]
        )
        slowest = max(took for took, _ in failures)
        assert slowest < 1.0, f"a {kind} took {slowest:.2f} s to fail"
        assert all(e.node == "g0-primary" for _, e in failures)  # type: ignore[union-attr]
        assert all("down" in str(e) or "refused" in str(e) for _, e in failures), failures[0]
    first_write = min(at + took for at, took, e in log["write"] if at > restart_at and e is None)
    assert first_write - accepting_at < 2.0, first_write - accepting_at
    assert "g0" in stats.primaries
    writes_failed = len(during["write"])
    print(
        f"\nprimary down {OUTAGE_S:.0f} s: {len(during['eventual'])} eventual and "
        f"{len(during['bounded'])} bounded-staleness reads, 0 errors; {writes_failed} writes "
        f"and {len(during['strong'])} strong reads failed, slowest "
        f"{max(t for _, t, _ in during['write'] + during['strong']):.3f} s; first write "
        f"{first_write - accepting_at:.2f} s after the primary accepted connections"
    )


def test_a_down_node_fails_fast_and_is_used_again_at_once(
    small: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    with Cluster.from_file(small.layout.config) as cluster:
        for _ in range(4):
            assert cluster.fetch_value("SELECT 1") == 1  # the monitor runs, pools open
        caplog.set_level(logging.WARNING, logger="psycopg.pool")

        def busy() -> None:  # a connection in use when the node dies comes back broken
            with contextlib.suppress(MlscaleError, psycopg.Error):
                cluster.replica().fetch_value("SELECT pg_sleep(10)")

        reader = threading.Thread(target=busy)
        reader.start()
        time.sleep(0.5)
        _kill(small, "g0-replica1")
        reader.join(10)
        time.sleep(4.0)  # psycopg_pool reconnects meanwhile, with a backoff from 1 s
        warned = [r for r in caplog.records if "error connecting in 'mlscale-g0-replica1'"
                  in r.getMessage()]
        assert len(warned) <= 1, [r.getMessage() for r in warned]
        deadline = time.monotonic() + 5
        while "refused" not in cluster.stats().down.get("g0-replica1", ""):
            assert time.monotonic() < deadline, cluster.stats().down
            time.sleep(0.05)
        took, err = _timed(lambda: cluster.connection("g0-replica1").__enter__())
        assert isinstance(err, NodeUnavailableError) and took < 1.0, (took, err)
        assert "refused" in str(err), err
        assert cluster.fetch_value("SELECT 1") == 1  # reads go elsewhere meanwhile
        small.up()
        while not _accepting(small, "g0-replica1"):
            time.sleep(0.01)
        back = time.monotonic()
        deadline = back + 5
        while True:
            try:
                with cluster.connection("g0-replica1") as conn:
                    if conn.execute("SELECT 1").fetchone() == (1,):
                        break
            except NodeUnavailableError:
                pass  # not seen back up yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        print(f"\nreplica used again {time.monotonic() - back:.2f} s after it accepted")
        assert time.monotonic() - back < 1.5


def _terminate_pooled(local: LocalCluster) -> None:
    """End every pooled client backend on the primary, as a restart would."""
    with _direct(local, "g0-primary") as conn:
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'mlscale' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert ended is not None and ended[0] >= 1


def test_dead_pooled_connections_of_a_primary_cost_a_read_nothing(small: LocalCluster) -> None:
    """The first read after a primary's backends died (a restart) is retried once."""
    with Cluster.from_file(small.layout.config) as cluster:
        assert cluster.primary().fetch_value("SELECT 1") == 1
        _terminate_pooled(small)
        before = cluster.stats().reads.retries
        assert cluster.primary().fetch_value("SELECT 41 + 1") == 42
        assert cluster.stats().reads.retries == before + 1
        _terminate_pooled(small)
        with pytest.raises(NodeUnavailableError):  # a write is never repeated unasked
            cluster.primary().execute("CREATE TABLE never_twice (x int)")


def test_a_fresh_process_reads_its_token_from_a_replica(small: LocalCluster) -> None:
    config = small.layout.config
    with Cluster.from_file(config) as writer:
        writer.execute("CREATE TABLE tokens (id int)")
        with writer.session(consistency="read_your_writes") as s:
            s.execute("INSERT INTO tokens VALUES (1)")
            token = s.token.to_string()
    served = []
    for _ in range(5):
        with Cluster.from_file(config) as fresh:
            assert fresh.fetch_value("SELECT count(*) FROM tokens", token=token) == 1
            reads = fresh.stats().reads
            served.append(dict(reads.reads_by_node))
            assert "incomparable" not in reads.fallbacks_by_cause, reads
    assert all(s == {"g0-replica1": 1} for s in served), served


def test_a_replica_scope_never_reads_from_the_primary(small: LocalCluster) -> None:
    with Cluster.from_file(small.layout.config) as cluster:
        cluster.ban("g0-replica1", "test: every replica banned")
        try:
            with pytest.raises(NoReplicaAvailable, match="never reads from the primary"):
                cluster.replica().fetch_value("SELECT 1")
            with pytest.raises(NoReplicaAvailable):
                cluster.replica().fetch_value("SELECT 1", consistency="strong")
            assert cluster.fetch_value("SELECT inet_server_port()") == find_node(
                cluster.nodes, "g0-primary"
            ).port  # unscoped reads fall back to the primary
        finally:
            cluster.unban("g0-replica1")


def test_transactions_and_sessions_refuse_use_after_their_block(small: LocalCluster) -> None:
    with Cluster.from_file(small.layout.config) as cluster:
        with cluster.transaction() as tx:
            assert tx.fetch_value("SELECT 1") == 1
        with pytest.raises(MlscaleError, match="block has ended"):
            tx.fetch_value("SELECT 1")
        with pytest.raises(MlscaleError, match="block has ended"), tx.savepoint():
            pass
        with pytest.raises(ZeroDivisionError), cluster.transaction() as failed:
            raise ZeroDivisionError
        with pytest.raises(MlscaleError, match="block has ended"):
            failed.execute("SELECT 1")
        with cluster.session() as s:
            s.fetch_value("SELECT 1")
        for call in (lambda: s.fetch_value("SELECT 1"), lambda: s.execute("SET x.y = 1")):
            with pytest.raises(MlscaleError, match="session is closed"):
                call()


def test_without_the_control_node_what_needs_no_catalog_runs() -> None:
    base = reachable_tempdir("mlscale-nocontrol-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=2, replicas=0, redis=False)
        with Cluster.from_file(local.layout.config) as c:
            c.group("g1").execute("CREATE TABLE plain (x int)")
        _kill(local, "control")
        with Cluster.from_file(local.layout.config) as fresh:
            took, err = _timed(lambda: fresh.fetch_value("SELECT 1"))
            assert err is None and took < 2.0, (took, err)
            plain = "SELECT count(*) FROM plain"
            took, err = _timed(lambda: fresh.primary("g1").fetch_value(plain))
            assert err is None and took < 2.0, (took, err)
            took, err = _timed(lambda: fresh.fetch_value("SELECT count(*) FROM plain"))
            assert isinstance(err, NodeUnavailableError) and "control" in str(err), err
            assert took < 2.0, took
            with pytest.raises(RoutingError):
                fresh.replica("g1").fetch_value("SELECT 1")  # no replica: never the primary
    finally:
        local.destroy()
