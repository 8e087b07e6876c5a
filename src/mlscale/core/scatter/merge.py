"""Turning the shard groups' rows into the rows one PostgreSQL server would return.

:func:`merge_rows` follows a :class:`~mlscale.core.scatter.plan.ScatterPlan`: it
k-way merges sorted groups (:class:`ConcatMerge`) or combines partial aggregates per
group key (:class:`AggregateMerge`), with PostgreSQL's value semantics
(:mod:`mlscale.core.scatter.pgvalues`). Pure: rows in, rows out.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cmp_to_key
from typing import Any

from mlscale.core.scatter.aggregates import RULES
from mlscale.core.scatter.exprs import evaluate
from mlscale.core.scatter.gather import combine_gathered, gathered_type
from mlscale.core.scatter.pgvalues import group_key, sort_compare
from mlscale.core.scatter.plan import AggregateMerge, ConcatMerge, ScatterPlan, SortKey
from mlscale.core.scatter.sqlnodes import ONE_GROUP, refuse

__all__ = ["merge_rows"]

Row = tuple[Any, ...]
GroupRows = Sequence[Sequence[Any]]


def merge_rows(
    plan: ScatterPlan,
    groups: Sequence[GroupRows],
    *,
    column_types: Sequence[int | None] | None = None,
) -> list[Row]:
    """The result of ``plan``'s statement from each shard group's rows of
    ``plan.group_sql`` (one sequence of rows per group, in the order they came).

    ``column_types``: the PostgreSQL type OID of each column of ``plan.group_sql``
    (as psycopg's ``cursor.description[i].type_code``). With them, each merged
    aggregate carries PostgreSQL's type for it and expressions over merged values are
    computed in those types (``max(int4) - min(int4)`` is int4 and may overflow);
    without them (or where one is None), the Python values' types decide.

    Raises ``MergeArithmeticError`` where PostgreSQL would raise computing an
    expression over merged aggregates (division by zero, integer out of range),
    TypeError on operands it would reject (``round(float8, int)``), and
    ``RoutingError`` when a gathering plan got more rows than its ``gather_limit``
    from one group or from all of them.
    """
    if plan.gathers and plan.gather_limit is not None:
        _check_gather(plan.gather_limit, groups)
    if isinstance(plan.merge, ConcatMerge):
        return _concat(plan.merge, groups)
    return _aggregate(plan.merge, groups, column_types)


def _check_gather(bound: int, groups: Sequence[GroupRows]) -> None:
    sizes = [len(rows) for rows in groups]
    where = next(
        (f"shard group #{i + 1} returned {n}" for i, n in enumerate(sizes) if n > bound), None
    )
    if where is None and sum(sizes) > bound:
        where = f"the shard groups returned {sum(sizes)}"
    if where is not None:
        raise refuse(
            f"the gathered aggregate needs more than gather_limit={bound} value rows "
            f"({where}{'+' if max(sizes) > bound else ''})",
            f"raise plan_select(..., gather_limit=) above it, or {ONE_GROUP}",
        )


def _distinct(rows: Iterable[Row]) -> Iterator[Row]:
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        key = tuple(group_key(v) for v in row)
        if key not in seen:
            seen.add(key)
            yield row


def _row_order(order: Sequence[SortKey], value: Callable[[Any, int], Any]) -> Callable[[Any], Any]:
    def compare(a: Any, b: Any) -> int:
        for index, key in enumerate(order):
            result = sort_compare(
                value(a, index),
                value(b, index),
                descending=key.descending,
                nulls_first=key.nulls_first,
            )
            if result:
                return result
        return 0

    return cmp_to_key(compare)


def _page(rows: Iterable[Row], limit: int | None, offset: int) -> Iterable[Row]:
    return itertools.islice(rows, offset, None if limit is None else offset + limit)


def _concat(merge: ConcatMerge, groups: Sequence[GroupRows]) -> list[Row]:
    rows: Iterable[Sequence[Any]]
    if merge.order:
        indexes = [key.expr for key in merge.order]
        key = _row_order(merge.order, lambda row, i: evaluate(indexes[i], row))
        # Each group sorted its rows the same way: a k-way merge keeps the order.
        rows = heapq.merge(*groups, key=key)
    else:
        rows = itertools.chain.from_iterable(groups)
    visible: Iterable[Row] = (tuple(row[: len(row) - merge.hidden]) for row in rows)
    if merge.distinct:
        visible = _distinct(visible)
    return list(_page(visible, merge.limit, merge.offset))


def _merged_types(
    merge: AggregateMerge, width: int, slots: int, column_types: Sequence[int | None]
) -> list[int | None]:
    """The type of each value of a merged row: a carried column's own, an
    aggregate's from its partial columns' types and its rule."""
    types = [*column_types[:width], *([None] * (width - len(column_types))), *([None] * slots)]
    for agg in merge.aggregates:
        partial_types = [column_types[c] if c < len(column_types) else None for c in agg.columns]
        if agg.gather is not None:
            oid = gathered_type(agg.gather, partial_types)
        else:
            oid = RULES[agg.name].result_type(partial_types)
        types[agg.columns[0] if agg.slot is None else agg.slot] = oid
    return types


def _aggregate(
    merge: AggregateMerge, groups: Sequence[GroupRows], column_types: Sequence[int | None] | None
) -> list[Row]:
    if merge.limit == 0:
        return []  # PostgreSQL's Limit node reads nothing: no aggregate, no expression runs
    width = 1 + max(
        (*merge.carried, *(c for agg in merge.aggregates for c in agg.columns)), default=-1
    )
    buckets: dict[tuple[Any, ...], list[Sequence[Any]]] = {}
    for row in itertools.chain.from_iterable(groups):
        key = tuple(group_key(v) for v in row[: merge.key_count])
        buckets.setdefault(key, []).append(row)
    if merge.key_count == 0 and not buckets:
        buckets[()] = []  # an ungrouped aggregate returns one row, even over no groups
    slots = sum(1 for agg in merge.aggregates if agg.slot is not None)
    types = None if column_types is None else _merged_types(merge, width, slots, column_types)

    def computed() -> Iterator[tuple[Row, tuple[Any, ...]]]:
        # Lazily: without ORDER BY, PostgreSQL computes HAVING and the select list only
        # for the rows LIMIT reads, so an error past them is never raised.
        for rows in buckets.values():
            merged = (list(rows[0]) if rows else [None] * width) + [None] * slots
            for agg in merge.aggregates:
                partials = [[row[c] for row in rows] for c in agg.columns]
                if agg.gather is not None:
                    value = combine_gathered(agg.gather, partials)
                else:
                    value = RULES[agg.name].combine(partials)
                merged[agg.columns[0] if agg.slot is None else agg.slot] = value
            if merge.having is not None and evaluate(merge.having, merged, types) is not True:
                continue
            output = tuple(evaluate(expr, merged, types) for expr in merge.outputs)
            yield output, tuple(evaluate(key.expr, merged, types) for key in merge.order)

    results: Iterable[tuple[Row, tuple[Any, ...]]] = computed()
    if merge.distinct:
        results = _distinct_outputs(results)
    if merge.order:
        results = sorted(results, key=_row_order(merge.order, lambda pair, i: pair[1][i]))
    return list(_page((output for output, _ in results), merge.limit, merge.offset))


def _distinct_outputs(
    results: Iterable[tuple[Row, tuple[Any, ...]]],
) -> Iterator[tuple[Row, tuple[Any, ...]]]:
    seen: set[tuple[Any, ...]] = set()
    for output, sort_values in results:
        key = tuple(group_key(v) for v in output)
        if key not in seen:
            seen.add(key)
            yield output, sort_values
