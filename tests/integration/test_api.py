"""The client API against the real cluster, sync and async alike (one suite, parametrized).

The async cluster is driven through a thin adapter that runs its coroutines and
async context managers on one event loop, so every test below runs twice.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from mlscale import (
    AsyncCluster,
    Cluster,
    IntegrityViolation,
    Isolation,
    LocalCluster,
    QueryError,
    RoutingError,
)


class _Sync:
    """Runs an async object's coroutines and async context managers on one loop."""

    def __init__(self, obj: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._obj = obj
        self._loop = loop

    def _wrap(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            return self._wrap(self._loop.run_until_complete(value))
        if hasattr(value, "__aenter__") and not isinstance(value, list | tuple | dict):
            return _SyncContext(value, self._loop)
        return value

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if callable(attr):
            return lambda *a, **k: self._wrap(attr(*a, **k))
        return attr


class _SyncContext(_Sync):
    def __enter__(self) -> Any:
        return _Sync(self._loop.run_until_complete(self._obj.__aenter__()), self._loop)

    def __exit__(self, *exc: Any) -> bool:
        return bool(self._loop.run_until_complete(self._obj.__aexit__(*exc)))


@pytest.fixture(scope="module", params=["sync", "async"])
def api(request: pytest.FixtureRequest, local_cluster: LocalCluster) -> Iterator[Any]:
    path = local_cluster.layout.config
    if request.param == "sync":
        with Cluster.from_file(path) as cluster:
            yield cluster
        return
    loop = asyncio.new_event_loop()
    acluster = AsyncCluster.from_file(path)
    try:
        yield _Sync(acluster, loop)
    finally:
        loop.run_until_complete(acluster.close())
        loop.close()


@pytest.fixture(scope="module")
def table(local_cluster: LocalCluster) -> str:
    with Cluster.from_file(local_cluster.layout.config) as c:
        c.execute("CREATE TABLE IF NOT EXISTS api_items (id bigint PRIMARY KEY, name text)")
        c.execute("CREATE SEQUENCE IF NOT EXISTS api_ids")
    return "api_items"


def wait_replicated(cluster: Cluster, token: str) -> None:
    """Wait until ``token`` is on every replica (reads take replicas in turn)."""
    for node in cluster.replica_nodes():
        for _ in range(1000):
            with cluster.connection(node) as conn:
                cur = conn.execute("SELECT count(*) FROM api_items WHERE name = %s", (token,))
                if cur.fetchone() == (1,):
                    break
            time.sleep(0.01)
        else:
            raise AssertionError(f"{token} never reached {node}")


def test_reads_go_to_replicas_and_writes_to_the_primary(
    api: Any, table: str, cluster: Cluster
) -> None:
    assert api.fetch_value("SELECT pg_is_in_recovery()") is True
    assert api.primary().fetch_value("SELECT pg_is_in_recovery()") is False
    assert api.replica().fetch_value("SELECT pg_is_in_recovery()") is True
    token = uuid.uuid4().hex
    new_id = api.fetch_value("SELECT nextval('api_ids')")  # a write hidden in a SELECT
    assert api.execute("INSERT INTO api_items VALUES (%s, %s)", (new_id, token)) == 1
    assert api.primary().fetch_one("SELECT id, name FROM api_items WHERE name = %s", (token,)) == (
        new_id,
        token,
    )
    wait_replicated(cluster, token)
    rows = api.fetch_all("SELECT id, name FROM api_items WHERE name = %s", (token,), as_dict=True)
    assert rows == [{"id": new_id, "name": token}]
    assert api.fetch_one("SELECT 1 WHERE false") is None
    assert api.fetch_value("SELECT 1 WHERE false") is None
    assert api.explain_route("SELECT * FROM api_items FOR UPDATE").target == "primary"


def test_replicas_are_taken_in_turn(api: Any) -> None:
    ports = {api.fetch_value("SELECT inet_server_port()") for _ in range(6)}
    assert len(ports) == 2


def test_copy_in_and_out(api: Any, table: str) -> None:
    base = api.fetch_value("SELECT nextval('api_ids')") * 1000
    rows = [(base + i, f"copied-{base}-{i}") for i in range(50)]
    assert api.copy("COPY api_items (id, name) FROM STDIN", rows) == 50
    out = api.primary().copy(
        "COPY (SELECT id, name FROM api_items WHERE id >= %s ORDER BY id LIMIT 50) TO STDOUT"
        .replace("%s", str(base))
    )
    assert [(int(a), b) for a, b in out] == rows


def test_refusals_write_nothing(api: Any, table: str) -> None:
    before = api.primary().fetch_value("SELECT count(*) FROM api_items")
    with pytest.raises(RoutingError, match="cannot run on a replica"):
        api.replica().execute("INSERT INTO api_items VALUES (-1, 'never')")
    with pytest.raises(RoutingError, match="session"):
        api.execute("SET work_mem = '64MB'")
    with pytest.raises(RoutingError, match="transaction"):
        api.execute("BEGIN")
    with pytest.raises(RoutingError, match="session"):
        api.execute("CREATE TEMP TABLE never (x int)")
    assert api.primary().fetch_value("SELECT count(*) FROM api_items") == before


def test_session_keeps_its_temp_table_and_currval(api: Any) -> None:
    with api.session() as s:
        assert s.fetch_value("SELECT pg_is_in_recovery()") is True  # unpinned: a replica
        s.execute("CREATE TEMP TABLE scratch (x int)")
        assert s.pinned
        s.execute("INSERT INTO scratch VALUES (1), (2)")
        assert s.fetch_value("SELECT sum(x) FROM scratch") == 3
        value = s.fetch_value("SELECT nextval('api_ids')")
        assert s.fetch_value("SELECT currval('api_ids')") == value
        s.execute("DISCARD ALL")
        assert not s.pinned
        assert s.fetch_value("SELECT pg_is_in_recovery()") is True


def test_a_set_in_one_session_is_never_seen_by_another_caller(api: Any) -> None:
    default = api.primary().fetch_value("SHOW work_mem")
    with api.session() as s:
        s.execute("SET work_mem = '77MB'")
        assert s.fetch_value("SHOW work_mem") == "77MB"
        for _ in range(3 * api.pool_size.max_size):
            assert api.primary().fetch_value("SHOW work_mem") == default
        with api.session() as other:
            other.execute("SET statement_timeout = '5s'")  # pins `other` to its own connection
            assert other.fetch_value("SHOW work_mem") == default
    for _ in range(3 * api.pool_size.max_size):
        assert api.primary().fetch_value("SHOW work_mem") == default
        assert api.primary().fetch_value("SHOW statement_timeout") == "0"


def test_prepared_statements_do_not_leak(api: Any) -> None:
    with api.session() as s:
        s.execute("PREPARE mine AS SELECT 42")
        assert s.fetch_value("EXECUTE mine") == 42
    for _ in range(2 * api.pool_size.max_size):
        assert (
            api.primary().fetch_value(
                "SELECT count(*) FROM pg_prepared_statements WHERE name = 'mine'"
            )
            == 0
        )


def test_transaction_commits_rolls_back_and_stays_on_one_connection(api: Any, table: str) -> None:
    token = uuid.uuid4().hex
    with api.transaction() as tx:
        pid = tx.fetch_value("SELECT pg_backend_pid()")
        tx.execute("INSERT INTO api_items VALUES (nextval('api_ids'), %s)", (token,))
        assert tx.fetch_value("SELECT pg_backend_pid()") == pid
        assert tx.fetch_value("SELECT count(*) FROM api_items WHERE name = %s", (token,)) == 1
    assert (
        api.primary().fetch_value("SELECT count(*) FROM api_items WHERE name = %s", (token,)) == 1
    )
    lost = uuid.uuid4().hex
    with pytest.raises(ZeroDivisionError), api.transaction() as tx:
        tx.execute("INSERT INTO api_items VALUES (nextval('api_ids'), %s)", (lost,))
        raise ZeroDivisionError
    assert api.primary().fetch_value("SELECT count(*) FROM api_items WHERE name = %s", (lost,)) == 0
    with api.transaction(isolation=Isolation.SERIALIZABLE) as tx:
        assert tx.fetch_value("SHOW transaction_isolation") == "serializable"
        with pytest.raises(RoutingError):
            tx.execute("COMMIT")


def test_savepoint_rolls_back_alone(api: Any, table: str) -> None:
    kept, dropped = uuid.uuid4().hex, uuid.uuid4().hex
    with api.transaction() as tx:
        tx.execute("INSERT INTO api_items VALUES (nextval('api_ids'), %s)", (kept,))
        with pytest.raises(IntegrityViolation), tx.savepoint() as sp:
            sp.execute("INSERT INTO api_items VALUES (nextval('api_ids'), %s)", (dropped,))
            sp.execute("INSERT INTO api_items VALUES (1, 'dup'), (1, 'dup')")
    count = "SELECT count(*) FROM api_items WHERE name = %s"
    assert api.primary().fetch_value(count, (kept,)) == 1
    assert api.primary().fetch_value(count, (dropped,)) == 0


def test_errors_are_translated_with_their_cause(api: Any, table: str) -> None:
    api.execute("INSERT INTO api_items VALUES (%s, 'x') ON CONFLICT DO NOTHING", (-42,))
    with pytest.raises(IntegrityViolation) as info:
        api.execute("INSERT INTO api_items VALUES (%s, 'x')", (-42,))
    err = info.value
    assert err.sqlstate == "23505"
    assert err.node == api.primary_node()
    assert isinstance(err.__cause__, psycopg.errors.UniqueViolation)
    assert "\n" not in str(err)
    with pytest.raises(QueryError) as info2:
        api.fetch_all("SELECT no_such_column FROM api_items")
    assert info2.value.sqlstate == "42703"
    assert info2.value.node is not None and "replica" in info2.value.node
    # After errors the pools still work.
    assert api.fetch_value("SELECT 1") == 1


def test_after_commit_hooks_hear_of_committed_writes_only(api: Any, table: str) -> None:
    events: list[Any] = []
    api.on_commit(events.append)
    try:
        token = uuid.uuid4().hex
        api.fetch_all("SELECT * FROM api_items WHERE name = %s", (token,))
        assert events == []  # a read commits nothing
        insert = "INSERT INTO api_items VALUES (nextval('api_ids'), %s)"
        api.execute(insert, (token,))
        assert [(e.groups, e.statement) for e in events] == [(("g0",), insert)]
        api.group("g1").execute("CREATE TABLE IF NOT EXISTS api_hooked (x int)")
        assert events[-1].groups == ("g1",)
        del events[:]
        with api.transaction() as tx:
            tx.execute(insert, (token,))
            assert events == []  # not before the block commits
        ((done,),) = [(e,) for e in events]
        assert done.groups == ("g0",) and done.statement is None
        assert done.token is not None and done.token == tx.token
        del events[:]
        with pytest.raises(ZeroDivisionError), api.transaction() as tx:
            tx.execute(insert, (token,))
            raise ZeroDivisionError
        assert events == []  # rolled back: nothing to hear of
        with api.session(consistency="read_your_writes") as s:
            s.execute(insert, (token,))
            assert events[-1].token == s.token
        api.remove_commit_hook(events.append)
        api.execute(insert, (token,))
        assert len(events) == 1
    finally:
        api.remove_commit_hook(events.append)
        api.group("g1").execute("DROP TABLE IF EXISTS api_hooked")
