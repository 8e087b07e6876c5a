"""Expressions over merged aggregates computed in the types PostgreSQL gives them,
from the group query's column type OIDs (``merge_rows(..., column_types=)``): the
differences the differential test found (int overflow, int8 literals, NaN / 0) and
PostgreSQL 15's operator resolution, checked against a server by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal as D
from typing import Any

import pytest

from mlscale.core.scatter import merge_rows, plan_select
from mlscale.core.scatter.pgtypes import (
    FLOAT4,
    FLOAT8,
    INT2,
    INT4,
    INT8,
    NUMERIC,
    arith_type,
    literal_type,
    typed_arith,
    typed_round,
)
from mlscale.core.scatter.pgvalues import MergeArithmeticError

from . import Row, same

TEXT = 25


def typed_run(sql: str, types: Sequence[int], groups: Sequence[Sequence[Row]]) -> list[Row]:
    """``sql`` planned, then merged from per-group rows whose columns have ``types``."""
    plan = plan_select(sql)
    return merge_rows(plan, groups, column_types=types)


# -- the differential test's findings ------------------------------------------------

def test_max_minus_min_of_int4_overflows_as_integer() -> None:
    groups = [[(2147483647, 5)], [(100, -2147483648)]]
    with pytest.raises(MergeArithmeticError, match=r"^integer out of range$") as caught:
        typed_run("select max(i4) - min(i4) from t", [INT4, INT4], groups)
    assert caught.value.sqlstate == "22003"
    # without types, today's behaviour: a Python int
    assert typed_run("select max(i4) - min(i4) from t", [INT4, INT4], [[(7, 2)]]) == [(5,)]
    assert merge_rows(plan_select("select max(i4) - min(i4) from t"), groups) == [(4294967295,)]


@pytest.mark.parametrize("sql", [
    "select k, max(i4) - min(i4) from t group by k",
    "select k from t group by k having max(i4) - min(i4) > 0",
    "select k from t group by k order by max(i4) - min(i4)",
])
def test_int4_overflow_per_key_in_having_and_order_by(sql: str) -> None:
    groups = [[(1, 2147483647, -1)], [(1, 0, -5)]]
    with pytest.raises(MergeArithmeticError, match="integer out of range"):
        typed_run(sql, [INT4, INT4, INT4], groups)


def test_smallint_negation_and_addition_overflow() -> None:
    sql = "select k, -min(i2), max(i2) + max(i2) from t group by k"  # columns: k, min, max
    with pytest.raises(MergeArithmeticError, match=r"^smallint out of range$"):
        typed_run(sql, [INT4, INT2, INT2], [[(1, -32768, 3)]])
    with pytest.raises(MergeArithmeticError, match=r"^smallint out of range$"):
        typed_run(sql, [INT4, INT2, INT2], [[(1, 0, 16384)]])
    assert same(typed_run(sql, [INT4, INT2, INT2], [[(1, -32767, 16383)]]),
                [(1, 32767, 32766)])


def test_sum_of_int4_is_bigint_and_its_square_overflows() -> None:
    with pytest.raises(MergeArithmeticError, match=r"^bigint out of range$"):
        typed_run("select sum(i4) * sum(i4) from t", [INT8], [[(2**31,)], [(2**31,)]])
    assert typed_run("select sum(i4) * sum(i4) from t", [INT8], [[(3,)], [(4,)]]) == [(49,)]


def test_an_integer_literal_past_int4_is_bigint() -> None:
    sql = "select sum(i2) * 100000000000 from t"
    assert same(typed_run(sql, [INT8], [[(-32703,)]]), [(-3270300000000000,)])
    assert same(run_untyped(sql, [[(-32703,)]]), [(-3270300000000000,)])
    with pytest.raises(MergeArithmeticError, match="bigint out of range"):
        typed_run("select sum(i2) * 1000000000000000 from t", [INT8], [[(100000,)]])
    # past int8, the literal is numeric
    assert same(typed_run("select sum(i2) * 100000000000000000000 from t", [INT8], [[(2,)]]),
                [(D("200000000000000000000"),)])


def run_untyped(sql: str, groups: Sequence[Sequence[Row]]) -> list[Row]:
    return merge_rows(plan_select(sql), groups)


def test_nan_float8_divided_by_zero_is_nan() -> None:
    rows = typed_run("select sum(f) / 0 from t", [FLOAT8], [[(math.nan,)], [(1.0,)]])
    assert math.isnan(rows[0][0])
    assert math.isnan(run_untyped("select sum(f) / 0 from t", [[(math.nan,)]])[0][0])
    with pytest.raises(MergeArithmeticError, match=r"^division by zero$") as caught:
        typed_run("select sum(f) / 0 from t", [FLOAT8], [[(math.inf,)]])
    assert caught.value.sqlstate == "22012"


def test_numeric_nan_divided_by_zero_is_nan_infinity_raises() -> None:
    rows = typed_run("select sum(n) / 0 from t", [NUMERIC], [[(D("NaN"),)]])
    assert rows[0][0].is_nan()
    with pytest.raises(MergeArithmeticError, match="division by zero"):
        typed_run("select sum(n) / 0 from t", [NUMERIC], [[(D("Infinity"),)]])


# -- types of merged aggregates ---------------------------------------------------------

MERGED = [
    # avg(int4): sum is bigint on the groups, the avg numeric; * 2 stays numeric
    ("avg(int) is numeric", "select avg(x) * 2 from t", [INT8, INT8], [[(3, 2)]],
     [(D("3.0000000000000000"),)]),
    ("count is bigint: int4 literal widens", "select count(*) * 2 + 1 from t", [INT8],
     [[(2,)], [(3,)]], [(11,)]),
    ("min(int2) + int2 literal is int4", "select min(i2) + 1 from t", [INT2], [[(32767,)]],
     [(32768,)]),
    ("int8 / int8 truncates toward zero", "select sum(i4) / count(*) from t", [INT8, INT8],
     [[(-7, 2)]], [(-3,)]),
    ("int % takes the dividend's sign", "select sum(i4) % 3 from t", [INT8], [[(-7,)]],
     [(-1,)]),
    ("numeric %: larger scale, dividend's sign", "select sum(n) % 2 from t", [NUMERIC],
     [[(D("-7.5"),)]], [(D("-1.5"),)]),
    ("numeric % without negative zero", "select sum(n) % 2 from t", [NUMERIC],
     [[(D("-4"),)]], [(D("0"),)]),
    ("round(int) is round(float8)", "select round(max(i4)) from t", [INT4], [[(5,)]],
     [(5.0,)]),
    ("round(int, n) is numeric", "select round(max(i4), 1) from t", [INT4], [[(5,)]],
     [(D("5.0"),)]),
    ("abs(int8)", "select abs(min(i8)) from t", [INT8], [[(-5,)]], [(5,)]),
    ("percentile_cont is float8", "select percentile_cont(0.5) within group (order by i4) "
     "* 2 from t", [INT4, INT8], [[(1, 1), (2, 1)]], [(3.0,)]),
    ("float4 op float4 is float4", "select max(r) * max(r) from t", [FLOAT4],
     [[(0.10000000149011612,)]], [(0.010000000707805157,)]),
    ("float4 op int is float8", "select max(r) * 3 from t", [FLOAT4],
     [[(0.10000000149011612,)]], [(0.30000000447034836,)]),
    ("a float against an int compares as float8",
     "select max(i8) = max(f) from t", [INT8, FLOAT8], [[(2**53 + 1, float(2**53))]],
     [(True,)]),
    ("NULL stays NULL", "select max(i2) + max(i2) from t", [INT2], [[(None,)]], [(None,)]),
    ("a text key carried beside", "select s, -max(i2) from t group by s", [TEXT, INT2],
     [[("a", 4)]], [("a", -4)]),
]


@pytest.mark.parametrize(("sql", "types", "groups", "expected"), [m[1:] for m in MERGED],
                         ids=[m[0] for m in MERGED])
def test_merged_types(sql: str, types: list[int], groups: list[list[Row]],
                      expected: list[Row]) -> None:
    got = typed_run(sql, types, groups)
    assert same(got, expected), got


def test_float_modulo_does_not_exist() -> None:
    with pytest.raises(TypeError, match="operator does not exist: double precision % integer"):
        typed_run("select max(f) % 2 from t", [FLOAT8], [[(3.5,)]])


def test_round_of_float_with_digits_or_of_bigint_digits_does_not_exist() -> None:
    with pytest.raises(TypeError, match=r"round\(double precision, integer\)"):
        typed_run("select round(max(f), 1) from t", [FLOAT8], [[(3.5,)]])
    with pytest.raises(TypeError, match=r"round\(numeric, bigint\)"):
        typed_round(D("2.5"), NUMERIC, 1, INT8)


def test_abs_of_smallest_int2_overflows() -> None:
    with pytest.raises(MergeArithmeticError, match="smallint out of range"):
        typed_run("select abs(min(i2)) from t", [INT2], [[(-32768,)]])


# -- operator resolution and arithmetic -------------------------------------------------

RESOLUTION = [
    ("+", INT2, INT2, INT2), ("+", INT2, INT4, INT4), ("*", INT4, INT2, INT4),
    ("-", INT2, INT8, INT8), ("/", INT8, INT4, INT8), ("+", INT4, NUMERIC, NUMERIC),
    ("/", INT8, NUMERIC, NUMERIC), ("+", FLOAT4, FLOAT4, FLOAT4), ("+", FLOAT4, INT4, FLOAT8),
    ("*", FLOAT4, NUMERIC, FLOAT8), ("/", NUMERIC, FLOAT8, FLOAT8), ("%", INT2, INT4, INT4),
]


@pytest.mark.parametrize(("op", "left", "right", "result"), RESOLUTION)
def test_operator_resolution(op: str, left: int, right: int, result: int) -> None:
    assert arith_type(op, left, right) == result


ARITH: list[tuple[str, Any, int, Any, int, str]] = [
    ("/", -32768, INT2, -1, INT2, "smallint out of range"),
    ("/", -(2**31), INT4, -1, INT4, "integer out of range"),
    ("/", 1, INT8, 0, INT8, "division by zero"),
    ("%", 1, INT4, 0, INT4, "division by zero"),
    ("*", 1e308, FLOAT8, 10, INT4, "value out of range: overflow"),
    ("*", 1e-308, FLOAT8, 1e-308, FLOAT8, "value out of range: underflow"),
    ("*", 1e38, FLOAT4, 10.0, FLOAT4, "value out of range: overflow"),
    ("%", D("Infinity"), NUMERIC, 0, INT4, "division by zero"),
]


@pytest.mark.parametrize(("op", "a", "left", "b", "right", "message"), ARITH)
def test_arithmetic_raises_as_postgresql(op: str, a: Any, left: int, b: Any, right: int,
                                         message: str) -> None:
    with pytest.raises(MergeArithmeticError, match=f"^{message}$"):
        typed_arith(op, a, left, b, right)


def test_special_values() -> None:
    assert typed_arith("%", -(2**31), INT4, -1, INT4) == (0, INT4)
    assert typed_arith("%", D(5), NUMERIC, D("Infinity"), NUMERIC) == (D(5), NUMERIC)
    assert typed_arith("%", D("Infinity"), NUMERIC, 2, INT4)[0].is_nan()
    assert typed_arith("+", math.inf, FLOAT8, 1, INT4) == (math.inf, FLOAT8)
    assert typed_arith("/", 1, INT4, math.inf, FLOAT8) == (0.0, FLOAT8)


@pytest.mark.parametrize(("value", "oid"), [
    (1, INT4), (-(2**31), INT4), (2**31, INT8), (-(2**63), INT8), (2**63, NUMERIC),
    (D("1.5"), NUMERIC), (1.5, FLOAT8), ("x", None),
])
def test_literal_types(value: Any, oid: int | None) -> None:
    assert literal_type(value) == oid


def test_literal_past_int4_planned_as_an_integer() -> None:
    plan = plan_select("select sum(x) * 100000000000, sum(x) * -9223372036854775808, "
                       "sum(x) * 9223372036854775808 from t")
    assert [str(e) for e in plan.merge.outputs] == [  # type: ignore[union-attr]
        "($0 * 100000000000)", "($0 * -9223372036854775808)",
        "($0 * Decimal('9223372036854775808'))",
    ]


def test_limit_0_computes_nothing_and_limit_stops_computing() -> None:
    overflow = [[(1, -32768)], [(2, 1)]]  # -min(i2) overflows for key 1 only
    sql = "select k, -min(i2) from t group by k"
    assert typed_run(sql + " limit 0", [INT4, INT2], overflow) == []
    assert typed_run(sql + " order by 1 limit 0", [INT4, INT2], overflow) == []
    # no ORDER BY: only the rows LIMIT reads are computed (here key 2, met first)
    assert typed_run(sql + " limit 1", [INT4, INT2], overflow[::-1]) == [(2, -1)]
    with pytest.raises(MergeArithmeticError, match="smallint out of range"):
        typed_run(sql + " order by 1 limit 1", [INT4, INT2], overflow[::-1])


@pytest.mark.parametrize(("sql", "groups"), [
    ("select round(avg(n), 0) from t", [[(D("-0.001"), 1)]]),
    ("select sum(n) * -1 from t", [[(D("0.00"),)]]),
])
def test_numeric_has_no_negative_zero(sql: str, groups: list[list[Row]]) -> None:
    types = [NUMERIC, INT8][: len(groups[0][0])]
    (value,) = typed_run(sql, types, groups)[0]
    assert not value.is_signed()
    assert not run_untyped(sql, groups)[0][0].is_signed()
