"""Scatter planner and merger tests as tables: one file per construct kind.

A planner row is SQL in, the per-group SQL and the merge kind out. A merge row is the
rows each group returns for that per-group SQL in, and the rows one PostgreSQL server
holding every row would return out (``run``: plan, then merge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlscale.core.scatter import ScatterPlan, merge_rows, plan_select

Row = tuple[Any, ...]


def run(sql: str, groups: Sequence[Sequence[Row]]) -> list[Row]:
    """``sql`` planned, then merged from the given per-group rows."""
    return merge_rows(plan_select(sql), groups)


def kind(plan: ScatterPlan) -> str:
    """'concat', 'ordered' or 'aggregate'."""
    return str(plan.to_dict()["merge"])


def same(actual: Sequence[Row], expected: Sequence[Row]) -> bool:
    """Equal, value by value, with the same types (1 is not Decimal('1.0')), NaN equal
    to NaN, and Decimals equal only with the same exponent (PostgreSQL's scale)."""
    if len(actual) != len(expected):
        return False
    for row_a, row_e in zip(actual, expected, strict=True):
        if len(row_a) != len(row_e):
            return False
        for a, e in zip(row_a, row_e, strict=True):
            if type(a) is not type(e):
                return False
            if a != a and e != e:  # NaN
                continue
            if str(a) != str(e) or a != e:
                return False
    return True
