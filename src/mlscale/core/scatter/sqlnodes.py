"""Reading a SELECT's pglast nodes for the scatter planner: printing, names, literals,
and the checks that refuse what the merger cannot make exact.

Only trees from ``parse_fresh`` are passed here: printing a node writes its
``ancestors`` (see :mod:`mlscale.core.sqltree`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pglast import ast, enums
from pglast.parser import ParseError
from pglast.stream import RawStream

from mlscale.core.scatter.aggregates import REFUSED, RULES
from mlscale.core.scatter.exprs import Const
from mlscale.core.scatter.gather import GATHERED
from mlscale.core.sqltree import parse_fresh, walk
from mlscale.errors import RoutingError

# Functions whose value differs per call: refused where the merger would combine or
# compare their per-group values. (Stable ones such as now() are the same in a statement.)
VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "setseed",
        "nextval",
        "setval",
        "currval",
        "lastval",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "txid_current",
        "pg_sleep",
    }
)
PREFIX = "cross-shard read: "
_INTEGER = re.compile(r"-?[0-9]+")
ONE_GROUP = "filter on the shard key so it runs on one group"


def refuse(what: str, todo: str = ONE_GROUP) -> RoutingError:
    return RoutingError(f"{PREFIX}{what}; {todo}")


def text(node: Any) -> str:
    # Printing writes the nodes' ``ancestors``: only trees from parse_fresh are printed.
    return str(RawStream()(node))


def func_name(call: ast.FuncCall) -> str:
    names = [str(n.sval) for n in call.funcname or ()]
    if len(names) == 2 and names[0] == "pg_catalog":
        names = names[1:]
    return ".".join(names).lower()


def is_aggregate(call: ast.FuncCall) -> bool:
    return call.over is None and (
        func_name(call) in RULES
        or func_name(call) in REFUSED
        or func_name(call) in GATHERED
        or bool(call.agg_star or call.agg_distinct or call.agg_within_group or call.agg_filter)
    )


def aggregates_in(node: Any) -> list[ast.FuncCall]:
    return [
        n
        for n in walk(node, prune=(ast.SubLink,))
        if isinstance(n, ast.FuncCall) and is_aggregate(n)
    ]


def int_const(node: Any, what: str) -> int | None:
    """A LIMIT or OFFSET literal; None for LIMIT ALL / NULL."""
    if node is None or (isinstance(node, ast.A_Const) and node.isnull):
        return None
    value = position_of(node)
    if value is not None and value >= 0:
        return value
    raise refuse(
        f"{what} {text(node)} is not a non-negative integer literal",
        f"write {what} as a literal number",
    )


def constant(node: ast.A_Const) -> Const:
    val = node.val
    if node.isnull:
        return Const(None)
    if isinstance(val, ast.Integer):
        return Const(int(val.ival or 0))
    if isinstance(val, ast.Float):
        # The parser makes an integer past int4 a Float; PostgreSQL then types it int8
        # if it fits (make_const), numeric if not. A point or an exponent is numeric.
        literal = str(val.fval)
        if _INTEGER.fullmatch(literal) and -(2**63) <= int(literal) < 2**63:
            return Const(int(literal))
        return Const(Decimal(literal))
    if isinstance(val, ast.Boolean):
        return Const(bool(val.boolval))
    if isinstance(val, ast.String):
        return Const(val.sval)
    raise refuse(
        f"the literal {text(node)} in a merged expression", "compare with a number or a text"
    )


def check_statement(stmt: ast.SelectStmt) -> None:
    if stmt.op != enums.SetOperation.SETOP_NONE:
        raise refuse(
            "UNION/INTERSECT/EXCEPT is not merged across shard groups yet",
            "run each SELECT on its own and combine the results",
        )
    for present, what in (
        (stmt.withClause, "WITH (a common table expression) is not merged across shard groups yet"),
        (stmt.intoClause, "SELECT INTO is not run across shard groups"),
        (stmt.lockingClause, "FOR UPDATE/SHARE is not run across shard groups"),
        (
            stmt.windowClause,
            "a WINDOW clause (window functions) cannot be merged across shard groups",
        ),
        (stmt.groupDistinct, "GROUP BY DISTINCT is not merged across shard groups yet"),
    ):
        if present:
            raise refuse(what)
    if stmt.distinctClause and stmt.distinctClause[0] is not None:
        raise refuse(
            "DISTINCT ON is not merged across shard groups (each group would keep "
            "its own first row per key)",
            "use DISTINCT or GROUP BY, or " + ONE_GROUP,
        )
    if stmt.limitOption == enums.LimitOption.LIMIT_OPTION_WITH_TIES:
        raise refuse(
            "FETCH ... WITH TIES is not merged across shard groups yet",
            "use LIMIT, or " + ONE_GROUP,
        )
    for node in walk(stmt):
        if isinstance(node, ast.FuncCall) and node.over is not None:
            raise refuse(f"the window function {text(node)} cannot be merged across shard groups")
        if isinstance(node, ast.GroupingSet):
            raise refuse("GROUPING SETS/ROLLUP/CUBE are not merged across shard groups yet")
        if isinstance(node, ast.SelectStmt) and node is not stmt:
            check_subquery(node)


def check_subquery(sub: ast.SelectStmt) -> None:
    if sub.distinctClause and sub.distinctClause[0] is not None:
        raise refuse(
            "a subquery with DISTINCT ON would keep one row per key on each shard "
            "group, so aggregates over it would count a key once per group",
            "use GROUP BY in the subquery, or " + ONE_GROUP,
        )
    if sub.limitCount is not None or sub.limitOffset is not None:
        raise refuse(
            "LIMIT/OFFSET inside a subquery would apply on each shard group, not once",
            "move the LIMIT to the outer query, or " + ONE_GROUP,
        )
    if sub.groupClause or sub.distinctClause or sub.havingClause or aggregates_in(sub.targetList):
        raise refuse(
            "a subquery with aggregates, GROUP BY or DISTINCT would be computed per shard group",
            "compute it in an outer query, or " + ONE_GROUP,
        )


def plain_functions(node: Any) -> frozenset[str]:
    """The names of the calls under ``node`` read as plain functions, not aggregates."""
    return frozenset(
        func_name(n)
        for n in walk(node)
        if isinstance(n, ast.FuncCall) and n.over is None and not is_aggregate(n)
    )


def check_volatile(node: Any, where: str) -> None:
    for item in walk(node):
        if isinstance(item, ast.FuncCall) and func_name(item) in VOLATILE_FUNCTIONS:
            raise refuse(
                f"the volatile function {func_name(item)}() in {where} would differ "
                "per shard group",
                "compute it in the client, or " + ONE_GROUP,
            )


def check_collation(node: Any) -> None:
    for item in walk(node):
        if isinstance(item, ast.CollateClause):
            name = str((item.collname or ("",))[-1].sval)
            if name not in ("C", "POSIX", "ucs_basic"):
                raise refuse(
                    f'ORDER BY ... COLLATE "{name}" is not merged across shard groups '
                    "(the merger sorts text in the C collation)",
                    "sort in the C collation",
                )


def sort_flags(item: ast.SortBy) -> tuple[bool, bool]:
    if item.sortby_dir == enums.SortByDir.SORTBY_USING:
        raise refuse("ORDER BY ... USING is not merged across shard groups", "use ASC or DESC")
    descending = item.sortby_dir == enums.SortByDir.SORTBY_DESC
    nulls = item.sortby_nulls
    if nulls == enums.SortByNulls.SORTBY_NULLS_DEFAULT:
        return descending, descending
    return descending, nulls == enums.SortByNulls.SORTBY_NULLS_FIRST


def position_of(node: Any) -> int | None:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
        return int(node.val.ival or 0)
    return None


def bare_name(node: Any) -> str | None:
    fields = node.fields if isinstance(node, ast.ColumnRef) else None
    if fields and len(fields) == 1 and isinstance(fields[0], ast.String):
        return str(fields[0].sval)
    return None


def select_list(stmt: ast.SelectStmt) -> list[ast.ResTarget]:
    return list(stmt.targetList or ())


def is_star(target: ast.ResTarget) -> bool:
    fields = target.val.fields if isinstance(target.val, ast.ColumnRef) else None
    return fields is not None and isinstance(fields[-1], ast.A_Star)


def target_for(node: Any, targets: list[ast.ResTarget], clause: str) -> int | None:
    """The select-list index an ORDER BY / GROUP BY item names (a position or an output
    alias), or None if it is an expression of its own."""
    position = position_of(node)
    if position is not None:
        if any(is_star(t) for t in targets[:position]):
            # PostgreSQL counts positions after expanding *, which only it can do.
            raise refuse(
                f"{clause} position {position} after a * in the select list",
                "name the columns, or order by a name",
            )
        if not 1 <= position <= len(targets):
            raise refuse(
                f"{clause} position {position} is not in the select list", "fix the position"
            )
        return position - 1
    name = bare_name(node)
    for index, target in enumerate(targets):
        if name is not None and target.name == name:
            return index
    return None


def check_distinct_order(stmt: ast.SelectStmt) -> None:
    """PostgreSQL rejects a SELECT DISTINCT whose ORDER BY is not in its select list; a
    hidden sort column would make the groups' DISTINCT wider, so say it here."""
    if not stmt.distinctClause:
        return
    targets = select_list(stmt)
    shown = {text(t.val) for t in targets}
    for item in stmt.sortClause or ():
        if target_for(item.node, targets, "ORDER BY") is None and text(item.node) not in shown:
            raise refuse(
                f"for SELECT DISTINCT, ORDER BY expressions must appear in select list "
                f"({text(item.node)})",
                "add it to the select list",
            )


def reparse_targets(texts: list[str]) -> tuple[ast.ResTarget, ...]:
    return tuple(parse_select("SELECT " + ", ".join(texts)).targetList or ())


def parse_one_select(sql: str) -> tuple[ast.RawStmt, ast.SelectStmt]:
    """The one SELECT of a caller's ``sql`` (a fresh tree, and its RawStmt); a
    RoutingError if it does not parse or is not exactly one SELECT."""
    try:
        statements = parse_fresh(sql)
    except ParseError as exc:
        raise RoutingError(f"{PREFIX}the statement does not parse: {exc}") from exc
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        raise RoutingError(f"{PREFIX}only one SELECT is merged across shard groups")
    return statements[0], statements[0].stmt


def parse_select(sql: str) -> ast.SelectStmt:
    """The one SELECT of ``sql`` (planner-made text), in a fresh tree."""
    stmt = parse_fresh(sql)[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        raise TypeError(f"not a SELECT: {sql}")
    return stmt
