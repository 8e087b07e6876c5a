"""Planning a SELECT that reads every shard group: :func:`plan_select`.

See :mod:`mlscale.core.scatter.plan` for the plans it returns.
"""

from __future__ import annotations

from pglast import ast, enums

from mlscale.core.scatter.aggplan import plan_aggregate
from mlscale.core.scatter.exprs import Ref
from mlscale.core.scatter.plan import ConcatMerge, ScatterPlan, SortKey
from mlscale.core.scatter.sqlnodes import (
    aggregates_in,
    check_collation,
    check_distinct_order,
    check_statement,
    check_volatile,
    int_const,
    is_star,
    parse_one_select,
    parse_select,
    plain_functions,
    reparse_targets,
    select_list,
    sort_flags,
    target_for,
    text,
)

__all__ = ["plan_select"]


def plan_select(sql: str, *, gather_limit: int = 1_000_000) -> ScatterPlan:
    """The plan of ``sql``, one SELECT, read on every shard group.

    ``gather_limit``: the most rows a gathering plan (COUNT(DISTINCT), ARRAY_AGG,
    percentiles, ...) takes from one group, and from all groups together; the merger
    refuses a read past it rather than hold an unbounded gather in memory.

    Raises ``RoutingError`` for a statement that is not one SELECT, and for every
    construct the merger cannot make exact, naming it and what to do instead.
    """
    if gather_limit < 0:
        raise ValueError("gather_limit must not be negative")
    _, stmt = parse_one_select(sql)
    check_statement(stmt)
    check_distinct_order(stmt)
    for item in stmt.sortClause or ():
        check_collation(item)
    functions = plain_functions(stmt)
    aggregated = bool(stmt.groupClause or stmt.havingClause) or any(
        aggregates_in(node) for node in (stmt.targetList, stmt.sortClause)
    )
    if aggregated:
        return plan_aggregate(stmt, gather_limit=gather_limit, functions=functions)
    return _plan_concat(stmt, functions)


def _plan_concat(stmt: ast.SelectStmt, functions: frozenset[str]) -> ScatterPlan:
    # SELECT DISTINCT stays on each group (fewer rows to send); the merger drops the
    # rows another group also returned. LIMIT n OFFSET m still goes down as n+m: the
    # first n+m distinct rows overall are among each group's first n+m distinct rows.
    targets = select_list(stmt)
    star_before = [any(is_star(t) for t in targets[: i + 1]) for i in range(len(targets))]
    hidden: list[str] = []
    pending: list[tuple[int | str, bool, bool]] = []
    for item in stmt.sortClause or ():
        descending, nulls_first = sort_flags(item)
        check_volatile(item.node, "ORDER BY")
        index = target_for(item.node, targets, "ORDER BY")
        if index is not None and not star_before[index]:
            pending.append((index, descending, nulls_first))
            continue
        expr = targets[index].val if index is not None else item.node
        hidden.append(f"{text(expr)} AS __mlscale_sort_{len(hidden) + 1}")
        pending.append((f"h{len(hidden) - 1}", descending, nulls_first))
    order = tuple(
        SortKey(Ref(slot if isinstance(slot, int) else int(slot[1:]) - len(hidden)), desc, nf)
        for slot, desc, nf in pending
    )
    limit = int_const(stmt.limitCount, "LIMIT")
    offset = int_const(stmt.limitOffset, "OFFSET") or 0
    if hidden:
        stmt.targetList = tuple(targets) + reparse_targets(hidden)
    stmt.limitOffset = None
    stmt.limitCount = None
    if limit is not None:
        stmt.limitCount = parse_select(f"SELECT 1 LIMIT {limit + offset}").limitCount
        stmt.limitOption = enums.LimitOption.LIMIT_OPTION_COUNT
    merge = ConcatMerge(
        order=order,
        hidden=len(hidden),
        limit=limit,
        offset=offset,
        distinct=bool(stmt.distinctClause),
    )
    return ScatterPlan(group_sql=text(stmt), merge=merge, functions=functions)
