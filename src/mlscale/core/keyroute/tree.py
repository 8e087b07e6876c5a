"""Small readers of pglast trees shared by the key router's modules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType

from ..sqltree import walk
from .results import ShardedTable

__all__ = [
    "AGGREGATES",
    "aggregate_or_window",
    "column_refs",
    "conjuncts",
    "op_name",
    "sharded_name",
    "sublinks",
    "walk_expr",
    "why_not_pinned",
]

AGGREGATES = frozenset(
    {
        "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or",
        "every", "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg",
        "jsonb_object_agg", "xmlagg", "stddev", "stddev_pop", "stddev_samp", "variance",
        "var_pop", "var_samp", "corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy",
        "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy",
        "regr_syy", "percentile_cont", "percentile_disc", "mode", "range_agg",
        "range_intersect_agg", "any_value",
    }
)  # fmt: skip


def sharded_name(
    rv: ast.RangeVar | None, tables: Mapping[str, ShardedTable]
) -> ShardedTable | None:
    """The sharded table a RangeVar names (unqualified or in ``public``), if any."""
    if rv is None or rv.schemaname not in (None, "public") or rv.catalogname is not None:
        return None
    return tables.get(rv.relname or "")


def conjuncts(node: Any) -> list[Any]:
    """The top-level AND conjuncts of an expression (none for None)."""
    if node is None:
        return []
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        return [c for arg in node.args or () for c in conjuncts(arg)]
    return [node]


def sublinks(node: Any) -> Iterator[ast.SubLink]:
    """SubLinks in an expression, not those nested inside another SubLink's query."""
    for item in walk(node, (ast.SubLink,), keep_pruned=True):
        if isinstance(item, ast.SubLink):
            yield item


def column_refs(node: Any) -> Iterator[ast.ColumnRef]:
    for item in walk_expr(node):
        if isinstance(item, ast.ColumnRef):
            yield item


def walk_expr(node: Any) -> Iterator[Any]:
    """Nodes of an expression, not entering subqueries."""
    return walk(node, (ast.SubLink, ast.SelectStmt))


def op_name(expr: ast.A_Expr) -> str:
    names = expr.name or ()
    return getattr(names[-1], "sval", "") if names else ""


def why_not_pinned(c: Any) -> str:
    """Why a conjunct that mentions a shard key does not pin it ({column} filled in later)."""
    if isinstance(c, ast.BoolExpr):
        if c.boolop == BoolExprType.OR_EXPR:
            return (
                "an OR makes {column} ambiguous; write {column} IN (...) or "
                "{column} = ANY(%s) instead"
            )
        return "{column} is under a NOT, which matches rows on any shard"
    if isinstance(c, ast.A_Expr):
        if c.kind == A_Expr_Kind.AEXPR_IN:
            return "NOT IN on {column} matches rows on any shard"
        op = op_name(c)
        if c.kind == A_Expr_Kind.AEXPR_OP and op:
            return f"{{column}} is compared with '{op}', which matches rows on any shard"
        return "{column} is compared in a way that matches rows on any shard"
    if isinstance(c, ast.NullTest):
        return "{column} IS [NOT] NULL does not pin a shard"
    return "{column} is used in a condition that does not pin a shard"


def aggregate_or_window(node: ast.FuncCall) -> str | None:
    """What makes a function call an aggregate or window call, if it is one.

    Built-in aggregates by name, any call by its aggregate syntax (``count(*)``,
    ``DISTINCT``, ``ORDER BY``, ``FILTER``, ``WITHIN GROUP``) or ``OVER``; a user's
    aggregate called plainly cannot be told from a function here.
    """
    name = getattr((node.funcname or (None,))[-1], "sval", "") or ""
    if node.over is not None:
        return "a window function"
    if (
        node.agg_star
        or node.agg_distinct
        or node.agg_order
        or node.agg_filter is not None
        or node.agg_within_group
        or name in AGGREGATES
    ):
        return f"an aggregate ({name})"
    return None
