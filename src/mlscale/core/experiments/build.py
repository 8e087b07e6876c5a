"""SQL for the experiment store's calls, built with :mod:`psycopg.sql`: identifiers
quoted, every value a bound parameter (jsonpath text included), keys of paths in
select lists quoted literals (the cross-shard merger reads those statements as text).

A filter node becomes a boolean expression over the ``doc`` column:

- :class:`~.query.Compare` / :class:`~.query.AnyOf`: ``doc @? $1::jsonpath`` with
  ``$."a"."b" ? (@.type() != "array" && @ == 5)``; an equality on a path with an
  index (:func:`index_ddl`) is written in the index's own expression
  ``jsonb_path_query_array(doc, '$."a"."b"') @? '$[*] ? (...)'`` instead, so the
  planner can match it;
- :class:`~.query.Exists`: ``doc @? '$."a"."b"'``; :class:`~.query.IsNull`: not
  exists, or a null candidate;
- :class:`~.query.Not`: ``NOT COALESCE(x, false)`` (a filter never yields unknown).

Equality and ``$in`` on an indexed path use the GIN index (``jsonb_path_ops``);
ranges do not (GIN keeps no order), nor does the whole-document form.

Why jsonpath and not containment (``@>``): containment matches structure as
written, so ``{"a": [1, 2]} @> {"a": 1}`` is false where MongoDB matches, and it
has no ranges or type brackets; one ``@?`` says all of it and is served by the same
GIN operator class. Why a GIN index on the path's values and not a btree on
``doc #> path``: under MongoDB's array rules a path holds several candidates per
document (``{"tags": ["a", "b"]}`` matches ``tags: "b"``), which a btree of one
value per row would miss; the GIN index holds every candidate. The price: ranges on
the path are not served by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from .jsonpath import ELEMENTS, path_text, predicate
from .query import And, AnyOf, Compare, Exists, IsNull, Node, Not, Or, Path
from .shape import Group, SortKey
from .update import UpdateOp

__all__ = [
    "INDEX_COMMENT",
    "Built",
    "Target",
    "aggregate_sql",
    "conflict_sql",
    "conflicts",
    "count_sql",
    "find_sql",
    "index_comment",
    "index_ddl",
    "index_name",
    "key_columns",
    "update_sql",
    "where",
]

_DOC = sql.Identifier("doc")
INDEX_COMMENT = "mlscale path index: "  # then the dotted path


@dataclass(frozen=True)
class Target:
    """Where a statement reads: ``table``, the paths it has an index on, and the one
    experiment it is kept to (None: all the table's rows on the groups it runs on)."""

    table: str
    indexed: frozenset[Path] = frozenset()
    experiment: str | None = None


@dataclass
class Built:
    """A statement's text (``%s`` placeholders) and its parameters."""

    text: str
    params: list[Any] = field(default_factory=list)


def where(node: Node, indexed: frozenset[Path] = frozenset()) -> tuple[sql.Composable, list[Any]]:
    """The boolean SQL of filter ``node`` over column ``doc``, and its parameters."""
    params: list[Any] = []
    return _expr(node, indexed, params), params


def _expr(node: Node, indexed: frozenset[Path], params: list[Any]) -> sql.Composable:
    if isinstance(node, Compare):
        return _match(node.path, node.op, (node.value,), indexed, params)
    if isinstance(node, AnyOf):
        return _match(node.path, "==", node.values, indexed, params)
    if isinstance(node, Exists):
        return _exists(node.path, params)
    if isinstance(node, IsNull):
        missing = sql.SQL("NOT ({})").format(_exists(node.path, params))
        null = _match(node.path, "==", (None,), indexed, params)
        return sql.SQL("({} OR {})").format(missing, null)
    if isinstance(node, Not):
        return sql.SQL("NOT COALESCE({}, false)").format(_expr(node.node, indexed, params))
    if isinstance(node, And | Or):
        if not node.nodes:
            return sql.SQL("true" if isinstance(node, And) else "false")
        joiner = sql.SQL(" AND " if isinstance(node, And) else " OR ")
        parts = [_expr(n, indexed, params) for n in node.nodes]
        return sql.SQL("({})").format(joiner.join(parts))
    raise TypeError(f"not a filter node: {node!r}")


def _values_expr(path: Path) -> sql.Composable:
    """The index expression of ``path``: its values gathered in an array."""
    return sql.SQL("jsonb_path_query_array({}, {}::jsonpath)").format(
        _DOC, sql.Literal(path_text(path))
    )


def _match(
    path: Path, op: str, values: tuple[Any, ...], indexed: frozenset[Path], params: list[Any]
) -> sql.Composable:
    if path in indexed and op == "==":  # GIN serves equality only: ranges read the document
        params.append(predicate(ELEMENTS, op, values))
        return sql.SQL("{} @? %s::jsonpath").format(_values_expr(path))
    params.append(predicate(path_text(path), op, values))
    return sql.SQL("{} @? %s::jsonpath").format(_DOC)


def _exists(path: Path, params: list[Any]) -> sql.Composable:
    # jsonb_path_ops holds values, not keys: no path index serves existence.
    params.append(path_text(path))
    return sql.SQL("{} @? %s::jsonpath").format(_DOC)


def _value_at(path: Path) -> sql.Composable:
    """The value at ``path`` through documents only (SQL NULL if missing)."""
    expr: sql.Composable = _DOC
    for key in path:
        expr = sql.SQL("({} -> {})").format(expr, sql.Literal(key))
    return expr


def key_columns(path: Path, prefix: str) -> list[sql.Composable]:
    """Three typed columns that order and group the value at ``path`` as MongoDB's
    brackets do (see :mod:`.shape`), merged exactly across groups: the bracket
    (1 missing/null, 2 number, 3 string, 4 document, 5 array, 6 boolean), the number,
    and the text (strings, JSON text of documents and arrays, ``false``/``true``)."""
    v = _value_at(path)
    bracket = sql.SQL(
        "CASE jsonb_typeof({v}) WHEN 'number' THEN 2 WHEN 'string' THEN 3 WHEN 'object' "
        "THEN 4 WHEN 'array' THEN 5 WHEN 'boolean' THEN 6 ELSE 1 END AS {n}"
    ).format(v=v, n=sql.Identifier(prefix + "b"))
    number = sql.SQL(
        "CASE WHEN jsonb_typeof({v}) = 'number' THEN ({v})::numeric END AS {n}"
    ).format(v=v, n=sql.Identifier(prefix + "n"))
    text = sql.SQL(
        "(CASE jsonb_typeof({v}) WHEN 'string' THEN {v} #>> '{{}}' WHEN 'number' THEN NULL "
        "WHEN 'null' THEN NULL ELSE ({v})::text END) COLLATE \"C\" AS {n}"
    ).format(v=v, n=sql.Identifier(prefix + "t"))
    return [bracket, number, text]


def _filtered(target: Target, node: Node) -> tuple[sql.Composable, list[Any]]:
    cond, params = where(node, target.indexed)
    if target.experiment is not None:
        cond = sql.SQL("experiment = %s AND {}").format(cond)
        params = [target.experiment, *params]
    return cond, params


def _order(sort: Sequence[SortKey], names: Sequence[str]) -> list[sql.Composable]:
    order: list[sql.Composable] = []
    for i, key in enumerate(sort):
        direction = sql.SQL(" DESC" if key.descending else " ASC")
        order += [sql.Identifier(f"s{i}{c}") + direction for c in "bnt"]
    order += [sql.Identifier(n) + sql.SQL(" ASC") for n in names]
    return order


def find_sql(
    target: Target,
    node: Node,
    sort: Sequence[SortKey],
    limit: int | None,
    keep: Sequence[str] | None = None,
) -> Built:
    """The rows of a find: ``id, experiment, doc`` and the sort keys' columns, in
    order (with neither a sort nor a limit: in no order). ``keep``: the top-level
    keys of ``doc`` to send (an inclusion projection's; None: all), so a narrow
    projection does not ship whole documents."""
    cond, params = _filtered(target, node)
    columns: list[sql.Composable] = [sql.SQL("id"), sql.SQL("experiment"), _kept(keep)]
    for i, key in enumerate(sort):
        columns += key_columns(key.path, f"s{i}")
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(columns), sql.Identifier(target.table), cond
    )
    if sort or limit is not None:
        order = sql.SQL(", ").join(_order(sort, ["id", "experiment"]))
        query = query + sql.SQL(" ORDER BY {}").format(order)
    # else unordered: the caller sorts by (id, experiment) itself, which costs far less
    # than a k-way merge of every row across groups.
    if limit is not None:
        query = query + sql.SQL(" LIMIT {}").format(sql.Literal(int(limit)))
    return Built(query.as_string(None), params)


