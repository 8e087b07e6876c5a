"""Shard keys read from SQL: tables of statements and what the key router answers.

One file per statement kind, as in ``tests/unit/routing/``; each row is a statement
as a psycopg user writes it, its params, and the expected result (its keys, or a
fragment of its reason). ``test_table.py`` counts the rows. The split tests bind
the produced text and params back into literal SQL and compare what pglast parses
with the statement expected for each shard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pglast import parse_sql
from pglast.parser import scan
from pglast.stream import RawStream

from mlscale.core.keyroute import (
    Broadcast,
    ByKeys,
    CopyIn,
    InsertRows,
    KeyReader,
    KeyReading,
    NoKey,
    Params,
    Refused,
    ShardedTable,
    Unsharded,
)

USERS = ShardedTable("users", ("id",), "user")
ORDERS = ShardedTable("orders", ("user_id",), "user")
ITEMS = ShardedTable("order_items", ("user_id",), "user")
EVENTS = ShardedTable("events", ("tenant", "id"), "tenant")
FEATURES = ShardedTable("features", ("entity_id",), "entity")
TABLES = {t.name: t for t in (USERS, ORDERS, ITEMS, EVENTS, FEATURES)}
COLUMNS = {
    "users": ("id", "name", "email"),
    "events": ("tenant", "id", "payload"),
    "features": ("entity_id", "name", "value"),
}
ROUTER = KeyReader(TABLES, table_columns=COLUMNS)


# -- rows and checks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    kind: type
    table: str | None = None
    keys: tuple[Any, ...] = ()
    reason: str = ""
    unsplittable: str | None = None
    columns: tuple[str, ...] = ()
    key_indexes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Row:
    sql: str
    params: Params
    want: Want
    id: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.id or " ".join(self.sql.split())[:70]


def row(sql: str, params: Params, want: Want, id: str | None = None) -> Row:
    return Row(sql, params, want, id)


def _keys(table: str, keys: tuple[Any, ...]) -> tuple[Any, ...]:
    width = len(TABLES[table].key_columns)
    return tuple((k,) if width == 1 else tuple(k) for k in keys)


def by_keys(table: str, *keys: Any, unsplittable: str | None = None) -> Want:
    return Want(ByKeys, table, _keys(table, keys), unsplittable=unsplittable)


def insert_rows(table: str, *keys: Any) -> Want:
    return Want(InsertRows, table, _keys(table, keys))


def copy_in(table: str, columns: tuple[str, ...], key_indexes: tuple[int, ...]) -> Want:
    return Want(CopyIn, table, columns=columns, key_indexes=key_indexes)


def no_key(reason: str) -> Want:
    return Want(NoKey, reason=reason)


def refused(reason: str) -> Want:
    return Want(Refused, reason=reason)


def broadcast(reason: str) -> Want:
    return Want(Broadcast, reason=reason)


UNSHARDED = Want(Unsharded)


def check(r: Row, router: KeyReader = ROUTER) -> KeyReading:
    got = router.read(r.sql, r.params)
    w = r.want
    assert isinstance(got, w.kind), f"{r.sql!r}: {got}"
    if isinstance(got, ByKeys | InsertRows):
        assert got.table.name == w.table, got
        assert got.keys == w.keys, got
        assert got.sql is r.sql and got.params is r.params
    if isinstance(got, ByKeys):
        if w.unsplittable is None:
            assert got.unsplittable is None, got
        else:
            assert got.unsplittable is not None and w.unsplittable in got.unsplittable, got
    if isinstance(got, CopyIn):
        assert (got.table.name, got.columns, got.key_indexes) == (
            w.table,
            w.columns,
            w.key_indexes,
        )
    if isinstance(got, NoKey | Refused | Broadcast):
        assert w.reason in got.reason, f"{r.sql!r}: reason {got.reason!r} lacks {w.reason!r}"
    return got


def ids(r: Row) -> str:
    return str(r)


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple):
        return "ARRAY[" + ", ".join(_literal(x) for x in v) + "]"
    return "'" + str(v).replace("'", "''") + "'"


def bind(sql: str, params: Params) -> str:
    """The statement with its params inlined as literals, as the server would see it."""
    if params is None:
        return sql
    if "%" not in sql and "$" in sql:  # raw-cursor style
        out, cur = [], 0
        for t in scan(sql):
            if t.name == "PARAM":
                out += [sql[cur : t.start], _literal(params[int(sql[t.start + 1 : t.end + 1]) - 1])]
                cur = t.end + 1
        return "".join(out) + sql[cur:]
    position = iter(range(10_000))

    def one(m: re.Match[str]) -> str:
        if m.group() == "%%":
            return "%"
        if m.group(1):
            assert isinstance(params, dict)
            return _literal(params[m.group(1)])
        assert isinstance(params, list | tuple)
        return _literal(params[next(position)])

    return re.sub(r"%%|%\((\w+)\)s|%s", one, sql)


def same_sql(got: str, want: str) -> None:
    """Equal once parsed by pglast and printed back (spacing and casing aside)."""
    assert RawStream()(parse_sql(got)) == RawStream()(parse_sql(want)), got
