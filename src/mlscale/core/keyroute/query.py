"""SELECT, UPDATE and DELETE: which shard keys bound every sharded table they read.

Every reference to a sharded table (a *rel*) must be *bound*: the rows of it that
can change the result all carry one of the routed keys. A rel is bound by

- a *pin* on its key column(s) -- ``key = value``, ``key IN (values)``,
  ``key = ANY(%s)``, ``key = ANY(ARRAY[values])``, row forms for composite keys --
  found as a top-level AND conjunct of a WHERE clause or of an inner JOIN's ON
  that restricts the rel's rows;
- an equality on the whole key with a bound rel of the same family
  (``a.user_id = b.user_id``, ``USING (user_id)``, a correlated subquery's
  ``o.user_id = u.id``), again where that conjunct restricts the rel's rows.

Which rows a conjunct restricts is where joins and subqueries need care: a WHERE
conjunct restricts its own query block, and also the enclosing block when the
subquery is an EXISTS/IN conjunct there; an ON conjunct restricts the rels on its
join's nullable side (both sides of an inner join), never the preserved side of
an outer join. Anything not understood binds nothing, so the answer is NoKey
(every shard), never one shard picked by guess. As a last guard, a sharded table
found anywhere in the tree that the walk did not register makes the answer NoKey.

The pins of one bound group come from one *source* rel; a statement needing more
than one source (a UNION, a WITH query pinned on its own) routes only when every
source gives the same single key at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pglast import ast
from pglast.enums import A_Expr_Kind, JoinType, SetOperation, SubLinkType

from ..sqltree import walk
from .placeholders import Numbered
from .plans import ByKeysPlan, Fixed, Plan
from .results import NoKey, Refused, ShardedTable
from .tree import (
    aggregate_or_window,
    column_refs,
    conjuncts,
    op_name,
    sharded_name,
    sublinks,
    walk_expr,
    why_not_pinned,
)
from .values import ArraySpread, KeySpec, ListSpread, Param, Source, Spread, source_of

__all__ = ["analyze_query"]


@dataclass(eq=False)
class _Block:
    """One query level: the names its FROM exposes and the sharded rels among them."""

    parent: _Block | None
    positive: bool  # an EXISTS/IN conjunct of the parent's WHERE
    names: dict[str, _Rel | None] = field(default_factory=dict)
    rels: list[_Rel] = field(default_factory=list)


@dataclass(eq=False)
class _Rel:
    """One reference to a sharded table."""

    table: ShardedTable
    refname: str
    block: _Block
    order: int

    def __str__(self) -> str:
        name = self.table.name
        return name if self.refname == name else f"{name} (as {self.refname})"

    def column(self, i: int) -> str:
        return f"{self.refname}.{self.table.key_columns[i]}"


Restricted = Callable[[_Rel], bool]


@dataclass
class _Pins:
    fixed: dict[int, Source] = field(default_factory=dict)
    spreads: list[Spread] = field(default_factory=list)


class _Analysis:
    def __init__(
        self, tables: Mapping[str, ShardedTable], numbered: Numbered, root: ast.Node
    ) -> None:
        self.tables = tables
        self.numbered = numbered
        self.ordinal = {id(n): i for i, n in enumerate(walk(root))}
        self.param_uses: dict[int, int] = {}
        for n in walk(root):
            if isinstance(n, ast.ParamRef):
                number = n.number or 0
                self.param_uses[number] = self.param_uses.get(number, 0) + 1
        self.ctes = {n.ctename or "" for n in walk(root) if isinstance(n, ast.CommonTableExpr)}
        self.rels: list[_Rel] = []
        self.seen: set[int] = set()  # ids of RangeVar nodes registered as rels
        self.pins: dict[_Rel, _Pins] = {}
        self.equal: dict[tuple[_Rel, _Rel], set[int]] = {}  # (from, to) -> key columns
        self.hints: dict[_Rel, list[str]] = {}
        self.unsplittable: str | None = None
        self.refusal: str | None = None

    # -- statements ------------------------------------------------------------------

    def statement(self, stmt: ast.Node) -> None:
        if isinstance(stmt, ast.SelectStmt):
            self.select(stmt, None, positive=False, top=True)
        elif isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt):
            self.modify(stmt, None)

    def with_clause(self, clause: ast.WithClause | None) -> None:
        for cte in (clause.ctes or ()) if clause is not None else ():
            query = cte.ctequery
            if isinstance(query, ast.SelectStmt):
                self.select(query, None, positive=False, top=False)
            elif isinstance(query, ast.UpdateStmt | ast.DeleteStmt):
                self.modify(query, None)
            elif isinstance(query, ast.InsertStmt):
                table = sharded_name(query.relation, self.tables)
                if table is not None:
                    self.refusal = (
                        f"INSERT into sharded table {table.name} inside WITH cannot be routed "
                        "by key; run the INSERT as its own statement"
                    )
                elif isinstance(query.selectStmt, ast.SelectStmt):
                    self.select(query.selectStmt, None, positive=False, top=False)

    def select(
        self, stmt: ast.SelectStmt, parent: _Block | None, positive: bool, top: bool
    ) -> None:
        self.with_clause(stmt.withClause)
        if stmt.op != SetOperation.SETOP_NONE:
            self.flag("UNION/INTERSECT/EXCEPT")
            for arm in (stmt.larg, stmt.rarg):
                if arm is not None:
                    self.select(arm, parent, positive=False, top=False)
            self.clauses(stmt, parent or _Block(None, False), top)
            return
        block = _Block(parent, positive and _no_row_when_filtered_out(stmt))
        for item in stmt.fromClause or ():
            self.from_item(item, block)
        self.where(stmt.whereClause, block)
        for values in stmt.valuesLists or ():
            self.expressions(values, block)
        self.expressions(stmt.targetList, block)
        self.clauses(stmt, block, top)

    def clauses(self, stmt: ast.SelectStmt, block: _Block, top: bool) -> None:
        """GROUP BY, ORDER BY, LIMIT...: subqueries in them, and whether a split may merge."""
        if stmt.groupClause:
            self.flag("GROUP BY")
        if stmt.havingClause is not None:
            self.flag("HAVING")
        if stmt.distinctClause:
            self.flag("DISTINCT")
        if stmt.limitCount is not None or stmt.limitOffset is not None:
            self.flag("LIMIT/OFFSET")
        if top and stmt.sortClause:
            self.flag("ORDER BY")
        for part in (stmt.targetList, stmt.havingClause, stmt.sortClause):
            for node in walk_expr(part):
                if isinstance(node, ast.FuncCall) and (what := aggregate_or_window(node)):
                    self.flag(what)
        for part in (
            stmt.groupClause,
            stmt.havingClause,
            stmt.sortClause,
            stmt.windowClause,
            stmt.limitCount,
            stmt.limitOffset,
        ):
            self.expressions(part, block)

    def flag(self, what: str) -> None:
        if self.unsplittable is None:
            self.unsplittable = f"{what}: per-shard results cannot simply be concatenated"

    def modify(self, stmt: ast.UpdateStmt | ast.DeleteStmt, parent: _Block | None) -> None:
        self.with_clause(stmt.withClause)
        block = _Block(parent, positive=False)
        target = self.from_item(stmt.relation, block)
        extra = stmt.fromClause if isinstance(stmt, ast.UpdateStmt) else stmt.usingClause
        for item in extra or ():
            self.from_item(item, block)
        self.where(stmt.whereClause, block)
        if isinstance(stmt, ast.UpdateStmt):
            self.expressions(stmt.targetList, block)
            for rel in target:
                for res in stmt.targetList or ():
                    if res.name in rel.table.key_columns:
                        self.refusal = (
                            "UPDATE of a shard key column is refused: the row would move to "
                            f"another shard ({rel.table.name}.{res.name}); delete and insert "
                            "it instead"
                        )
        returning = stmt.returningClause
        self.expressions(getattr(returning, "exprs", None), block)

    # -- FROM ----------------------------------------------------------------------------

    def from_item(self, item: Any, block: _Block) -> list[_Rel]:
        """Register a FROM item's names; the sharded rels in it."""
        if isinstance(item, ast.RangeVar):
            alias = item.alias.aliasname if item.alias is not None else None
            refname = alias or item.relname or ""
            table = sharded_name(item, self.tables)
            if table is None or (item.schemaname is None and item.relname in self.ctes):
                block.names[refname] = None
                return []
            rel = _Rel(table, refname, block, len(self.rels))
            block.names[refname] = rel
            block.rels.append(rel)
            self.rels.append(rel)
            self.seen.add(id(item))
            return [rel]
        if isinstance(item, ast.JoinExpr):
            left = self.from_item(item.larg, block)
            right = self.from_item(item.rarg, block)
            if item.alias is not None:
                block.names[item.alias.aliasname or ""] = None
            self.join(item, left, right, block)
            return left + right
        if isinstance(item, ast.RangeSubselect):
            if isinstance(item.subquery, ast.SelectStmt):
                self.select(item.subquery, block, positive=False, top=False)
        else:  # functions, VALUES-like table functions, XMLTABLE, JSON_TABLE...
            self.expressions(item, block)
        alias = getattr(item, "alias", None)
        if alias is not None:
            block.names[alias.aliasname] = None
        return []

    def join(self, item: ast.JoinExpr, left: list[_Rel], right: list[_Rel], block: _Block) -> None:
        kind = item.jointype
        if kind == JoinType.JOIN_INNER:
            restricted = set(left + right)
        elif kind == JoinType.JOIN_LEFT:
            restricted = set(right)
        elif kind == JoinType.JOIN_RIGHT:
            restricted = set(left)
        else:  # FULL: both sides are preserved
            restricted = set()
        names: list[str] = [getattr(s, "sval", "") for s in item.usingClause or ()]
        if item.isNatural:  # equates every common column, the same-named keys among them
            names = [c for r in left for c in r.table.key_columns]
        for name in names:
            for a in left:
                for b in right:
                    i, j = _index(a, name), _index(b, name)
                    if i is not None and i == j:
                        self.equate(a, b, i, restricted.__contains__)
        for c in conjuncts(item.quals):
            self.conjunct(c, block, restricted.__contains__)
        self.expressions(item.quals, block)

    # -- WHERE ---------------------------------------------------------------------------

    def where(self, clause: Any, block: _Block) -> None:
        chain = {block}
        b = block
        while b.positive and b.parent is not None:
            b = b.parent
            chain.add(b)

        def restricted(rel: _Rel) -> bool:
            return rel.block in chain

        for c in conjuncts(clause):
            self.conjunct(c, block, restricted)
            if isinstance(c, ast.SubLink) and c.subLinkType in (
                SubLinkType.EXISTS_SUBLINK,
                SubLinkType.ANY_SUBLINK,
            ):
                self.expressions(c.testexpr, block)
                if isinstance(c.subselect, ast.SelectStmt):
                    self.select(c.subselect, block, positive=True, top=False)
            else:
                self.expressions(c, block)

    def expressions(self, node: Any, block: _Block) -> None:
        """Subqueries inside an expression: blocks that restrict nothing outside them."""
        for link in sublinks(node):
            self.expressions(link.testexpr, block)
            if isinstance(link.subselect, ast.SelectStmt):
                self.select(link.subselect, block, positive=False, top=False)

    def conjunct(self, c: Any, block: _Block, restricted: Restricted) -> None:
        if isinstance(c, ast.A_Expr) and op_name(c) == "=":
            if c.kind == A_Expr_Kind.AEXPR_OP:
                self.equality(c, c.lexpr, c.rexpr, block, restricted)
                return
            if c.kind == A_Expr_Kind.AEXPR_IN:
                self.in_list(c, block, restricted)
                return
            if c.kind == A_Expr_Kind.AEXPR_OP_ANY:
                self.any_array(c, block, restricted)
                return
        self.hint(c, block, why_not_pinned(c))

    def equality(
        self, c: Any, left: Any, right: Any, block: _Block, restricted: Restricted
    ) -> None:
        if isinstance(left, ast.RowExpr) and isinstance(right, ast.RowExpr):
            if len(left.args or ()) == len(right.args or ()):
                for a, b in zip(left.args or (), right.args or (), strict=True):
                    self.equality(c, a, b, block, restricted)
            return
        lcols, rcols = self.resolve(left, block), self.resolve(right, block)
        if lcols and rcols:
            for a, i in lcols:
                for b, j in rcols:
                    if i == j:
                        self.equate(a, b, i, restricted)
            return
        cols, other = (lcols, right) if lcols else (rcols, left)
        if not cols:
            return
        source = source_of(other, self.numbered)
        what = (
            "a column that is not the shard key of a co-located table"
            if isinstance(other, ast.ColumnRef)
            else "an expression, not a parameter or constant"
        )
        for rel, i in cols:
            if source is None:
                self.add_hint(rel, f"{rel.column(i)} is compared with {what}")
            elif restricted(rel):
                self.pins_of(rel).fixed.setdefault(i, source)

    def in_list(self, c: ast.A_Expr, block: _Block, restricted: Restricted) -> None:
        items = c.rexpr if isinstance(c.rexpr, tuple | list) else None
        if items is None:  # IN (subquery) is a SubLink, not this
            self.hint(c, block, "the shard key is compared with something the router cannot read")
            return
        if isinstance(c.lexpr, ast.RowExpr):
            self.row_in_list(c, c.lexpr, items, block, restricted)
            return
        cols = self.resolve(c.lexpr, block)
        sources = [source_of(x, self.numbered) for x in items]
        for rel, i in cols:
            if any(s is None for s in sources):
                why = f"an item of the IN list on {rel.column(i)} is not a parameter or constant"
                self.add_hint(rel, why)
            elif restricted(rel):
                row = tuple((s,) for s in sources if s is not None)
                spread = ListSpread((i,), row, self.ordinal[id(c)], "rexpr")
                self.pins_of(rel).spreads.append(spread)

    def row_in_list(
        self, c: ast.A_Expr, row: ast.RowExpr, items: Any, block: _Block, restricted: Restricted
    ) -> None:
        resolved = [self.resolve(arg, block) for arg in row.args or ()]
        rels = {rel for cols in resolved for rel, _ in cols}
        if len(rels) != 1 or any(len(cols) > 1 for cols in resolved):
            return
        (rel,) = rels
        positions = [(p, cols[0][1]) for p, cols in enumerate(resolved) if cols]
        values: list[tuple[Source, ...]] = []
        for item in items:
            args = item.args if isinstance(item, ast.RowExpr) else None
            if args is None or len(args) != len(resolved):
                self.add_hint(rel, "an item of a row IN list is not a row of the same width")
                return
            sources = [source_of(args[p], self.numbered) for p, _ in positions]
            if any(s is None for s in sources):
                self.add_hint(rel, "an item of a row IN list is not parameters or constants")
                return
            values.append(tuple(s for s in sources if s is not None))
        if restricted(rel):
            columns = tuple(i for _, i in positions)
            spread = ListSpread(columns, tuple(values), self.ordinal[id(c)], "rexpr")
            self.pins_of(rel).spreads.append(spread)

    def any_array(self, c: ast.A_Expr, block: _Block, restricted: Restricted) -> None:
        cols = self.resolve(c.lexpr, block)
        if not cols:
            return
        spread: Spread | None = None
        right = c.rexpr
        if isinstance(right, ast.A_ArrayExpr):
            sources = [source_of(x, self.numbered) for x in right.elements or ()]
            if all(s is not None for s in sources):
                row = tuple((s,) for s in sources if s is not None)
                spread = ListSpread((0,), row, self.ordinal[id(right)], "elements")
        else:
            source = source_of(right, self.numbered)
            if isinstance(source, Param):
                param = right
                while isinstance(param, ast.TypeCast):
                    param = param.arg
                shared = self.param_uses.get(source.number, 0) > 1
                spread = ArraySpread(0, source, shared, self.ordinal[id(param)])
        for rel, i in cols:
            if spread is None:
                why = (
                    f"{rel.column(i)} = ANY(...) needs a list parameter (= ANY(%s)) "
                    "or ARRAY[parameters or constants]"
                )
                self.add_hint(rel, why)
            elif restricted(rel):
                self.pins_of(rel).spreads.append(_on_column(spread, i))

    # -- names and facts -------------------------------------------------------------------

    def resolve(self, node: Any, block: _Block) -> list[tuple[_Rel, int]]:
        """The (rel, key column index) pairs a column reference names, if a shard key."""
        if not isinstance(node, ast.ColumnRef):
            return []
        fields = [getattr(f, "sval", None) for f in node.fields or ()]
        if not fields or any(f is None for f in fields):
            return []
        column = str(fields[-1])
        if len(fields) == 1:
            # Only the block's own rels: an inner block's table may have a column of that
            # name that is not a key, and PostgreSQL resolves the innermost.
            return [(r, i) for r in block.rels if (i := _index(r, column)) is not None]
        qualifier = str(fields[-2])
        b: _Block | None = block
        while b is not None:
            if qualifier in b.names:
                rel = b.names[qualifier]
                i = _index(rel, column) if rel is not None else None
                return [(rel, i)] if rel is not None and i is not None else []
            b = b.parent
        return []

    def equate(self, a: _Rel, b: _Rel, i: int, restricted: Restricted) -> None:
        if a is b:
            return
        if restricted(b):
            self.equal.setdefault((a, b), set()).add(i)
        if restricted(a):
            self.equal.setdefault((b, a), set()).add(i)

    def pins_of(self, rel: _Rel) -> _Pins:
        return self.pins.setdefault(rel, _Pins())

    def hint(self, c: Any, block: _Block, why: str) -> None:
        for ref in column_refs(c):
            for rel, i in self.resolve(ref, block):
                self.add_hint(rel, why.format(column=rel.column(i)))

    def add_hint(self, rel: _Rel, why: str) -> None:
        hints = self.hints.setdefault(rel, [])
        if why not in hints:
            hints.append(why)

    # -- verdict -----------------------------------------------------------------------------

    def spec(self, rel: _Rel) -> KeySpec | None:
        pins = self.pins.get(rel)
        if pins is None:
            return None
        width = len(rel.table.key_columns)
        if len(pins.fixed) == width:
            return KeySpec(tuple(pins.fixed[i] for i in range(width)))
        missing = set(range(width)) - set(pins.fixed)
        best: Spread | None = None
        for spread in pins.spreads:
            columns = {spread.column} if isinstance(spread, ArraySpread) else set(spread.columns)
            if missing <= columns and (best is None or spread.size < best.size):
                best = spread
        if best is None:
            if pins.fixed:
                unpinned = ", ".join(rel.column(i) for i in sorted(missing))
                self.add_hint(rel, f"its composite shard key is not pinned on {unpinned}")
            return None
        covered = {best.column} if isinstance(best, ArraySpread) else set(best.columns)
        return KeySpec(tuple(None if i in covered else pins.fixed[i] for i in range(width)), best)

    def verdict(self, root: ast.Node) -> Plan:
        if self.refusal is not None:
            return Fixed(Refused(self.refusal))
        names = tuple(dict.fromkeys(r.table.name for r in self.rels))
        locked = {  # FOR UPDATE OF names a FROM item, it reads no table of its own
            id(rv)
            for node in walk(root)
            if isinstance(node, ast.LockingClause)
            for rv in node.lockedRels or ()
        }
        for node in walk(root):
            if isinstance(node, ast.RangeVar) and id(node) not in self.seen | locked:
                table = sharded_name(node, self.tables)
                if table is not None and not (
                    node.schemaname is None and node.relname in self.ctes
                ):
                    reason = (
                        f"sharded table {table.name} is read in a part of the statement the "
                        "key router does not follow; pin its key in a plain WHERE clause"
                    )
                    return Fixed(NoKey(reason, names or (table.name,)))
        clash = sorted(self.ctes & set(self.tables))
        if clash:
            reason = f"a WITH query is named like sharded table {clash[0]}; rename the WITH query"
            return Fixed(NoKey(reason, names))
        specs = {rel: s for rel in self.rels if (s := self.spec(rel)) is not None}
        edges: dict[_Rel, list[_Rel]] = {}
        for (a, b), columns in self.equal.items():
            if len(columns) == len(a.table.key_columns):
                edges.setdefault(a, []).append(b)
        ranked = sorted(specs, key=lambda r: (specs[r].rank, r.order))
        reach = {source: _reach(source, edges) for source in ranked}
        everything = set(self.rels)
        alone = [source for source in ranked if reach[source] >= everything]
        uncovered = set() if alone else everything
        chosen: list[_Rel] = alone[:1]
        for source in ranked if not alone else ():
            if reach[source] & uncovered:
                chosen.append(source)
                uncovered -= reach[source]
        if uncovered:
            rel = min(uncovered, key=lambda r: r.order)
            return Fixed(NoKey(self.unbound(rel), names))
        return ByKeysPlan(
            chosen[0].table,
            tuple(specs[r] for r in chosen),
            self.numbered,
            self.unsplittable,
            names,
        )

    def unbound(self, rel: _Rel) -> str:
        cols = ", ".join(rel.table.key_columns)
        why = "; ".join(self.hints.get(rel, ()))
        if not why:
            why = _pin_help(rel)
            if any(r is not rel for r in self.rels):
                why = f"join it on its shard key ({cols}) to a table whose key is pinned, or {why}"
        return f"the shard key ({cols}) of sharded table {rel} is not pinned: {why}"