def _kept(keep: Sequence[str] | None) -> sql.Composable:
    if keep is None:
        return _DOC
    parts = [
        sql.SQL(
            "(CASE WHEN {d} ? {k} THEN jsonb_build_object({k}, {d} -> {k}) ELSE '{{}}'::jsonb END)"
        ).format(d=_DOC, k=sql.Literal(key))
        for key in dict.fromkeys(keep)
    ]
    if not parts:
        return sql.SQL("'{}'::jsonb AS doc")
    return sql.SQL("({}) AS doc").format(sql.SQL(" || ").join(parts))


def count_sql(target: Target, node: Node) -> Built:
    """``count(*)`` of the documents matching ``node``."""
    cond, params = _filtered(target, node)
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(target.table), cond)
    return Built(query.as_string(None), params)


def aggregate_sql(
    target: Target, node: Node, group: Group, sort: Sequence[SortKey], limit: int | None
) -> Built:
    """One row per group: the key's three columns (``kb, kn, kt``; none for a group of
    every document) and one column per accumulator, sorted and limited."""
    cond, params = _filtered(target, node)
    columns: list[sql.Composable] = key_columns(group.key, "k") if group.key is not None else []
    columns.append(sql.SQL("count(*) AS __n"))  # a group of no document is no group
    for acc in group.accumulators:
        columns.append(
            sql.SQL("{} AS {}").format(
                _accumulate(acc.kind, acc.path, acc.constant), sql.Identifier("a_" + acc.name)
            )
        )
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(columns), sql.Identifier(target.table), cond
    )
    if group.key is not None:
        query = query + sql.SQL(" GROUP BY 1, 2, 3")
    order: list[sql.Composable] = []
    for key in sort:
        direction = sql.SQL(" DESC" if key.descending else " ASC")
        if key.path == ("_id",):
            if group.key is not None:
                order += [sql.Identifier("k" + c) + direction for c in "bnt"]
        else:
            order.append(
                sql.Identifier("a_" + key.path[0])
                + direction
                + sql.SQL(" NULLS FIRST" if not key.descending else " NULLS LAST")
            )
    if group.key is not None:
        order += [sql.Identifier("k" + c) + sql.SQL(" ASC") for c in "bnt"]
    if order:
        query = query + sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(order))
    if limit is not None:
        query = query + sql.SQL(" LIMIT {}").format(sql.Literal(int(limit)))
    return Built(query.as_string(None), params)


