"""The plan of a read that runs on every shard group: the query each group runs and
how the merger turns the groups' rows into what one server would return.

:func:`plan_select` takes a SELECT (PostgreSQL ``$n`` parameters, as the key router
reads them) and returns a :class:`ScatterPlan`, or raises ``RoutingError`` naming the
construct it cannot make exact and what to do instead. The plan is one of:

- :class:`ConcatMerge`: a SELECT without aggregates. The groups' rows are concatenated,
  or k-way merged by ORDER BY; LIMIT n OFFSET m becomes LIMIT n+m on each group.
  SELECT DISTINCT keeps its DISTINCT on each group and the merger drops the rows
  another group already returned.
- :class:`AggregateMerge`: aggregates, GROUP BY, HAVING. Each group returns its group
  keys and partial aggregates (``avg`` as ``sum`` and ``count``), with no HAVING, ORDER
  BY or LIMIT; the merger combines partials per group key, then computes HAVING and
  the select list over the merged values, drops duplicate outputs (SELECT DISTINCT),
  sorts by ORDER BY, then applies OFFSET and LIMIT.

Aggregates that no partial can summarise (COUNT(DISTINCT), ARRAY_AGG, STRING_AGG,
percentiles, mode) are *gathered*: their argument, ORDER BY and FILTER expressions
join each group's GROUP BY with a ``count(*)`` multiplicity, so a group returns its
distinct value combinations (the other aggregates still merge over those finer
partitions) and the merger computes the aggregate from them
(:mod:`mlscale.core.scatter.gather`). A gathering plan bounds the rows a group may
return (``gather_limit``) and the merger refuses past it.

The planner assumes each group's run of the statement sees a disjoint part of the rows
(the caller decides that the tables and joins allow a fan-out). It cannot tell a
user-defined aggregate from a function: only PostgreSQL's built-in ones are known.
Supported aggregates live in :mod:`mlscale.core.scatter.aggregates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlscale.core.scatter.exprs import Expr
from mlscale.core.scatter.gather import GatherSpec

__all__ = ["AggregateMerge", "ConcatMerge", "MergedAggregate", "ScatterPlan", "SortKey"]


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY item: ``expr`` over the row it sorts, direction, NULLs placement
    (PostgreSQL's default: NULLs last ascending, first descending)."""

    expr: Expr
    descending: bool = False
    nulls_first: bool = False


@dataclass(frozen=True, slots=True)
class ConcatMerge:
    """Concatenate (or k-way merge by ``order``, each group's rows being sorted) the
    groups' rows, drop ``hidden`` trailing sort columns, drop a row equal to one
    already kept when ``distinct``, then skip ``offset`` rows and keep ``limit``
    (None: all)."""

    order: tuple[SortKey, ...] = ()
    hidden: int = 0
    limit: int | None = None
    offset: int = 0
    distinct: bool = False


@dataclass(frozen=True, slots=True)
class MergedAggregate:
    """An aggregate call as written (``sql``) and the per-group columns of its partials
    (for a gathered aggregate: its gathered columns and the multiplicity, see
    ``gather``). The merged value goes to its first column, or to ``slot`` (negative:
    one of the slots the merger appends after the row, one per gathered aggregate)."""

    name: str
    sql: str
    columns: tuple[int, ...]
    gather: GatherSpec | None = None
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class AggregateMerge:
    """Combine the groups' rows by their first ``key_count`` columns (the GROUP BY
    keys). The ``carried`` columns are the same for a key on every group (the keys and
    expressions over them: the first group's value is kept); each aggregate's merged
    value is placed at its first partial column. ``outputs``, ``having`` and ``order``
    are computed over that merged row, duplicate outputs are dropped when
    ``distinct``, then OFFSET and LIMIT apply."""

    key_count: int
    carried: tuple[int, ...]
    aggregates: tuple[MergedAggregate, ...]
    outputs: tuple[Expr, ...]
    having: Expr | None = None
    order: tuple[SortKey, ...] = ()
    limit: int | None = None
    offset: int = 0
    distinct: bool = False


@dataclass(frozen=True, slots=True)
class ScatterPlan:
    """The query every group runs (``group_sql``, same ``$n`` parameters) and the merge.

    ``gathers``: the merge gathers value rows (see the module docstring); each group
    query then ends in ``LIMIT gather_limit + 1`` and the merger refuses a group, or a
    total, of more than ``gather_limit`` rows. ``functions``: the names of the
    functions the statement calls that the planner took for plain (non-aggregate)
    functions; the caller checks them against the server's catalog, since a
    user-defined aggregate among them would be merged as a plain value.
    """

    group_sql: str
    merge: ConcatMerge | AggregateMerge
    gathers: bool = False
    gather_limit: int | None = None
    functions: frozenset[str] = frozenset()

    def steps(self) -> list[dict[str, Any]]:
        """The merge, step by step in the order the merger runs them."""
        merge = self.merge
        steps: list[dict[str, Any]] = []
        if isinstance(merge, ConcatMerge):
            if merge.order:
                steps.append({"step": "k-way merge", "order": _order(merge.order)})
            else:
                steps.append({"step": "concatenate"})
            if merge.hidden:
                steps.append({"step": "drop sort columns", "count": merge.hidden})
            if merge.distinct:
                steps.append({"step": "distinct"})
        else:
            steps.append(
                {
                    "step": "combine partials per key",
                    "group_keys": merge.key_count,
                    "aggregates": [
                        {"sql": a.sql, "gathered": a.gather is not None}
                        | ({} if a.gather is None else {"gather": a.gather.to_dict()})
                        for a in merge.aggregates
                    ],
                }
            )
            if merge.having is not None:
                steps.append({"step": "having", "expr": str(merge.having)})
            steps.append({"step": "outputs", "exprs": [str(e) for e in merge.outputs]})
            if merge.distinct:
                steps.append({"step": "distinct"})
            if merge.order:
                steps.append({"step": "sort", "order": _order(merge.order)})
        if merge.offset or merge.limit is not None:
            steps.append({"step": "offset/limit", "offset": merge.offset, "limit": merge.limit})
        return steps

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for ``mlscale route --json``)."""
        merge = self.merge
        out: dict[str, Any] = {"group_sql": self.group_sql}
        if isinstance(merge, ConcatMerge):
            out["merge"] = "concat" if not merge.order else "ordered"
            out["hidden"] = merge.hidden
        else:
            out["merge"] = "aggregate"
            out["group_keys"] = merge.key_count
            out["aggregates"] = [a.sql for a in merge.aggregates]
            out["outputs"] = [str(e) for e in merge.outputs]
            out["having"] = None if merge.having is None else str(merge.having)
        out["distinct"] = merge.distinct
        out["order"] = _order(merge.order)
        out["limit"], out["offset"] = merge.limit, merge.offset
        out["steps"] = self.steps()
        out["gathers"] = self.gathers
        out["gather_limit"] = self.gather_limit
        out["functions"] = sorted(self.functions)
        return out


def _order(order: tuple[SortKey, ...]) -> list[dict[str, Any]]:
    return [
        {"expr": str(k.expr), "descending": k.descending, "nulls_first": k.nulls_first}
        for k in order
    ]
