"""The queries a cross-shard read sends: one per shard group, each reading only the
slots its group owns, in the caller's placeholder style.

:func:`plan_read` plans a statement once per text and directory version (the engine
caches it); :meth:`PlannedRead.queries` renders it with one call's parameters.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from mlscale.core.keyroute import Params, ShardedTable
from mlscale.core.keyroute.placeholders import (
    Numbered,
    PlaceholderError,
    number_placeholders,
    render,
)
from mlscale.core.scatter.ownership import check_fanout, owned_rows_sql
from mlscale.core.scatter.plan import AggregateMerge, ScatterPlan
from mlscale.core.scatter.planner import plan_select
from mlscale.core.sharding import ShardDirectory
from mlscale.errors import RoutingError

__all__ = ["GroupQuery", "PlannedRead", "plan_read"]


@dataclass(frozen=True, slots=True)
class GroupQuery:
    """What one shard group runs: text (the caller's placeholder style) and params."""

    group: str
    sql: str
    params: Params


@dataclass(frozen=True, slots=True)
class PlannedRead:
    """A cross-shard read planned for one directory version: the scatter ``plan``,
    each group's ``$n`` text (restricted to the slots the group owns), and the
    functions the statement calls that the planner took for plain functions (the
    engine refuses any the server knows as an aggregate: a user-defined one)."""

    plan: ScatterPlan
    numbered: Numbered
    texts: tuple[tuple[str, str], ...]  # (group, $n text)
    functions: frozenset[str]
    statement: str

    def queries(self, params: Params) -> tuple[GroupQuery, ...]:
        """Each group's query with ``params`` bound the way the caller wrote them."""
        return tuple(GroupQuery(group, *self._render(text, params)) for group, text in self.texts)

    def columns_query(self, params: Params) -> tuple[str, Params] | None:
        """A query that returns no row but names the result's columns as one server
        would (an aggregate plan's group queries return partials instead); None when
        the group queries' own columns are the result's."""
        if not isinstance(self.plan.merge, AggregateMerge):
            return None
        # The caller's own statement, wrapped: it is sent with the caller's parameters.
        wrapped = f"SELECT * FROM ({self.numbered.text}) AS mlscale_columns LIMIT 0"  # noqa: S608
        return self._render(wrapped, params)

    def _render(self, text: str, params: Params) -> tuple[str, Params]:
        keys = self.numbered.keys

        def value_of(n: int) -> Any:
            key = keys[n - 1]
            if isinstance(params, Mapping):
                return params[str(key)]
            if params is None or not isinstance(key, int):
                raise RoutingError("cross-shard read: the parameters do not match the statement")
            return params[key]

        return render(text, self.numbered, value_of)


def plan_read(
    statement: str,
    with_params: bool,
    groups: Sequence[str],
    directory: ShardDirectory,
    *,
    always_filter: bool = False,
    gather_limit: int = 1_000_000,
) -> PlannedRead:
    """Plan ``statement`` (one SELECT, psycopg placeholders when ``with_params``) to run
    on ``groups``, each reading only the rows it owns in ``directory``'s maps.

    That ownership filter (a hash of the key per row) is added while the tables' key
    family has a move open (``directory.moving``: its rows may then exist on two
    groups), or with ``always_filter``; outside a move each row is on one group only.
    ``gather_limit`` bounds the rows gathered for exact DISTINCT-like aggregates.
    Raises :class:`RoutingError` naming what cannot be merged exactly, or a join the
    groups cannot answer on their own.
    """
    try:
        numbered = number_placeholders(statement, with_params)
    except PlaceholderError as exc:
        raise RoutingError(f"cross-shard read: {exc}") from exc
    plan = plan_select(numbered.text, gather_limit=gather_limit)
    fanout = check_fanout(numbered.text, directory.tables)
    filtered = always_filter or fanout.family in directory.moving

    def owned_by(group: str) -> str:
        if not filtered:
            return plan.group_sql

        def predicate(table: ShardedTable, columns: Sequence[sql.Composable]) -> sql.Composable:
            return directory.map_of(table.family).predicate(group, columns)

        return owned_rows_sql(plan.group_sql, fanout.refs, predicate)

    texts = tuple((group, owned_by(group)) for group in groups)
    return PlannedRead(plan, numbered, texts, plan.functions, statement)