def _accumulate(kind: str, path: Path | None, constant: float | None) -> sql.Composable:
    if kind == "count":
        return sql.SQL("count(*)")
    if path is None:  # {"$sum": c}: c per document
        return sql.SQL("sum({}::numeric)").format(sql.Literal(str(constant)))
    v = _value_at(path)
    number = sql.SQL("CASE WHEN jsonb_typeof({v}) = 'number' THEN ({v})::numeric END").format(v=v)
    return sql.SQL("{}({})").format(sql.SQL(kind), number)


def update_sql(
    target: Target, node: Node, ops: Sequence[UpdateOp], one: tuple[str, str] | None
) -> Built:
    """Apply ``ops`` to the documents matching ``node`` (to the one with ``(experiment,
    id)`` = ``one``, if given) that meet no conflict; the result row is (matched,
    modified). The new document is built by a chain of LATERAL steps, each op reading
    the previous one's document (no expression repeated per op); the filter's bare
    ``doc`` and ``experiment`` are the table's (the steps' column is ``d``)."""
    cond, params = _filtered(target, node)
    if one is not None:
        cond = sql.SQL("t.experiment = %s AND t.id = %s AND {}").format(cond)
        params = [one[0], one[1], *params]
    steps: list[tuple[sql.Composable, list[Any]]] = []
    for op in ops:
        steps += _steps(op)
    lateral: list[sql.Composable] = []
    prev: sql.Composable = sql.SQL("t.doc")
    step_params: list[Any] = []
    for i, (expr, values) in enumerate(steps):
        name = sql.Identifier(f"u{i}")
        lateral.append(
            sql.SQL(" CROSS JOIN LATERAL (SELECT {} AS d) {}").format(
                expr.format(x=prev) if isinstance(expr, sql.SQL) else expr, name
            )
        )
        step_params += values
        prev = sql.SQL("{}.d").format(name)
    conflict, conflict_params = conflicts(ops)
    table = sql.Identifier(target.table)
    query = sql.SQL(
        "WITH m AS (SELECT t.experiment, t.id, t.doc AS old, {new} AS new FROM {table} t{lateral} "
        "WHERE {cond} AND NOT COALESCE({conflict}, false) FOR UPDATE OF t), "
        "u AS (UPDATE {table} t SET doc = m.new FROM m WHERE t.experiment = m.experiment "
        "AND t.id = m.id AND m.new IS DISTINCT FROM m.old RETURNING 1) "
        "SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM u)"
    ).format(new=prev, table=table, lateral=sql.Composed(lateral), cond=cond, conflict=conflict)
    return Built(query.as_string(None), [*step_params, *params, *conflict_params])


