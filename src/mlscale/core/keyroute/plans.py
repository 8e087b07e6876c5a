"""Compiled plans: what a statement text needs at routing time, and how to cut it per shard.

A plan is made once per statement text (parsing is the expensive part) and then
only reads params: a hot ``SELECT ... WHERE id = %s`` costs a dict lookup in the
router's cache and ``params[0]`` here. Splitting takes a tree of its own
(:func:`~mlscale.core.sqltree.parse_fresh`: the cached plan keeps no tree, and the
shared parse cache's trees are read-only, while a rewrite and pglast's ``RawStream``
both write into nodes), rewrites it, deparses it and renders the parameters back
in the caller's style.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pglast import ast
from pglast.enums import A_Expr_Kind
from pglast.stream import RawStream

from ..sqltree import parse_fresh, walk
from .placeholders import Numbered, Style, render
from .results import (
    ByKeys,
    InsertRows,
    Key,
    KeyReading,
    NoKey,
    Params,
    Refused,
    ShardedTable,
)
from .values import ArraySpread, KeySpec, ListSpread, ParamsMismatch, Source, array_value

__all__ = ["LONG_KEY_LIST", "ByKeysPlan", "Fixed", "InsertPlan", "Plan"]

G = TypeVar("G", bound=Hashable)

LONG_KEY_LIST = 100
"""A list of more key items than this (``key IN (%s, ...)``, ``key = ANY(ARRAY[%s, ...])``)
is sent as one array parameter when split: past 65,535 parameters the driver cannot
send a statement at all, and well before that one array parses faster than a
parameter per key. Shorter lists keep the text as the caller wrote it."""


class Plan(Protocol):
    """A compiled statement: answers a route for one call's params."""

    def read(self, sql: str, params: Params) -> KeyReading: ...


@dataclass(frozen=True, slots=True)
class Fixed:
    """A route that does not depend on the params."""

    result: KeyReading

    def read(self, sql: str, params: Params) -> KeyReading:
        return self.result


def _nodes(numbered: Numbered) -> list[ast.Node]:
    """The statement parsed afresh, its nodes in ``walk`` order (node 0 is the statement)."""
    (raw,) = parse_fresh(numbered.text)
    return list(walk(raw.stmt))


def _value_of(numbered: Numbered, params: Any) -> Any:
    keys = numbered.keys

    def value(n: int) -> Any:
        return params[keys[n - 1]]

    return value


def _ordered(indexes: Sequence[int]) -> list[int]:
    return sorted(set(indexes))


@dataclass(frozen=True, slots=True)
class ByKeysPlan:
    """SELECT/UPDATE/DELETE pinned by ``specs``.

    ``specs[0]`` gives the keys (maybe many). Further specs pin other parts of the
    statement (a UNION arm, a WITH query) separately: each must then give the same
    single key at run time, or the statement spans shards.
    """

    table: ShardedTable
    specs: tuple[KeySpec, ...]
    numbered: Numbered
    unsplittable: str | None
    tables: tuple[str, ...]

    def read(self, sql: str, params: Params) -> KeyReading:
        try:
            keys = self.specs[0].keys(params)
            if len(self.specs) > 1:
                for other in self.specs[1:]:
                    also = other.keys(params)
                    if len(keys) != 1 or also != keys:
                        return NoKey(
                            "the statement pins parts of it to different shard keys "
                            f"({_show(keys)} and {_show(also)}), so they may live on "
                            "different shards; send one statement per key",
                            self.tables,
                        )
        except ParamsMismatch as exc:
            return Refused(str(exc))
        if len(keys) > 1:
            return ByKeys(self.table, keys, sql, params, self.unsplittable, self)
        return ByKeys(self.table, keys, sql, params)

    def binds_array(self, key_types: Sequence[str]) -> bool:
        spread = self.specs[0].spread
        return (
            isinstance(spread, ListSpread)
            and spread.size > LONG_KEY_LIST
            and len(spread.columns) == 1  # a row IN list of a composite key stays as it is
            and spread.columns[0] < len(key_types)
            and self.numbered.style is not Style.NONE  # without params there is no limit
        )

    def split(
        self,
        sql: str,
        params: Params,
        keys: int,
        groups: Mapping[G, Sequence[int]],
        key_types: Sequence[str] = (),
    ) -> dict[G, tuple[str, Params]]:
        spread = self.specs[0].spread
        if isinstance(spread, ListSpread) and self.binds_array(key_types):
            return self._split_as_array(spread, key_types[spread.columns[0]], params, groups)
        if isinstance(spread, ArraySpread):
            values = array_value(spread.param, params)
            if not spread.shared:
                return {
                    g: (sql, _replaced(params, spread.param.key, values, _ordered(ix)))
                    for g, ix in groups.items()
                }
            return self._split_shared_array(spread, values, params, groups)
        if not isinstance(spread, ListSpread):  # pragma: no cover - one key never splits
            raise ValueError("a statement with one key cannot be split")
        nodes = _nodes(self.numbered)
        target = nodes[spread.node]
        items = tuple(getattr(target, spread.attribute))
        value_of = _value_of(self.numbered, params)
        out: dict[G, tuple[str, Params]] = {}
        for group, indexes in groups.items():
            setattr(target, spread.attribute, tuple(items[i] for i in _ordered(indexes)))
            out[group] = render(RawStream()(nodes[0]), self.numbered, value_of)
        return out

    def _split_as_array(
        self,
        spread: ListSpread,
        key_type: str,
        params: Params,
        groups: Mapping[G, Sequence[int]],
    ) -> dict[G, tuple[str, Params]]:
        # key IN ($1, ..., $n) -> key = ANY($m::type[]) and key = ANY(ARRAY[$1, ...]) ->
        # key = ANY($m::type[]): the same rows (PostgreSQL plans an IN list as = ANY of
        # an array). The cast to the key's type lets the server compare what the router
        # hashed whatever type the driver gives the list (text for strings, say).
        nodes = _nodes(self.numbered)
        fresh = len(self.numbered.keys) + 1
        array = ast.TypeCast(
            arg=ast.ParamRef(number=fresh),
            typeName=ast.TypeName(
                names=(ast.String(sval=str(key_type)),), typemod=-1, arrayBounds=(ast.Integer(-1),)
            ),
        )
        target = nodes[spread.node]
        expr = target if spread.attribute == "rexpr" else _any_of(nodes, target)
        if not isinstance(expr, ast.A_Expr):
            raise RuntimeError("the statement no longer parses as its plan recorded")
        expr.kind = A_Expr_Kind.AEXPR_OP_ANY
        expr.rexpr = array
        text = RawStream()(nodes[0])
        original = _value_of(self.numbered, params)
        out: dict[G, tuple[str, Params]] = {}
        for group, indexes in groups.items():
            values = [spread.items[i][0].get(params) for i in _ordered(indexes)]

            def value_of(n: int, values: list[Any] = values) -> Any:
                return values if n == fresh else original(n)

            out[group] = render(text, self.numbered, value_of)
        return out

    def _split_shared_array(
        self,
        spread: ArraySpread,
        values: Sequence[Any],
        params: Params,
        groups: Mapping[G, Sequence[int]],
    ) -> dict[G, tuple[str, Params]]:
        # The list parameter is used elsewhere too: give the ANY its own new parameter.
        nodes = _nodes(self.numbered)
        fresh = len(self.numbered.keys) + 1
        param = nodes[spread.node]
        if not isinstance(param, ast.ParamRef):
            raise RuntimeError("the statement no longer parses as its plan recorded")
        param.number = fresh
        text = RawStream()(nodes[0])
        original = _value_of(self.numbered, params)
        out: dict[G, tuple[str, Params]] = {}
        for group, indexes in groups.items():
            sub = _sublist(values, _ordered(indexes))

            def value_of(n: int, sub: Any = sub) -> Any:
                return sub if n == fresh else original(n)

            out[group] = render(text, self.numbered, value_of)
        return out


