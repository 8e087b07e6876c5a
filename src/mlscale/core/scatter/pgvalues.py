"""PostgreSQL 15's value semantics for merging rows in Python: ordering, equality,
arithmetic and numeric division, as one server would apply them.

Values are what psycopg returns: ``int`` (int2/int4/int8), ``Decimal`` (numeric, with
its display scale kept as the exponent), ``float`` (float4/float8), ``str`` (text, the
C collation: Python orders str by code point, which is the bytewise order of UTF-8),
``bool``, dates and times, ``None`` for NULL.

:func:`arith` reads a PostgreSQL type from the Python type (``int`` as bigint,
``Decimal`` as numeric, ``float`` as float8): the fallback when a merged value's type
is not known. With types known, :mod:`mlscale.core.scatter.pgtypes` computes as the
server does (int2/int4 results, overflow errors).
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from typing import Any

__all__ = [
    "DECIMAL_CONTEXT",
    "DIVISION_BY_ZERO",
    "OUT_OF_RANGE",
    "MergeArithmeticError",
    "arith",
    "compare",
    "group_key",
    "numeric_arith",
    "numeric_div",
    "numeric_mod",
    "pg_round",
    "sort_compare",
]

# Sums and products of numerics are exact in PostgreSQL; this context is wide enough
# for any numeric (131072 digits before the point, 16383 after) and does not trap
# inf - inf, which PostgreSQL answers with NaN.
DECIMAL_CONTEXT = decimal.Context(
    prec=200_000,
    rounding=decimal.ROUND_HALF_UP,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.DivisionByZero, decimal.Overflow],
)
# numeric.c: NUMERIC_MIN_SIG_DIGITS, DEC_DIGITS, NUMERIC_MAX_DISPLAY_SCALE.
_MIN_SIG_DIGITS = 16
_DEC_DIGITS = 4
_MAX_DISPLAY_SCALE = 1000


# SQLSTATEs of the errors the merger raises as the server would.
DIVISION_BY_ZERO = "22012"
OUT_OF_RANGE = "22003"


class MergeArithmeticError(ArithmeticError):
    """An expression computed after the merge failed as it would have on the server
    (``division by zero``, ``integer out of range``). The message is PostgreSQL's,
    ``sqlstate`` its error code."""

    def __init__(self, message: str, *, sqlstate: str = OUT_OF_RANGE) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _is_nan(value: Any) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, Decimal) and value.is_nan()
    )


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1: ``a`` against ``b`` (neither NULL) in PostgreSQL's order: NaN equals
    NaN and sorts above every number, +/-Infinity as the float values; text in the C
    collation."""
    a_nan, b_nan = _is_nan(a), _is_nan(b)
    if a_nan or b_nan:
        return int(a_nan) - int(b_nan)
    return -1 if a < b else (1 if a > b else 0)


def sort_compare(a: Any, b: Any, *, descending: bool, nulls_first: bool) -> int:
    """``compare`` with NULLs and direction, as one ORDER BY item sorts."""
    if a is None or b is None:
        if a is None and b is None:
            return 0
        a_first = (a is None) == nulls_first
        return -1 if a_first else 1
    result = compare(a, b)
    return -result if descending else result


def group_key(value: Any) -> Any:
    """A hashable stand-in for ``value`` that is equal where GROUP BY sees equal values:
    NaN groups with NaN (Python's NaN is unequal to itself); 0.0 and -0.0, 1.0 and
    1.00 are equal in Python too. Arrays (lists) become tuples, json objects their
    sorted items."""
    if _is_nan(value):
        return ("NaN",)
    if isinstance(value, list | tuple):
        return tuple(group_key(v) for v in value)
    if isinstance(value, dict):
        return ("{}", tuple(sorted((k, repr(group_key(v))) for k, v in value.items())))
    return value


def numeric_div(a: Decimal, b: Decimal) -> Decimal:
    """``a / b`` as PostgreSQL's numeric_div: the result scale of ``select_div_scale``
    (at least 16 significant digits, no less than either input's scale), the last digit
    rounded half away from zero; NaN and infinities as numeric.c."""
    if a.is_nan() or b.is_nan():
        return Decimal("NaN")
    if b.is_zero():
        raise MergeArithmeticError("division by zero", sqlstate=DIVISION_BY_ZERO)
    if a.is_infinite():
        return Decimal("NaN") if b.is_infinite() else (a if b > 0 else -a)
    if b.is_infinite():
        return Decimal(0)
    rscale = _div_scale(a, b)
    # Exact integer arithmetic, then one rounding, as div_var(..., round=true).
    sa, da, ea = a.as_tuple()
    sb, db, eb = b.as_tuple()
    ma = int("".join(map(str, da)) or "0")
    mb = int("".join(map(str, db)) or "0")
    shift = int(ea) - int(eb) + rscale  # both finite: checked above
    num, den = (ma * 10**shift, mb) if shift >= 0 else (ma, mb * 10**-shift)
    quotient, remainder = divmod(num, den)
    if 2 * remainder >= den:
        quotient += 1
    negative = bool(sa) != bool(sb) and quotient != 0
    return Decimal((int(negative), tuple(int(d) for d in str(quotient)), -rscale))


