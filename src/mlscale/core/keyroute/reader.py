"""The key reader: statement text -> compiled plan (cached) -> the keys of this call's params."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from threading import Lock

from pglast import ast
from pglast.enums import AlterTableType, ObjectType
from pglast.parser import ParseError, scan

from ..sqltree import CACHED_TEXT_MAX, parse, statement_label, walk
from .placeholders import Numbered, PlaceholderError, number_placeholders
from .plans import Fixed, Plan
from .query import analyze_query
from .results import Broadcast, KeyReading, NoKey, Params, Refused, ShardedTable, Unsharded
from .rows import analyze_copy, analyze_insert
from .tree import sharded_name

__all__ = ["KeyReader", "read_keys"]

TableColumns = Mapping[str, Sequence[str]]
_DML = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class KeyReader:
    """Reads shard keys from SQL, for single-shard routing of sharded tables.

    ``tables`` is the registry of sharded tables (keyed by anything; each entry's
    ``name`` is what statements are matched against). ``table_columns`` gives, per
    table name, its columns in order, for ``INSERT``/``COPY`` without a column list.
    What is read from a statement's text is compiled once and cached by the text
    (``cache_size`` texts, oldest out first; texts over 4096 characters are not
    cached), so a hot ``SELECT ... WHERE id = %s`` costs a dict lookup plus
    ``params[0]``. Thread-safe; a registry change needs a new router.
    """

    def __init__(
        self,
        tables: Mapping[str, ShardedTable],
        *,
        table_columns: TableColumns | None = None,
        cache_size: int = 4096,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._tables = {t.name: t for t in tables.values()}
        self._columns = {name: tuple(cols) for name, cols in (table_columns or {}).items()}
        # One cache per "were params passed": psycopg reads placeholders only then.
        self._plans: tuple[dict[str, Plan], dict[str, Plan]] = ({}, {})
        self._cache_size = cache_size
        self._lock = Lock()

    @property
    def tables(self) -> Mapping[str, ShardedTable]:
        """The sharded tables, by name."""
        return self._tables

    def read(self, sql: str, params: Params = None) -> KeyReading:
        """Where ``sql`` with ``params`` goes, as far as shard keys decide it."""
        plans = self._plans[params is None]
        plan = plans.get(sql)
        if plan is None:
            plan = compile_statement(sql, params is not None, self._tables, self._columns)
            if len(sql) > CACHED_TEXT_MAX:  # generated texts (long VALUES lists) rarely repeat
                return plan.read(sql, params)
            with self._lock:
                if len(plans) >= self._cache_size:
                    plans.pop(next(iter(plans)))
                plans[sql] = plan
        return plan.read(sql, params)


def read_keys(
    sql: str,
    params: Params,
    tables: Mapping[str, ShardedTable],
    *,
    table_columns: TableColumns | None = None,
) -> KeyReading:
    """:meth:`KeyReader.route` without a cache, for one-off decisions."""
    registry = {t.name: t for t in tables.values()}
    return compile_statement(sql, params is not None, registry, table_columns).read(sql, params)


def compile_statement(
    sql: str,
    with_params: bool,
    tables: Mapping[str, ShardedTable],
    table_columns: TableColumns | None,
) -> Plan:
    """The plan for ``sql``: everything that does not depend on the params' values."""
    if not tables:
        return Fixed(Unsharded())
    try:
        numbered = number_placeholders(sql, with_params)
    except PlaceholderError as exc:
        return Fixed(_unreadable(sql, tables, f"psycopg would refuse its placeholders ({exc})"))
    try:
        raws = parse(numbered.text)
    except ParseError as exc:
        return Fixed(_unreadable(sql, tables, f"it does not parse ({exc})"))
    stmts = [raw.stmt for raw in raws if raw.stmt is not None]
    if not stmts:
        return Fixed(Unsharded())
    if len(stmts) > 1:
        return Fixed(_several(stmts, tables, numbered, table_columns))
    return _statement(stmts[0], stmts[0], sql, tables, numbered, table_columns)