def _any_of(nodes: Sequence[ast.Node], target: ast.Node) -> ast.A_Expr:
    """The ``key = ANY(...)`` whose right side is ``target`` (an ``ARRAY[...]``)."""
    for node in nodes:
        if isinstance(node, ast.A_Expr) and node.rexpr is target:
            return node
    raise RuntimeError("the statement no longer parses as its plan recorded")


def _sublist(values: Sequence[Any], indexes: list[int]) -> Any:
    sub = [values[i] for i in indexes]
    return tuple(sub) if isinstance(values, tuple) else sub


def _replaced(params: Params, key: int | str, values: Sequence[Any], indexes: list[int]) -> Params:
    sub = _sublist(values, indexes)
    if isinstance(params, Mapping):
        return {**params, str(key): sub}
    if params is None or not isinstance(key, int):
        raise RuntimeError("a positional parameter needs a sequence of params")
    copy = list(params)
    copy[key] = sub
    return tuple(copy) if isinstance(params, tuple) else copy


def _show(keys: tuple[Key, ...]) -> str:
    shown = ", ".join(repr(k[0] if len(k) == 1 else k) for k in keys[:3])
    return shown + (", ..." if len(keys) > 3 else "")


@dataclass(frozen=True, slots=True)
class InsertPlan:
    """``INSERT ... VALUES``: per row, the sources of its key columns.

    ``values_node`` is the ordinal of the ``SelectStmt`` holding ``valuesLists``.
    """

    table: ShardedTable
    rows: tuple[tuple[Source, ...], ...]
    numbered: Numbered
    values_node: int

    def read(self, sql: str, params: Params) -> KeyReading:
        try:
            keys = tuple(tuple(s.get(params) for s in row) for row in self.rows)
        except ParamsMismatch as exc:
            return Refused(str(exc))
        return InsertRows(self.table, keys, sql, params, self if len(keys) > 1 else None)

    def binds_array(self, key_types: Sequence[str]) -> bool:
        return False  # each row's values stay in its row

    def split(
        self,
        sql: str,
        params: Params,
        keys: int,
        groups: Mapping[G, Sequence[int]],
        key_types: Sequence[str] = (),
    ) -> dict[G, tuple[str, Params]]:
        nodes = _nodes(self.numbered)
        values = nodes[self.values_node]
        if not isinstance(values, ast.SelectStmt):
            raise RuntimeError("the statement no longer parses as its plan recorded")
        rows = tuple(values.valuesLists or ())
        value_of = _value_of(self.numbered, params)
        out: dict[G, tuple[str, Params]] = {}
        for group, indexes in groups.items():
            values.valuesLists = tuple(rows[i] for i in _ordered(indexes))
            out[group] = render(RawStream()(nodes[0]), self.numbered, value_of)
        return out
