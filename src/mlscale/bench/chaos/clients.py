"""The writers of a chaos trial and the clients they write through.

Each writer thread inserts rows with unique ids into the ledger table, one row per
transaction under ``synchronous_commit = on``, and records in the :class:`Ledger` what
it was told. The insert reads, in the same statement, the server's port, its WAL
insert position and timeline, and is idempotent by construction (``ON CONFLICT (id)
DO NOTHING``), so a client may retry it safely.

Clients are pluggable (:class:`LedgerClient`):

- :class:`LibpqClient`: plain psycopg with libpq's multi-host connection string
  (``host=h1,h2,h3 port=p1,p2,p3 target_session_attrs=read-write``) and a reconnect
  after any error -- the baseline a user gets without mlscale. INSERT and COMMIT are
  sent apart, so an error before COMMIT is a write that cannot have committed and an
  error during COMMIT one whose outcome is unknown;
- :class:`MlscaleClient`: one mlscale :class:`~mlscale.engine.cluster_sync.Cluster`
  made from the HA cluster's config (with each group's Patroni endpoints), living
  across trials: it follows Patroni and finds each new leader itself. One autocommit
  statement per write through ``cluster.primary(group).fetch_one``, marked
  ``idempotent=True`` or not (two variants). A
  :class:`~mlscale.errors.CommitOutcomeUnknown` is recorded as unknown, any other
  error as failed (reconciliation then shows whether a "failed" write had in fact
  committed).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from psycopg import sql

from ...config import ClusterConfig
from ...core.lsn import parse_lsn
from ...core.topology import Node, Role
from ...engine.connect import connect_kwargs
from ...errors import CommitOutcomeUnknown, MlscaleError
from .ledger import Ledger, Outcome, Write, timeline_of_walfile

__all__ = [
    "LEDGER_TABLE",
    "LedgerClient",
    "LibpqClient",
    "MlscaleClient",
    "WriterPool",
    "WriterSession",
    "create_table",
    "insert_statement",
]

log = logging.getLogger(__name__)

LEDGER_TABLE = "chaos_ledger"
# A writer that got an error waits this long before its next try, so an outage is
# not a tight loop burning ids (seconds).
RETRY_PAUSE_S = 0.05
# The phrase PostgreSQL's WARNING/DETAIL carries when a commit's wait for a
# synchronous standby ended without the standby's confirmation.
_COMMITTED_LOCALLY = "committed locally"


def insert_statement(table: str = LEDGER_TABLE) -> sql.Composed:
    """One ledger row: params (id, writer); returns (inserted 0/1, server port, WAL
    insert position, WAL file name). The LSN is read after the insert in the same
    statement, so it is at or before the commit record."""
    return sql.SQL(
        "WITH ins AS (INSERT INTO {} (id, writer) VALUES (%s, %s) "
        "ON CONFLICT (id) DO NOTHING RETURNING id) "
        "SELECT (SELECT count(*) FROM ins), inet_server_port(), "
        "pg_current_wal_insert_lsn()::text, pg_walfile_name(pg_current_wal_insert_lsn())"
    ).format(sql.Identifier(table))


def create_table(conn: psycopg.Connection[Any], table: str = LEDGER_TABLE) -> None:
    """Create the ledger table if it is missing (on a group's leader)."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, writer int NOT NULL, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(sql.Identifier(table))
    )


def _described(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:160]}"


def _server_facts(row: Sequence[Any] | None) -> dict[str, Any]:
    if not row:
        return {}
    return {
        "server_port": int(row[1]) if row[1] is not None else None,
        "lsn_low": parse_lsn(str(row[2])) if row[2] else None,
        "timeline": timeline_of_walfile(str(row[3])) if row[3] else None,
    }


class WriterSession(Protocol):
    """One writer's connection(s) to the group."""

    def write(self, row_id: int, writer: int) -> Write | None:
        """Insert ``row_id``; what the writer was told, or None if nothing was sent
        (no connection could be had)."""

    def close(self) -> None: ...


class LedgerClient(Protocol):
    """A way to write to a shard group; one session per writer thread."""

    name: str

    def session(self) -> WriterSession: ...


# -- libpq multi-host ----------------------------------------------------------------


class LibpqClient:
    """libpq's own failover: every member in one multi-host connection string with
    ``target_session_attrs=read-write``, ``connect_timeout`` seconds per host."""

    name = "libpq"

    def __init__(
        self, config: ClusterConfig, members: Sequence[tuple[str, int]], *, connect_timeout: int = 2
    ) -> None:
        first = Node("ledger", Role.PRIMARY, None, members[0][0], members[0][1],
                     config.auth.dbname, config.auth.user)  # fmt: skip
        kwargs = connect_kwargs(first, config, connect_timeout=connect_timeout)
        kwargs["host"] = ",".join(h for h, _ in members)
        kwargs["port"] = ",".join(str(p) for _, p in members)
        kwargs["target_session_attrs"] = "read-write"
        kwargs["application_name"] = "mlscale-chaos"
        self._kwargs = kwargs
        self._insert = insert_statement()

    def session(self) -> LibpqSession:
        return LibpqSession(self._kwargs, self._insert)


