"""Planning a SELECT with aggregates, GROUP BY or HAVING across shard groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pglast import ast, enums

from mlscale.core.scatter.aggregates import REFUSED, RULES
from mlscale.core.scatter.exprs import (
    Abs,
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
from mlscale.core.scatter.gather import GatherSpec
from mlscale.core.scatter.plan import AggregateMerge, MergedAggregate, ScatterPlan, SortKey
from mlscale.core.scatter.sqlnodes import (
    ONE_GROUP,
    aggregates_in,
    check_collation,
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

_ARITH = frozenset({"+", "-", "*", "/", "%"})
_COMPARE = frozenset({"=", "<>", "<", ">", "<=", ">="})


@dataclass
class _Columns:
    """The per-group select list of an aggregate plan, built up as expressions are read."""

    texts: list[str] = field(default_factory=list)
    carried: dict[str, int] = field(default_factory=dict)
    aggregates: dict[str, tuple[int, ...]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    # Gathered aggregates: their specs, the expressions added to each group's GROUP BY,
    # and the column of the count(*) multiplicity.
    gathers: dict[str, GatherSpec] = field(default_factory=dict)
    gathered: dict[str, int] = field(default_factory=dict)
    multiplicity: int | None = None
    slots: dict[str, int] = field(default_factory=dict)
    shared: dict[str, int] = field(default_factory=dict)

    def carry(self, text: str) -> int:
        if text not in self.carried:
            self.carried[text] = len(self.texts)
            self.texts.append(text)
        return self.carried[text]

    def add(self, text: str) -> int:
        self.texts.append(text)
        return len(self.texts) - 1

    def once(self, text: str) -> int:
        if text not in self.shared:
            self.shared[text] = self.add(text)
        return self.shared[text]

    def slot(self, sql: str) -> int:
        # The first gathered aggregate takes -1, the next -2, ...: the merger appends
        # one slot per gathered aggregate, in reverse order of appearance.
        self.slots[sql] = -(len(self.slots) + 1)
        return self.slots[sql]

    def gather(self, text: str) -> int:
        if text not in self.gathered:
            self.gathered[text] = self.add(text)
        return self.gathered[text]


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
        op = str((node.name or ("",))[-1].sval)
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
    if (
        isinstance(node, ast.FuncCall)
        and func_name(node) == "round"
        and node.args
        and len(node.args) <= 2
    ):
        digits = _merged_expr(node.args[1], columns, where) if len(node.args) == 2 else None
        return Round(_merged_expr(node.args[0], columns, where), digits)
    if isinstance(node, ast.FuncCall) and func_name(node) == "abs" and len(node.args or ()) == 1:
        (arg,) = node.args or ()
        return Abs(_merged_expr(arg, columns, where))
    raise refuse(
        f"{text(node)} in {where} is computed over merged aggregates, which supports "
        "only + - * / %, unary -, abs(), round(), comparisons, AND/OR/NOT and IS NULL",
        "compute the rest in the client, or " + ONE_GROUP,
    )


def _aggregate(call: ast.FuncCall, columns: _Columns) -> int:
    name = func_name(call)
    sql = text(call)
    if sql in columns.aggregates:
        return columns.slots.get(sql, columns.aggregates[sql][0])
    if name in REFUSED:
        raise refuse(f"{sql}: {name}() is not merged across shard groups yet", REFUSED[name])
    if (
        name in _ORDERED_SET
        or name in ("array_agg", "string_agg")
        or (call.agg_distinct and name in ("count", "sum", "avg"))
    ):
        columns.aggregates[sql] = _gathered(call, name, sql, columns)
        columns.names[sql] = name
        # Gathered aggregates share their value columns: each one's merged value goes
        # to a slot of its own after the row (negative: counted from the end).
        return columns.slot(sql)
    if call.agg_distinct and name not in _IDEMPOTENT:
        raise refuse(
            f"{sql}: DISTINCT inside {name}() is not merged across shard groups",
            "gather the rows and compute it in the client, or " + ONE_GROUP,
        )
    if call.agg_within_group or name not in RULES:
        raise refuse(f"{sql}: the aggregate {name}() is not merged across shard groups", ONE_GROUP)
    original = call.funcname
    indexes: list[int] = []
    for partial in RULES[name].partials:
        if "{" in partial:
            args = tuple(call.args or ())
            if len(args) != 1 or call.agg_star:
                raise refuse(f"{sql}: {name}() takes one argument", "fix the call")
            condition = (
                "" if call.agg_filter is None else f" FILTER (WHERE {text(call.agg_filter)})"
            )
            indexes.append(columns.add(partial.format(x=text(args[0]), f=condition)))
            continue
        call.funcname = (ast.String(sval=partial),)
        indexes.append(columns.add(text(call)))
    call.funcname = original
    columns.aggregates[sql] = tuple(indexes)
    columns.names[sql] = name
    return indexes[0]


# Aggregates whose value over distinct inputs is their value over all inputs.
_IDEMPOTENT = frozenset({"min", "max", "bool_and", "bool_or", "every", "bit_and", "bit_or"})
_ORDERED_SET = frozenset({"percentile_cont", "percentile_disc", "mode"})


def _fractions(call: ast.FuncCall, sql: str) -> tuple[tuple[float | None, ...], bool]:
    """The literal fraction(s) of percentile_cont/percentile_disc, and whether an array."""
    todo = "write the fraction as a number literal (or ARRAY[...] of them)"
    args = call.args or ()
    if len(args) != 1:
        raise refuse(f"{sql}: a percentile takes one fraction", todo)
    node = args[0]
    items, array = ((node,), False)
    if isinstance(node, ast.A_ArrayExpr):
        items, array = tuple(node.elements or ()), True
    fractions: list[float | None] = []
    for item in items:
        value = constant(item).value if isinstance(item, ast.A_Const) else ""
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | Decimal)):
            raise refuse(
                f"{sql}: the fraction {text(item)} is not a constant number; "
                "each group would need it before it is known",
                todo,
            )
        fraction = None if value is None else float(value)
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise refuse(
                f"{sql}: percentile value {fraction:g} is not between 0 and 1",
                "use a fraction from 0 to 1",
            )
        fractions.append(fraction)
    return tuple(fractions), array


def _gathered(call: ast.FuncCall, name: str, sql: str, columns: _Columns) -> tuple[int, ...]:
    """The columns of an aggregate merged by gathering its inputs (see gather.py)."""
    args = tuple(call.args or ())
    order_items = tuple(call.agg_order or ())
    for item in order_items:
        check_collation(item)
    fractions: tuple[float | None, ...] = ()
    array = descending = False
    delimiter = None
    if name in _ORDERED_SET:
        if not call.agg_within_group or len(order_items) != 1:
            raise refuse(
                f"{sql}: {name}() needs WITHIN GROUP (ORDER BY one expression)", "fix the call"
            )
        if name == "mode" and args:
            raise refuse(f"{sql}: mode() takes no argument", "fix the call")
        if name != "mode":
            fractions, array = _fractions(call, sql)
        value = order_items[0].node
        descending = sort_flags(order_items[0])[0]
        order_items = ()
    else:
        wanted = 2 if name == "string_agg" else 1
        if len(args) != wanted or call.agg_star:
            raise refuse(f"{sql}: {name}() takes {wanted} argument(s) here", "fix the call")
        value = args[0]
        if name == "string_agg":
            literal = constant(args[1]).value if isinstance(args[1], ast.A_Const) else 0
            if literal is not None and not isinstance(literal, str):
                raise refuse(
                    f"{sql}: the string_agg delimiter {text(args[1])} is not a string "
                    "literal; the merger joins the groups' values with it",
                    "write the delimiter as a literal",
                )
            delimiter = literal
    indexes = [columns.gather(text(value))]
    texted = name == "array_agg"
    if texted:
        indexes.append(columns.gather(f"({text(value)})::text"))
    order = []
    for item in order_items:
        indexes.append(columns.gather(text(item.node)))
        order.append(sort_flags(item))
    if call.agg_filter is not None:
        indexes.append(columns.gather(text(call.agg_filter)))
    typed = name in ("sum", "avg")
    if typed:
        indexes.append(columns.once(f"sum(DISTINCT {text(value)})"))
    indexes.append(columns.once("count(*)"))
    columns.multiplicity = indexes[-1]
    columns.gathers[sql] = GatherSpec(
        kind=name,
        distinct=bool(call.agg_distinct),
        texted=texted,
        order=tuple(order),
        filtered=call.agg_filter is not None,
        typed=typed,
        descending=descending,
        delimiter=delimiter,
        fractions=fractions,
        array=array,
    )
    return tuple(indexes)


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
            raise refuse(
                f"GROUP BY {text(item)} names an output column whose expression differs",
                "GROUP BY the expression or its position",
            )
        if aggregates_in(node):
            raise refuse(
                f"GROUP BY {text(node)} holds an aggregate", "group by columns or expressions"
            )
        columns.carry(text(node))
    return len(columns.texts)


def plan_aggregate(
    stmt: ast.SelectStmt, *, gather_limit: int, functions: frozenset[str]
) -> ScatterPlan:
    """The plan of a SELECT with aggregates, GROUP BY or HAVING; ``stmt`` is the
    caller's own tree (from ``parse_fresh``) and is rewritten into the group query.
    A gathering plan's group query returns at most ``gather_limit + 1`` rows."""
    for node, where in (
        (stmt.targetList, "the select list"),
        (stmt.havingClause, "HAVING"),
        (stmt.sortClause, "ORDER BY"),
    ):
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
    grouping = columns.texts[:key_count] + list(columns.gathered)
    gathers = columns.multiplicity is not None
    if gathers and key_count == 0 and columns.carried:
        # Over no rows no group returns a row to carry them, yet one server returns one.
        raise refuse(
            "an expression outside the aggregates next to a DISTINCT, ordered-set or "
            "ARRAY/STRING_AGG aggregate without GROUP BY",
            "compute it in the client, or " + ONE_GROUP,
        )
    group_query = parse_select(
        "SELECT "
        + ", ".join(columns.texts)
        + (" GROUP BY " + ", ".join(grouping) if grouping else "")
        + (f" LIMIT {gather_limit + 1}" if gathers else "")
    )
    distinct = bool(stmt.distinctClause)
    stmt.distinctClause = None
    stmt.targetList = group_query.targetList
    stmt.groupClause = group_query.groupClause
    stmt.havingClause = None
    stmt.sortClause = None
    stmt.limitCount = group_query.limitCount
    stmt.limitOffset = None
    stmt.limitOption = group_query.limitOption
    merge = AggregateMerge(
        key_count=key_count,
        carried=tuple(sorted(columns.carried.values())),
        aggregates=tuple(
            MergedAggregate(
                columns.names[sql], sql, indexes, columns.gathers.get(sql), columns.slots.get(sql)
            )
            for sql, indexes in columns.aggregates.items()
        ),
        outputs=tuple(outputs),
        having=having,
        order=tuple(order),
        limit=limit,
        offset=offset,
        distinct=distinct,
    )
    return ScatterPlan(
        group_sql=text(stmt),
        merge=merge,
        gathers=gathers,
        gather_limit=gather_limit if gathers else None,
        functions=functions,
    )
