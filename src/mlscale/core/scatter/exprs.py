"""Expressions the merger computes after the groups' rows are combined: the select
list and HAVING over merged aggregates, and the sort keys.

A closed set of small frozen nodes, evaluated with PostgreSQL's semantics
(:mod:`mlscale.core.scatter.pgvalues`); anything else in a merged expression is
refused by the planner. ``str(expr)`` is a readable form for plans shown to users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlscale.core.scatter.pgvalues import arith, compare, pg_round

__all__ = [
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
    """A literal: int, Decimal (a literal with a point is numeric), float, str, bool or None."""

    value: Any

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class Arith:
    """``left op right`` for ``op`` in ``+ - * /``."""

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


Expr = Ref | Const | Arith | Neg | Round | Compare | BoolOp | Not | IsNull

_COMPARISONS = {
    "=": lambda c: c == 0, "<>": lambda c: c != 0, "<": lambda c: c < 0,
    ">": lambda c: c > 0, "<=": lambda c: c <= 0, ">=": lambda c: c >= 0,
}


def evaluate(expr: Expr, row: Sequence[Any]) -> Any:
    """The value of ``expr`` over ``row``; raises MergeArithmeticError where PostgreSQL
    raises (division by zero) and TypeError on operands PostgreSQL would not accept."""
    if isinstance(expr, Ref):
        return row[expr.index]
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Arith):
        return arith(expr.op, evaluate(expr.left, row), evaluate(expr.right, row))
    if isinstance(expr, Neg):
        value = evaluate(expr.arg, row)
        return None if value is None else -value
    if isinstance(expr, Round):
        digits = None if expr.digits is None else evaluate(expr.digits, row)
        if expr.digits is not None and digits is None:
            return None
        return pg_round(evaluate(expr.arg, row), digits)
    if isinstance(expr, Compare):
        left, right = evaluate(expr.left, row), evaluate(expr.right, row)
        if left is None or right is None:
            return None
        return _COMPARISONS[expr.op](compare(left, right))
    if isinstance(expr, BoolOp):
        values = [evaluate(arg, row) for arg in expr.args]
        decisive = expr.op == "or"  # True decides an OR, False an AND
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if isinstance(expr, Not):
        value = evaluate(expr.arg, row)
        return None if value is None else not value
    value = evaluate(expr.arg, row)
    return (value is not None) if expr.negated else (value is None)
