"""Statement classification by the real PostgreSQL grammar (pglast, i.e. libpg_query).

``Classifier.classify(sql)`` says where a statement may run -- a standby
(``Target.REPLICA``) or only the primary -- and why, and which session state
it creates, clears or needs. Prefix matching misroutes ``WITH ... INSERT``,
``SELECT ... FOR UPDATE``, ``SELECT nextval(...)``; walking the parse tree
does not. The rules, most restrictive first:

- unparseable SQL goes to the primary (psycopg's ``%s``/``%(name)s``
  placeholders are read as ``$n`` parameters first: they are not PostgreSQL
  grammar, yet every psycopg query with parameters has them);
- INSERT/UPDATE/DELETE/MERGE, DDL, COPY FROM, CALL, DO, LOCK, NOTIFY, VACUUM,
  two-phase commands... anything not known to be read-only goes to the primary;
- a SELECT is read-only unless it locks rows (FOR UPDATE/NO KEY UPDATE/SHARE/
  KEY SHARE), creates a table (SELECT INTO), hides a write in a CTE, or calls a
  function not known to be read-only anywhere in its tree;
- a multi-statement string takes the most restrictive route of its parts.

Known read-only functions: built-ins whose every overload is IMMUTABLE or STABLE
(``data/readonly_functions.txt``), a few volatile ones that only read, and any
the caller adds; functions known to write or to fail during recovery are never
read-only, whatever their volatility says (``txid_current`` is STABLE, yet
assigns a transaction id).
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from threading import Lock
from typing import Any

from pglast import ast
from pglast.enums import DiscardMode, ObjectType, TransactionStmtKind, VariableSetKind
from pglast.parser import ParseError, scan

from .sqltree import parse, statement_label, walk

__all__ = [
    "HARMLESS_OUTSIDE_SESSION",
    "Classification",
    "Classifier",
    "SessionEffect",
    "Target",
    "TxAction",
    "builtin_read_only_functions",
]


class Target(enum.StrEnum):
    """Where a statement may run."""

    PRIMARY = "primary"
    REPLICA = "replica"


class SessionEffect(enum.StrEnum):
    """Session state a statement leaves on its connection."""

    SETTING = "setting"
    PREPARED = "prepared statement"
    TEMP_TABLE = "temporary table"
    SEQUENCE = "sequence state"
    ADVISORY_LOCK = "session advisory lock"
    LISTEN = "LISTEN"
    HOLD_CURSOR = "WITH HOLD cursor"


# Session state a one-call statement may create without losing anything the caller
# relies on: nextval's sequence state feeds only currval/lastval in the same session.
HARMLESS_OUTSIDE_SESSION = frozenset({SessionEffect.SEQUENCE})


class TxAction(enum.StrEnum):
    """What a transaction-control statement does to the session's transaction."""

    BEGIN = "begin"
    END = "end"
    INSIDE = "inside"  # SAVEPOINT, RELEASE, ROLLBACK TO, SET TRANSACTION


@dataclass(frozen=True, slots=True)
class Classification:
    """Where a statement may run and why; what session state it touches.

    ``needs_session``: it reads state of its session (currval, EXECUTE, FETCH),
    so it must run on the connection that holds that state.
    """

    target: Target
    reason: str
    creates: frozenset[SessionEffect] = frozenset()
    clears: frozenset[SessionEffect] = frozenset()
    needs_session: bool = False
    transaction: TxAction | None = None
    statements: int = 1

    @property
    def read_only(self) -> bool:
        return self.target is Target.REPLICA

    @property
    def lost_outside_session(self) -> frozenset[SessionEffect]:
        """The session state this statement creates that a call outside a session
        would lose when its connection goes back to the pool: such a call is refused."""
        return self.creates - HARMLESS_OUTSIDE_SESSION

    @property
    def refused_outside_session(self) -> bool:
        """Whether a call outside a session or transaction refuses this statement: it
        controls a transaction, or creates state the call would lose."""
        return self.transaction is not None or bool(self.lost_outside_session)


