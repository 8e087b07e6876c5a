"""PostgreSQL's value semantics the merger relies on: numeric_div's result scale
(select_div_scale in numeric.c), ORDER BY comparisons, GROUP BY equality."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from mlscale.core.scatter.pgvalues import (
    MergeArithmeticError,
    arith,
    group_key,
    numeric_div,
    pg_round,
    sort_compare,
)

# Each quotient is PostgreSQL 15.18's output for SELECT a::numeric / b::numeric.
DIVISIONS = [
    ("3", "2", "1.5000000000000000"),
    ("1", "1", "1.00000000000000000000"),
    ("1", "3", "0.33333333333333333333"),
    ("2", "3", "0.66666666666666666667"),
    ("30000", "2", "15000.000000000000"),
    ("10", "4", "2.5000000000000000"),
    ("1", "10000", "0.000100000000000000000000"),
    ("-1", "3", "-0.33333333333333333333"),
    ("1.000", "3", "0.33333333333333333333"),
    ("1", "3.0000000000000000000000", "0.3333333333333333333333"),
    ("0", "7", "0.00000000000000000000"),
    ("123456789", "1", "123456789.000000000000"),
]


@pytest.mark.parametrize(("a", "b", "quotient"), DIVISIONS)
def test_numeric_div_scale(a: str, b: str, quotient: str) -> None:
    # Same digits and the same exponent: the scale is part of a numeric's value.
    assert numeric_div(D(a), D(b)).as_tuple() == D(quotient).as_tuple()


def test_numeric_div_specials() -> None:
    assert numeric_div(D("NaN"), D(1)).is_nan()
    assert numeric_div(D("Infinity"), D(-2)) == D("-Infinity")
    assert numeric_div(D("Infinity"), D("Infinity")).is_nan()
    assert numeric_div(D(5), D("Infinity")) == 0
    with pytest.raises(MergeArithmeticError, match="division by zero"):
        numeric_div(D(1), D(0))


ORDER = [  # (a, b, descending, nulls_first, expected sign)
    (1, 2, False, False, -1),
    (1, 2, True, True, 1),
    (None, 2, False, False, 1),
    (None, 2, True, True, -1),
    (None, 2, True, False, 1),
    (None, 2, False, True, -1),
    (None, None, False, False, 0),
    (math.nan, math.inf, False, False, 1),
    (math.nan, math.nan, False, False, 0),
    (D("NaN"), D("Infinity"), False, False, 1),
    (-math.inf, -1e308, False, False, -1),
    ("Z", "a", False, False, -1),
    ("a", "é", False, False, -1),
    (D("1.0"), 1, False, False, 0),
]


@pytest.mark.parametrize(("a", "b", "descending", "nulls_first", "sign"), ORDER)
def test_sort_compare(a: object, b: object, descending: bool, nulls_first: bool, sign: int) -> None:
    assert sort_compare(a, b, descending=descending, nulls_first=nulls_first) == sign


def test_group_key_nan() -> None:
    assert group_key(math.nan) == group_key(float("nan")) == group_key(D("NaN"))
    assert group_key(0.0) == group_key(-0.0)


def test_arith_types() -> None:
    assert arith("/", 7, -2) == -3  # truncation toward zero, as int8div
    assert arith("+", 1, D("0.50")) == D("1.50")
    assert isinstance(arith("*", 2, 0.5), float)
    assert arith("-", D("Infinity"), D("Infinity")).is_nan()
    assert arith("+", None, 1) is None
    with pytest.raises(TypeError):
        arith("+", "a", 1)


def test_round() -> None:
    assert str(pg_round(D("2.5"))) == "3"
    assert str(pg_round(D("-2.5"))) == "-3"
    assert str(pg_round(D("1.2345"), 2)) == "1.23"
    assert str(pg_round(7, 1)) == "7.0"
    assert pg_round(2.5) == 2.0 and pg_round(3.5) == 4.0  # float8: half to even (rint)
