"""PostgreSQL's number types for values computed after a merge: which type an
operator returns, and the arithmetic of that type, overflow and all.

A merged value is a Python value (as psycopg returns it) and the OID of its
PostgreSQL type, or None when the type is not known (then :func:`pgvalues.arith`
reads a type from the Python value, as before types were carried). The types
tracked are int2, int4, int8, numeric, float4 and float8; any other OID is treated
as unknown by the arithmetic here.

Operator resolution, as PostgreSQL 15's catalog makes it for ``+ - * / %``:
int2 op int2 is int2, int2 op int4 is int4, either with int8 is int8, any integer
with numeric is numeric, float4 op float4 is float4, any other mix with a float is
float8; there is no float ``%``. Integer results out of their type's range raise
PostgreSQL's ``smallint/integer/bigint out of range``; integer ``/`` truncates toward
zero and ``%`` takes the dividend's sign; float results that overflow or underflow
raise ``value out of range: overflow/underflow``; ``x / 0`` raises ``division by zero``
except for a NaN dividend (float8 and numeric both return NaN).
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from typing import Any

from mlscale.core.scatter.pgvalues import (
    DIVISION_BY_ZERO,
    OUT_OF_RANGE,
    MergeArithmeticError,
    numeric_arith,
    pg_round,
)

__all__ = [
    "BOOL",
    "FLOAT4",
    "FLOAT8",
    "INT2",
    "INT4",
    "INT8",
    "NUMERIC",
    "arith_type",
    "float_compare_operands",
    "literal_type",
    "number_type",
    "typed_abs",
    "typed_arith",
    "typed_neg",
    "typed_round",
]

# pg_type OIDs (fixed in every PostgreSQL release).
BOOL = 16
INT8 = 20
INT2 = 21
INT4 = 23
FLOAT4 = 700
FLOAT8 = 701
NUMERIC = 1700

_NAMES = {
    INT2: "smallint",
    INT4: "integer",
    INT8: "bigint",
    NUMERIC: "numeric",
    FLOAT4: "real",
    FLOAT8: "double precision",
}
_INT_BITS = {INT2: 16, INT4: 32, INT8: 64}
_INT_RANK = {INT2: 0, INT4: 1, INT8: 2}
_FLOATS = frozenset({FLOAT4, FLOAT8})


def number_type(oid: int | None) -> int | None:
    """``oid`` if it is one of the number types tracked here, else None."""
    return oid if oid in _NAMES else None


def literal_type(value: Any) -> int | None:
    """The type PostgreSQL gives a literal: an integer is int4 if it fits, int8 if it
    fits, numeric past that; a literal with a point or exponent is numeric."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return INT4
        return INT8 if -(2**63) <= value < 2**63 else NUMERIC
    if isinstance(value, Decimal):
        return NUMERIC
    if isinstance(value, float):
        return FLOAT8
    return None


def arith_type(op: str, left: int, right: int) -> int:
    """The result type of ``left op right`` for two tracked number types; TypeError
    where PostgreSQL has no such operator (float ``%``)."""
    if left in _FLOATS or right in _FLOATS:
        if op == "%":
            raise TypeError(f"operator does not exist: {_NAMES[left]} % {_NAMES[right]}")
        return FLOAT4 if left == right == FLOAT4 else FLOAT8
    if NUMERIC in (left, right):
        return NUMERIC
    return left if _INT_RANK[left] >= _INT_RANK[right] else right


def _check_int(value: int, oid: int) -> int:
    bits = _INT_BITS[oid]
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise MergeArithmeticError(f"{_NAMES[oid]} out of range", sqlstate=OUT_OF_RANGE)
    return value


def _int_arith(op: str, a: int, b: int, oid: int) -> int:
    if op in ("/", "%"):
        if b == 0:
            raise MergeArithmeticError("division by zero", sqlstate=DIVISION_BY_ZERO)
        if op == "%":
            remainder = abs(a) % abs(b)
            return -remainder if a < 0 else remainder
        quotient = abs(a) // abs(b)
        return _check_int(quotient if (a >= 0) == (b >= 0) else -quotient, oid)
    return _check_int(a + b if op == "+" else (a - b if op == "-" else a * b), oid)