# Functions that write, take session or transaction locks, or cannot run during
# recovery. Checked before the read-only list: volatility labels lie for some.
WRITE_FUNCTIONS: dict[str, str] = {
    "nextval": "advances a sequence",
    "setval": "sets a sequence",
    "set_config": "changes a setting",
    "txid_current": "assigns a transaction id",
    "pg_current_xact_id": "assigns a transaction id",
    "pg_notify": "sends a notification",
    "pg_advisory_lock": "takes a session advisory lock",
    "pg_advisory_lock_shared": "takes a session advisory lock",
    "pg_try_advisory_lock": "takes a session advisory lock",
    "pg_try_advisory_lock_shared": "takes a session advisory lock",
    "pg_advisory_unlock": "releases a session advisory lock",
    "pg_advisory_unlock_shared": "releases a session advisory lock",
    "pg_advisory_unlock_all": "releases session advisory locks",
    "pg_advisory_xact_lock": "takes a transaction advisory lock",
    "pg_advisory_xact_lock_shared": "takes a transaction advisory lock",
    "pg_try_advisory_xact_lock": "takes a transaction advisory lock",
    "pg_try_advisory_xact_lock_shared": "takes a transaction advisory lock",
    "pg_walfile_name": "cannot run during recovery",
    "pg_walfile_name_offset": "cannot run during recovery",
    "pg_switch_wal": "switches the WAL file",
    "pg_create_restore_point": "writes WAL",
    "pg_logical_emit_message": "writes WAL",
    "pg_export_snapshot": "exports a snapshot",
    "pg_import_system_collations": "writes the catalog",
    "pg_create_physical_replication_slot": "creates a replication slot",
    "pg_create_logical_replication_slot": "creates a replication slot",
    "pg_drop_replication_slot": "drops a replication slot",
    "pg_copy_physical_replication_slot": "creates a replication slot",
    "pg_copy_logical_replication_slot": "creates a replication slot",
    "pg_replication_slot_advance": "moves a replication slot",
    "pg_promote": "promotes a standby",
    "pg_terminate_backend": "terminates a backend",
    "pg_cancel_backend": "cancels a backend",
    "pg_reload_conf": "reloads the configuration",
    "pg_rotate_logfile": "rotates the log",
    "pg_backup_start": "starts a backup",
    "pg_backup_stop": "stops a backup",
    "dblink_exec": "runs a remote command",
}
# Large objects: every lo_* function (lo_create, lo_import, lo_put, lo_unlink, ...)
WRITE_PREFIXES: dict[str, str] = {
    "lo_": "works on large objects",
    "pg_stat_reset": "resets statistics",
    "pg_replication_origin_": "changes replication origins",
}
SESSION_FUNCTIONS: dict[str, SessionEffect] = {
    "nextval": SessionEffect.SEQUENCE,
    "setval": SessionEffect.SEQUENCE,
    "set_config": SessionEffect.SETTING,
    "pg_advisory_lock": SessionEffect.ADVISORY_LOCK,
    "pg_advisory_lock_shared": SessionEffect.ADVISORY_LOCK,
    "pg_try_advisory_lock": SessionEffect.ADVISORY_LOCK,
    "pg_try_advisory_lock_shared": SessionEffect.ADVISORY_LOCK,
}
# Reading the session's own sequence state: must run where nextval ran.
SESSION_READERS = frozenset({"currval", "lastval"})
# Volatile, yet they only read: safe on a standby.
VOLATILE_READ_ONLY = frozenset(
    {
        "random",
        "random_normal",
        "setseed",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_is_in_recovery",
        "pg_last_wal_receive_lsn",
        "pg_last_wal_replay_lsn",
        "pg_last_xact_replay_timestamp",
        "pg_is_wal_replay_paused",
        "pg_get_wal_replay_pause_state",
        "pg_backend_pid",
        "pg_stat_get_activity",
        # sizes come from the file system, hence VOLATILE; a standby has the files
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_database_size",
        "pg_tablespace_size",
    }
)
_CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
_LOCKING = {
    "LCS_FORKEYSHARE": "FOR KEY SHARE",
    "LCS_FORSHARE": "FOR SHARE",
    "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE",
    "LCS_FORUPDATE": "FOR UPDATE",
}
_CURSOR_OPT_HOLD = 0x0020
_CREATED = {
    "CreateStmt": "TABLE",
    "CreateTableAsStmt": "TABLE ... AS",
    "ViewStmt": "VIEW",
    "CreateSeqStmt": "SEQUENCE",
}
# psycopg's placeholders (``%s``, ``%b``, ``%t``, ``%(name)s``) and its ``%%`` escape,
# as psycopg's own ``_split_query`` finds them.
_PLACEHOLDER = re.compile(r"%(?:\((?P<name>[^)]+)\))?[sbt]|%%")
_SERIALIZABLE = "SERIALIZABLE transactions run on the primary (a standby refuses them)"


