"""The classifier against a real oracle: a hot standby.

Hypothesis generates statements (oracle_sql.py); every one the classifier calls
read-only runs on a streaming replica inside BEGIN ... ROLLBACK. A standby
refusing it -- SQLSTATE 25006, or "cannot execute ... during recovery" and
kin -- is a misclassification and fails the test. Other errors (a generated
type mismatch, a statement timeout) are tolerated but counted, and most
read-only statements must run cleanly, so the oracle really ran them.

MLSCALE_ORACLE_EXAMPLES sets the number of examples (default 2000, as in CI).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from mlscale import Cluster
from mlscale.core.classify import (
    VOLATILE_READ_ONLY,
    Classifier,
    Target,
    builtin_read_only_functions,
)

from .oracle_sql import SETUP_SQL, TEARDOWN_SQL, VOUCHED, Statement, statements

PRIMARY_NODE = "g0-primary"
STANDBY_NODE = "g0-replica1"
EXAMPLES = int(os.environ.get("MLSCALE_ORACLE_EXAMPLES", "2000"))

# What a standby says when asked to do what only a primary can.
REFUSED = re.compile(
    r"cannot execute .* during recovery"
    r"|cannot assign \w+ during recovery"  # TransactionIds, OIDs
    r"|recovery is in progress"
    r"|in a hot standby",
    re.IGNORECASE,
)


def refused_by_standby(exc: psycopg.Error) -> bool:
    """The error means the statement cannot run on a standby at all."""
    return exc.sqlstate == "25006" or REFUSED.search(str(exc)) is not None


def wait_replayed(cluster: Cluster, timeout: float = 30.0) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    with cluster.connection(PRIMARY_NODE) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None
    deadline = time.monotonic() + timeout
    with cluster.connection(STANDBY_NODE) as conn:
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],))
            if done.fetchone() == (True,):
                return
            assert time.monotonic() < deadline, f"{STANDBY_NODE} did not replay {row[0]}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def oracle_objects(cluster: Cluster) -> Iterator[None]:
    """The table, sequence and functions the generated SQL uses, on the standby too."""
    with cluster.connection(PRIMARY_NODE) as conn:
        conn.autocommit = True
        for stmt in SETUP_SQL:
            conn.execute(stmt)
    wait_replayed(cluster)
    try:
        yield
    finally:
        with cluster.connection(PRIMARY_NODE) as conn:
            conn.autocommit = True
            for stmt in TEARDOWN_SQL:
                conn.execute(stmt)


class Oracle:
    """Runs read-only-classified statements on a standby connection, counting outcomes."""

    def __init__(self, conn: psycopg.Connection[object], classifier: Classifier) -> None:
        self.conn = conn
        self.classifier = classifier
        self.routes: Counter[Target] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def check(self, stmt: Statement) -> None:
        c = self.classifier.classify(stmt.sql)
        self.routes[c.target] += 1
        if not c.read_only:
            return
        try:
            with self.conn.transaction(force_rollback=True), self.conn.cursor() as cur:
                if stmt.copy:
                    with cur.copy(stmt.sql) as copy:
                        for _ in copy:
                            pass
                else:
                    cur.execute(stmt.sql, stmt.params)
        except psycopg.Error as exc:
            if refused_by_standby(exc):
                raise AssertionError(
                    f"classified read-only ({c.reason}) but the standby refused it:\n"
                    f"  {stmt}\n  {type(exc).__name__} [{exc.sqlstate}]: {exc}"
                ) from exc
            self.outcomes["error"] += 1
            self.errors[f"{exc.sqlstate} {str(exc).splitlines()[0][:90]}"] += 1
        else:
            self.outcomes["ok"] += 1
        status = self.conn.info.transaction_status
        assert status == psycopg.pq.TransactionStatus.IDLE, f"connection left {status.name}"

    def summary(self) -> str:
        top = "\n".join(f"    {n:4d}  {e}" for e, n in self.errors.most_common(8))
        return (
            f"routes: primary={self.routes[Target.PRIMARY]} "
            f"replica={self.routes[Target.REPLICA]}; read-only ran ok={self.outcomes['ok']} "
            f"error={self.outcomes['error']}\n  most common errors:\n{top}"
        )


@pytest.mark.timeout(600)
def test_statements_called_read_only_run_on_a_standby(
    cluster: Cluster, oracle_objects: None
) -> None:
    classifier = Classifier(read_only_functions=VOUCHED)
    with cluster.connection(STANDBY_NODE) as conn:
        conn.autocommit = True
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        conn.execute("SET statement_timeout = '2s'")
        oracle = Oracle(conn, classifier)
        start = time.monotonic()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=False,
            print_blob=True,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.filter_too_much,
            ],
        )
        @given(stmt=statements())
        def run(stmt: Statement) -> None:
            oracle.check(stmt)

        run()
        elapsed = time.monotonic() - start

    total = sum(oracle.routes.values())
    print(f"\n{total} examples in {elapsed:.1f} s ({total / elapsed:.0f}/s); {oracle.summary()}")
    # The generator must produce both classes, in earnest.
    assert oracle.routes[Target.PRIMARY] >= total // 10, oracle.summary()
    assert oracle.routes[Target.REPLICA] >= total // 10, oracle.summary()
    # And the oracle must really have run the read-only ones: few generated-SQL mistakes.
    ran = oracle.outcomes["ok"] + oracle.outcomes["error"]
    assert oracle.outcomes["ok"] >= 0.8 * ran, oracle.summary()


# A sample value per argument type, enough to call most built-ins.
SAMPLE_ARGS = {
    "integer": "1",
    "bigint": "1",
    "smallint": "1",
    "real": "1",
    "double precision": "1.0",
    "numeric": "1",
    "boolean": "true",
    "text": "'x'",
    "name": "'x'",
    "character varying": "'x'",
    '"char"': "'r'",
    "oid": "1",
    "regclass": "'pg_class'",
    "regproc": "'now'",
    "regtype": "'int4'",
    "pg_lsn": "'0/0'",
    "xid": "'1'",
    "xid8": "'1'",
    "timestamp with time zone": "now()",
    "date": "current_date",
    "interval": "'1 day'",
    "jsonb": "'{}'",
    "json": "'{}'",
    "anyelement": "1",
}


def test_listed_built_ins_a_standby_refuses_go_to_the_primary(
    cluster: Cluster, oracle_objects: None
) -> None:
    """Call every overload of every built-in the classifier trusts, with sample arguments.

    A call the standby refuses must be classified for the primary: the read-only
    list is generated from volatility labels, and some labels lie.
    """
    names = sorted((builtin_read_only_functions() | VOLATILE_READ_ONLY) - {"pg_sleep_for"})
    classifier = Classifier()
    calls = 0
    refused: list[str] = []
    misrouted: list[str] = []
    with cluster.connection(STANDBY_NODE) as conn:
        conn.autocommit = True
        conn.execute("SET statement_timeout = '1s'")
        overloads = conn.execute(
            "SELECT p.proname, p.proargtypes::regtype[]::text[] FROM pg_proc p "
            "WHERE p.pronamespace IN ('pg_catalog'::regnamespace, "
            "'information_schema'::regnamespace) AND p.prokind = 'f' AND p.proname = ANY(%s)",
            (names,),
        ).fetchall()
        for name, types in overloads:
            args = [SAMPLE_ARGS.get(t) for t in types or ()]
            if None in args or name.startswith("pg_sleep"):
                continue
            sql = f'SELECT pg_catalog."{name}"({", ".join(a for a in args if a)})'
            calls += 1
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute(sql)
            except psycopg.Error as exc:
                if refused_by_standby(exc):
                    refused.append(sql)
                    if classifier.classify(sql).read_only:
                        misrouted.append(f"{sql}: {exc}")
    assert calls > 1000  # most of the list really was called
    assert refused  # txid_current() at least: the oracle can tell
    assert not misrouted, "\n".join(misrouted)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT nextval('oracle.seq')",
        "SELECT txid_current()",
        "SELECT public.writes_something()",
        'SELECT "Lower"(name) FROM oracle.items',
        "SELECT * FROM oracle.items FOR UPDATE",
        "SELECT * FROM oracle.items FOR KEY SHARE",
        "WITH d AS (DELETE FROM oracle.log RETURNING id) SELECT * FROM d",
        "SELECT lo_create(0)",
        "SELECT setval('oracle.seq', 5)",
        "SELECT pg_current_xact_id()",
        "SELECT 1 INTO oracle.never",
    ],
)
def test_the_oracle_recognises_a_refusal(cluster: Cluster, oracle_objects: None, sql: str) -> None:
    """Each of these fails on the standby in a way refused_by_standby() detects."""
    with cluster.connection(STANDBY_NODE) as conn:
        conn.autocommit = True
        with pytest.raises(psycopg.Error) as info, conn.transaction(force_rollback=True):
            conn.execute(sql)
        assert refused_by_standby(info.value), f"{info.value.sqlstate}: {info.value}"
        assert Classifier().classify(sql).target is Target.PRIMARY
