"""Which sharded tables a cross-shard read fans out over, and the filter that makes each
shard group read only the rows it owns.

A keyless SELECT runs on every shard group and the groups' rows are merged. That is
exact only if every row of the answer is built from rows of one group, so that the
groups' answers are disjoint and their union is the whole answer. :func:`check_fanout`
decides this from the statement's tree and lists the sharded-table references;
:func:`owned_rows_sql` then rewrites a group's query so each of those references reads
only the rows the group owns in the map version the plan used (ARCHITECTURE decision
6): a slot whose rows briefly exist on two groups during a move is read once.

The rules, per query level. Its FROM items are *units*; the sharded tables in one unit
are already tied together. Units combined by inner joins (``JOIN ... ON``, ``USING``,
commas with WHERE conjuncts) must all be tied, directly or through other units, by
equalities on the whole shard key at the same key positions (``a.k = b.k``, also via a
column of a third table: ``a.k = r.id AND r.id = b.k``). An outer join must have the
tie in its own ON/USING, and its preserved side must read a sharded table: a reference
table's unmatched rows would repeat on every group. Equalities are strict, so a row
that an outer join filled with NULLs ties nothing. Tables of one key family with equal
keys live on one group, so tied rows are co-located and each answer row is built once,
on its group.

A subquery over sharded tables (IN, EXISTS, a scalar one, ARRAY, a derived table, a
LATERAL one) is *confined* when its own WHERE/ON ties it to a sharded table of an
enclosing query: it then sees the outer row's group only and may compute anything.
Otherwise it must be tied from outside (``a.k IN (SELECT b.k ...)``, or a derived
table joined on an output column that is its shard key) and must not compute across
rows of several groups: no LIMIT/OFFSET, DISTINCT ON, window functions or grouping
sets, GROUP BY and DISTINCT only over the whole key.

Tables that are not sharded are read as each group's own copy: reference tables,
kept the same on every group. Sharded tables never have NULL shard keys (their primary
key contains the key); the ownership filter reads no such row. A sharded table given
column aliases (``t AS a(x, y)``) ties nothing, as which alias names a key column is
not known here. Anything not understood is refused, naming the construct and what to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast import ast
from pglast.enums import A_Expr_Kind, JoinType, SetOperation, SubLinkType
from psycopg import sql

from mlscale.core.keyroute.results import ShardedTable
from mlscale.core.keyroute.tree import aggregate_or_window, conjuncts, op_name, walk_expr
from mlscale.core.scatter.sqlnodes import ONE_GROUP, PREFIX, parse_one_select, refuse, text
from mlscale.core.sqltree import walk
from mlscale.errors import RoutingError

__all__ = ["FanoutTables", "Predicate", "TableRef", "check_fanout", "owned_rows_sql"]

Predicate = Callable[[ShardedTable, Sequence[sql.Composable]], sql.Composable]
"""SQL true for exactly the rows one group owns, over a table's key columns; the
caller binds the group and the map version (``shard_map.predicate(group, columns)``)."""


@dataclass(frozen=True, slots=True)
class TableRef:
    """One reference to a sharded table in a fanned-out statement: the name the
    statement reads it by (its alias, else the table name) and the table."""

    alias: str
    table: ShardedTable


@dataclass(frozen=True, slots=True)
class FanoutTables:
    """A statement that may run on every shard group: the key family of its sharded
    tables and each reference to one, in the order they appear."""

    family: str
    refs: tuple[TableRef, ...]

    @property
    def tables(self) -> tuple[str, ...]:
        """The sharded tables read, each once, in order of first reference."""
        return tuple(dict.fromkeys(r.table.name for r in self.refs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "refs": [{"alias": r.alias, "table": r.table.name} for r in self.refs],
        }


# -- the analysis -----------------------------------------------------------------------


@dataclass(eq=False)
class _Rel:
    """One reference to a sharded table."""

    table: ShardedTable
    alias: str
    renamed: bool = False  # ``t AS a(x, y)``: which name is a key column is unknown

    def __str__(self) -> str:
        name = self.table.name
        return name if self.alias == name else f"{name} (as {self.alias})"

    def column(self, i: int) -> str:
        return f"{self.alias}.{self.table.key_columns[i]}"


@dataclass(eq=False)
class _Other:
    """A FROM item that is not a sharded table (a reference table, a function, a CTE)."""

    name: str


@dataclass(eq=False)
class _Derived:
    """A subquery in FROM: which of its output columns are shard key columns inside it."""

    block: _Block
    columns: dict[str, list[Term]]
    stars: list[str | None]  # qualifiers of its * targets (None: a bare *)


Source = _Rel | _Other | _Derived
# A column as the union-find knows it: (rel, key index) for a shard key column, or
# ("col", source, name) for any other column named with its source.
Term = tuple[Any, ...]


@dataclass(eq=False)
class _Block:
    """One query level: the names its FROM exposes so far."""

    parent: _Block | None
    names: dict[str, Source] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class _Unit:
    """FROM items whose sharded tables are tied together. ``anchors`` are the sharded
    tables of enclosing queries (or earlier LATERAL siblings) they are tied to."""

    rels: frozenset[_Rel]
    anchors: frozenset[_Rel]
    label: str

    @staticmethod
    def reference(label: str) -> _Unit:
        return _Unit(frozenset(), frozenset(), label)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        root = x
        while root in self.parent:
            root = self.parent[root]
        while x in self.parent:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


_OUTER = object()  # the enclosing queries' sharded tables, as one node


class _Analysis:
    def __init__(self, tables: Mapping[str, ShardedTable], ctes: set[str]) -> None:
        self.tables = tables
        self.ctes = ctes
        self.rels: list[_Rel] = []
        self.seen: set[int] = set()  # ids of the RangeVars registered as rels

    def sharded(self, rv: ast.RangeVar) -> ShardedTable | None:
        return _sharded(rv, self.tables, self.ctes)

    # -- query levels ------------------------------------------------------------------

    def select(
        self, stmt: ast.SelectStmt, parent: _Block | None, top: bool = False
    ) -> tuple[_Unit, _Block]:
        """The unit a query level forms; refuses what cannot run per group. ``top``: the
        statement itself, whose aggregates and LIMIT the merge plan handles."""
        block = _Block(parent)
        before = len(self.rels)
        if stmt.withClause is not None:
            for cte in stmt.withClause.ctes or ():
                if isinstance(cte.ctequery, ast.SelectStmt):
                    self.select(cte.ctequery, None)
                if len(self.rels) > before:
                    raise refuse(
                        f"the WITH query {cte.ctename} reads sharded table "
                        f"{self.rels[before].table.name}, which is not split per shard group",
                        "write it as a subquery in FROM, or " + ONE_GROUP,
                    )
        if stmt.op != SetOperation.SETOP_NONE:
            for arm in (stmt.larg, stmt.rarg):
                if arm is not None:
                    self.select(arm, parent)
            if len(self.rels) > before:
                raise refuse(
                    f"UNION/INTERSECT/EXCEPT over sharded table {self.rels[before].table.name} "
                    "is not run across shard groups",
                    "run each SELECT on its own and combine the results",
                )
            return _Unit.reference("a UNION"), block
        eqs: list[tuple[Term, Term]] = []
        units = [u for item in stmt.fromClause or () for u in self.from_item(item, block, eqs)]
        eqs += self.equalities(stmt.whereClause, block)
        for part in (
            stmt.whereClause,
            stmt.targetList,
            stmt.havingClause,
            stmt.groupClause,
            stmt.sortClause,
            stmt.limitCount,
            stmt.limitOffset,
            stmt.valuesLists,
            stmt.windowClause,
            stmt.distinctClause,
        ):
            self.subqueries(part, block)
        unit = self.combine(units, eqs, "join")
        if not top and unit.rels and not unit.anchors:
            self.check_unconfined(stmt, unit, block)
        return unit, block

    def check_unconfined(self, stmt: ast.SelectStmt, unit: _Unit, block: _Block) -> None:
        """A subquery not confined to one group must not compute across its rows."""
        what = None
        windows = any(
            isinstance(n, ast.FuncCall) and n.over is not None
            for n in walk_expr((stmt.targetList, stmt.sortClause))
        )
        aggregated = stmt.havingClause is not None or any(
            isinstance(n, ast.FuncCall) and aggregate_or_window(n)
            for n in walk_expr((stmt.targetList, stmt.sortClause))
        )
        if stmt.limitCount is not None or stmt.limitOffset is not None:
            what = "LIMIT/OFFSET"
        elif stmt.distinctClause and stmt.distinctClause[0] is not None:
            what = "DISTINCT ON"
        elif windows or stmt.windowClause:
            what = "a window function"
        elif any(isinstance(n, ast.GroupingSet) for n in walk_expr(stmt.groupClause)):
            what = "GROUPING SETS/ROLLUP/CUBE"
        elif stmt.groupClause and not self.covers_key(stmt.groupClause, unit, block):
            what = "GROUP BY without the whole shard key"
        elif aggregated and not stmt.groupClause:
            what = "an aggregate without GROUP BY on the shard key"
        elif stmt.distinctClause and not self.covers_key(stmt.targetList, unit, block):
            what = "DISTINCT without the whole shard key in its select list"
        if what is not None:
            raise refuse(
                f"{what} in a subquery over {_names(unit.rels)} that is not correlated on "
                "the shard key would be computed on each shard group, not once",
                "correlate the subquery on the shard key (WHERE inner.key = outer.key), or "
                "compute it in the outer query",
            )

    def covers_key(self, items: Any, unit: _Unit, block: _Block) -> bool:
        """Whether plain columns among ``items`` (GROUP BY items, or the select list,
        where a * counts as every column) are the whole key of one of ``unit``'s tables."""
        found: set[Term] = set()
        for item in items or ():
            node = item.val if isinstance(item, ast.ResTarget) else item
            fields = _fields(node)
            if fields and fields[-1] is None:  # a star
                qual = fields[-2] if len(fields) > 1 else None
                for rel in unit.rels:
                    if qual is None or block.names.get(str(qual)) is rel:
                        found.update((rel, i) for i in range(len(rel.table.key_columns)))
            else:
                found.update(self.terms(node, block))
        return any(
            all((rel, i) in found for i in range(len(rel.table.key_columns))) for rel in unit.rels
        )

    # -- FROM ------------------------------------------------------------------------------

    def from_item(self, item: Any, block: _Block, eqs: list[tuple[Term, Term]]) -> list[_Unit]:
        """The units of a FROM item; inner joins add their ON equalities to ``eqs``."""
        if isinstance(item, ast.RangeVar):
            return [self.register(item, block)]
        if isinstance(item, ast.JoinExpr):
            if item.jointype == JoinType.JOIN_INNER:
                left = self.from_item(item.larg, block, eqs)
                right = self.from_item(item.rarg, block, eqs)
                eqs += self.join_equalities(item, left, right, block)
                self.subqueries(item.quals, block)
                units = left + right
            else:
                units = [self.outer_join(item, block)]
            if item.alias is not None:
                block.names[item.alias.aliasname or ""] = _Other(item.alias.aliasname or "")
            return units
        if isinstance(item, ast.RangeSubselect) and isinstance(item.subquery, ast.SelectStmt):
            scope = block if item.lateral else block.parent
            unit, inner = self.select(item.subquery, scope)
            alias = item.alias.aliasname if item.alias is not None else None
            if alias:
                block.names[alias] = _derived(item, inner, self)
            if not unit.rels:
                return [unit]
            kind = "LATERAL subquery" if item.lateral else "subquery"
            label = f"the {kind} {alias or ''} (over {_names(unit.rels)})".replace("  ", " ")
            return [_Unit(unit.rels, unit.anchors, label)]
        if isinstance(item, ast.RangeTableSample):
            relation = item.relation
            if isinstance(relation, ast.RangeVar) and self.sharded(relation) is not None:
                raise refuse(
                    f"TABLESAMPLE on sharded table {relation.relname} is not run "
                    "across shard groups",
                    "sample in the client, or " + ONE_GROUP,
                )
            return self.from_item(relation, block, eqs)
        # Table functions (LATERAL ones included), XMLTABLE...: no table of their own.
        self.subqueries(item, block)
        alias = getattr(item, "alias", None)
        name = (alias.aliasname if alias is not None else None) or "a table function"
        if alias is not None:
            block.names[name] = _Other(name)
        return [_Unit.reference(name)]

    def register(self, rv: ast.RangeVar, block: _Block) -> _Unit:
        refname = (rv.alias.aliasname if rv.alias is not None else None) or rv.relname or ""
        table = self.sharded(rv)
        if table is None:
            block.names[refname] = _Other(refname)
            return _Unit.reference(refname)
        rel = _Rel(table, refname, bool(rv.alias is not None and rv.alias.colnames))
        self.rels.append(rel)
        self.seen.add(id(rv))
        block.names[refname] = rel
        return _Unit(frozenset((rel,)), frozenset(), str(rel))

    def outer_join(self, item: ast.JoinExpr, block: _Block) -> _Unit:
        word = {
            JoinType.JOIN_LEFT: "LEFT JOIN",
            JoinType.JOIN_RIGHT: "RIGHT JOIN",
            JoinType.JOIN_FULL: "FULL JOIN",
        }.get(item.jointype or JoinType.JOIN_INNER)
        if word is None:
            raise refuse(
                f"a join of kind {item.jointype} is not understood here",
                "write it as an inner or outer join",
            )
        sides = []
        for arg in (item.larg, item.rarg):
            side_eqs: list[tuple[Term, Term]] = []
            sides.append(self.combine(self.from_item(arg, block, side_eqs), side_eqs, "join"))
        left, right = sides
        on = self.join_equalities(item, [left], [right], block)
        self.subqueries(item.quals, block)
        preserved = {"LEFT JOIN": (left,), "RIGHT JOIN": (right,), "FULL JOIN": (left, right)}
        if left.rels or right.rels:
            for side in preserved[word]:
                other = right if side is left else left
                if not side.rels:
                    raise refuse(
                        f"the {word} keeps every row of {side.label}, which is not a sharded "
                        f"table: its rows without a match in {other.label} would repeat on "
                        "every shard group",
                        "put the sharded table on the preserved side or use an inner join, "
                        "or " + ONE_GROUP,
                    )
        if left.rels and right.rels:
            return self.combine([left, right], on, word)
        return _Unit(
            left.rels | right.rels,
            left.anchors | right.anchors,
            f"{left.label} {word} {right.label}",
        )

    def join_equalities(
        self, item: ast.JoinExpr, left: list[_Unit], right: list[_Unit], block: _Block
    ) -> list[tuple[Term, Term]]:
        """USING/NATURAL and ON equalities of a join."""
        lrels = [r for u in left for r in u.rels]
        rrels = [r for u in right for r in u.rels]
        names = [str(getattr(s, "sval", "")) for s in item.usingClause or ()]
        if item.isNatural:  # equates every common column: the keys both sides have
            names = [c for r in lrels for c in r.table.key_columns]
        out: list[tuple[Term, Term]] = []
        for name in names:
            for a in lrels:
                for b in rrels:
                    i, j = _index(a, name), _index(b, name)
                    if i is not None and i == j:
                        out.append(((a, i), (b, i)))
        return out + self.equalities(item.quals, block)

    # -- ties ------------------------------------------------------------------------------

    def combine(self, units: list[_Unit], eqs: list[tuple[Term, Term]], what: str) -> _Unit:
        """One unit from ``units`` joined under the equalities ``eqs``; refuses when
        their sharded tables are not all tied."""
        terms = _UnionFind()
        for a, b in eqs:
            terms.union(a, b)
        owner = {rel: n for n, u in enumerate(units) for rel in u.rels}
        graph = _UnionFind()
        outer: set[_Rel] = set()

        def node(rel: _Rel) -> Any:
            if rel in owner:
                return owner[rel]
            outer.add(rel)
            return _OUTER

        for n, u in enumerate(units):
            for anchor in u.anchors:
                graph.union(n, node(anchor))
        mentioned = [t[0] for pair in eqs for t in pair if isinstance(t[0], _Rel)]
        candidates = list(dict.fromkeys([*owner, *mentioned]))
        for x_pos, x in enumerate(candidates):
            for y in candidates[x_pos + 1 :]:
                if (x in owner or y in owner) and _tied(terms, x, y):
                    graph.union(node(x), node(y))
        sharded = [n for n, u in enumerate(units) if u.rels]
        rels = frozenset(r for u in units for r in u.rels)
        label = " and ".join(u.label for u in units)
        if not sharded:
            return _Unit(rels, frozenset(), label)
        first = sharded[0]
        for n in sharded[1:]:
            if graph.find(n) != graph.find(first):
                raise self.not_on_key(units[first], units[n], terms, what)
        confined = graph.find(first) == graph.find(_OUTER)
        return _Unit(rels, frozenset(outer) if confined else frozenset(), label)

    def not_on_key(self, a: _Unit, b: _Unit, terms: _UnionFind, what: str) -> RoutingError:
        x = min(a.rels, key=self.rels.index)
        y = min(b.rels, key=self.rels.index)
        keys = x.table.key_columns
        cols = ", ".join(keys)
        partial = any(
            terms.find((p, i)) == terms.find((q, i))
            for p in a.rels
            for q in b.rels
            for i in range(len(keys))
            if i < len(q.table.key_columns)
        )
        how = "on only part of their shard key" if partial else "not on their shard key"
        example = " AND ".join(f"{x.column(i)} = {y.column(i)}" for i in range(len(keys)))
        where = " in its ON clause" if what != "join" else ""
        return refuse(
            f"the {what} of {a.label} and {b.label} is {how} ({cols})",
            f"join on the whole shard key ({example}){where} so it runs per group, or " + ONE_GROUP,
        )

    def equalities(self, node: Any, block: _Block) -> list[tuple[Term, Term]]:
        """The column equalities among the top-level AND conjuncts of ``node``."""
        out: list[tuple[Term, Term]] = []
        for c in conjuncts(node):
            if not (
                isinstance(c, ast.A_Expr) and c.kind == A_Expr_Kind.AEXPR_OP and op_name(c) == "="
            ):
                continue
            left, right = c.lexpr, c.rexpr
            pairs = [(left, right)]
            if isinstance(left, ast.RowExpr) and isinstance(right, ast.RowExpr):
                if len(left.args or ()) != len(right.args or ()):
                    continue
                pairs = list(zip(left.args or (), right.args or (), strict=True))
            for lnode, rnode in pairs:
                for a in self.terms(lnode, block):
                    for b in self.terms(rnode, block):
                        out.append((a, b))
        return out

    def terms(self, node: Any, block: _Block) -> list[Term]:
        fields = _fields(node)
        if not fields or any(f is None for f in fields):
            return []
        return self.named(tuple(str(f) for f in fields), block)

    def named(self, fields: tuple[str, ...], block: _Block) -> list[Term]:
        """The terms a column name (``col``, ``q.col``, ``public.t.col``) stands for."""
        column = fields[-1]
        if len(fields) == 1:
            # Only this level's own items: an unqualified name found in none of them may
            # be any table's column, and PostgreSQL resolves the innermost.
            out: list[Term] = []
            for source in block.names.values():
                if isinstance(source, _Rel) and (i := _index(source, column)) is not None:
                    out.append((source, i))
                elif isinstance(source, _Derived):
                    out += _lookup(source, column, self)
            return out
        if len(fields) == 3 and fields[0] == "public":
            fields = fields[1:]
        if len(fields) != 2:
            return []
        b: _Block | None = block
        while b is not None:
            if fields[0] in b.names:
                source = b.names[fields[0]]
                if isinstance(source, _Rel) and (i := _index(source, column)) is not None:
                    return [(source, i)]
                if isinstance(source, _Derived):
                    found = _lookup(source, column, self)
                    if found:
                        return found
                return [("col", source, column)]
            b = b.parent
        return []

    # -- subqueries in expressions -------------------------------------------------------

    def subqueries(self, node: Any, block: _Block) -> None:
        """Checks every subquery of an expression (not those nested in another's query)."""
        for link in walk(node, (ast.SubLink,), keep_pruned=True):
            if not isinstance(link, ast.SubLink):
                continue
            self.subqueries(link.testexpr, block)
            if isinstance(link.subselect, ast.SelectStmt):
                self.sublink(link, link.subselect, block)

    def sublink(self, link: ast.SubLink, sub: ast.SelectStmt, block: _Block) -> None:
        unit, inner = self.select(sub, block)
        if not unit.rels or unit.anchors:
            return
        operator = [str(getattr(n, "sval", "")) for n in link.operName or ()]
        if link.subLinkType == SubLinkType.ANY_SUBLINK and operator in ([], ["="]):
            lefts = (
                link.testexpr.args if isinstance(link.testexpr, ast.RowExpr) else (link.testexpr,)
            )
            targets = [r.val for r in sub.targetList or () if isinstance(r, ast.ResTarget)]
            terms = _UnionFind()
            outside: list[_Rel] = []
            if len(lefts or ()) == len(targets):
                for lnode, rnode in zip(lefts or (), targets, strict=True):
                    for a in self.terms(lnode, block):
                        for b in self.terms(rnode, inner):
                            terms.union(a, b)
                        if isinstance(a[0], _Rel):
                            outside.append(a[0])
            if any(_tied(terms, x, y) for x in unit.rels for y in outside if y not in unit.rels):
                return
        kinds = {
            SubLinkType.EXISTS_SUBLINK: "EXISTS (SELECT ...)",
            SubLinkType.ANY_SUBLINK: "IN (SELECT ...)",
            SubLinkType.ALL_SUBLINK: "ALL (SELECT ...)",
            SubLinkType.EXPR_SUBLINK: "a scalar subquery",
            SubLinkType.ARRAY_SUBLINK: "ARRAY (SELECT ...)",
        }
        kind = kinds.get(link.subLinkType or SubLinkType.EXISTS_SUBLINK, "a subquery")
        rel = min(unit.rels, key=self.rels.index)
        cols = ", ".join(rel.table.key_columns)
        raise refuse(
            f"{kind} over {_names(unit.rels)} is not correlated on its shard key ({cols}) "
            "with a sharded table of the outer query, so each shard group would run it over "
            "its own rows only",
            f"correlate it on the shard key (WHERE {rel.column(0)} = <outer table>."
            f"{rel.table.key_columns[0]}) or compare the shard key with IN (SELECT "
            f"{rel.column(0)} ...), so it runs per group, or " + ONE_GROUP,
        )


