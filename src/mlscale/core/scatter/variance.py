"""STDDEV and VARIANCE merged across shard groups as PostgreSQL 15 computes them.

Each group sends, for one merged group key, the partials of :data:`PARTIALS`:
``count(x)``; ``sum(x)`` (its Python type tells the argument's kind: ``float`` for
float4/float8, whose result is float8, ``int``/``Decimal`` for integers and numeric,
whose result is numeric); the float8 partials ``sum(x::float8)`` and the centered sum
of squares ``Sxx`` (sent as ``var_pop(x) * count(x)``); and the numeric partial
``sum(x::numeric * x::numeric)``.

- float8: the groups' ``(N, Sx, Sxx)`` are combined as float.c's ``float8_combine``
  (Youngs-Cramer), then ``Sxx / N`` (population) or ``Sxx / (N - 1)`` (sample), and
  ``sqrt`` for the standard deviation. A group's ``Sxx`` is ``var_pop * count``: two
  roundings away from the ``Sxx`` PostgreSQL accumulates (no SQL function returns it
  directly; ``regr_sxx`` accumulates with a different rounding at every row).
- numeric: ``N``, ``sum(x)`` and ``sum(x*x)`` are exact, so the result is numeric.c's
  ``numeric_stddev_internal`` to the digit: ``(N*sumX2 - sumX^2) / (N*(N-1))`` (or
  ``N*N``) at ``select_div_scale``'s scale, rounded half away from zero, the square
  root rounded to that same scale; a non-positive numerator is ``0``.

Known gap: a numeric argument beyond float8's range (above about 1e308) makes the
group's ``x::float8`` partial fail on the server: an error, never a wrong result.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from mlscale.core.scatter.pgvalues import DECIMAL_CONTEXT, MergeArithmeticError, numeric_div

__all__ = ["PARTIALS", "variance_combiner"]

# Templates over the argument ``{x}``; ``{f}`` is the call's FILTER clause (or nothing).
PARTIALS = (
    "count({x}){f}",
    "sum({x}){f}",
    "sum(({x})::float8){f}",
    "var_pop({x}){f} * count({x}){f}",
    "sum(({x})::numeric * ({x})::numeric){f}",
)


def _float8_combine(parts: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    n, sx, sxx = 0.0, 0.0, 0.0
    for n2, sx2, sxx2 in parts:
        if n2 == 0.0:
            continue
        if n == 0.0:
            n, sx, sxx = n2, sx2, sxx2
            continue
        total = n + n2
        new_sx = sx + sx2
        if math.isinf(new_sx) and not (math.isinf(sx) or math.isinf(sx2)):
            raise MergeArithmeticError("value out of range: overflow")
        tmp = sx / n - sx2 / n2
        new_sxx = sxx + sxx2 + n * n2 * tmp * tmp / total
        if math.isinf(new_sxx) and not (math.isinf(sxx) or math.isinf(sxx2)):
            raise MergeArithmeticError("value out of range: overflow")
        n, sx, sxx = total, new_sx, new_sxx
    return n, sx, sxx


def _float_result(n: float, sxx: float, sample: bool, root: bool) -> float | None:
    if n == 0.0 or (sample and n <= 1.0):
        return None
    value = sxx / (n - 1.0 if sample else n)
    return math.sqrt(value) if root else value


def _sqrt_rounded(value: Decimal, scale: int) -> Decimal:
    # The square root to ``scale`` places, rounded half away from zero (sqrt_var).
    _, digits, exponent = value.as_tuple()
    mantissa = int("".join(map(str, digits)) or "0")
    if not isinstance(exponent, int):
        raise TypeError("the square root of a special numeric")
    shift = 2 * (scale + 1) + exponent  # value * 10^(2*(scale+1)) as an integer
    scaled = mantissa * 10**shift if shift >= 0 else mantissa // 10**-shift
    root = math.isqrt(scaled)  # floor, one digit beyond scale
    rounded, last = divmod(root, 10)
    if last >= 5:
        rounded += 1
    return Decimal((0, tuple(int(d) for d in str(rounded)), -scale))


def _display_scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _numeric_result(n: int, sx: Decimal, sx2: Decimal, sample: bool, root: bool) -> Decimal | None:
    if n == 0 or (sample and n <= 1):
        return None
    if not (sx.is_finite() and sx2.is_finite()):
        return Decimal("NaN")  # any NaN or infinity input: NaN, as the float8 functions
    scale = 2 * _display_scale(sx)
    with decimal.localcontext(DECIMAL_CONTEXT):
        square = sx * sx
        numerator = Decimal(n) * sx2 - square
        numerator = numerator.quantize(Decimal(1).scaleb(-max(scale, _display_scale(sx2))))
    if numerator <= 0:
        return Decimal(0)
    denominator = Decimal(n * (n - 1) if sample else n * n)
    variance = numeric_div(numerator, denominator)
    if not root:
        return variance
    return _sqrt_rounded(variance, _display_scale(variance))


def variance_combiner(sample: bool, root: bool) -> Callable[[Sequence[Sequence[Any]]], Any]:
    """The combine function of var_samp/var_pop (``root``: stddev_samp/stddev_pop) over
    the groups' :data:`PARTIALS` columns."""

    def combine(partials: Sequence[Sequence[Any]]) -> Any:
        counts, sums, float_sums, sxxs, squares = partials
        rows = [i for i, count in enumerate(counts) if count]
        if not rows:
            return None
        if any(isinstance(sums[i], float) for i in rows):
            n, _, sxx = _float8_combine(
                [(float(counts[i]), float(float_sums[i]), float(sxxs[i])) for i in rows]
            )
            return _float_result(n, sxx, sample, root)
        total = sum(int(counts[i]) for i in rows)
        with decimal.localcontext(DECIMAL_CONTEXT):
            sx = sum((Decimal(sums[i]) for i in rows), Decimal(0))
            sx2 = sum((Decimal(squares[i]) for i in rows), Decimal(0))
        return _numeric_result(total, sx, sx2, sample, root)

    return combine
