"""How a feature view is stored, and the SQL that reads and writes it.

Per view version, two sharded tables of the view's key family:

- the online table ``fv_<name>_v<version>``: one row per entity (primary key: the
  entity columns) holding its newest values;
- the history table ``fvh_<name>_v<version>``: every pushed row (primary key: the
  entity columns and ``event_ts``), partitioned by month of event time
  (``fvh_<name>_v<version>_pYYYYMM``) so old months are dropped whole.

Columns: the entity keys, ``event_ts`` (event time) and ``created_ts`` (when it was
written), then the features: every FLOAT feature packed in one ``f4 float4[]`` and
every INT feature in one ``i8 int8[]`` (declared order; a NULL element is a missing
value), and a column per BOOL (``b_<name>``), TEXT (``t_<name>``) and EMBEDDING
(``e_<name> float4[]``) feature. So an online lookup of 50 features is one row
per entity and one array to decode, not 50 rows as in an entity-attribute-value
store.

Reads return one row per shard group: each column aggregated with ``array_agg`` and
sent as ``array_send`` (bytea: the array's binary form), which numpy decodes without
a Python loop (see :mod:`.arrays`). Rows come back with their position in the
request (``WITH ORDINALITY``), so any key type works and duplicates are answered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from ..slots import KeyType
from .spec import FeatureType, FeatureView

__all__ = ["Column", "Layout", "month_bounds"]

_SQL_TYPES = {
    KeyType.INT8: "bigint",
    KeyType.INT4: "integer",
    KeyType.INT2: "smallint",
    KeyType.TEXT: "text",
    KeyType.UUID: "uuid",
}


@dataclass(frozen=True, slots=True)
class Column:
    """A feature column of the tables: its name, SQL type and the features it holds
    (indexes into the view's features: several for ``f4``/``i8``, else one)."""

    name: str
    sql_type: str
    kind: FeatureType
    features: tuple[int, ...]

    @property
    def packed(self) -> bool:
        """Whether it packs several features (``f4``, ``i8``) into one array."""
        return self.name in ("f4", "i8")


def month_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC month holding ``day``: [first instant, first instant of the next)."""
    start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
    nxt = dt.datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, nxt


@dataclass(frozen=True, slots=True)
class Layout:
    """The tables and columns of one view version (see the module docstring)."""

    view: FeatureView
    columns: tuple[Column, ...]

    @classmethod
    def of(cls, view: FeatureView) -> Layout:
        """The layout of ``view``."""
        floats = tuple(i for i, f in enumerate(view.features) if f.type is FeatureType.FLOAT)
        ints = tuple(i for i, f in enumerate(view.features) if f.type is FeatureType.INT)
        cols: list[Column] = []
        if floats:
            cols.append(Column("f4", "float4[]", FeatureType.FLOAT, floats))
        if ints:
            cols.append(Column("i8", "int8[]", FeatureType.INT, ints))
        for i, f in enumerate(view.features):
            if f.type is FeatureType.BOOL:
                cols.append(Column(f"b_{f.name}", "boolean", f.type, (i,)))
            elif f.type is FeatureType.TEXT:
                cols.append(Column(f"t_{f.name}", "text", f.type, (i,)))
            elif f.type is FeatureType.EMBEDDING:
                cols.append(Column(f"e_{f.name}", "float4[]", f.type, (i,)))
        return cls(view, tuple(cols))

    # -- names ----------------------------------------------------------------------

    @property
    def online(self) -> str:
        """The online table's name."""
        return f"fv_{self.view.name}_v{self.view.version}"

    @property
    def history(self) -> str:
        """The history table's name."""
        return f"fvh_{self.view.name}_v{self.view.version}"

    def partition(self, day: dt.date) -> str:
        """The history partition holding ``day``'s month."""
        return f"{self.history}_p{day.year:04d}{day.month:02d}"

    @property
    def keys(self) -> tuple[str, ...]:
        """The entity key columns."""
        return self.view.entity_names

    @property
    def stored(self) -> tuple[str, ...]:
        """Every column a push writes, in COPY order: keys, event_ts, features."""
        return (*self.keys, "event_ts", *(c.name for c in self.columns))

    def column_of(self, feature: int) -> Column:
        """The column holding feature number ``feature``."""
        for c in self.columns:
            if feature in c.features:
                return c
        raise KeyError(feature)  # unreachable for a feature of the view

    # -- DDL --------------------------------------------------------------------------

    def _column_defs(self) -> list[sql.Composable]:
        keys = [
            sql.SQL("{} {} NOT NULL").format(
                sql.Identifier(e.name), sql.SQL(_SQL_TYPES[e.key_type])
            )
            for e in self.view.entities
        ]
        own = [
            sql.SQL("event_ts timestamptz NOT NULL"),
            sql.SQL("created_ts timestamptz NOT NULL DEFAULT now()"),
        ]
        feats = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(c.name),
                sql.SQL(c.sql_type),
                sql.SQL(" NOT NULL") if c.packed else sql.SQL(""),
            )
            for c in self.columns
        ]
        return [*keys, *own, *feats]

    def online_ddl(self) -> str:
        """CREATE TABLE of the online table (the text a sharded-table call takes)."""
        return self._ddl(self.online, self.keys, "")

    def history_ddl(self) -> str:
        """CREATE TABLE of the (partitioned) history table."""
        return self._ddl(self.history, (*self.keys, "event_ts"), " PARTITION BY RANGE (event_ts)")

    def _ddl(self, table: str, pk: Sequence[str], tail: str) -> str:
        return (
            sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({})){}")
            .format(
                sql.Identifier(table),
                sql.SQL(", ").join(self._column_defs()),
                sql.SQL(", ").join(map(sql.Identifier, pk)),
                sql.SQL(tail),
            )
            .as_string(None)
        )

    def partition_ddl(self, day: dt.date) -> str:
        """CREATE TABLE IF NOT EXISTS of the history partition of ``day``'s month."""
        start, end = month_bounds(day)
        return (
            sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
            .format(
                sql.Identifier(self.partition(day)),
                sql.Identifier(self.history),
                sql.Literal(start.isoformat()),
                sql.Literal(end.isoformat()),
            )
            .as_string(None)
        )

    # -- writes -----------------------------------------------------------------------

    def stage_ddl(self) -> str:
        """A temporary staging table for one push transaction (dropped at commit)."""
        return (
            sql.SQL(
                "CREATE TEMP TABLE mlscale_stage ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
            )
            .format(
                sql.SQL(", ").join(map(sql.Identifier, self.stored)), sql.Identifier(self.online)
            )
            .as_string(None)
        )

    def copy_sql(self) -> str:
        """The binary COPY into the staging table, columns in :attr:`stored` order."""
        return (
            sql.SQL("COPY mlscale_stage ({}) FROM STDIN (FORMAT binary)")
            .format(sql.SQL(", ").join(map(sql.Identifier, self.stored)))
            .as_string(None)
        )

    def upsert_sql(self) -> str:
        """Staged rows into the online table, newest event per entity; an existing row
        is replaced only by an event at least as new (an older event never wins)."""
        cols = sql.SQL(", ").join(map(sql.Identifier, self.stored))
        keys = sql.SQL(", ").join(map(sql.Identifier, self.keys))
        sets = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in ("event_ts", "created_ts", *(c.name for c in self.columns))
        )
        return (
            sql.SQL(
                "INSERT INTO {t} AS cur ({cols}, created_ts) "
                "SELECT DISTINCT ON ({keys}) {cols}, now() FROM mlscale_stage "
                "ORDER BY {keys}, event_ts DESC "
                "ON CONFLICT ({keys}) DO UPDATE SET {sets} WHERE cur.event_ts <= EXCLUDED.event_ts"
            )
            .format(t=sql.Identifier(self.online), cols=cols, keys=keys, sets=sets)
            .as_string(None)
        )

    def history_sql(self) -> str:
        """Staged rows appended to the history; a row of the same entity and event
        time replaces the one there (a corrected event)."""
        cols = sql.SQL(", ").join(map(sql.Identifier, self.stored))
        pk = sql.SQL(", ").join(map(sql.Identifier, (*self.keys, "event_ts")))
        sets = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in ("created_ts", *(c.name for c in self.columns))
        )
        return (
            sql.SQL(
                "INSERT INTO {t} ({cols}, created_ts) SELECT {cols}, now() FROM mlscale_stage "
                "ON CONFLICT ({pk}) DO UPDATE SET {sets}"
            )
            .format(t=sql.Identifier(self.history), cols=cols, pk=pk, sets=sets)
            .as_string(None)
        )

    # -- reads ------------------------------------------------------------------------

    def _unnest(self, with_time: bool) -> sql.Composed:
        """``unnest(keys..[, times]) WITH ORDINALITY AS q(k0.., [ts,] i)``: one request
        row per position, parameters bound as arrays."""
        arrays: list[sql.Composable] = [
            sql.SQL("%s::{}[]").format(sql.SQL(_SQL_TYPES[e.key_type])) for e in self.view.entities
        ]
        names: list[sql.Composable] = [sql.Identifier(f"k{i}") for i in range(len(self.keys))]
        if with_time:
            arrays.append(sql.SQL("%s::timestamptz[]"))
            names.append(sql.Identifier("ts"))
        return sql.SQL("unnest({}) WITH ORDINALITY AS q({}, i)").format(
            sql.SQL(", ").join(arrays), sql.SQL(", ").join(names)
        )

    def _key_match(self, alias: str) -> sql.Composed:
        return sql.SQL(" AND ").join(
            sql.SQL("{}.{} = q.{}").format(
                sql.Identifier(alias), sql.Identifier(k), sql.Identifier(f"k{i}")
            )
            for i, k in enumerate(self.keys)
        )

    def _sent(self, alias: str, columns: Sequence[Column]) -> sql.Composed:
        """The aggregated, binary-sent outputs: positions, event times, columns."""
        outs = [
            sql.SQL("array_send(array_agg(q.i::int4))"),
            sql.SQL("array_send(array_agg({}.event_ts))").format(sql.Identifier(alias)),
        ]
        outs += [
            sql.SQL("array_send(array_agg({}))").format(self._value(alias, c)) for c in columns
        ]
        return sql.SQL(", ").join(outs)

    def _value(self, alias: str, column: Column) -> sql.Composable:
        """A column as aggregated: a missing embedding as an array of NULLs of its
        length (``array_agg`` of arrays refuses a NULL one), read back as missing."""
        ref = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column.name))
        if column.kind is not FeatureType.EMBEDDING:
            return ref
        dim = self.view.features[column.features[0]].dim
        return sql.SQL("coalesce({}, array_fill(NULL::float4, ARRAY[{}]))").format(
            ref, sql.Literal(dim)
        )

    def online_read(self, columns: Sequence[Column]) -> sql.Composed:
        """One view's part of an online read: a one-row subquery of ``columns`` for the
        request's keys (one ``%s`` array per key column, then the TTL in seconds if
        the view has one), values older than the TTL left out."""
        ttl = (
            sql.SQL(" WHERE v.event_ts >= now() - %s * interval '1 second'")
            if self.view.ttl_s is not None
            else sql.SQL("")
        )
        return sql.SQL("(SELECT {} FROM {} JOIN {} AS v ON {}{})").format(
            self._sent("v", columns),
            self._unnest(False),
            sql.Identifier(self.online),
            self._key_match("v"),
            ttl,
        )

    def historical_read(self, columns: Sequence[Column]) -> str:
        """A point-in-time read on one group: for each (keys, time) request row, the
        newest history row with ``event_ts <= time`` (and ``>= time - ttl``), as one
        aggregated row. Parameters: one array per key column, then the times."""
        ttl = (
            sql.SQL(" AND h.event_ts >= q.ts - {} * interval '1 second'").format(
                sql.Literal(float(self.view.ttl_s))
            )
            if self.view.ttl_s is not None
            else sql.SQL("")
        )
        picked = sql.SQL(", ").join(
            [sql.SQL("h.event_ts")]
            + [sql.SQL("h.{}").format(sql.Identifier(c.name)) for c in columns]
        )
        return (
            sql.SQL(
                "SELECT {sent} FROM {unnest} CROSS JOIN LATERAL (SELECT {picked} FROM {t} AS h "
                "WHERE {match} AND h.event_ts <= q.ts{ttl} ORDER BY h.event_ts DESC LIMIT 1) AS h"
            )
            .format(
                sent=self._sent("h", columns),
                unnest=self._unnest(True),
                picked=picked,
                t=sql.Identifier(self.history),
                match=self._key_match("h"),
                ttl=ttl,
            )
            .as_string(None)
        )


def online_statement(parts: Sequence[sql.Composed]) -> str:
    """One statement reading several views' parts (:meth:`Layout.online_read`) in one
    round trip: their one-row results side by side."""
    return (
        sql.SQL("SELECT * FROM {}")
        .format(
            sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(p, sql.Identifier(f"v{i}")) for i, p in enumerate(parts)
            )
        )
        .as_string(None)
    )
