"""Reads across shard groups that return what one PostgreSQL server would, or refuse.

:func:`plan_select` turns a SELECT into the query each group runs and a merge plan;
:func:`merge_rows` turns the groups' rows into the result. Both are pure (no I/O).
"""

from mlscale.core.scatter.gather import GatherSpec
from mlscale.core.scatter.merge import merge_rows
from mlscale.core.scatter.plan import (
    AggregateMerge,
    ConcatMerge,
    MergedAggregate,
    ScatterPlan,
    SortKey,
)
from mlscale.core.scatter.planner import plan_select

__all__ = [
    "AggregateMerge",
    "ConcatMerge",
    "GatherSpec",
    "MergedAggregate",
    "ScatterPlan",
    "SortKey",
    "merge_rows",
    "plan_select",
]