def _derived(item: ast.RangeSubselect, inner: _Block, analysis: _Analysis) -> _Derived:
    sub = item.subquery
    renamed = [str(s.sval) for s in item.alias.colnames or ()] if item.alias else []
    columns: dict[str, list[Term]] = {}
    stars: list[str | None] = []
    if isinstance(sub, ast.SelectStmt) and sub.op == SetOperation.SETOP_NONE:
        for pos, res in enumerate(sub.targetList or ()):
            fields = _fields(res.val)
            if fields and fields[-1] is None:
                stars.append(str(fields[-2]) if len(fields) > 1 else None)
                if renamed:
                    break  # later positions are unknown: their new names map to nothing
                continue
            name = res.name or (str(fields[-1]) if fields else None)
            if renamed:
                name = renamed[pos] if pos < len(renamed) else name
            if name is not None and name not in columns:
                columns[name] = analysis.terms(res.val, inner)
    return _Derived(inner, columns, [] if renamed else stars)


def _lookup(source: _Derived, column: str, analysis: _Analysis) -> list[Term]:
    if column in source.columns:
        return list(source.columns[column])
    out: list[Term] = []
    for qual in source.stars:
        out += analysis.named((column,) if qual is None else (qual, column), source.block)
    return out


def _tied(terms: _UnionFind, x: _Rel, y: _Rel) -> bool:
    width = len(x.table.key_columns)
    return width == len(y.table.key_columns) and all(
        terms.find((x, i)) == terms.find((y, i)) for i in range(width)
    )


