"""Planning a SELECT with aggregates, GROUP BY or HAVING across shard groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums

from mlscale.core.scatter.aggregates import REFUSED, RULES
from mlscale.core.scatter.exprs import (
    Arith,
    BoolOp,
    Compare,
    Expr,
    IsNull,
    Neg,
    Not,
    Ref,
    Round,
)
from mlscale.core.scatter.plan import AggregateMerge, MergedAggregate, ScatterPlan, SortKey
from mlscale.core.scatter.sqlnodes import (
    ONE_GROUP,
    aggregates_in,
    check_volatile,
    constant,
    func_name,
    int_const,
    is_aggregate,
    is_star,
    parse_select,
    refuse,
    select_list,
    sort_flags,
    target_for,
    text,
)

__all__ = ["plan_aggregate"]

_ARITH = frozenset({"+", "-", "*", "/"})
_COMPARE = frozenset({"=", "<>", "<", ">", "<=", ">="})


@dataclass
class _Columns:
    """The per-group select list of an aggregate plan, built up as expressions are read."""

    texts: list[str] = field(default_factory=list)
    carried: dict[str, int] = field(default_factory=dict)
    aggregates: dict[str, tuple[int, ...]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def carry(self, text: str) -> int:
        if text not in self.carried:
            self.carried[text] = len(self.texts)
            self.texts.append(text)
        return self.carried[text]


def _merged_expr(node: Any, columns: _Columns, where: str) -> Expr:
    """``node`` (an expression over aggregates and group keys) as an :class:`Expr` over
    the merged row, adding its per-group columns to ``columns``."""
    if not aggregates_in(node):
        if isinstance(node, ast.A_Const):
            return constant(node)
        return Ref(columns.carry(text(node)))
    if isinstance(node, ast.FuncCall) and is_aggregate(node):
        return Ref(_aggregate(node, columns))
    if isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP:
        op = str((node.name or ('',))[-1].sval)
        if node.lexpr is None and op == "-":
            return Neg(_merged_expr(node.rexpr, columns, where))
        if node.lexpr is not None and op in _ARITH | _COMPARE:
            left = _merged_expr(node.lexpr, columns, where)
            right = _merged_expr(node.rexpr, columns, where)
            return Arith(op, left, right) if op in _ARITH else Compare(op, left, right)
    if isinstance(node, ast.BoolExpr):
        args = tuple(_merged_expr(a, columns, where) for a in node.args or ())
        if node.boolop == enums.BoolExprType.NOT_EXPR:
            return Not(args[0])
        return BoolOp("and" if node.boolop == enums.BoolExprType.AND_EXPR else "or", args)
    if isinstance(node, ast.NullTest):
        negated = node.nulltesttype == enums.NullTestType.IS_NOT_NULL
        return IsNull(_merged_expr(node.arg, columns, where), negated)
    if (isinstance(node, ast.FuncCall) and func_name(node) == "round"
            and node.args and len(node.args) <= 2):
        digits = _merged_expr(node.args[1], columns, where) if len(node.args) == 2 else None
        return Round(_merged_expr(node.args[0], columns, where), digits)
    raise refuse(f"{text(node)} in {where} is computed over merged aggregates, which supports "
                  "only + - * /, unary -, round(), comparisons, AND/OR/NOT and IS NULL",
                  "compute the rest in the client, or " + ONE_GROUP)


def _aggregate(call: ast.FuncCall, columns: _Columns) -> int:
    name = func_name(call)
    sql = text(call)
    if sql in columns.aggregates:
        return columns.aggregates[sql][0]
    if name in REFUSED:
        raise refuse(f"{sql}: {name}() is not merged across shard groups yet", REFUSED[name])
    if call.agg_distinct:
        raise refuse(f"{sql}: DISTINCT inside an aggregate is not merged across shard groups yet",
                      "gather the rows and compute it in the client, or " + ONE_GROUP)
    if call.agg_within_group or name not in RULES:
        raise refuse(f"{sql}: the aggregate {name}() is not merged across shard groups", ONE_GROUP)
    original = call.funcname
    indexes = []
    for partial in RULES[name].partials:
        call.funcname = (ast.String(sval=partial),)
        indexes.append(len(columns.texts))
        columns.texts.append(text(call))
    call.funcname = original
    columns.aggregates[sql] = tuple(indexes)
    columns.names[sql] = name
    return indexes[0]


def _group_keys(stmt: ast.SelectStmt, columns: _Columns) -> int:
    selected = select_list(stmt)
    for item in stmt.groupClause or ():
        index = target_for(item, selected, "GROUP BY")
        node = item if index is None else selected[index].val
        if index is not None and is_star(selected[index]):
            raise refuse("GROUP BY a position of SELECT *", "name the columns")
        if index is not None and not isinstance(item, ast.A_Const) and text(node) != text(item):
            # PostgreSQL reads a GROUP BY name as an input column first, an output
            # alias second; without the table's columns the planner cannot tell which.
            raise refuse(f"GROUP BY {text(item)} names an output column whose expression differs",
                         "GROUP BY the expression or its position")
        if aggregates_in(node):
            raise refuse(f"GROUP BY {text(node)} holds an aggregate",
                         "group by columns or expressions")
        columns.carry(text(node))
    return len(columns.texts)


def plan_aggregate(stmt: ast.SelectStmt) -> ScatterPlan:
    """The plan of a SELECT with aggregates, GROUP BY or HAVING; ``stmt`` is the
    caller's own tree (from ``parse_fresh``) and is rewritten into the group query."""
    for node, where in ((stmt.targetList, "the select list"), (stmt.havingClause, "HAVING"),
                        (stmt.sortClause, "ORDER BY")):
        check_volatile(node, where)
    columns = _Columns()
    key_count = _group_keys(stmt, columns)
    selected = select_list(stmt)
    outputs = []
    for target in selected:
        if is_star(target):
            raise refuse("SELECT * with aggregates or GROUP BY", "name the columns")
        outputs.append(_merged_expr(target.val, columns, "the select list"))
    having = None
    if stmt.havingClause is not None:
        having = _merged_expr(stmt.havingClause, columns, "HAVING")
    order = []
    for item in stmt.sortClause or ():
        descending, nulls_first = sort_flags(item)
        index = target_for(item.node, selected, "ORDER BY")
        expr = outputs[index] if index is not None else _merged_expr(item.node, columns, "ORDER BY")
        order.append(SortKey(expr, descending, nulls_first))
    limit = int_const(stmt.limitCount, "LIMIT")
    offset = int_const(stmt.limitOffset, "OFFSET") or 0
    group_query = parse_select(
        "SELECT " + ", ".join(columns.texts)
        + (" GROUP BY " + ", ".join(columns.texts[:key_count]) if key_count else "")
    )
    stmt.targetList = group_query.targetList
    stmt.groupClause = group_query.groupClause
    stmt.havingClause = None
    stmt.sortClause = None
    stmt.limitCount = None
    stmt.limitOffset = None
    stmt.limitOption = enums.LimitOption.LIMIT_OPTION_DEFAULT
    merge = AggregateMerge(
        key_count=key_count,
        carried=tuple(sorted(columns.carried.values())),
        aggregates=tuple(
            MergedAggregate(columns.names[sql], sql, indexes)
            for sql, indexes in columns.aggregates.items()
        ),
        outputs=tuple(outputs),
        having=having,
        order=tuple(order),
        limit=limit,
        offset=offset,
    )
    return ScatterPlan(group_sql=text(stmt), merge=merge)
