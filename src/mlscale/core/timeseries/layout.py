"""The tables of a measurement and the SQL that reads and writes them. No I/O.

Per measurement, sharded by series id (``sid``, key family ``mlscale_metrics``):

- points ``mlm_<name>``: ``(sid int8, ts timestamptz, kind int2, value float8, ival
  int8, field text, sval text)``, one row per field value, partitioned by UTC day on
  ``ts``; primary key ``(sid, field, ts)`` (a series' field over a time range reads
  it), a BRIN index on ``ts`` (range scans of many series). ``value`` holds floats,
  integers (also exactly in ``ival``) and booleans (0/1); ``sval`` strings; ``kind``
  says which (0 float, 1 integer, 2 boolean, 3 string). As in InfluxDB, a value
  written again for the same series, field and time replaces the one stored.
- series ``mlm_<name>_series``: ``(sid, skey, tags jsonb)``, on the group of its points.
- rollups ``mlm_<name>_1m`` and ``_1h``: ``(sid, field, bucket, n, total, lo, hi)``
  (count, sum, min, max of the numeric values), partitioned by day like the points.
- ``mlm_<name>_dirty`` (each group's own, not sharded): minutes written since the
  last rollup refresh, recorded in the write's transaction.

Statements take bound parameters; identifiers are quoted by psycopg.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from .aggregate import Agg
from .spec import Measurement

__all__ = ["COPY_COLUMNS", "ORIGIN", "MeasurementLayout"]

COPY_COLUMNS = ("sid", "ts", "kind", "value", "ival", "field", "sval")
# Buckets are aligned on the Unix epoch, as InfluxDB's GROUP BY time() are.
ORIGIN = "1970-01-01 00:00:00+00"
MEASUREMENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS mlscale_catalog.metric_measurements ("
    "name text PRIMARY KEY, spec jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)


@dataclass(frozen=True, slots=True)
class MeasurementLayout:
    """The tables and statements of one measurement."""

    m: Measurement

    def _t(self, name: str | None = None) -> sql.Identifier:
        return sql.Identifier(name or self.m.table)

    # -- tables ---------------------------------------------------------------------------

    def points_ddl(self) -> str:
        """CREATE TABLE of the points (partitioned by day)."""
        return (
            sql.SQL(
                "CREATE TABLE {t} (sid int8 NOT NULL, ts timestamptz NOT NULL, "
                "kind int2 NOT NULL, value float8, ival int8, field text NOT NULL, sval text, "
                "PRIMARY KEY (sid, field, ts)) PARTITION BY RANGE (ts)"
            )
            .format(t=self._t())
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
                "CREATE TABLE {t} (sid int8 NOT NULL, field text NOT NULL, "
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

    def copy_sql(self, table: str | None = None) -> str:
        """Binary COPY of points (columns :data:`COPY_COLUMNS`) into ``table`` (default:
        the points)."""
        return (
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)")
            .format(self._t(table), sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS)))
            .as_string(None)
        )

    def stage_ddl(self) -> str:
        """A temporary staging table like the points, dropped at commit."""
        return (
            sql.SQL("CREATE TEMP TABLE {s} (LIKE {t}) ON COMMIT DROP")
            .format(s=sql.Identifier(self.stage), t=self._t())
            .as_string(None)
        )

    @property
    def stage(self) -> str:
        """The staging table's name."""
        return "mlscale_mstage"

    def upsert_sql(self) -> str:
        """Staged points written over the stored ones of the same series, field and
        time (the last staged wins: rows are staged in their given order)."""
        cols = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
        return (
            sql.SQL(
                "INSERT INTO {t} ({c}) SELECT DISTINCT ON (sid, field, ts) {c} FROM {s} "
                "ORDER BY sid, field, ts, ctid DESC ON CONFLICT (sid, field, ts) DO UPDATE "
                "SET kind = EXCLUDED.kind, value = EXCLUDED.value, ival = EXCLUDED.ival, "
                "sval = EXCLUDED.sval"
            )
            .format(t=self._t(), c=cols, s=sql.Identifier(self.stage))
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

    def fill_minutes_sql(self) -> str:
        """The 1-minute rollup recomputed from the points in time ranges (two arrays)."""
        return (
            sql.SQL(
                "INSERT INTO {r} (sid, field, bucket, n, total, lo, hi) "
                "SELECT p.sid, p.field, date_bin('1 minute', p.ts, {o}), count(*), "
                "sum(p.value), min(p.value), max(p.value) "
                "FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS g(lo, hi) "
                "JOIN {t} p ON p.ts >= g.lo AND p.ts < g.hi WHERE p.value IS NOT NULL "
                "GROUP BY 1, 2, 3"
            )
            .format(r=self._t(self.m.rollup_table("1m")), t=self._t(), o=sql.Literal(ORIGIN))
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

    def _series_filter(self, alias: str, where: bool) -> sql.Composable:
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

    def downsample_sql(
        self, agg: Agg, group_by: Sequence[str], where: bool, raw_values: bool = False
    ) -> str:
        """One group's buckets of one field from the points: the group-by tags, the
        bucket, then :meth:`Agg.partials` (``raw_values``: every value of a bucket as
        an array, to take an exact percentile over several groups). Parameters:
        ``field``, ``start``, ``end``, ``every`` (interval), ``tags`` (jsonb, if
        ``where``)."""
        cols, join = self._keys(group_by)
        partials = agg.partials_sql("p.value", raw_values)
        bucket = sql.SQL("date_bin(%(every)s::interval, p.ts, {o}::timestamptz)").format(
            o=sql.Literal(ORIGIN)
        )
        positions = sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(group_by) + 1))
        return (
            sql.SQL(
                "SELECT {cols}{b} AS bucket, {partials} FROM {t} p{join} "
                "WHERE p.field = %(field)s AND p.ts >= %(start)s AND p.ts < %(end)s "
                "AND p.value IS NOT NULL{filter} GROUP BY {pos}"
            )
            .format(
                cols=sql.SQL("").join(c + sql.SQL(", ") for c in cols),
                b=bucket,
                partials=partials,
                t=self._t(),
                join=join,
                filter=self._series_filter("p", where),
                pos=positions,
            )
            .as_string(None)
        )

    def rollup_sql(self, level: str, agg: Agg, group_by: Sequence[str], where: bool) -> str:
        """One group's buckets of one field from the rollup of ``level`` (re-bucketed to
        ``every``, a multiple of the level): the group-by tags, the bucket, then
        :meth:`Agg.partials` of the rollup's partial sums. Parameters as
        :meth:`downsample_sql`."""
        cols, join = self._keys(group_by)
        bucket = sql.SQL("date_bin(%(every)s::interval, p.bucket, {o}::timestamptz)").format(
            o=sql.Literal(ORIGIN)
        )
        positions = sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(group_by) + 1))
        return (
            sql.SQL(
                "SELECT {cols}{b} AS bucket, {partials} FROM {t} p{join} "
                "WHERE p.field = %(field)s AND p.bucket >= %(start)s AND p.bucket < %(end)s"
                "{filter} GROUP BY {pos}"
            )
            .format(
                cols=sql.SQL("").join(c + sql.SQL(", ") for c in cols),
                b=bucket,
                partials=agg.rollup_partials_sql(),
                t=self._t(self.m.rollup_table(level)),
                join=join,
                filter=self._series_filter("p", where),
                pos=positions,
            )
            .as_string(None)
        )

    def range_sql(self, field: bool, where: bool, limit: bool) -> str:
        """One group's points in ``[start, end)`` (of ``field`` if given), oldest first:
        series key, tags, field, time, kind, value, ival, sval."""
        return (
            sql.SQL(
                "SELECT s.skey, s.tags, p.field, p.ts, p.kind, p.value, p.ival, p.sval "
                "FROM {t} p JOIN {s} s ON s.sid = p.sid "
                "WHERE p.ts >= %(start)s AND p.ts < %(end)s{f}{filter} "
                "ORDER BY p.ts, p.sid, p.field{limit}"
            )
            .format(
                t=self._t(),
                s=self._t(self.m.series_table),
                f=sql.SQL(" AND p.field = %(field)s") if field else sql.SQL(""),
                filter=self._series_filter("p", where),
                limit=sql.SQL(" LIMIT %(limit)s") if limit else sql.SQL(""),
            )
            .as_string(None)
        )

    def last_sql(self, field: bool, where: bool, bounded: bool) -> str:
        """One group's last value of each series and field (before ``end`` if
        ``bounded``, from ``start``): series key, tags, field, time, kind, value, ival,
        sval."""
        return (
            sql.SQL(
                "SELECT DISTINCT ON (p.sid, p.field) s.skey, s.tags, p.field, p.ts, p.kind, "
                "p.value, p.ival, p.sval FROM {t} p JOIN {s} s ON s.sid = p.sid "
                "WHERE p.ts >= %(start)s{b}{f}{filter} ORDER BY p.sid, p.field, p.ts DESC"
            )
            .format(
                t=self._t(),
                s=self._t(self.m.series_table),
                b=sql.SQL(" AND p.ts < %(end)s") if bounded else sql.SQL(""),
                f=sql.SQL(" AND p.field = %(field)s") if field else sql.SQL(""),
                filter=self._series_filter("p", where),
            )
            .as_string(None)
        )