def _fields(node: Any) -> list[str | None] | None:
    """A column reference's names, None for a star; None if not a column reference."""
    if not isinstance(node, ast.ColumnRef):
        return None
    return [
        None if isinstance(f, ast.A_Star) else getattr(f, "sval", None) for f in node.fields or ()
    ]


def _index(rel: _Rel, column: str) -> int | None:
    keys = rel.table.key_columns
    return keys.index(column) if column in keys and not rel.renamed else None


def _names(rels: Iterable[_Rel]) -> str:
    return ", ".join(sorted({r.table.name for r in rels}))


def _sharded(
    rv: ast.RangeVar, tables: Mapping[str, ShardedTable], ctes: set[str]
) -> ShardedTable | None:
    """The sharded table a RangeVar names (unqualified or in ``public``), if any; a
    WITH query of that name shadows it when unqualified."""
    if rv.schemaname not in (None, "public") or rv.catalogname is not None:
        return None
    if rv.schemaname is None and rv.relname in ctes:
        return None
    return tables.get(rv.relname or "")


def _from_rangevars(root: Any) -> list[ast.RangeVar]:
    """RangeVars that name relations read (not FOR UPDATE OF names or SELECT INTO targets)."""
    skip = {
        id(rv)
        for node in walk(root)
        if isinstance(node, ast.LockingClause)
        for rv in node.lockedRels or ()
    }
    skip |= {id(node.rel) for node in walk(root) if isinstance(node, ast.IntoClause)}
    return [n for n in walk(root) if isinstance(n, ast.RangeVar) and id(n) not in skip]


