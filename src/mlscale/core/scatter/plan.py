"""The plan of a read that runs on every shard group: the query each group runs and
how the merger turns the groups' rows into what one server would return.

:func:`plan_select` takes a SELECT (PostgreSQL ``$n`` parameters, as the key router
reads them) and returns a :class:`ScatterPlan`, or raises ``RoutingError`` naming the
construct it cannot make exact and what to do instead. The plan is one of:

- :class:`ConcatMerge`: a SELECT without aggregates. The groups' rows are concatenated,
  or k-way merged by ORDER BY; LIMIT n OFFSET m becomes LIMIT n+m on each group.
- :class:`AggregateMerge`: aggregates, GROUP BY, HAVING. Each group returns its group
  keys and partial aggregates (``avg`` as ``sum`` and ``count``), with no HAVING, ORDER
  BY or LIMIT; the merger combines partials per group key, then computes the select
  list, HAVING and ORDER BY over the merged values, then OFFSET and LIMIT.

The planner assumes each group's run of the statement sees a disjoint part of the rows
(the caller decides that the tables and joins allow a fan-out). It cannot tell a
user-defined aggregate from a function: only PostgreSQL's built-in ones are known.
Supported aggregates live in :mod:`mlscale.core.scatter.aggregates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlscale.core.scatter.exprs import Expr

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
    groups' rows, drop ``hidden`` trailing sort columns, then skip ``offset`` rows and
    keep ``limit`` (None: all)."""

    order: tuple[SortKey, ...] = ()
    hidden: int = 0
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class MergedAggregate:
    """An aggregate call as written (``sql``) and the per-group columns of its partials."""

    name: str
    sql: str
    columns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AggregateMerge:
    """Combine the groups' rows by their first ``key_count`` columns (the GROUP BY
    keys). The ``carried`` columns are the same for a key on every group (the keys and
    expressions over them: the first group's value is kept); each aggregate's merged
    value is placed at its first partial column. ``outputs``, ``having`` and ``order``
    are computed over that merged row, then OFFSET and LIMIT apply."""

    key_count: int
    carried: tuple[int, ...]
    aggregates: tuple[MergedAggregate, ...]
    outputs: tuple[Expr, ...]
    having: Expr | None = None
    order: tuple[SortKey, ...] = ()
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ScatterPlan:
    """The query every group runs (``group_sql``, same ``$n`` parameters) and the merge."""

    group_sql: str
    merge: ConcatMerge | AggregateMerge

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
        out["order"] = [
            {"expr": str(k.expr), "descending": k.descending, "nulls_first": k.nulls_first}
            for k in merge.order
        ]
        out["limit"], out["offset"] = merge.limit, merge.offset
        return out