def conflicts(ops: Sequence[UpdateOp]) -> tuple[sql.Composable, list[Any]]:
    """A boolean over ``doc``: some op would meet a non-document on its way (or
    ``$inc`` a non-number, ``$push`` a non-array) -- an error for the whole call."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for op in ops:
        if op.kind == "unset":
            continue
        for i in range(1, len(op.path)):
            parts.append(sql.SQL("jsonb_typeof(doc #> %s::text[]) <> 'object'"))
            params.append(list(op.path[:i]))
        if op.kind in ("inc", "push"):
            parts.append(sql.SQL("jsonb_typeof(doc #> %s::text[]) <> %s"))
            params += [list(op.path), "number" if op.kind == "inc" else "array"]
    if not parts:
        return sql.SQL("false"), []
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts)), params


def _steps(op: UpdateOp) -> list[tuple[sql.Composable, list[Any]]]:
    """The steps of one op: each a SQL template over ``{x}`` (the document so far)."""
    path = list(op.path)
    if op.kind == "unset":
        guards = (
            " AND ".join(["jsonb_typeof({x} #> %s::text[]) = 'object'"] * (len(path) - 1)) or "true"
        )
        template = "CASE WHEN " + guards + " THEN {x} #- %s::text[] ELSE {x} END"
        return [(sql.SQL(template), [*(path[:i] for i in range(1, len(path))), path])]
    steps: list[tuple[sql.Composable, list[Any]]] = []
    for i in range(1, len(path)):  # make missing documents on the way
        steps.append(
            (
                sql.SQL(
                    "jsonb_set({x}, %s::text[], COALESCE({x} #> %s::text[], '{{}}'::jsonb), true)"
                ),
                [path[:i], path[:i]],
            )
        )
    if op.kind == "set":
        steps.append(
            (sql.SQL("jsonb_set({x}, %s::text[], %s::jsonb, true)"), [path, Jsonb(op.value)])
        )
    elif op.kind == "inc":
        steps.append(
            (
                sql.SQL(
                    "jsonb_set({x}, %s::text[], to_jsonb(COALESCE(({x} #> %s::text[])::numeric, 0) "
                    "+ %s::numeric), true)"
                ),
                [path, path, op.value],
            )
        )
    else:
        steps.append(
            (
                sql.SQL(
                    "jsonb_set({x}, %s::text[], COALESCE({x} #> %s::text[], '[]'::jsonb) "
                    "|| jsonb_build_array(%s::jsonb), true)"
                ),
                [path, path, Jsonb(op.value)],
            )
        )
    return steps


def conflict_sql(
    target: Target, node: Node, ops: Sequence[UpdateOp], one: tuple[str, str] | None
) -> Built:
    """Up to 5 ``(experiment, id)`` of documents matching ``node`` that ``ops`` would
    meet a conflict in (locked: the update follows in the same transaction)."""
    cond, params = _filtered(target, node)
    if one is not None:
        cond = sql.SQL("experiment = %s AND id = %s AND {}").format(cond)
        params = [one[0], one[1], *params]
    bad, bad_params = conflicts(ops)
    query = sql.SQL(
        "SELECT experiment, id FROM {} WHERE {} AND COALESCE({}, false) "
        "ORDER BY id, experiment LIMIT 5 FOR UPDATE"
    ).format(sql.Identifier(target.table), cond, bad)
    return Built(query.as_string(None), [*params, *bad_params])


def index_comment(table: str, path: Path) -> str:
    """``COMMENT ON INDEX`` naming the path (how the store finds its path indexes)."""
    return (
        sql.SQL("COMMENT ON INDEX {} IS {}")
        .format(
            sql.Identifier(index_name(table, path)), sql.Literal(INDEX_COMMENT + ".".join(path))
        )
        .as_string(None)
    )


def index_name(table: str, path: Path) -> str:
    """The name of the path index on ``table`` for ``path`` (a digest keeps it short)."""
    digest = hashlib.sha1(path_text(path).encode()).hexdigest()[:12]
    return f"{table}_px_{digest}"


def index_ddl(table: str, path: Path) -> str:
    """``CREATE INDEX IF NOT EXISTS`` of the GIN (``jsonb_path_ops``) index on the
    values of ``path``: the expression :func:`where` writes for an indexed path."""
    return (
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (({}) jsonb_path_ops)")
        .format(sql.Identifier(index_name(table, path)), sql.Identifier(table), _values_expr(path))
        .as_string(None)
    )