def _unreadable(sql: str, tables: Mapping[str, ShardedTable], why: str) -> KeyReading:
    """Unparseable text: refused if it names a sharded table, else left to the server."""
    try:
        words = {sql[t.start : t.end + 1].strip('"').lower() for t in scan(sql)}
    except ParseError:
        words = set(sql.lower().replace('"', " ").split())
    named = sorted(words & set(tables))
    if named:
        return Refused(f"the statement names sharded table {named[0]} but {why}")
    return Unsharded()


def _sharded_refs(stmt: ast.Node, tables: Mapping[str, ShardedTable]) -> list[str]:
    """Names of sharded tables a statement references (tables, and DROP/COMMENT objects)."""
    ctes = {n.ctename for n in walk(stmt) if isinstance(n, ast.CommonTableExpr)}
    found: list[tuple[int, str]] = []
    for node in walk(stmt):
        if isinstance(node, ast.RangeVar):
            table = sharded_name(node, tables)
            if table is not None and not (node.schemaname is None and node.relname in ctes):
                found.append((node.location or 0, table.name))
    out = [name for _, name in sorted(found)]  # in the order the text names them
    if isinstance(stmt, ast.DropStmt) and stmt.removeType in _DROPPED_RELATIONS:
        for obj in stmt.objects or ():
            name = _object_name(obj)
            if name is not None and name in tables:
                out.append(name)
    return list(dict.fromkeys(out))


_DROPPED_RELATIONS = (
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_FOREIGN_TABLE,
    ObjectType.OBJECT_VIEW,
)


def _object_name(obj: object) -> str | None:
    parts = [getattr(p, "sval", None) for p in obj] if isinstance(obj, tuple | list) else []
    if not parts or (len(parts) == 2 and parts[0] != "public") or len(parts) > 2:
        return None
    return parts[-1]


def _statement(
    stmt: ast.Node,
    root: ast.Node,
    sql: str,
    tables: Mapping[str, ShardedTable],
    numbered: Numbered,
    table_columns: TableColumns | None,
) -> Plan:
    names = _sharded_refs(stmt, tables)
    if not names:
        return Fixed(Unsharded())
    if isinstance(stmt, ast.ExplainStmt | ast.DeclareCursorStmt) and stmt.query is not None:
        return _statement(stmt.query, root, sql, tables, numbered, table_columns)
    if isinstance(stmt, ast.CopyStmt):
        plan = analyze_copy(stmt, sql, tables, table_columns)
        if plan is not None:
            return plan
        if stmt.query is None:
            return Fixed(Unsharded())
        return _statement(stmt.query, root, sql, tables, numbered, table_columns)
    families = {tables[n].family for n in names}
    if isinstance(stmt, _DML) and len(families) > 1:
        listed = ", ".join(f"{n}: {tables[n].family}" for n in names)
        return Fixed(
            Refused(
                f"the statement reads sharded tables of different co-location families "
                f"({listed}); their rows live on different shards. Query each family "
                "separately, or put the tables in one family"
            )
        )
    into = isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None
    if into or isinstance(stmt, ast.CreateTableAsStmt):
        return Fixed(
            Refused(
                f"CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW reading sharded "
                f"table {names[0]} would create a table holding one shard's rows; create the "
                "table, then insert the rows"
            )
        )
    if isinstance(stmt, ast.PrepareStmt):
        return Fixed(
            Refused(
                f"PREPARE of a statement on sharded table {names[0]} cannot be routed: EXECUTE "
                "does not show the key; let psycopg prepare it (prepare=True) instead"
            )
        )
    if isinstance(stmt, ast.SelectStmt | ast.UpdateStmt | ast.DeleteStmt):
        return analyze_query(stmt, root, tables, numbered)
    if isinstance(stmt, ast.InsertStmt):
        return analyze_insert(stmt, root, tables, numbered, table_columns)
    if isinstance(stmt, ast.MergeStmt):
        target = sharded_name(stmt.relation, tables)
        if target is not None:
            return Fixed(
                Refused(
                    f"MERGE into sharded table {target.name} cannot be routed by key: its "
                    "inserts could land on any shard; use INSERT ... ON CONFLICT instead"
                )
            )
        return Fixed(
            NoKey(f"MERGE reads sharded table {names[0]} without a routable key", tuple(names))
        )
    return Fixed(_utility(stmt, names, tables))