def _no_row_when_filtered_out(stmt: ast.SelectStmt) -> bool:
    """Whether the query returns no row when its WHERE rejects every row.

    Only then does an EXISTS/IN on it restrict the outer rows: ``SELECT count(*)``
    (and HAVING, GROUP BY ROLLUP...) returns a row even from no input.
    """
    if stmt.groupClause or stmt.havingClause is not None:
        return False
    return not any(
        isinstance(node, ast.FuncCall) and aggregate_or_window(node)
        for node in walk_expr(stmt.targetList)
    )


def _pin_help(rel: _Rel) -> str:
    if len(rel.table.key_columns) == 1:
        c = rel.column(0)
        return f"pin it with {c} = %s, {c} IN (...) or {c} = ANY(%s) in the WHERE clause"
    cols = ", ".join(rel.column(i) for i in range(len(rel.table.key_columns)))
    return (
        f"pin every key column ({cols}) with = %s in the WHERE clause (one of them may use "
        "IN (...) or = ANY(%s))"
    )


def _reach(source: _Rel, edges: dict[_Rel, list[_Rel]]) -> set[_Rel]:
    seen = {source}
    stack = [source]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _index(rel: _Rel, column: str) -> int | None:
    try:
        return rel.table.key_columns.index(column)
    except ValueError:
        return None


def _on_column(spread: Spread, column: int) -> Spread:
    if isinstance(spread, ArraySpread):
        return ArraySpread(column, spread.param, spread.shared, spread.node)
    return ListSpread((column,), spread.items, spread.node, spread.attribute)


def analyze_query(
    stmt: ast.Node, root: ast.Node, tables: Mapping[str, ShardedTable], numbered: Numbered
) -> Plan:
    """The plan for a SELECT/UPDATE/DELETE ``stmt`` found in ``root`` (EXPLAIN, COPY...)."""
    analysis = _Analysis(tables, numbered, root)
    analysis.statement(stmt)
    return analysis.verdict(root)
