"""The tables of a measurement and the SQL that reads and writes them. No I/O.

Per measurement, sharded by series id (``sid``, key family ``mlscale_metrics``):

- points ``mlm_<name>``: a row per series and time, ``(sid int8, ts timestamptz)``
  and a column per field (named by :func:`~.spec.field_column`: float8, int8, bool
  or text as the field's type; NULL where a point lacks the field), added with
  ``ALTER TABLE ... ADD COLUMN`` on every group when a write brings a new field.
  The catalog records each field's type: as in InfluxDB, it is fixed (a value of
  another type is refused). Partitioned by UTC day on ``ts``; primary key
  ``(sid, ts)`` (a series over a time range), a BRIN index on ``ts`` (range scans of
  many series). As in InfluxDB, a point written again for the same series and time
  replaces the values of the fields it gives and keeps the others.
- series ``mlm_<name>_series``: ``(sid, skey, tags jsonb)``, on the group of its points.
- rollups ``mlm_<name>_1m`` and ``_1h``: ``(sid, field, bucket, n, total, lo, hi)``
  (count, sum, min, max of the numeric values), partitioned by day like the points.
- ``mlm_<name>_dirty`` (each group's own, not sharded): minutes written since the
  last rollup refresh, recorded in the write's transaction.
- ``mlm_<name>_tagkeys`` (each group's own, the same rows on every group): the tag
  keys the measurement's series have had, each inserted on every group before a
  series that has it is written. A read of one series (its ``where`` naming every
  key) asks only that series' group, and returns no rows there if the group knows a
  key the ``where`` lacks (the reader then asks every group).

A row a line instead of a row a field value: measured on one group (binary COPY of
the same 5,000-line batches, one transaction each), about 3.5x less server time and
a quarter of the WAL of the (sid, field, ts) key with the value included.

Statements take bound parameters; identifiers are quoted by psycopg.sql.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from psycopg import sql

from .aggregate import Agg
from .batch import KIND_BOOL, KIND_INT, KIND_STR
from .spec import PG_TYPES, Measurement, field_column

__all__ = ["ORIGIN", "MeasurementLayout", "folded"]

# Buckets are aligned on the Unix epoch, as InfluxDB's GROUP BY time() are.
ORIGIN = "1970-01-01 00:00:00+00"


def folded(statements: Sequence[str]) -> str:
    """Data-modifying statements (their ``%s`` in order) as one: each a ``WITH`` query,
    run once and to completion though nothing reads it -- one round trip instead of
    one a statement."""
    if len(statements) == 1:
        return statements[0]
    queries = ", ".join(f"q{i} AS ({s})" for i, s in enumerate(statements))
    return f"WITH {queries} SELECT 1"


@dataclass(frozen=True, slots=True)
class MeasurementLayout:
    """The tables and statements of one measurement; ``fields``: the kinds of its fields
    (name -> batch.KIND_*) that reads and rollups are to see."""

    m: Measurement
    fields: Mapping[str, int] = field(default_factory=dict)

    def column(self, name: str) -> sql.Identifier:
        """The column of field ``name`` (one of :attr:`fields`)."""
        return sql.Identifier(field_column(name, self.fields[name]))

    def _numeric(self, name: str, alias: str = "p") -> sql.Composable:
        """Field ``name``'s values as float8 (integers converted, booleans 0/1)."""
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), self.column(name))
        kind = self.fields[name]
        if kind == KIND_INT:
            return sql.SQL("{}::float8").format(col)
        if kind == KIND_BOOL:
            return sql.SQL("{}::int::float8").format(col)
        return col

    def numeric(self, name: str) -> bool:
        """Whether field ``name`` is known and numeric (float, integer or boolean)."""
        return self.fields.get(name, KIND_STR) != KIND_STR

    def _unpivot(self, names: Sequence[str]) -> sql.Composable:
        """``CROSS JOIN LATERAL`` of ``names``' values of row ``p``: ``v(field, kind,
        value, ival, sval, present)``."""
        entries = []
        for name in names:
            kind = self.fields[name]
            col = sql.SQL("p.{}").format(self.column(name))
            value = self._numeric(name) if kind != KIND_STR else sql.SQL("NULL::float8")
            ival = col if kind == KIND_INT else sql.SQL("NULL::int8")
            sval = col if kind == KIND_STR else sql.SQL("NULL::text")
            entries.append(
                sql.SQL("({}, {}, {}, {}, {}, {} IS NOT NULL)").format(
                    sql.Literal(name), sql.Literal(kind), value, ival, sval, col
                )
            )
        return sql.SQL(
            " CROSS JOIN LATERAL (VALUES {}) AS v(field, kind, value, ival, sval, present)"
        ).format(sql.SQL(", ").join(entries))

    def _t(self, name: str | None = None) -> sql.Identifier:
        return sql.Identifier(name or self.m.table)

    # -- tables ---------------------------------------------------------------------------

    def points_ddl(self) -> str:
        """CREATE TABLE of the points (partitioned by day)."""
        return (
            sql.SQL(
                "CREATE TABLE {t} (sid int8 NOT NULL, ts timestamptz NOT NULL, "
                "PRIMARY KEY (sid, ts)) PARTITION BY RANGE (ts)"
            )
            .format(t=self._t())
            .as_string(None)
        )

    def add_field_sql(self, name: str, kind: int) -> str:
        """The column of a new field added to the points (and all their partitions; no
        rewrite: a column without a default)."""
        return (
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}")
            .format(self._t(), sql.Identifier(field_column(name, kind)), sql.SQL(PG_TYPES[kind]))
            .as_string(None)
        )

    def index_ddl(self) -> list[str]:
        """The points' indexes besides the primary key (made on every partition,
        present and future)."""
        t = self.m.table
        return [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING brin (ts)")
            .format(sql.Identifier(f"{t}_brin"), self._t())
            .as_string(None),
        ]

    def series_ddl(self) -> str:
        """CREATE TABLE of the series."""
        return (
            sql.SQL(
                "CREATE TABLE {t} (sid int8 PRIMARY KEY, skey text NOT NULL, tags jsonb NOT NULL)"
            )
            .format(t=self._t(self.m.series_table))
            .as_string(None)
        )

    def rollup_ddl(self, level: str) -> str:
        """CREATE TABLE of the rollup of ``level`` (partitioned by day)."""
        return (
            sql.SQL(
                'CREATE TABLE {t} (sid int8 NOT NULL, field text COLLATE "C" NOT NULL, '
                "bucket timestamptz NOT NULL, n int8 NOT NULL, total float8 NOT NULL, "
                "lo float8 NOT NULL, hi float8 NOT NULL, PRIMARY KEY (sid, field, bucket)) "
                "PARTITION BY RANGE (bucket)"
            )
            .format(t=self._t(self.m.rollup_table(level)))
            .as_string(None)
        )

    def dirty_ddl(self) -> str:
        """CREATE TABLE IF NOT EXISTS of a group's dirty minutes."""
        return (
            sql.SQL("CREATE TABLE IF NOT EXISTS {t} (minute timestamptz PRIMARY KEY)")
            .format(t=self._t(self.m.dirty_table))
            .as_string(None)
        )

    def sharded_ddl(self) -> dict[str, str]:
        """The sharded tables, name -> CREATE TABLE."""
        out = {self.m.table: self.points_ddl(), self.m.series_table: self.series_ddl()}
        if self.m.rollups:
            for level in ("1m", "1h"):
                out[self.m.rollup_table(level)] = self.rollup_ddl(level)
        return out

    def tag_keys_ddl(self) -> str:
        """CREATE TABLE IF NOT EXISTS of a group's tag keys."""
        return (
            sql.SQL('CREATE TABLE IF NOT EXISTS {t} (key text COLLATE "C" PRIMARY KEY)')
            .format(t=self._t(self.m.tag_keys_table))
            .as_string(None)
        )

    def add_tag_keys_sql(self) -> str:
        """Tag keys (one array of text) recorded on a group; known ones kept."""
        return (
            sql.SQL("INSERT INTO {} (key) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING")
            .format(self._t(self.m.tag_keys_table))
            .as_string(None)
        )

    def drop_tag_keys_sql(self) -> str:
        """DROP TABLE of a group's tag keys."""
        return (
            sql.SQL("DROP TABLE IF EXISTS {}")
            .format(self._t(self.m.tag_keys_table))
            .as_string(None)
        )

    def drop_dirty_sql(self) -> str:
        """DROP TABLE of a group's dirty minutes."""
        return (
            sql.SQL("DROP TABLE IF EXISTS {}").format(self._t(self.m.dirty_table)).as_string(None)
        )

    def expire_dirty_sql(self) -> str:
        """Dirty minutes before a time (one ``%s``) forgotten (their days were dropped)."""
        return (
            sql.SQL("DELETE FROM {} WHERE minute < %s")
            .format(self._t(self.m.dirty_table))
            .as_string(None)
        )

    # -- writes ---------------------------------------------------------------------------

    def copy_sql(self, names: Sequence[str], table: str | None = None) -> str:
        """Binary COPY of rows (sid, ts, then fields ``names``' columns) into ``table``
        (default: the points)."""
        cols = [sql.Identifier("sid"), sql.Identifier("ts"), *map(self.column, names)]
        return (
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)")
            .format(self._t(table), sql.SQL(", ").join(cols))
            .as_string(None)
        )

    def stage_ddl(self) -> str:
        """A temporary staging table like the points, dropped at commit."""
        return (
            sql.SQL("CREATE TEMP TABLE {s} (LIKE {t}) ON COMMIT DROP")
            .format(s=sql.Identifier(self.stage), t=self._t())
            .as_string(None)
        )

    def drop_stage_sql(self) -> str:
        """DROP of the staging table (before the next part of the same transaction
        makes it again)."""
        return sql.SQL("DROP TABLE {s}").format(s=sql.Identifier(self.stage)).as_string(None)

    @property
    def stage(self) -> str:
        """The staging table's name."""
        return "mlscale_mstage"

    def upsert_sql(self, names: Sequence[str]) -> str:
        """Staged rows (one a series and time) written over the stored ones: fields
        ``names`` replaced where a staged row has them, other fields kept."""
        fields = [self.column(n) for n in names]
        cols = sql.SQL(", ").join([sql.Identifier("sid"), sql.Identifier("ts"), *fields])
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = COALESCE(EXCLUDED.{c}, {t}.{c})").format(c=c, t=self._t())
            for c in fields
        )
        return (
            sql.SQL(
                "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT (sid, ts) DO UPDATE SET {u}"
            )
            .format(t=self._t(), c=cols, s=sql.Identifier(self.stage), u=sets)
            .as_string(None)
        )

    def add_series_sql(self) -> str:
        """New series (three arrays: ids, keys, tags as JSON text); known ones kept."""
        return (
            sql.SQL(
                "INSERT INTO {} (sid, skey, tags) SELECT s, k, t::jsonb "
                "FROM unnest(%s::int8[], %s::text[], %s::text[]) AS u(s, k, t) "
                "ON CONFLICT (sid) DO NOTHING"
            )
            .format(self._t(self.m.series_table))
            .as_string(None)
        )

    def mark_dirty_sql(self) -> str:
        """Minutes written (one array of timestamptz), recorded for the next refresh."""
        return (
            sql.SQL(
                "INSERT INTO {} (minute) SELECT unnest(%s::timestamptz[]) ON CONFLICT DO NOTHING"
            )
            .format(self._t(self.m.dirty_table))
            .as_string(None)
        )

    # -- rollups --------------------------------------------------------------------------

    def take_dirty_sql(self) -> str:
        """The group's dirty minutes, taken (deleted) in the refresh's transaction."""
        return (
            sql.SQL("DELETE FROM {} RETURNING minute")
            .format(self._t(self.m.dirty_table))
            .as_string(None)
        )

    def clear_rollup_sql(self, level: str) -> str:
        """Rollup rows of ``level`` in time ranges (two arrays: starts, ends) deleted."""
        return (
            sql.SQL(
                "DELETE FROM {t} r USING unnest(%s::timestamptz[], %s::timestamptz[]) AS g(lo, hi) "
                "WHERE r.bucket >= g.lo AND r.bucket < g.hi"
            )
            .format(t=self._t(self.m.rollup_table(level)))
            .as_string(None)
        )

    def fill_minutes_sql(self) -> str | None:
        """The 1-minute rollup recomputed from the points in time ranges (two arrays), of
        the numeric :attr:`fields` (None if there are none)."""
        names = [n for n in self.fields if self.numeric(n)]
        if not names:
            return None
        values = sql.SQL(", ").join(
            sql.SQL("({}, {})").format(sql.Literal(n), self._numeric(n)) for n in names
        )
        return (
            sql.SQL(
                "INSERT INTO {r} (sid, field, bucket, n, total, lo, hi) "
                "SELECT p.sid, v.field, date_bin('1 minute', p.ts, {o}), count(*), "
                "sum(v.value), min(v.value), max(v.value) "
                "FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS g(lo, hi) "
                "JOIN {t} p ON p.ts >= g.lo AND p.ts < g.hi "
                "CROSS JOIN LATERAL (VALUES {v}) AS v(field, value) WHERE v.value IS NOT NULL "
                "GROUP BY 1, 2, 3"
            )
            .format(
                r=self._t(self.m.rollup_table("1m")), t=self._t(), o=sql.Literal(ORIGIN), v=values
            )
            .as_string(None)
        )

    def fill_hours_sql(self) -> str:
        """The 1-hour rollup recomputed from the 1-minute one in time ranges (two arrays,
        on hour boundaries)."""
        return (
            sql.SQL(
                "INSERT INTO {h} (sid, field, bucket, n, total, lo, hi) "
                "SELECT m.sid, m.field, date_bin('1 hour', m.bucket, {o}), sum(m.n), "
                "sum(m.total), min(m.lo), max(m.hi) "
                "FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS g(lo, hi) "
                "JOIN {m} m ON m.bucket >= g.lo AND m.bucket < g.hi GROUP BY 1, 2, 3"
            )
            .format(
                h=self._t(self.m.rollup_table("1h")),
                m=self._t(self.m.rollup_table("1m")),
                o=sql.Literal(ORIGIN),
            )
            .as_string(None)
        )

    # -- reads ----------------------------------------------------------------------------

    def _series_filter(self, alias: str, where: bool, one_series: bool) -> sql.Composable:
        if one_series:
            # The where named every tag key the caller knew: one series, whose id it
            # bound -- unless this group knows a key outside the where's (``keys``):
            # then no id, no rows, and the caller asks every group. The check inside
            # the ids' subquery keeps it one index condition (a filter of its own puts
            # a node above the scan), and an array like the tags' lookup keeps the
            # generic plan's estimate of rows, so a hash aggregate (a sort and group
            # aggregate on ``sid = $1``: ~20% slower on 4,320 rows, measured).
            return sql.SQL(
                " AND {a}.sid = ANY(ARRAY(SELECT %(sid)s::int8 WHERE NOT EXISTS "
                "(SELECT 1 FROM {k} WHERE key <> ALL(%(keys)s::text[]))))"
            ).format(a=sql.Identifier(alias), k=self._t(self.m.tag_keys_table))
        if not where:
            return sql.SQL("")
        return sql.SQL(
            " AND {a}.sid = ANY(ARRAY(SELECT sid FROM {s} WHERE tags @> %(tags)s))"
        ).format(a=sql.Identifier(alias), s=self._t(self.m.series_table))

    def _keys(self, group_by: Sequence[str]) -> tuple[list[sql.Composable], sql.Composable]:
        """Select expressions of the group-by tags, and the join to the series."""
        cols: list[sql.Composable] = [
            sql.SQL("s.tags ->> {}").format(sql.Literal(tag)) for tag in group_by
        ]
        join = (
            sql.SQL(" JOIN {} s ON s.sid = p.sid").format(self._t(self.m.series_table))
            if group_by
            else sql.SQL("")
        )
        return cols, join

    def _buckets_sql(
        self,
        table: str,
        time: str,
        partials: sql.Composable,
        group_by: Sequence[str],
        where: bool,
        only: sql.Composable,
        one_series: bool,
    ) -> str:
        """Buckets of ``table`` on its ``time`` column: the group-by tags, the bucket
        (its start in microseconds since the epoch), then ``partials``; ``only``: the
        rows' condition besides time and tags."""
        cols, join = self._keys(group_by)
        bucket = sql.SQL("date_bin(%(every)s::interval, p.{}, {}::timestamptz)").format(
            sql.Identifier(time), sql.Literal(ORIGIN)
        )
        # Grouped on the timestamp, the bucket's microseconds computed once a bucket
        # (an int8 is cheaper to send and to read than a timestamptz).
        micros = sql.SQL("(extract(epoch FROM {}) * 1000000)::int8").format(bucket)
        positions = sql.SQL(", ").join(
            [*(sql.SQL(str(i + 1)) for i in range(len(group_by))), bucket]
        )
        return (
            sql.SQL(
                "SELECT {cols}{b} AS bucket, {partials} FROM {t} p{join} "
                "WHERE {only} AND p.{tc} >= %(start)s AND p.{tc} < %(end)s"
                "{filter} GROUP BY {pos}"
            )
            .format(
                cols=sql.SQL("").join(c + sql.SQL(", ") for c in cols),
                b=micros,
                partials=partials,
                t=self._t(table),
                join=join,
                tc=sql.Identifier(time),
                only=only,
                filter=self._series_filter("p", where, one_series),
                pos=positions,
            )
            .as_string(None)
        )

    def downsample_sql(
        self,
        name: str,
        agg: Agg,
        group_by: Sequence[str],
        where: bool,
        raw_values: bool = False,
        *,
        one_series: bool = False,
    ) -> str:
        """One group's buckets of numeric field ``name`` from the points: the group-by
        tags, the bucket (µs since the epoch), then :meth:`Agg.partials_sql`
        (``raw_values``: every value of a bucket as an array, to take an exact
        percentile over several groups). Parameters: ``start``, ``end``, ``every``
        (interval), ``tags`` (jsonb, if ``where``), or if ``one_series`` ``sid``
        (int8: that series, no lookup of tags) and ``keys`` (text[]: the where's
        tag keys, checked against the group's)."""
        value = self._numeric(name).as_string(None)
        partials = agg.partials_sql(value, raw_values)
        only = sql.SQL("p.{} IS NOT NULL").format(self.column(name))
        return self._buckets_sql(self.m.table, "ts", partials, group_by, where, only, one_series)

    def rollup_sql(
        self,
        level: str,
        agg: Agg,
        group_by: Sequence[str],
        where: bool,
        *,
        one_series: bool = False,
    ) -> str:
        """One group's buckets of one field from the rollup of ``level`` (re-bucketed to
        ``every``, a multiple of the level): the group-by tags, the bucket, then
        :meth:`Agg.rollup_partials_sql`. Parameters as :meth:`downsample_sql`, and
        ``field``."""
        partials = agg.rollup_partials_sql()
        only = sql.SQL("p.field = %(field)s")
        return self._buckets_sql(
            self.m.rollup_table(level), "bucket", partials, group_by, where, only, one_series
        )

    def range_sql(
        self, names: Sequence[str], where: bool, limit: bool, *, one_series: bool = False
    ) -> str:
        """One group's values of fields ``names`` in ``[start, end)``, oldest first:
        series key, tags, field, time, kind, value, ival, sval."""
        return (
            sql.SQL(
                "SELECT s.skey, s.tags, v.field, p.ts, v.kind, v.value, v.ival, v.sval "
                "FROM {t} p JOIN {s} s ON s.sid = p.sid{v} "
                "WHERE v.present AND p.ts >= %(start)s AND p.ts < %(end)s{filter} "
                'ORDER BY p.ts, p.sid, v.field COLLATE "C"{limit}'
            )
            .format(
                t=self._t(),
                s=self._t(self.m.series_table),
                v=self._unpivot(names),
                filter=self._series_filter("p", where, one_series),
                limit=sql.SQL(" LIMIT %(limit)s") if limit else sql.SQL(""),
            )
            .as_string(None)
        )

    def last_sql(
        self, names: Sequence[str], where: bool, bounded: bool, *, one_series: bool = False
    ) -> str:
        """One group's last value of each series and field of ``names`` (before ``end``
        if ``bounded``, from ``start``): series key, tags, field, time, kind, value,
        ival, sval. A field at a time: the last row of each series that has it."""
        each = [
            sql.SQL(
                "(SELECT DISTINCT ON (p.sid) p.sid, v.field, p.ts, v.kind, v.value, v.ival, "
                "v.sval FROM {t} p{v} WHERE p.{c} IS NOT NULL AND p.ts >= %(start)s{b}{filter} "
                "ORDER BY p.sid DESC, p.ts DESC)"
            ).format(
                t=self._t(),
                v=self._unpivot([name]),
                c=self.column(name),
                b=sql.SQL(" AND p.ts < %(end)s") if bounded else sql.SQL(""),
                filter=self._series_filter("p", where, one_series),
            )
            for name in names
        ]
        return (
            sql.SQL(
                "SELECT s.skey, s.tags, l.field, l.ts, l.kind, l.value, l.ival, l.sval "
                "FROM ({u}) l JOIN {s} s ON s.sid = l.sid"
            )
            .format(u=sql.SQL(" UNION ALL ").join(each), s=self._t(self.m.series_table))
            .as_string(None)
        )
