"""Where a key value comes from (a parameter or a literal), compiled once per statement text.

A compiled source costs one ``params[i]`` at routing time. Casts written in the
SQL are applied the way the server would for the common key types (``'5'::int8``
is the integer 5, ``%s::text`` of 5 is ``'5'``), so the caller hashes what the
server compares; other values are passed as they are, and the caller coerces them
to the key column's type before hashing (an untyped ``'5'`` compared with a bigint
key is still the string here).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from pglast import ast

from .placeholders import Numbered
from .results import Key

__all__ = [
    "ArraySpread",
    "Const",
    "KeySpec",
    "ListSpread",
    "Param",
    "ParamsMismatch",
    "Source",
    "source_of",
]

Convert: TypeAlias = Callable[[Any], Any]


class ParamsMismatch(ValueError):
    """The params passed do not fit the statement's placeholders (or a key's type)."""


def _to_int(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return v
    if isinstance(v, Decimal) and v == v.to_integral_value():
        return int(v)
    return v


def _to_text(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _to_uuid(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return uuid.UUID(v)
        except ValueError:
            return v
    return v


def _to_numeric(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return Decimal(v)
        except InvalidOperation:
            return v
    return v


_CASTS: dict[str, Convert] = {
    **dict.fromkeys(("int2", "int4", "int8", "smallint", "integer", "bigint", "int"), _to_int),
    **dict.fromkeys(("text", "varchar", "bpchar", "char", "name", "citext"), _to_text),
    "uuid": _to_uuid,
    "numeric": _to_numeric,
    "decimal": _to_numeric,
}


@dataclass(frozen=True, slots=True)
class Const:
    """A literal written in the SQL (casts already applied)."""

    value: Any

    def get(self, params: Any) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class Param:
    """Parameter ``$number``, read from the caller's params at ``key``."""

    number: int
    key: int | str
    convert: Convert | None = None
    array: bool = False  # cast to an array type: ``convert`` applies to each element

    def raw(self, params: Any) -> Any:
        try:
            return params[self.key]
        except (IndexError, KeyError, TypeError) as exc:
            raise ParamsMismatch(_mismatch(self.key, params)) from exc

    def get(self, params: Any) -> Any:
        value = self.raw(params)
        return value if self.convert is None else self.convert(value)


Source: TypeAlias = Const | Param


def _mismatch(key: int | str, params: Any) -> str:
    if params is None:
        return "the statement has parameters but none were passed"
    if isinstance(key, str):
        if not isinstance(params, Mapping):
            return "the statement has named placeholders (%(name)s): pass params as a mapping"
        return f"no value for placeholder %({key})s in params"
    if isinstance(params, Mapping):
        return "the statement has positional placeholders (%s): pass params as a sequence"
    return f"the statement has more placeholders than the {len(params)} params passed"


def _cast_name(type_name: ast.TypeName | None) -> tuple[str, bool]:
    if type_name is None:
        return "", False
    names = [getattr(n, "sval", "") for n in type_name.names or ()]
    return (names[-1] if names else ""), bool(type_name.arrayBounds)


def source_of(node: Any, numbered: Numbered) -> Source | None:
    """The source of a value expression: ``$n``, a literal, or a cast of one; else None."""
    convert: Convert | None = None
    array = False
    outermost = True
    while isinstance(node, ast.TypeCast):
        if outermost:  # the outermost cast decides the type compared
            name, array = _cast_name(node.typeName)
            convert = _CASTS.get(name)
            outermost = False
        node = node.arg
    if isinstance(node, ast.ParamRef):
        n = node.number or 0
        key: int | str = numbered.keys[n - 1] if 0 < n <= len(numbered.keys) else n - 1
        return Param(n, key, convert, array)
    if isinstance(node, ast.A_Const) and not array:
        value = _literal(node)
        return Const(convert(value) if convert is not None and value is not None else value)
    return None


def _literal(node: ast.A_Const) -> Any:
    if node.isnull:
        return None
    val = node.val
    if isinstance(val, ast.Integer):
        return val.ival
    if isinstance(val, ast.Float):  # also integers past int4: '9999999999'
        text = val.fval or "0"
        return int(text) if text.lstrip("-").isdigit() else Decimal(text)
    if isinstance(val, ast.String):
        return val.sval
    if isinstance(val, ast.Boolean):
        return bool(val.boolval)
    return getattr(val, "bsval", None)


@dataclass(frozen=True, slots=True)
class ListSpread:
    """An ``IN (...)`` list or ``ARRAY[...]``: item ``i`` gives ``columns`` their values.

    ``node`` is the ordinal (in ``sqltree.walk`` order) of the node whose list the
    split rewrites: an ``A_Expr`` (``IN``) or an ``A_ArrayExpr``.
    """

    columns: tuple[int, ...]
    items: tuple[tuple[Source, ...], ...]
    node: int
    attribute: str  # "rexpr" (IN) or "elements" (ARRAY)

    @property
    def size(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class ArraySpread:
    """``key = ANY(%s)``: one key per element of the list parameter."""

    column: int
    param: Param
    shared: bool  # the parameter appears elsewhere in the statement too
    node: int  # ordinal of the ParamRef, for the rewrite when ``shared``

    @property
    def size(self) -> int:
        return 1 << 20  # unknown until run: rank after any literal list


Spread: TypeAlias = ListSpread | ArraySpread


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How to read a table's keys: a source per key column, or a spread for some."""

    fixed: tuple[Source | None, ...]
    spread: Spread | None = None

    @property
    def rank(self) -> tuple[int, int]:
        """Lower is better to route by: one key first, then the shortest list."""
        return (0, 1) if self.spread is None else (1, self.spread.size)

    def keys(self, params: Any) -> tuple[Key, ...]:
        """The keys, reading ``params``. Raises :class:`ParamsMismatch`."""
        if self.spread is None:
            if len(self.fixed) == 1:  # the hot path: one key column, one value
                only = self.fixed[0]
                return ((only.get(params) if only is not None else None,),)
            return (tuple(s.get(params) for s in self.fixed if s is not None),)
        base = [None if s is None else s.get(params) for s in self.fixed]
        spread = self.spread
        if isinstance(spread, ListSpread):
            out = []
            for item in spread.items:
                key = list(base)
                for column, source in zip(spread.columns, item, strict=True):
                    key[column] = source.get(params)
                out.append(tuple(key))
            return tuple(out)
        values = array_value(spread.param, params)
        convert = spread.param.convert if spread.param.array else None
        keys = []
        for v in values:
            key = list(base)
            key[spread.column] = v if convert is None else convert(v)
            keys.append(tuple(key))
        return tuple(keys)


def array_value(param: Param, params: Any) -> Sequence[Any]:
    """The list/tuple a ``= ANY(%s)`` parameter holds; None is an empty list."""
    value = param.raw(params)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ParamsMismatch(
            f"'= ANY(%s)' on the shard key needs a list or tuple parameter, "
            f"got {type(value).__name__}"
        )
    return value