def _utility(stmt: ast.Node, names: list[str], tables: Mapping[str, ShardedTable]) -> KeyReading:
    """DDL and other utility statements on sharded tables: every shard group, or refused."""
    label = "CREATE TABLE" if isinstance(stmt, ast.CreateStmt) else statement_label(stmt)
    listed = ", ".join(names)
    if isinstance(stmt, ast.DropStmt | ast.TruncateStmt) and _mixes_unsharded(stmt, tables):
        return Refused(
            f"{label} names sharded ({listed}) and other tables together; run it separately "
            "for the sharded tables (sent to every shard group) and the others"
        )
    if isinstance(stmt, ast.AlterTableStmt):
        for cmd in stmt.cmds or ():
            if not isinstance(cmd, ast.AlterTableCmd) or cmd.name is None:
                continue
            table = sharded_name(stmt.relation, tables)
            if table is None or cmd.name not in table.key_columns:
                continue
            if cmd.subtype == AlterTableType.AT_AlterColumnType:
                return Refused(
                    f"changing the type of shard key column {table.name}.{cmd.name} changes "
                    "its hash, so rows would sit on the wrong shards; create a new table and "
                    "copy the rows"
                )
            if cmd.subtype == AlterTableType.AT_DropColumn:
                return Refused(
                    f"dropping shard key column {table.name}.{cmd.name} leaves the table "
                    "without a shard key; unregister the table first"
                )
    if isinstance(stmt, ast.RenameStmt):
        table = sharded_name(stmt.relation, tables) if stmt.relation is not None else None
        if table is not None and stmt.renameType == ObjectType.OBJECT_TABLE:
            return Refused(
                f"renaming sharded table {table.name} breaks its registration; register the "
                "new name with the router and rename it on every shard group together"
            )
        if (
            table is not None
            and stmt.renameType == ObjectType.OBJECT_COLUMN
            and stmt.subname in table.key_columns
        ):
            return Refused(
                f"renaming shard key column {table.name}.{stmt.subname} breaks its "
                "registration; register the new key column with the router and rename it on "
                "every shard group together"
            )
    return Broadcast(
        f"{label} on sharded table(s) {listed} applies to every shard group", tuple(names)
    )


def _mixes_unsharded(
    stmt: ast.DropStmt | ast.TruncateStmt, tables: Mapping[str, ShardedTable]
) -> bool:
    if isinstance(stmt, ast.TruncateStmt):
        return any(sharded_name(rv, tables) is None for rv in stmt.relations or ())
    return any(_object_name(obj) not in tables for obj in stmt.objects or ())


def _several(
    stmts: list[ast.Node],
    tables: Mapping[str, ShardedTable],
    numbered: Numbered,
    table_columns: TableColumns | None,
) -> KeyReading:
    """A string of several statements: DDL scripts broadcast; sharded DML refused."""
    results: list[KeyReading] = []
    for stmt in stmts:
        plan = _statement(stmt, stmt, "", tables, numbered, table_columns)
        results.append(plan.result if isinstance(plan, Fixed) else NoKey("", ()))
    touched = [n for stmt in stmts for n in _sharded_refs(stmt, tables)]
    if not touched:
        return Unsharded()
    refusal = next((r for r in results if isinstance(r, Refused)), None)
    if refusal is not None:
        return refusal
    utility_only = all(
        isinstance(r, Broadcast) or (isinstance(r, Unsharded) and not isinstance(s, _DML))
        for r, s in zip(results, stmts, strict=True)
    )
    names = tuple(dict.fromkeys(touched))
    if utility_only:
        return Broadcast(
            f"a script of {len(stmts)} statements changing sharded table(s) "
            f"{', '.join(names)} applies to every shard group",
            names,
        )
    return Refused(
        f"the string holds {len(stmts)} statements and some touch sharded table(s) "
        f"{', '.join(names)}; send each statement on a sharded table on its own"
    )