@cache
def builtin_read_only_functions() -> frozenset[str]:
    """Built-in functions whose every overload is IMMUTABLE or STABLE."""
    text = resources.files("mlscale.core").joinpath("data/readonly_functions.txt").read_text()
    return frozenset(ln.strip() for ln in text.splitlines() if ln.strip() and ln[0] != "#")


def _name(node: ast.FuncCall) -> tuple[str | None, str]:
    # The parser has already folded unquoted names to lower case; a quoted "Lower"
    # is another function than lower, so the case of what is left must be kept.
    parts = [getattr(p, "sval", "") for p in node.funcname or ()]
    schema = parts[-2] if len(parts) > 1 else None
    return schema, parts[-1]


def _is_temp(rel: Any) -> bool:
    """A relation made TEMP, by keyword or by creating it in ``pg_temp``."""
    persistence = getattr(rel, "relpersistence", "p")
    return persistence == "t" or getattr(rel, "schemaname", None) == "pg_temp"


def _numbered_placeholders(sql: str) -> str | None:
    """``sql`` with psycopg's placeholders as ``$1, $2, ...``; None if it has none.

    psycopg turns ``%s`` and ``%(name)s`` into ``$n`` before sending, so the server
    never sees them, but the text handed to ``classify`` still has them. Only
    operator tokens (found by PostgreSQL's own scanner) are looked at: a ``%s`` in
    a string literal, a quoted identifier or a comment stays as it is.
    """
    if "%" not in sql:
        return None
    try:
        tokens = scan(sql)
    except ParseError:
        return None
    candidates = {
        t.start + i
        for t in tokens
        if t.name in ("Op", "ASCII_37")
        for i, ch in enumerate(sql[t.start : t.end + 1])
        if ch == "%"
    }
    out: list[str] = []
    numbers: dict[str, int] = {}
    cur = 0
    found = False
    for pos in sorted(candidates):
        if pos < cur:  # the second '%' of a '%%' already consumed
            continue
        m = _PLACEHOLDER.match(sql, pos)
        if m is None:
            continue
        out.append(sql[cur:pos])
        if m.group() == "%%":
            out.append("%")
        else:
            key = m.group("name") or f"#{len(numbers)}"
            out.append(f"${numbers.setdefault(key, len(numbers) + 1)}")
            found = True
        cur = m.end()
    if not found:
        return None
    out.append(sql[cur:])
    return "".join(out)


def _parse(sql: str) -> tuple[ast.RawStmt, ...]:
    """Parse ``sql``, reading psycopg placeholders as parameters if it does not parse as is.

    Parsing the text as is comes first: ``a %b`` is valid SQL (``a`` modulo
    column ``b``) when no parameters are passed. Both parses go through the
    shared cache (:func:`sqltree.parse`), which the key router reads too.
    """
    try:
        return parse(sql)
    except ParseError as exc:
        numbered = _numbered_placeholders(sql)
        if numbered is None:
            raise
        try:
            return parse(numbered)
        except ParseError:
            raise exc from None