def _to_numeric(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def _to_float(value: Any) -> float:
    result = float(value)
    if math.isinf(result) and isinstance(value, Decimal) and value.is_finite():
        raise MergeArithmeticError("value out of range: overflow", sqlstate=OUT_OF_RANGE)
    return result


def _float4(value: float) -> float:
    # float4 arithmetic: the float8 result rounded to float4 is the float4 result for
    # + - * / (a double holds more than twice float4's precision).
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:  # older Pythons refuse to pack what rounds to infinity
        return math.copysign(math.inf, value)


def _float_arith(op: str, x: float, y: float, oid: int) -> float:
    # float.c: float8_pl/mi/mul/div and their float4 twins.
    if op == "/":
        if y == 0.0:
            if math.isnan(x):
                return x
            raise MergeArithmeticError("division by zero", sqlstate=DIVISION_BY_ZERO)
        result = x / y
    else:
        result = x + y if op == "+" else (x - y if op == "-" else x * y)
    if oid == FLOAT4:
        result = _float4(result)
    if math.isinf(result) and not math.isinf(x) and not (op != "/" and math.isinf(y)):
        raise MergeArithmeticError("value out of range: overflow", sqlstate=OUT_OF_RANGE)
    if (
        result == 0.0
        and x != 0.0
        and op in ("*", "/")
        and (y != 0.0 if op == "*" else not math.isinf(y))
    ):
        raise MergeArithmeticError("value out of range: underflow", sqlstate=OUT_OF_RANGE)
    return result


def typed_arith(op: str, a: Any, left: int, b: Any, right: int) -> tuple[Any, int]:
    """``a op b`` (neither NULL) of the tracked types ``left`` and ``right``, with the
    result's type; raises as PostgreSQL would (see the module docstring)."""
    oid = arith_type(op, left, right)
    if oid in _FLOATS:
        return _float_arith(op, _to_float(a), _to_float(b), oid), oid
    if oid == NUMERIC:
        return numeric_arith(op, _to_numeric(a), _to_numeric(b)), oid
    return _int_arith(op, int(a), int(b), oid), oid


def typed_neg(value: Any, oid: int | None) -> Any:
    """``-value`` (not NULL) of type ``oid`` (None: the Python value's own negation);
    ``-(-32768)::int2`` is out of range, numeric has no negative zero."""
    if isinstance(value, Decimal):
        return value if value.is_zero() else value.copy_negate()
    if oid in _INT_BITS:
        return _check_int(-int(value), oid)
    return -value


def typed_abs(value: Any, oid: int | None) -> Any:
    """``abs(value)`` (not NULL) of type ``oid`` (None: by the Python value);
    ``abs((-32768)::int2)`` is out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"function abs({type(value).__name__}) does not exist")
    if isinstance(value, Decimal):
        return value.copy_abs()
    if oid in _INT_BITS:
        return _check_int(abs(int(value)), oid)
    return abs(value)


def typed_round(
    value: Any, oid: int, digits: int | None, digits_oid: int | None
) -> tuple[Any, int]:
    """``round(value)`` / ``round(value, digits)`` for a tracked type: ``round`` of an
    integer or a float is ``round(double precision)`` (half to even); with digits only
    ``round(numeric, integer)`` exists (integers are cast to numeric)."""
    digits_type = number_type(digits_oid)
    if digits_type not in (None, INT2, INT4):
        raise TypeError(f"function round({_NAMES[oid]}, {_NAMES[digits_type]}) does not exist")
    if oid == NUMERIC:
        return pg_round(value, digits), NUMERIC
    if oid in _FLOATS and digits is not None:
        raise TypeError(f"function round({_NAMES[oid]}, integer) does not exist")
    if digits is not None:
        return pg_round(Decimal(int(value)), digits), NUMERIC
    number = _to_float(value)
    return (float(round(number)) if math.isfinite(number) else number), FLOAT8


def float_compare_operands(a: Any, left: int | None, b: Any, right: int | None) -> tuple[Any, Any]:
    """The operands of a comparison as PostgreSQL compares them: a float against an
    integer or numeric is compared as float8 (the other operand cast to float8)."""
    if left is None or right is None or (left in _FLOATS) == (right in _FLOATS):
        return a, b
    return _to_float(a), _to_float(b)