def numeric_mod(a: Decimal, b: Decimal) -> Decimal:
    """``a % b`` as numeric.c's numeric_mod: the sign of ``a``, the larger scale."""
    if a.is_nan() or b.is_nan():
        return Decimal("NaN")
    if b.is_zero() and not b.is_nan():
        raise MergeArithmeticError("division by zero", sqlstate=DIVISION_BY_ZERO)
    if a.is_infinite():
        return Decimal("NaN")
    if b.is_infinite():
        return a
    with decimal.localcontext(DECIMAL_CONTEXT):
        remainder = a % b
    return _unsigned_zero(remainder)


def _display_scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _weight_and_first_digit(value: Decimal) -> tuple[int, int]:
    # numeric.c keeps base-10000 digits aligned on the decimal point: the weight is the
    # position of the first non-zero one, the first digit its value (1..9999).
    if value.is_zero():
        return 0, 0
    magnitude = abs(value)
    weight = magnitude.adjusted() // _DEC_DIGITS
    first = int(magnitude.scaleb(-_DEC_DIGITS * weight, DECIMAL_CONTEXT))
    return weight, first


def _div_scale(a: Decimal, b: Decimal) -> int:
    weight1, first1 = _weight_and_first_digit(a)
    weight2, first2 = _weight_and_first_digit(b)
    qweight = weight1 - weight2
    if first1 <= first2:
        qweight -= 1
    rscale = _MIN_SIG_DIGITS - qweight * _DEC_DIGITS
    rscale = max(rscale, _display_scale(a), _display_scale(b), 0)
    return min(rscale, _MAX_DISPLAY_SCALE)


def _numeric(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def numeric_arith(op: str, a: Decimal, b: Decimal) -> Decimal:
    """``a op b`` over numerics for ``op`` in ``+ - * / %``: exact, except ``/``
    (:func:`numeric_div`); zero is never negative (``-1 * 0`` is ``0``)."""
    if op == "/":
        return numeric_div(a, b)
    if op == "%":
        return numeric_mod(a, b)
    with decimal.localcontext(DECIMAL_CONTEXT):
        result = a + b if op == "+" else (a - b if op == "-" else a * b)
    return _unsigned_zero(result)


def _unsigned_zero(value: Decimal) -> Decimal:
    # numeric has no negative zero; Python's Decimal keeps the sign of -1 * 0.
    return value.copy_abs() if value.is_zero() else value


def arith(op: str, a: Any, b: Any) -> Any:
    """``a op b`` for ``op`` in ``+ - * / %`` with types read from the Python values:
    bigint op bigint is bigint (``/`` truncates toward zero, ``%`` takes the dividend's
    sign), numeric if either is numeric (``/`` by :func:`numeric_div`), float8 if either
    is float (no ``%``). No range checks: the fallback when the types are not known
    (see :mod:`mlscale.core.scatter.pgtypes`). NULL in, NULL out."""
    if a is None or b is None:
        return None
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not all(isinstance(v, int | float | Decimal) for v in (a, b))
    ):
        raise TypeError(f"operator {op} over {type(a).__name__} and {type(b).__name__}")
    if isinstance(a, float) or isinstance(b, float):
        if op == "%":
            raise TypeError("operator does not exist: double precision % numeric")
        x, y = float(a), float(b)
        if op == "/":
            if y == 0:
                if math.isnan(x):  # float8div: only a non-NaN dividend fails
                    return x
                raise MergeArithmeticError("division by zero", sqlstate=DIVISION_BY_ZERO)
            return x / y
        return x + y if op == "+" else (x - y if op == "-" else x * y)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return numeric_arith(op, _numeric(a), _numeric(b))
    if op in ("/", "%"):
        if b == 0:
            raise MergeArithmeticError("division by zero", sqlstate=DIVISION_BY_ZERO)
        if op == "%":
            return -(abs(a) % abs(b)) if a < 0 else abs(a) % abs(b)
        quotient = abs(a) // abs(b)
        return quotient if (a >= 0) == (b >= 0) else -quotient
    return a + b if op == "+" else (a - b if op == "-" else a * b)


def pg_round(value: Any, digits: int | None = None) -> Any:
    """``round(value)`` / ``round(value, digits)``: numeric (and bigint, cast to
    numeric) rounds half away from zero to ``digits`` places (scale ``max(digits, 0)``);
    ``round(float8)`` rounds half to even; ``round(float8, n)`` does not exist in
    PostgreSQL and raises TypeError."""
    if value is None:
        return None
    if isinstance(value, float):
        if digits is not None:
            raise TypeError("function round(double precision, integer) does not exist")
        return float(round(value)) if math.isfinite(value) else value
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"function round({type(value).__name__}) does not exist")
    number = _numeric(value)
    if not number.is_finite():
        return number
    places = digits or 0
    with decimal.localcontext(DECIMAL_CONTEXT):
        rounded = number.quantize(Decimal(1).scaleb(-places), decimal.ROUND_HALF_UP)
        return _unsigned_zero(rounded.quantize(Decimal(1)) if places < 0 else rounded)