class LibpqSession:
    """One connection, reconnected (through every host) after any error."""

    def __init__(self, kwargs: dict[str, Any], insert: sql.Composed) -> None:
        self._kwargs = kwargs
        self._insert = insert
        self._conn: psycopg.Connection[Any] | None = None
        self._notices: list[str] = []

    def _connect(self) -> psycopg.Connection[Any] | None:
        try:
            conn = psycopg.connect(**self._kwargs, autocommit=False)
        except psycopg.Error:
            time.sleep(RETRY_PAUSE_S)
            return None
        conn.add_notice_handler(
            lambda d: self._notices.append(f"{d.message_primary} {d.message_detail or ''}")
        )
        try:
            conn.execute("SET synchronous_commit = on")
            conn.commit()
        except psycopg.Error:
            conn.close()
            return None
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def write(self, row_id: int, writer: int) -> Write | None:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            if self._conn is None:
                return None
        conn = self._conn
        sent = time.time()
        try:
            row = conn.execute(self._insert, (row_id, writer)).fetchone()
        except psycopg.Error as exc:
            self._drop()
            time.sleep(RETRY_PAUSE_S)
            return Write(row_id, writer, sent, time.time(), "failed", _described(exc))
        facts = _server_facts(row)
        self._notices.clear()
        outcome: Outcome = "acked"
        error = None
        try:
            conn.commit()
        except psycopg.Error as exc:
            # Broken after COMMIT was sent: it may or may not have committed. An error
            # the server returned on a live connection means it did not.
            outcome = "unknown" if conn.broken or conn.closed else "failed"
            error = _described(exc)
        done = time.time()
        if outcome == "acked" and any(_COMMITTED_LOCALLY in n for n in self._notices):
            outcome, error = "unknown", "CommittedLocally: sync replication wait cancelled"
        if outcome != "acked":
            self._drop()
            return Write(row_id, writer, sent, done, outcome, error, **facts)
        try:
            high = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            conn.commit()
            facts["lsn_high"] = parse_lsn(str(high[0])) if high else None
        except psycopg.Error:
            self._drop()
        return Write(row_id, writer, sent, done, "acked", None, **facts)

    def close(self) -> None:
        self._drop()


# -- mlscale -------------------------------------------------------------------------


class MlscaleClient:
    """Writes through an mlscale Cluster (``cluster.primary(group).fetch_one``), the
    same Cluster for every trial: it must follow Patroni to each new leader itself.
    ``idempotent`` passes mlscale's flag (the insert is ``ON CONFLICT DO NOTHING``, so
    running it twice is harmless); ``name`` tells the two variants apart."""

    def __init__(self, cluster: Any, group: str, *, idempotent: bool, name: str) -> None:
        self.name = name
        self._scope = cluster.primary(group)
        self._idempotent = idempotent
        self._insert = insert_statement().as_string(None)

    def session(self) -> MlscaleSession:
        return MlscaleSession(self)


class MlscaleSession:
    """Stateless: the Cluster pools its connections."""

    def __init__(self, client: MlscaleClient) -> None:
        self._c = client

    def write(self, row_id: int, writer: int) -> Write | None:
        c = self._c
        sent = time.time()
        try:
            row = c._scope.fetch_one(c._insert, (row_id, writer), idempotent=c._idempotent)
        except CommitOutcomeUnknown as exc:
            return Write(row_id, writer, sent, time.time(), "unknown", _described(exc))
        except (psycopg.Error, MlscaleError) as exc:
            time.sleep(RETRY_PAUSE_S)
            return Write(row_id, writer, sent, time.time(), "failed", _described(exc))
        return Write(row_id, writer, sent, time.time(), "acked", None, **_server_facts(row))

    def close(self) -> None:
        return None


# -- the writer threads --------------------------------------------------------------


class WriterPool:
    """``writers`` threads writing ids ``first_id``, ``first_id + 1``, ... through
    ``client`` into ``ledger`` until :meth:`stop`."""

    def __init__(
        self, client: LedgerClient, ledger: Ledger, *, writers: int, first_id: int
    ) -> None:
        self.client = client
        self.ledger = ledger
        self._ids = itertools.count(first_id)
        self._ids_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"chaos-writer-{i}", daemon=True)
            for i in range(writers)
        ]
        self.errors: list[str] = []

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def _run(self, index: int) -> None:
        session = self.client.session()
        try:
            pending: int | None = None
            while not self._stop.is_set():
                row_id = pending if pending is not None else self._next_id()
                write = session.write(row_id, index)
                # Nothing sent: keep the id for the next try, so ids map to attempts.
                pending = row_id if write is None else None
                if write is not None:
                    self.ledger.record(write)
        except Exception as exc:  # a writer must not die silently: reported by the trial
            self.errors.append(_described(exc))
            log.exception("writer %d stopped", index)
        finally:
            session.close()

    def start(self) -> WriterPool:
        for t in self._threads:
            t.start()
        return self

    def wait_acks(
        self, count: int, timeout_s: float, *, sent_after: float = 0.0, not_port: int | None = None
    ) -> bool:
        """Wait until the ledger holds at least ``count`` acks of writes sent after
        ``sent_after`` (wall clock) by a server other than ``not_port``; whether they
        came within ``timeout_s``. (A write stuck on a frozen server and acked when it
        resumes was sent before: it does not show that writing has resumed.)"""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            acks = sum(
                1
                for w in self.ledger.writes()
                if w.outcome == "acked" and w.sent_at > sent_after and w.server_port != not_port
            )
            if acks >= count:
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 30.0) -> tuple[float, int]:
        """Ask the writers to stop; (when asked, wall clock; writers still stuck after
        ``timeout_s``, e.g. on a frozen server's socket)."""
        asked = time.time()
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return asked, sum(1 for t in self._threads if t.is_alive())