def _cte_names(root: Any) -> set[str]:
    return {n.ctename or "" for n in walk(root) if isinstance(n, ast.CommonTableExpr)}


def check_fanout(sql_text: str, tables: Mapping[str, ShardedTable]) -> FanoutTables:
    """The sharded-table references of ``sql_text``, one SELECT, if it may run on every
    shard group: each group's run, reading only the rows it owns, then gives a disjoint
    part of the answer and the parts make the whole. See the module docstring for the
    rules.

    Raises ``RoutingError`` naming the construct and what to do: sharded tables of
    several key families, joins not on the whole shard key, a subquery over a sharded
    table not correlated on it, a statement that reads no sharded table (its rows would
    repeat on every group).
    """
    _, stmt = parse_one_select(sql_text)
    ctes = _cte_names(stmt)
    clash = sorted(ctes & set(tables))
    if clash:
        raise refuse(
            f"a WITH query is named like sharded table {clash[0]}", "rename the WITH query"
        )
    read = [t for rv in _from_rangevars(stmt) if (t := _sharded(rv, tables, ctes)) is not None]
    families = dict.fromkeys(t.family for t in read)
    if len(families) > 1:
        named = "; ".join(
            f"{', '.join(dict.fromkeys(t.name for t in read if t.family == f))} in family {f}"
            for f in families
        )
        raise refuse(
            f"sharded tables of different key families are read together ({named})",
            "read each key family in its own query and combine the results",
        )
    if not read:
        raise refuse(
            "the statement reads no sharded table, so every shard group would return the same rows",
            "run it on one node, not across shard groups",
        )
    analysis = _Analysis(tables, ctes)
    analysis.select(stmt, None, top=True)
    for rv in _from_rangevars(stmt):
        if id(rv) not in analysis.seen and _sharded(rv, tables, ctes) is not None:
            raise refuse(
                f"sharded table {rv.relname} is read in a part of the statement "
                "the fan-out check does not follow",
                ONE_GROUP,
            )
    refs = tuple(TableRef(r.alias, r.table) for r in analysis.rels)
    return FanoutTables(next(iter(families)), refs)


