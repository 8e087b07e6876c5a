"""Sharded table definitions: what a CREATE TABLE must satisfy to be sharded.

A sharded table's rows are placed by their shard key, so every constraint that
PostgreSQL enforces within one server must be decidable within one shard:

- the primary key contains the shard key (as in Citus). It also serves logical
  replication when slots move: PostgreSQL refuses UPDATE/DELETE on a published
  table whose row filter reads columns outside the replica identity;
- every UNIQUE constraint and EXCLUDE constraint contains the shard key, or two
  rows on two shards could both pass it;
- the key columns have types the key family hashes the same way (int2/int4/int8
  hash alike for equal values, text and varchar alike).

Pure: the DDL is parsed with PostgreSQL's own grammar (pglast); nothing runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError

from ..errors import ConfigError, SchemaError
from .keyroute import ShardedTable
from .keyroute.tree import sharded_name
from .slots import KeyType

__all__ = ["TableDef", "check_sharded_ddl", "check_sharded_table"]

# Key types a family of each type accepts as a column (equal values hash equally).
_COMPATIBLE: dict[KeyType, frozenset[KeyType]] = {
    **dict.fromkeys(
        (KeyType.INT2, KeyType.INT4, KeyType.INT8),
        frozenset({KeyType.INT2, KeyType.INT4, KeyType.INT8}),
    ),
    **dict.fromkeys((KeyType.TEXT, KeyType.VARCHAR), frozenset({KeyType.TEXT, KeyType.VARCHAR})),
    KeyType.UUID: frozenset({KeyType.UUID}),
    KeyType.BYTEA: frozenset({KeyType.BYTEA}),
}
_SERIAL = {"serial": "int4", "bigserial": "int8", "smallserial": "int2"}


@dataclass(frozen=True, slots=True)
class TableDef:
    """A CREATE TABLE that may be sharded: its name, columns in order, and key columns."""

    name: str
    schema: str | None
    columns: tuple[str, ...]
    column_types: tuple[str, ...]
    key_columns: tuple[str, ...]


def _type_name(col: ast.ColumnDef) -> str:
    names = [getattr(n, "sval", "") for n in (col.typeName.names if col.typeName else ()) or ()]
    name = names[-1] if names else ""
    return _SERIAL.get(name, name)


def _keys(constraint: ast.Constraint, column: str | None) -> tuple[str, ...]:
    if column is not None:  # a column constraint names no keys: it is its column's
        return (column,)
    if constraint.contype == ConstrType.CONSTR_EXCLUSION:
        out = []
        for pair in constraint.exclusions or ():
            elem = pair[0]
            if getattr(elem, "name", None) is None:
                return ()  # an expression: no column to check
            out.append(elem.name)
        return tuple(out)
    return tuple(k.sval for k in constraint.keys or ())


def _label(constraint: Any, keys: Sequence[str]) -> str:
    kind = {
        ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
        ConstrType.CONSTR_UNIQUE: "UNIQUE",
        ConstrType.CONSTR_EXCLUSION: "EXCLUDE",
    }[constraint.contype]
    name = f" {constraint.conname}" if constraint.conname else ""
    return f"{kind}{name} ({', '.join(keys)})"


def check_sharded_table(
    ddl: str, key_columns: Sequence[str], key_types: Sequence[KeyType]
) -> TableDef:
    """The table ``ddl`` creates, checked for sharding on ``key_columns``.

    ``key_types`` are the key family's types, one per key column. Raises
    :class:`SchemaError` saying what to change when the table cannot be sharded.
    """
    try:
        stmts = parse_sql(ddl)
    except ParseError as exc:
        raise SchemaError(f"the sharded table's DDL does not parse: {exc}") from None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.CreateStmt):
        raise SchemaError("a sharded table is declared by exactly one CREATE TABLE statement")
    stmt: Any = stmts[0].stmt
    rel = stmt.relation
    name = rel.relname
    if stmt.if_not_exists:
        raise SchemaError(
            f"{name}: CREATE TABLE IF NOT EXISTS could adopt an existing table whose rows "
            "are not placed by the map; drop IF NOT EXISTS"
        )
    if rel.relpersistence == "t":
        raise SchemaError(f"{name}: a temporary table cannot be sharded")
    if stmt.partbound is not None or stmt.inhRelations:
        raise SchemaError(f"{name}: partitions and inheritance children cannot be sharded")
    keys = tuple(key_columns)
    if not keys or len(set(keys)) != len(keys):
        raise SchemaError(f"{name}: the shard key needs one or more distinct columns")
    if len(keys) != len(key_types):
        raise SchemaError(
            f"{name}: the shard key has {len(keys)} column(s) but its key family "
            f"has {len(key_types)} type(s)"
        )
    columns: list[str] = []
    types: list[str] = []
    constraints: list[tuple[ast.Constraint, str | None]] = []
    for elt in stmt.tableElts or ():
        if isinstance(elt, ast.ColumnDef) and elt.colname is not None:
            columns.append(elt.colname)
            types.append(_type_name(elt))
            constraints.extend((c, elt.colname) for c in elt.constraints or ())
        elif isinstance(elt, ast.Constraint):
            constraints.append((elt, None))
        else:  # LIKE other_table: its columns are unknown here
            raise SchemaError(f"{name}: write the columns out (CREATE TABLE ... LIKE is not read)")
    for key, family_type in zip(keys, key_types, strict=True):
        if key not in columns:
            raise SchemaError(f"{name}: shard key column {key!r} is not a column of the table")
        declared = types[columns.index(key)]
        try:
            column_type = KeyType.parse(declared)
        except ConfigError:
            raise SchemaError(
                f"{name}: shard key column {key!r} has type {declared}, which cannot be "
                f"hashed like the family's {family_type}"
            ) from None
        if column_type not in _COMPATIBLE[family_type]:
            raise SchemaError(
                f"{name}: shard key column {key!r} is {column_type} but its key family "
                f"hashes {family_type}; equal values would land on different shards"
            )
    has_primary = False
    for constraint, column in constraints:
        if constraint.contype not in (
            ConstrType.CONSTR_PRIMARY,
            ConstrType.CONSTR_UNIQUE,
            ConstrType.CONSTR_EXCLUSION,
        ):
            continue
        cols = _keys(constraint, column)
        has_primary |= constraint.contype == ConstrType.CONSTR_PRIMARY
        missing = [k for k in keys if k not in cols]
        if missing:
            raise SchemaError(
                f"{name}: {_label(constraint, cols)} does not contain the shard key "
                f"({', '.join(keys)}); rows on two shards could both pass it. Add "
                f"{', '.join(missing)} to it"
            )
    if not has_primary:
        raise SchemaError(
            f"{name}: a sharded table needs a PRIMARY KEY that contains the shard key "
            f"({', '.join(keys)}): rows are moved between shards by it"
        )
    return TableDef(name, rel.schemaname, tuple(columns), tuple(types), keys)


_KEYED = (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_EXCLUSION)


def _missing(table: ShardedTable, columns: Sequence[str]) -> list[str]:
    return [k for k in table.key_columns if k not in columns]


def check_sharded_ddl(ddl: str, tables: Mapping[str, ShardedTable]) -> None:
    """Refuse DDL on sharded tables that would break what sharding relies on.

    Refused with a :class:`SchemaError` saying what to do instead: dropping,
    renaming or moving a sharded table to another schema (the catalog would
    still route by it: use ``cluster.drop_sharded_table``); a UNIQUE, PRIMARY
    KEY or EXCLUDE constraint or a unique index without the shard key (two
    groups could each accept a duplicate); ``CREATE INDEX CONCURRENTLY`` (the
    DDL runs in one transaction per group). Other DDL passes.
    """
    try:
        stmts = parse_sql(ddl)
    except ParseError:
        return  # the key router has already said what it could of unparsable text
    for raw in stmts:
        stmt: Any = raw.stmt
        if isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
            for names in stmt.objects or ():
                parts = [getattr(n, "sval", "") for n in names]
                if parts[-1] in tables and (len(parts) == 1 or parts[-2] == "public"):
                    raise SchemaError(
                        f"{parts[-1]} is sharded: drop it with cluster.drop_sharded_table"
                        f"({parts[-1]!r}), which also forgets it in the catalog"
                    )
        elif isinstance(stmt, ast.RenameStmt | ast.AlterObjectSchemaStmt):
            kind = getattr(stmt, "renameType", None) or getattr(stmt, "objectType", None)
            table = sharded_name(stmt.relation, tables)
            if table is not None and kind == ObjectType.OBJECT_TABLE:
                raise SchemaError(
                    f"{table.name} is sharded: renaming it or moving it to another schema "
                    "would leave the catalog routing by the old name"
                )
        elif isinstance(stmt, ast.IndexStmt):
            table = sharded_name(stmt.relation, tables)
            if table is None:
                continue
            if stmt.concurrent:
                raise SchemaError(
                    f"CREATE INDEX CONCURRENTLY on {table.name}: broadcast DDL runs in one "
                    "transaction per group; create the index without CONCURRENTLY"
                )
            columns = [e.name for e in stmt.indexParams or () if e.name is not None]
            if stmt.unique and _missing(table, columns):
                raise SchemaError(
                    f"a unique index on {table.name} must contain its shard key "
                    f"({', '.join(table.key_columns)}); two groups could each accept a duplicate"
                )
        elif isinstance(stmt, ast.AlterTableStmt):
            table = sharded_name(stmt.relation, tables)
            if table is None:
                continue
            for cmd in stmt.cmds or ():
                constraints: list[tuple[Any, str | None]] = []
                if cmd.subtype == AlterTableType.AT_AddConstraint and cmd.def_ is not None:
                    constraints.append((cmd.def_, None))
                elif cmd.subtype == AlterTableType.AT_AddColumn and cmd.def_ is not None:
                    col = cmd.def_
                    constraints += [(c, col.colname) for c in col.constraints or ()]
                for constraint, column in constraints:
                    if constraint.contype not in _KEYED:
                        continue
                    cols = _keys(constraint, column)
                    if _missing(table, cols):
                        raise SchemaError(
                            f"{table.name}: {_label(constraint, cols)} does not contain the "
                            f"shard key ({', '.join(table.key_columns)}); rows on two groups "
                            "could both pass it"
                        )
