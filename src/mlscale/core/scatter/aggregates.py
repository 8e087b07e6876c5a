"""The aggregates a cross-group read can merge exactly, and how.

Each supported aggregate is an :class:`AggregateRule`: the partial aggregates every
group computes (``avg(x)`` is sent as ``sum(x)`` and ``count(x)``) and the function
that combines the groups' partial values into the value one server would return.
Adding an aggregate is adding a rule to :data:`RULES`; the planner refuses names in
:data:`REFUSED` with their advice. COUNT/SUM/AVG(DISTINCT), ARRAY_AGG, STRING_AGG,
percentiles and mode() are gathered instead (:mod:`mlscale.core.scatter.gather`).

Known gap: float4 (real). A group's ``sum(real)`` is a float4 sum, merged in float8, so
``sum`` and ``avg`` over real columns may differ from one server in the last bits
(PostgreSQL accumulates avg(real) in float8). Integers and numeric are exact; float8
sums differ only by the order of the additions, as in PostgreSQL's parallel aggregation.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from mlscale.core.scatter.pgtypes import BOOL, FLOAT4, FLOAT8, INT8, NUMERIC
from mlscale.core.scatter.pgvalues import DECIMAL_CONTEXT, compare, numeric_div
from mlscale.core.scatter.variance import PARTIALS, variance_combiner

__all__ = ["REFUSED", "RULES", "AggregateRule", "add_values", "average", "mean_type"]

_SUMMABLE = (int, Decimal, float, timedelta)
# One value per partial column, for one merged group: partials[column][group].
Partials = Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class AggregateRule:
    """How one aggregate is split across groups and merged back.

    ``partials`` names the aggregate each group computes per partial column, over the
    call's own argument (``'count'`` for ``avg``'s second column), or is a template
    over the argument ``{x}`` and the call's FILTER clause ``{f}`` (see
    :mod:`mlscale.core.scatter.variance`). ``combine`` takes,
    for each partial column, the values the groups returned for one merged group (NULL
    included) and returns the merged value. ``result_type`` gives the merged value's
    PostgreSQL type (an OID, None if unknown) from the partial columns' types; by
    default the first partial's (``sum(int4)`` is already bigint on each group).
    """

    partials: tuple[str, ...]
    combine: Callable[[Partials], Any]
    result_type: Callable[[Sequence[int | None]], int | None] = lambda types: types[0]


def _present(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def add_values(values: Sequence[Any]) -> Any:
    """The sum of ``values`` (NULLs skipped; all NULL: NULL) in their own type, added
    in the given order."""
    # The groups' sums already carry PostgreSQL's result type: bigint (int) for int2 and
    # int4, numeric (Decimal, with its scale) for int8 and numeric, float8 for floats.
    present = _present(values)
    if not present:
        return None
    if any(isinstance(v, bool) or not isinstance(v, _SUMMABLE) for v in present):
        # e.g. money, which psycopg returns as text: adding texts would concatenate them.
        kinds = sorted({type(v).__name__ for v in present})
        raise TypeError(f"sum over {', '.join(kinds)} is not merged across groups")
    total = present[0]
    with decimal.localcontext(DECIMAL_CONTEXT):
        for value in present[1:]:
            total = total + value
    return total


def _count(partials: Partials) -> int:
    return sum(int(v) for v in partials[0] if v is not None)


def _avg(partials: Partials) -> Any:
    # avg(int2/int4/int8/numeric) is numeric_div(sum, count) in numeric.c (int8_avg,
    # numeric_poly_avg, numeric_avg); avg(float4/float8) is float8 sum / count.
    total = add_values(partials[0])
    count = sum(int(v) for v in partials[1] if v is not None)
    return average(total, count)


def average(total: Any, count: int) -> Any:
    """avg from a sum in PostgreSQL's sum type and a count: numeric_div for integer and
    numeric sums, float8 division for float sums; NULL over no rows."""
    if count == 0 or total is None:
        return None
    if isinstance(total, float):
        return total / count
    if isinstance(total, bool) or not isinstance(total, int | Decimal):
        raise TypeError(f"avg over {type(total).__name__} is not merged across groups")
    return numeric_div(Decimal(total), Decimal(count))


def _extreme(sign: int) -> Callable[[Partials], Any]:
    def combine(partials: Partials) -> Any:
        best: Any = None
        for value in _present(partials[0]):
            if best is None or compare(value, best) * sign > 0:
                best = value
        return best

    return combine


def _bool(all_true: bool) -> Callable[[Partials], Any]:
    def combine(partials: Partials) -> Any:
        present = _present(partials[0])
        if not present:
            return None
        return all(present) if all_true else any(present)

    return combine


def _bits(op: str) -> Callable[[Partials], Any]:
    def one(a: Any, b: Any) -> Any:
        if isinstance(a, str):  # bit strings, as psycopg returns bit(n) / varbit
            if len(a) != len(b):
                raise ValueError("cannot AND/OR/XOR bit strings of different sizes")
            return "".join(_BIT_CHARS[op](x == "1", y == "1") for x, y in zip(a, b, strict=True))
        return a & b if op == "and" else (a | b if op == "or" else a ^ b)

    def combine(partials: Partials) -> Any:
        present = _present(partials[0])
        if not present:
            return None
        result = present[0]
        for value in present[1:]:
            result = one(result, value)
        return result

    return combine


_BIT_CHARS: dict[str, Callable[[bool, bool], str]] = {
    "and": lambda x, y: "1" if x and y else "0",
    "or": lambda x, y: "1" if x or y else "0",
    "xor": lambda x, y: "1" if x != y else "0",
}


def mean_type(sum_type: int | None) -> int | None:
    """The type of avg/variance/stddev given the type of ``sum`` over the same
    argument: float8 over floats, numeric over integers and numeric."""
    if sum_type in (FLOAT4, FLOAT8):
        return FLOAT8
    return NUMERIC if sum_type in (INT8, NUMERIC) else None


def _typed(oid: int) -> Callable[[Sequence[int | None]], int | None]:
    return lambda types: oid


_MEAN = AggregateRule(("sum", "count"), _avg, lambda types: mean_type(types[0]))


def _spread(sample: bool, root: bool) -> AggregateRule:
    # PARTIALS[1] is sum(x): its type says float8 or numeric.
    return AggregateRule(
        PARTIALS, variance_combiner(sample=sample, root=root), lambda types: mean_type(types[1])
    )


RULES: dict[str, AggregateRule] = {
    "count": AggregateRule(("count",), _count, _typed(INT8)),
    "sum": AggregateRule(("sum",), lambda p: add_values(p[0])),
    "avg": _MEAN,
    "min": AggregateRule(("min",), _extreme(-1)),
    "max": AggregateRule(("max",), _extreme(1)),
    "bool_and": AggregateRule(("bool_and",), _bool(True), _typed(BOOL)),
    "every": AggregateRule(("bool_and",), _bool(True), _typed(BOOL)),
    "bool_or": AggregateRule(("bool_or",), _bool(False), _typed(BOOL)),
    "bit_and": AggregateRule(("bit_and",), _bits("and")),
    "bit_or": AggregateRule(("bit_or",), _bits("or")),
    "bit_xor": AggregateRule(("bit_xor",), _bits("xor")),
    "var_samp": _spread(sample=True, root=False),
    "variance": _spread(sample=True, root=False),
    "var_pop": _spread(sample=False, root=False),
    "stddev_samp": _spread(sample=True, root=True),
    "stddev": _spread(sample=True, root=True),
    "stddev_pop": _spread(sample=False, root=True),
}

_LATER = "filter on the shard key so it runs on one group"
_GATHER = "gather the rows and compute it in the client, or " + _LATER
# PostgreSQL's other built-in aggregates, with what to do instead: a call to one is
# refused, never sent as a plain per-group query whose rows would be a silent union.
REFUSED: dict[str, str] = {
    **{
        name: _LATER
        for name in (
            "corr",
            "covar_pop",
            "covar_samp",
            "regr_avgx",
            "regr_avgy",
            "regr_count",
            "regr_intercept",
            "regr_r2",
            "regr_slope",
            "regr_sxx",
            "regr_sxy",
            "regr_syy",
            "any_value",
            "range_agg",
            "range_intersect_agg",
        )
    },
    **{
        name: _GATHER
        for name in (
            "json_agg",
            "jsonb_agg",
            "json_object_agg",
            "jsonb_object_agg",
            "json_agg_strict",
            "jsonb_agg_strict",
            "xmlagg",
            "rank",
            "dense_rank",
            "percent_rank",
            "cume_dist",
        )
    },
}
