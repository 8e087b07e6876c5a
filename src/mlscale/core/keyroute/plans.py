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
from pglast.stream import RawStream

from ..sqltree import parse_fresh, walk
from .placeholders import Numbered, render
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

__all__ = ["ByKeysPlan", "Fixed", "InsertPlan", "Plan"]

G = TypeVar("G", bound=Hashable)


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

    def split(
        self, sql: str, params: Params, keys: int, groups: Mapping[G, Sequence[int]]
    ) -> dict[G, tuple[str, Params]]:
        spread = self.specs[0].spread
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

    def split(
        self, sql: str, params: Params, keys: int, groups: Mapping[G, Sequence[int]]
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
