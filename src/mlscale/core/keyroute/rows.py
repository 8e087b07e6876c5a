"""INSERT ... VALUES and COPY FROM STDIN: where each row's shard key is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pglast import ast

from ..sqltree import walk
from .placeholders import Numbered
from .plans import Fixed, InsertPlan, Plan
from .results import CopyIn, NoKey, Refused, ShardedTable, Unsharded
from .tree import sharded_name
from .values import Source, source_of

__all__ = ["analyze_copy", "analyze_insert"]

TableColumns = Mapping[str, Sequence[str]]


def _columns(
    named: Sequence[str] | None, table: ShardedTable, table_columns: TableColumns | None, verb: str
) -> tuple[str, ...] | str:
    """The statement's column list, or the catalog's; a refusal reason if neither is known."""
    if named:
        return tuple(named)
    known = (table_columns or {}).get(table.name)
    if known:
        return tuple(known)
    return (
        f"{verb} {table.name} without a column list: the router cannot tell which value is "
        f"the shard key ({', '.join(table.key_columns)}); name the columns, e.g. "
        f"{verb} {table.name} ({', '.join(table.key_columns)}, ...)"
    )


def _other_sharded(
    root: ast.Node, target: ast.RangeVar | None, tables: Mapping[str, ShardedTable]
) -> str | None:
    ctes = {n.ctename for n in walk(root) if isinstance(n, ast.CommonTableExpr)}
    for node in walk(root):
        if isinstance(node, ast.RangeVar) and node is not target:
            table = sharded_name(node, tables)
            if table is not None and not (node.schemaname is None and node.relname in ctes):
                return table.name
    return None


def analyze_insert(
    stmt: ast.InsertStmt,
    root: ast.Node,
    tables: Mapping[str, ShardedTable],
    numbered: Numbered,
    table_columns: TableColumns | None,
) -> Plan:
    """The plan for an INSERT (``root`` is the statement it sits in: itself, EXPLAIN...)."""
    table = sharded_name(stmt.relation, tables)
    other = _other_sharded(root, stmt.relation, tables)
    if table is None:
        if other is None:
            return Fixed(Unsharded())
        return Fixed(
            Refused(
                f"an INSERT into a table that is not sharded cannot read sharded table {other}: "
                "its rows live on other servers; read them first, then insert"
            )
        )
    if other is not None:
        return Fixed(
            Refused(
                f"an INSERT into sharded table {table.name} that also reads sharded table "
                f"{other} cannot be routed by key; read first, then insert the values"
            )
        )
    select = stmt.selectStmt
    if select is None:
        return Fixed(
            Refused(
                f"DEFAULT VALUES into sharded table {table.name} does not set the shard key "
                f"({', '.join(table.key_columns)}); pass the key values"
            )
        )
    if not isinstance(select, ast.SelectStmt) or not select.valuesLists or select.fromClause:
        return Fixed(
            Refused(
                f"INSERT ... SELECT into sharded table {table.name} cannot be split by shard: "
                "its rows are only known when the query runs; list the rows in the statement "
                "or load them with COPY"
            )
        )
    refusal = _conflict_update(stmt, table)
    if refusal:
        return Fixed(Refused(refusal))
    named = [res.name for res in stmt.cols or ()]
    if any(res.indirection for res in stmt.cols or ()):
        named = [f"{res.name}[...]" if res.indirection else res.name for res in stmt.cols or ()]
    columns = _columns(named, table, table_columns, "INSERT INTO")
    if isinstance(columns, str):
        return Fixed(Refused(columns))
    positions: list[int] = []
    for key in table.key_columns:
        if key not in columns:
            return Fixed(
                Refused(
                    f"INSERT INTO {table.name} does not set shard key column {key}, so its "
                    "default would be computed on whichever shard runs it; pass the key value"
                )
            )
        positions.append(columns.index(key))
    rows: list[tuple[Source, ...]] = []
    for number, values in enumerate(select.valuesLists, start=1):
        row: list[Source] = []
        for key, pos in zip(table.key_columns, positions, strict=True):
            value = values[pos] if pos < len(values) else None
            source = source_of(value, numbered) if value is not None else None
            if source is None:
                return Fixed(Refused(_bad_key(table, key, value, number)))
            row.append(source)
        rows.append(tuple(row))
    ordinal = next(i for i, n in enumerate(walk(root)) if n is select)
    return InsertPlan(table, tuple(rows), numbered, ordinal)


def _bad_key(table: ShardedTable, key: str, value: Any, row: int) -> str:
    where = f"row {row} of INSERT INTO {table.name}"
    if value is None:
        return f"{where} has no value for shard key column {key}; pass the key value"
    if isinstance(value, ast.SetToDefault):
        return (
            f"{where} sets shard key column {key} to DEFAULT, which would be computed on "
            "whichever shard runs it; pass the key value"
        )
    return (
        f"{where} sets shard key column {key} with an expression the router cannot "
        "evaluate; pass the key as a parameter or a constant"
    )


def _conflict_update(stmt: ast.InsertStmt, table: ShardedTable) -> str | None:
    clause = stmt.onConflictClause
    for res in getattr(clause, "targetList", None) or ():
        if res.name in table.key_columns:
            return (
                "UPDATE of a shard key column is refused: the row would move to another shard "
                f"(ON CONFLICT DO UPDATE of {table.name}.{res.name}); delete and insert it "
                "instead"
            )
    return None


def analyze_copy(
    stmt: ast.CopyStmt,
    sql: str,
    tables: Mapping[str, ShardedTable],
    table_columns: TableColumns | None,
) -> Plan | None:
    """The plan for ``COPY table ...``; None for ``COPY (query)`` (the caller reads the query)."""
    if stmt.relation is None:
        return None
    table = sharded_name(stmt.relation, tables)
    if table is None:
        return Fixed(Unsharded())
    if not stmt.is_from:
        return Fixed(
            NoKey(
                f"COPY {table.name} TO reads every shard; COPY (SELECT ... WHERE "
                f"{table.key_columns[0]} = ...) TO reads one",
                (table.name,),
            )
        )
    if stmt.filename is not None or stmt.is_program:
        return Fixed(
            Refused(
                f"COPY {table.name} FROM a server file or program cannot be split by shard; "
                "use COPY FROM STDIN and send the rows"
            )
        )
    named = [getattr(s, "sval", "") for s in stmt.attlist or ()]
    columns = _columns(named, table, table_columns, "COPY")
    if isinstance(columns, str):
        return Fixed(Refused(columns))
    missing = [k for k in table.key_columns if k not in columns]
    if missing:
        return Fixed(
            Refused(
                f"COPY {table.name} does not load shard key column {missing[0]}; include it "
                "in the column list"
            )
        )
    indexes = tuple(columns.index(k) for k in table.key_columns)
    return Fixed(CopyIn(table, columns, indexes, sql))
