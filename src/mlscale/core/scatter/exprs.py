"""Expressions the merger computes after the groups' rows are combined: the select
list and HAVING over merged aggregates, and the sort keys.

A closed set of small frozen nodes, evaluated with PostgreSQL's semantics
(:mod:`mlscale.core.scatter.pgvalues`); anything else in a merged expression is
refused by the planner. ``str(expr)`` is a readable form for plans shown to users.

Every value computed carries its PostgreSQL type (an OID, or None when unknown): a
:class:`Ref` takes the type of its column in the merged row, a :class:`Const` the
type PostgreSQL gives the literal, an operator the type PostgreSQL's operator
resolution gives (:mod:`mlscale.core.scatter.pgtypes`), so ``max(i4) - min(i4)``
raises ``integer out of range`` where the server would. Where a type is unknown the
Python value's own type decides (:func:`mlscale.core.scatter.pgvalues.arith`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlscale.core.scatter.pgtypes import (
    BOOL,
    arith_type,
    float_compare_operands,
    literal_type,
    number_type,
    typed_abs,
    typed_arith,
    typed_neg,
    typed_round,
)
from mlscale.core.scatter.pgvalues import arith, compare, pg_round

__all__ = [
    "Abs",
    "Arith",
    "BoolOp",
    "Compare",
    "Const",
    "Expr",
    "IsNull",
    "Neg",
    "Not",
    "Ref",
    "Round",
    "evaluate",
]


@dataclass(frozen=True, slots=True)
class Ref:
    """The value at ``index`` of the row being computed over (negative: from the end)."""

    index: int

    def __str__(self) -> str:
        return f"${self.index}"


@dataclass(frozen=True, slots=True)
class Const:
    """A literal: int (int4 if it fits, else int8), Decimal (numeric: a literal with a
    point, or an integer past int8), float, str, bool or None."""

    value: Any

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class Arith:
    """``left op right`` for ``op`` in ``+ - * / %``."""

    op: str
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True, slots=True)
class Neg:
    """``-arg``."""

    arg: Expr

    def __str__(self) -> str:
        return f"-{self.arg}"


@dataclass(frozen=True, slots=True)
class Abs:
    """``abs(arg)``."""

    arg: Expr

    def __str__(self) -> str:
        return f"abs({self.arg})"


@dataclass(frozen=True, slots=True)
class Round:
    """``round(arg)`` or ``round(arg, digits)``."""

    arg: Expr
    digits: Expr | None

    def __str__(self) -> str:
        return f"round({self.arg}{'' if self.digits is None else f', {self.digits}'})"


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right`` for ``op`` in ``= <> < > <= >=``."""

    op: str
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``a AND b ...`` / ``a OR b ...`` with SQL's three-valued logic."""

    op: str
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return "(" + f" {self.op.upper()} ".join(map(str, self.args)) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    """``NOT arg``."""

    arg: Expr

    def __str__(self) -> str:
        return f"NOT {self.arg}"


@dataclass(frozen=True, slots=True)
class IsNull:
    """``arg IS NULL`` (``IS NOT NULL`` when ``negated``)."""

    arg: Expr
    negated: bool

    def __str__(self) -> str:
        return f"{self.arg} IS {'NOT ' if self.negated else ''}NULL"


Expr = Ref | Const | Arith | Neg | Abs | Round | Compare | BoolOp | Not | IsNull

_COMPARISONS = {
    "=": lambda c: c == 0,
    "<>": lambda c: c != 0,
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}


Typed = tuple[Any, int | None]  # a value and its type's OID (None: not known)


def evaluate(expr: Expr, row: Sequence[Any], types: Sequence[int | None] | None = None) -> Any:
    """The value of ``expr`` over ``row``, whose values have the PostgreSQL types
    ``types`` (OIDs, None where unknown; no ``types``: none known). Raises
    MergeArithmeticError where PostgreSQL raises (division by zero, integer out of
    range) and TypeError on operands PostgreSQL would not accept."""
    return _typed(expr, row, types)[0]


def _typed(expr: Expr, row: Sequence[Any], types: Sequence[int | None] | None) -> Typed:
    if isinstance(expr, Ref):
        return row[expr.index], None if types is None else types[expr.index]
    if isinstance(expr, Const):
        return expr.value, literal_type(expr.value)
    if isinstance(expr, Arith):
        (a, left), (b, right) = _typed(expr.left, row, types), _typed(expr.right, row, types)
        left, right = number_type(left), number_type(right)
        if left is not None and right is not None:
            if a is None or b is None:
                return None, arith_type(expr.op, left, right)
            return typed_arith(expr.op, a, left, b, right)
        return arith(expr.op, a, b), None
    if isinstance(expr, Neg | Abs):
        value, oid = _typed(expr.arg, row, types)
        if value is None:
            return None, oid
        if isinstance(expr, Abs):
            return typed_abs(value, number_type(oid)), oid
        return typed_neg(value, number_type(oid)), oid
    if isinstance(expr, Round):
        value, oid = _typed(expr.arg, row, types)
        digits, digits_oid = (
            (None, None) if expr.digits is None else _typed(expr.digits, row, types)
        )
        if value is None or (expr.digits is not None and digits is None):
            return None, None
        number = number_type(oid)
        if number is not None:
            return typed_round(value, number, digits, digits_oid)
        return pg_round(value, digits), None
    if isinstance(expr, Compare):
        (a, left), (b, right) = _typed(expr.left, row, types), _typed(expr.right, row, types)
        if a is None or b is None:
            return None, BOOL
        a, b = float_compare_operands(a, number_type(left), b, number_type(right))
        return _COMPARISONS[expr.op](compare(a, b)), BOOL
    if isinstance(expr, BoolOp):
        # Left to right, stopping at the deciding value, as PostgreSQL evaluates them
        # in practice: `count(x) > 0 AND sum(y) / count(x) > 1` does not divide by 0.
        decisive = expr.op == "or"  # True decides an OR, False an AND
        unknown = False
        for arg in expr.args:
            value = _typed(arg, row, types)[0]
            if value is decisive:
                return decisive, BOOL
            unknown = unknown or value is None
        return (None if unknown else not decisive), BOOL
    if isinstance(expr, Not):
        value = _typed(expr.arg, row, types)[0]
        return (None if value is None else not value), BOOL
    value = _typed(expr.arg, row, types)[0]
    return ((value is not None) if expr.negated else (value is None)), BOOL