# -- the ownership filter ---------------------------------------------------------------


def owned_rows_sql(group_sql: str, refs: Sequence[TableRef], predicate: Predicate) -> str:
    """``group_sql`` with each reference to a sharded table of ``refs`` reading only the
    rows ``predicate`` (bound to one group and map version) says the group owns.

    ``t [AS a]`` in any FROM becomes ``(SELECT * FROM t WHERE <predicate>) AS a``, with
    the same name and column aliases; PostgreSQL pulls such a subquery up into the
    outer query, so the plan is the one a WHERE filter on ``t`` would give. ``refs`` is
    what :func:`check_fanout` found in the statement ``group_sql`` was planned from: a
    mismatch raises ``RoutingError`` rather than run a query the filter may miss.
    """
    raw, stmt = parse_one_select(group_sql)
    tables = {r.table.name: r.table for r in refs}
    ctes = _cte_names(stmt)
    found: list[tuple[str, str]] = []
    unaliased: set[tuple[str, str]] = set()

    def wrap(item: Any) -> Any:
        if isinstance(item, ast.JoinExpr):
            item.larg, item.rarg = wrap(item.larg), wrap(item.rarg)
            return item
        if isinstance(item, ast.RangeTableSample) and isinstance(item.relation, ast.RangeVar):
            if _sharded(item.relation, tables, ctes) is not None:
                raise refuse(
                    f"TABLESAMPLE on sharded table {item.relation.relname} is not "
                    "run across shard groups",
                    ONE_GROUP,
                )
            return item
        if not isinstance(item, ast.RangeVar):
            return item
        table = _sharded(item, tables, ctes)
        if table is None:
            return item
        alias = item.alias.aliasname if item.alias is not None else None
        if alias is None:
            unaliased.add((item.schemaname or "public", item.relname or ""))
        found.append((alias or table.name, table.name))
        return _owned_subquery(item, table, alias or table.name, predicate)

    for node in list(walk(stmt)):
        if isinstance(node, ast.SelectStmt) and node.fromClause:
            node.fromClause = tuple(wrap(item) for item in node.fromClause)
    expected = Counter((r.alias, r.table.name) for r in refs)
    if Counter(found) != expected:
        raise RoutingError(
            f"{PREFIX}the per-group query reads sharded tables {sorted(Counter(found))} "
            f"but the fan-out check listed {sorted(expected)}; plan the statement again"
        )
    for node in walk(stmt):  # public.t.col names the table, which is now a subquery t
        fields = node.fields if isinstance(node, ast.ColumnRef) else None
        if fields is not None and len(fields) >= 3:
            names = [getattr(f, "sval", None) for f in fields]
            if (names[-3], names[-2]) in unaliased:
                node.fields = tuple(fields[-2:])
    return text(raw.stmt)


def _owned_subquery(
    rv: ast.RangeVar, table: ShardedTable, alias: str, predicate: Predicate
) -> ast.RangeSubselect:
    columns = [sql.Identifier(c) for c in table.key_columns]
    name = (
        sql.Identifier(rv.schemaname, rv.relname or "")
        if rv.schemaname
        else sql.Identifier(rv.relname or "")
    )
    inner = sql.SQL("SELECT * FROM {only}{name} WHERE {owned}").format(
        only=sql.SQL("" if rv.inh else "ONLY "), name=name, owned=predicate(table, columns)
    )
    _, subquery = parse_one_select(inner.as_string(None))
    colnames = rv.alias.colnames if rv.alias is not None else None
    return ast.RangeSubselect(
        lateral=False, subquery=subquery, alias=ast.Alias(aliasname=alias, colnames=colnames)
    )