@dataclass
class _Verdict:
    """What one statement does, gathered while walking it."""

    writes: list[str] = field(default_factory=list)
    creates: set[SessionEffect] = field(default_factory=set)
    clears: set[SessionEffect] = field(default_factory=set)
    needs_session: bool = False
    transaction: TxAction | None = None
    read_reason: str = "read-only"

    def write(self, reason: str) -> None:
        self.writes.append(reason)

    def done(self) -> Classification:
        if self.writes:
            target, reason = Target.PRIMARY, self.writes[0]
        elif self.creates or self.needs_session or self.transaction:
            target, reason = Target.PRIMARY, "session or transaction state"
        else:
            target, reason = Target.REPLICA, self.read_reason
        return Classification(
            target=target,
            reason=reason,
            creates=frozenset(self.creates),
            clears=frozenset(self.clears),
            needs_session=self.needs_session,
            transaction=self.transaction,
        )


class Classifier:
    """Classifies SQL text, caching by the exact text (bounded, thread-safe).

    ``read_only_functions`` adds names the caller vouches for (``"score"`` or
    ``"features.score"``); they are still overridden by known writers.
    """

    def __init__(self, read_only_functions: Iterable[str] = (), cache_size: int = 4096) -> None:
        extra = {f.lower() for f in read_only_functions}
        self._plain = (
            builtin_read_only_functions() | VOLATILE_READ_ONLY | {f for f in extra if "." not in f}
        )
        self._qualified = {f for f in extra if "." in f}
        self._cache: OrderedDict[str, Classification] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def after_fork(self) -> None:
        """In a forked child: a new lock (a parent thread may have held the old one)."""
        self._lock = Lock()

    def classify(self, sql: str) -> Classification:
        """Where ``sql`` may run and why (cached by its exact text)."""
        with self._lock:
            found = self._cache.get(sql)
            if found is not None:
                self._cache.move_to_end(sql)
                self.hits += 1
                return found
        result = self._classify(sql)
        with self._lock:
            self.misses += 1
            self._cache[sql] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    # -- whole strings -----------------------------------------------------------

    def _classify(self, sql: str) -> Classification:
        try:
            parsed = _parse(sql)
        except ParseError as exc:
            return Classification(Target.PRIMARY, f"could not parse ({exc}); sent to the primary")
        if not parsed:
            return Classification(Target.REPLICA, "empty statement", statements=0)
        parts = [self._statement(raw.stmt) for raw in parsed if raw.stmt is not None]
        if len(parts) == 1:
            return parts[0]
        primary = next((p for p in parts if p.target is Target.PRIMARY), None)
        tx = next((p.transaction for p in reversed(parts) if p.transaction), None)
        return Classification(
            target=Target.PRIMARY if primary else Target.REPLICA,
            reason=f"{len(parts)} statements; most restrictive: {(primary or parts[0]).reason}",
            creates=frozenset().union(*(p.creates for p in parts)),
            clears=frozenset().union(*(p.clears for p in parts)),
            needs_session=any(p.needs_session for p in parts),
            transaction=tx,
            statements=len(parts),
        )

    # -- one statement -------------------------------------------------------------

    def _statement(self, stmt: ast.Node) -> Classification:
        v = _Verdict()
        kind = type(stmt).__name__
        if isinstance(stmt, ast.SelectStmt):
            v.read_reason = "read-only SELECT"
            self._select(stmt, v)
        elif isinstance(stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
            v.write(f"{kind.removesuffix('Stmt').upper()} writes")
            self._expressions(stmt, v)
        elif isinstance(stmt, ast.VariableShowStmt):
            v.read_reason = "SHOW reads a setting"
        elif isinstance(stmt, ast.VariableSetStmt):
            self._set(stmt, v)
        elif isinstance(stmt, ast.TransactionStmt):
            self._transaction(stmt, v)
        elif isinstance(stmt, ast.CopyStmt):
            self._copy(stmt, v)
        elif isinstance(stmt, ast.ExplainStmt):
            self._explain(stmt, v)
        else:
            self._session_statement(stmt, v)
        return v.done()

    def _select(self, stmt: ast.Node, v: _Verdict) -> None:
        for node in walk(stmt):
            if isinstance(node, ast.SelectStmt):
                if node.intoClause is not None:
                    v.write("SELECT INTO creates a table")
                    if _is_temp(node.intoClause.rel):
                        v.creates.add(SessionEffect.TEMP_TABLE)
                for clause in node.lockingClause or ():
                    strength = getattr(clause.strength, "name", str(clause.strength))
                    v.write(f"SELECT ... {_LOCKING.get(strength, 'FOR UPDATE')} locks rows")
            elif isinstance(node, ast.CommonTableExpr) and isinstance(
                node.ctequery, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt
            ):
                verb = type(node.ctequery).__name__.removesuffix("Stmt").upper()
                v.write(f"writable CTE ({verb} in WITH {node.ctename})")
        self._expressions(stmt, v)

    def _expressions(self, stmt: ast.Node, v: _Verdict) -> None:
        """Function calls anywhere in the statement's tree."""
        for node in walk(stmt):
            if isinstance(node, ast.FuncCall):
                self._function(node, v)
            elif isinstance(node, ast.SelectStmt) and node is not stmt:
                for clause in node.lockingClause or ():
                    strength = getattr(clause.strength, "name", str(clause.strength))
                    v.write(f"SELECT ... {_LOCKING.get(strength, 'FOR UPDATE')} locks rows")

    def _function(self, node: ast.FuncCall, v: _Verdict) -> None:
        schema, name = _name(node)
        builtin = schema is None or schema in _CATALOG_SCHEMAS
        label = f"{schema}.{name}" if schema else name
        if builtin and name in WRITE_FUNCTIONS:
            v.write(f"calls {label}(), which {WRITE_FUNCTIONS[name]}")
            effect = SESSION_FUNCTIONS.get(name)
            if effect is not None and not (name == "set_config" and _is_local_set_config(node)):
                v.creates.add(effect)
            if name == "pg_advisory_unlock_all":
                v.clears.add(SessionEffect.ADVISORY_LOCK)
            return
        if builtin:
            for prefix, why in WRITE_PREFIXES.items():
                if name.startswith(prefix):
                    v.write(f"calls {label}(), which {why}")
                    return
        if builtin and name in SESSION_READERS:
            v.needs_session = True
            v.write(f"calls {label}(), which reads this session's sequence state")
            return
        if (builtin and name in self._plain) or (schema is None and name in self._plain):
            return
        if f"{schema}.{name}" in self._qualified:
            return
        v.write(f"calls {label}(), not known to be read-only")

    def _set(self, stmt: ast.VariableSetStmt, v: _Verdict) -> None:
        kind = getattr(stmt.kind, "name", str(stmt.kind))
        name = (stmt.name or "").lower()
        serializable = "serializable" in repr(stmt.args).lower()
        if name.startswith("transaction"):  # SET TRANSACTION ..., SET TRANSACTION SNAPSHOT
            v.transaction = TxAction.INSIDE
            v.write(_SERIALIZABLE if serializable else "SET TRANSACTION belongs to a transaction")
            return
        if stmt.is_local:
            v.transaction = TxAction.INSIDE
            v.write("SET LOCAL belongs to a transaction")
            return
        if kind == VariableSetKind.VAR_RESET_ALL.name:
            v.clears.add(SessionEffect.SETTING)
            v.write("RESET ALL changes session state")
            return
        v.creates.add(SessionEffect.SETTING)
        verb = "RESET" if kind == VariableSetKind.VAR_RESET.name else "SET"
        if serializable or name == "default_transaction_isolation":
            v.write(_SERIALIZABLE if serializable else f"{verb} {name} creates session state")
        else:
            v.write(f"{verb} {name or 'without LOCAL'} creates session state")

    def _transaction(self, stmt: ast.TransactionStmt, v: _Verdict) -> None:
        kind = getattr(stmt.kind, "name", str(stmt.kind))
        begin = {
            TransactionStmtKind.TRANS_STMT_BEGIN.name,
            TransactionStmtKind.TRANS_STMT_START.name,
        }
        end = {
            TransactionStmtKind.TRANS_STMT_COMMIT.name,
            TransactionStmtKind.TRANS_STMT_ROLLBACK.name,
        }
        two_phase = {
            TransactionStmtKind.TRANS_STMT_PREPARE.name: "PREPARE TRANSACTION",
            TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED.name: "COMMIT PREPARED",
            TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED.name: "ROLLBACK PREPARED",
        }
        if kind in two_phase:
            v.transaction = TxAction.END if kind.endswith("_PREPARE") else None
            v.write(f"{two_phase[kind]} is two-phase commit, on the primary")
        elif kind in begin:
            v.transaction = TxAction.BEGIN
            serializable = "serializable" in repr(stmt.options).lower()
            v.write(_SERIALIZABLE if serializable else "BEGIN opens a transaction on the primary")
        elif kind in end:
            v.transaction = TxAction.END
            v.write("ends a transaction")
        else:
            v.transaction = TxAction.INSIDE
            v.write("belongs to a transaction")

    def _copy(self, stmt: ast.CopyStmt, v: _Verdict) -> None:
        if stmt.is_from:
            v.write("COPY FROM writes")
        elif stmt.filename is not None or stmt.is_program:
            v.write("COPY TO a server file or program runs on the primary")
        else:
            v.read_reason = "COPY TO STDOUT reads"
        if stmt.query is not None:
            inner = self._statement(stmt.query)
            if not inner.read_only:
                v.write(f"COPY of a query that {inner.reason}")
        self._expressions(stmt, v)

    def _explain(self, stmt: ast.ExplainStmt, v: _Verdict) -> None:
        options = {getattr(o, "defname", "").lower(): o for o in stmt.options or ()}
        if stmt.query is None:
            v.write("EXPLAIN without a statement")
            return
        inner = self._statement(stmt.query)
        analyze = "analyze" in options and "false" not in repr(options["analyze"].arg).lower()
        # EXECUTE needs its session even when only explained; the rest needs ANALYZE
        # to run, but the inner statement's verdict decides the route either way.
        v.creates.update(inner.creates)
        v.clears.update(inner.clears)
        v.needs_session = inner.needs_session
        if inner.read_only:
            v.read_reason = f"EXPLAIN{' ANALYZE' if analyze else ''} of a {inner.reason}"
            return
        v.write(f"EXPLAIN{' ANALYZE' if analyze else ''} of a statement that: {inner.reason}")

    def _session_statement(self, stmt: ast.Node, v: _Verdict) -> None:
        """Everything else: session-state statements and the writes by default."""
        if isinstance(stmt, ast.PrepareStmt):
            v.creates.add(SessionEffect.PREPARED)
            v.write(f"PREPARE {stmt.name} creates session state")
        elif isinstance(stmt, ast.ExecuteStmt):
            v.needs_session = True
            v.write(f"EXECUTE {stmt.name} runs a prepared statement of this session")
        elif isinstance(stmt, ast.DeallocateStmt):
            v.needs_session = True
            if stmt.name is None or getattr(stmt, "isall", False):
                v.clears.add(SessionEffect.PREPARED)
            v.write("DEALLOCATE changes session state")
        elif isinstance(stmt, ast.DeclareCursorStmt):
            if (stmt.options or 0) & _CURSOR_OPT_HOLD:
                v.creates.add(SessionEffect.HOLD_CURSOR)
                v.write("DECLARE ... WITH HOLD creates session state")
            else:
                v.transaction = TxAction.INSIDE
                v.write("DECLARE needs its transaction's connection")
            if stmt.query is not None:
                self._select(stmt.query, v)
        elif isinstance(stmt, ast.FetchStmt):
            v.needs_session = True
            verb = "MOVE" if stmt.ismove else "FETCH"
            v.write(f"{verb} reads a cursor of this session")
        elif isinstance(stmt, ast.ClosePortalStmt):
            v.needs_session = True
            if stmt.portalname is None:
                v.clears.add(SessionEffect.HOLD_CURSOR)
            v.write("CLOSE changes session state")
        elif isinstance(stmt, ast.ListenStmt):
            v.creates.add(SessionEffect.LISTEN)
            v.write("LISTEN creates session state (and a standby refuses it)")
        elif isinstance(stmt, ast.UnlistenStmt):
            if stmt.conditionname is None:
                v.clears.add(SessionEffect.LISTEN)
            v.write("UNLISTEN changes session state")
        elif isinstance(stmt, ast.DiscardStmt):
            self._discard(stmt, v)
        elif isinstance(
            stmt, ast.CreateStmt | ast.CreateTableAsStmt | ast.ViewStmt | ast.CreateSeqStmt
        ):
            created = _CREATED[type(stmt).__name__]
            if getattr(stmt, "objtype", None) == ObjectType.OBJECT_MATVIEW:
                created = "MATERIALIZED VIEW"
            if _is_temp(_created_relation(stmt)):
                v.creates.add(SessionEffect.TEMP_TABLE)
                v.write(f"CREATE TEMP {created} creates session state")
            else:
                v.write(f"CREATE {created} changes the schema")
            if isinstance(stmt, ast.CreateTableAsStmt) and stmt.query is not None:
                self._expressions(stmt.query, v)
        elif isinstance(stmt, ast.LockStmt):
            v.write("LOCK takes table locks")
        elif isinstance(stmt, ast.NotifyStmt):
            v.write("NOTIFY sends a notification")
        elif isinstance(stmt, ast.CallStmt):
            v.write("CALL runs a procedure")
        elif isinstance(stmt, ast.DoStmt):
            v.write("DO runs code")
        else:
            v.write(f"{statement_label(stmt)} is not a read-only statement")

    def _discard(self, stmt: ast.DiscardStmt, v: _Verdict) -> None:
        target = getattr(stmt.target, "name", str(stmt.target))
        if target == DiscardMode.DISCARD_ALL.name:
            v.clears.update(SessionEffect)
        elif target == DiscardMode.DISCARD_TEMP.name:
            v.clears.add(SessionEffect.TEMP_TABLE)
        elif target == DiscardMode.DISCARD_SEQUENCES.name:
            v.clears.add(SessionEffect.SEQUENCE)
        v.write("DISCARD changes session state")


def _created_relation(stmt: ast.Node) -> Any:
    """The relation a CREATE TABLE/TABLE AS/VIEW/SEQUENCE makes."""
    if isinstance(stmt, ast.CreateTableAsStmt):
        return stmt.into.rel if stmt.into is not None else None
    if isinstance(stmt, ast.ViewStmt):
        return stmt.view
    if isinstance(stmt, ast.CreateSeqStmt):
        return stmt.sequence
    return getattr(stmt, "relation", None)


def _is_local_set_config(node: ast.FuncCall) -> bool:
    """``set_config(name, value, true)``: a transaction-local setting, no session state."""
    args = node.args or ()
    if len(args) < 3 or not isinstance(args[2], ast.A_Const):
        return False
    value = args[2].val
    if isinstance(value, ast.Boolean):
        return bool(value.boolval)
    return isinstance(value, ast.String) and (value.sval or "").lower() in (
        "t",
        "true",
        "on",
        "yes",
        "1",
    )
