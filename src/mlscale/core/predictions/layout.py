"""How a prediction log is laid out in tables, and the SQL that reads and writes them.

Three sharded tables of the log's key family, all sharded by the entity column, so an
entity's predictions and labels live on one shard group and join there:

- ``name`` (predictions): ``(entity, prediction_id uuid, ts, score float8, model,
  model_version, predicted text, extra jsonb)``, partitioned by day on ``ts``. Its
  primary key ``(entity, ts, prediction_id)`` holds the partition key (PostgreSQL
  requires it of a unique index on a partitioned table) and the shard key; it is
  what makes a resent prediction a duplicate. It also serves reads of an entity over
  a time range.
- ``name_labels``: one label per prediction, ``(entity, prediction_id, ts,
  label_ts, outcome float8, label text)``, partitioned by the *prediction's* day, so
  a label sits in the partition of its prediction's day and retention drops both.
- ``name_unmatched``: labels whose prediction was not found (yet), kept aside and
  counted, attached later by :meth:`attach_sql`.

Daily partitions are named ``<table>_dYYYYMMDD`` and bounded in UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg import sql

from .. import dayparts
from ..dayparts import day_of_partition
from .spec import PredictionLog

__all__ = ["PREDICTION_COLUMNS", "PredictionLayout", "day_of_partition"]

# The predictions' columns after the entity, in COPY order (fixed-width first).
PREDICTION_COLUMNS = (
    "prediction_id",
    "ts",
    "score",
    "model",
    "model_version",
    "predicted",
    "extra",
)
LABEL_COLUMNS = ("prediction_id", "label_ts", "outcome", "label")


def _instant(value: dt.date | dt.datetime) -> str:
    """A date (UTC midnight) or time as an ISO timestamptz literal (naive = UTC)."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    return _utc(value)


def _utc(day: dt.date) -> str:
    return f"{day.isoformat()} 00:00:00+00"


@dataclass(frozen=True, slots=True)
class PredictionLayout:
    """The tables and statements of one prediction log."""

    log: PredictionLog

    @property
    def tables(self) -> tuple[str, str, str]:
        """Predictions, labels, unmatched labels."""
        return (self.log.name, self.log.labels, self.log.unmatched)

    @property
    def partitioned(self) -> tuple[str, str]:
        """The tables partitioned by day: predictions and labels."""
        return (self.log.name, self.log.labels)

    @property
    def copy_columns(self) -> tuple[str, ...]:
        """The predictions' columns in the writer's COPY order."""
        return (self.log.entity, *PREDICTION_COLUMNS)

    def _e(self) -> sql.Identifier:
        return sql.Identifier(self.log.entity)

    def _etype(self) -> sql.SQL:
        # A key type's name (int8, int4, int2, text, uuid) is PostgreSQL's own.
        return sql.SQL(self.log.key_type.value)

    # -- tables ---------------------------------------------------------------------------

    def predictions_ddl(self) -> str:
        """CREATE TABLE of the predictions (partitioned by day)."""
        return (
            sql.SQL(
                "CREATE TABLE {t} ({e} {et} NOT NULL, prediction_id uuid NOT NULL, "
                "ts timestamptz NOT NULL, score float8, model text NOT NULL, "
                "model_version text NOT NULL, predicted text, extra jsonb, "
                "PRIMARY KEY ({e}, ts, prediction_id)) PARTITION BY RANGE (ts)"
            )
            .format(t=sql.Identifier(self.log.name), e=self._e(), et=self._etype())
            .as_string(None)
        )

    def labels_ddl(self) -> str:
        """CREATE TABLE of the labels (partitioned by their prediction's day)."""
        return (
            sql.SQL(
                "CREATE TABLE {t} ({e} {et} NOT NULL, prediction_id uuid NOT NULL, "
                "ts timestamptz NOT NULL, label_ts timestamptz NOT NULL, outcome float8, "
                "label text, PRIMARY KEY ({e}, ts, prediction_id)) PARTITION BY RANGE (ts)"
            )
            .format(t=sql.Identifier(self.log.labels), e=self._e(), et=self._etype())
            .as_string(None)
        )

    def unmatched_ddl(self) -> str:
        """CREATE TABLE of the labels kept aside (their prediction was not found)."""
        return (
            sql.SQL(
                "CREATE TABLE {t} ({e} {et} NOT NULL, prediction_id uuid NOT NULL, "
                "label_ts timestamptz NOT NULL, outcome float8, label text, "
                "received_ts timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY ({e}, prediction_id, label_ts))"
            )
            .format(t=sql.Identifier(self.log.unmatched), e=self._e(), et=self._etype())
            .as_string(None)
        )

    def partition(self, table: str, day: dt.date) -> str:
        """The name of ``table``'s partition of ``day``."""
        return dayparts.partition_name(table, day)

    def partition_ddl(self, table: str, day: dt.date) -> str:
        """CREATE TABLE IF NOT EXISTS of ``table``'s partition of ``day`` (UTC)."""
        return dayparts.partition_ddl(table, day)

    @staticmethod
    def partitions_sql() -> str:
        """The partitions of a table (one ``%s``: its name), by name."""
        return dayparts.PARTITIONS_SQL

    @staticmethod
    def drop_sql(partition: str) -> str:
        """DROP TABLE of one partition."""
        return dayparts.drop_sql(partition)

    # -- writes ---------------------------------------------------------------------------

    def training_sql(
        self,
        *,
        model: str | None = None,
        start: dt.date | dt.datetime | None = None,
        end: dt.date | dt.datetime | None = None,
        labeled_only: bool = True,
    ) -> str:
        """Predictions joined to their labels (co-located: one group's join), for a
        training read. Filters are literals (``COPY`` takes no bind parameters),
        quoted by psycopg.sql."""
        join = sql.SQL("JOIN" if labeled_only else "LEFT JOIN")
        where: list[sql.Composable] = []
        if model is not None:
            where.append(sql.SQL("p.model = {}").format(sql.Literal(model)))
        if start is not None:
            where.append(sql.SQL("p.ts >= {}").format(sql.Literal(_instant(start))))
        if end is not None:
            where.append(sql.SQL("p.ts < {}").format(sql.Literal(_instant(end))))
        return (
            sql.SQL(
                "SELECT p.{e}, p.prediction_id, p.ts, p.model, p.model_version, p.score, "
                "p.predicted, l.label_ts, l.outcome, l.label FROM {pt} p {join} {lt} l "
                "ON l.{e} = p.{e} AND l.ts = p.ts AND l.prediction_id = p.prediction_id{where}"
            )
            .format(
                e=self._e(),
                pt=sql.Identifier(self.log.name),
                lt=sql.Identifier(self.log.labels),
                join=join,
                where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
            )
            .as_string(None)
        )

    def expire_unmatched_sql(self) -> str:
        """DELETE of the unmatched labels sent before a time (one ``%s``)."""
        return (
            sql.SQL("DELETE FROM {} WHERE label_ts < %s")
            .format(sql.Identifier(self.log.unmatched))
            .as_string(None)
        )

    def copy_sql(self, table: str | None = None) -> str:
        """Binary COPY of predictions into ``table`` (default: the predictions)."""
        return (
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)")
            .format(
                sql.Identifier(table or self.log.name),
                sql.SQL(", ").join(map(sql.Identifier, self.copy_columns)),
            )
            .as_string(None)
        )

    def stage_ddl(self) -> str:
        """A temporary staging table like the predictions, dropped at commit."""
        return (
            sql.SQL("CREATE TEMP TABLE mlscale_pstage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP")
            .format(sql.Identifier(self.log.name))
            .as_string(None)
        )

    def insert_new_sql(self) -> str:
        """Staged predictions inserted unless already there (a resent batch)."""
        cols = sql.SQL(", ").join(map(sql.Identifier, self.copy_columns))
        return (
            sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM mlscale_pstage ON CONFLICT DO NOTHING")
            .format(t=sql.Identifier(self.log.name), c=cols)
            .as_string(None)
        )

    def label_stage_ddl(self) -> str:
        """A temporary staging table for labels, dropped at commit."""
        return (
            sql.SQL(
                "CREATE TEMP TABLE mlscale_lstage ({e} {et}, prediction_id uuid, "
                "label_ts timestamptz, outcome float8, label text) ON COMMIT DROP"
            )
            .format(e=self._e(), et=self._etype())
            .as_string(None)
        )

    def label_copy_sql(self) -> str:
        """Binary COPY of labels into the staging table."""
        return (
            sql.SQL("COPY mlscale_lstage ({}) FROM STDIN (FORMAT binary)")
            .format(sql.SQL(", ").join(map(sql.Identifier, (self.log.entity, *LABEL_COLUMNS))))
            .as_string(None)
        )

    def _attach(self, source: str) -> sql.Composed:
        """``source``'s labels whose prediction is there, newest label per prediction,
        into the labels table: a label replaces one at least as old, never a newer one.
        Returns one row per label written."""
        return sql.SQL(
            "INSERT INTO {lt} AS cur ({e}, prediction_id, ts, label_ts, outcome, label) "
            "SELECT DISTINCT ON (s.{e}, s.prediction_id) s.{e}, s.prediction_id, p.ts, "
            "s.label_ts, s.outcome, s.label FROM {src} s JOIN {pt} p "
            "ON p.{e} = s.{e} AND p.prediction_id = s.prediction_id "
            "ORDER BY s.{e}, s.prediction_id, s.label_ts DESC "
            "ON CONFLICT ({e}, ts, prediction_id) DO UPDATE SET label_ts = EXCLUDED.label_ts, "
            "outcome = EXCLUDED.outcome, label = EXCLUDED.label "
            "WHERE cur.label_ts <= EXCLUDED.label_ts"
        ).format(
            lt=sql.Identifier(self.log.labels),
            e=self._e(),
            src=sql.Identifier(source),
            pt=sql.Identifier(self.log.name),
        )

    def labels_sql(self) -> str:
        """Staged labels attached to their predictions; one statement answering how many
        were written and how many were kept aside as unmatched."""
        return (
            sql.SQL(
                "WITH written AS ({attach} RETURNING 1), aside AS ("
                "INSERT INTO {ut} ({e}, prediction_id, label_ts, outcome, label) "
                "SELECT s.{e}, s.prediction_id, s.label_ts, s.outcome, s.label "
                "FROM mlscale_lstage s WHERE NOT EXISTS (SELECT 1 FROM {pt} p "
                "WHERE p.{e} = s.{e} AND p.prediction_id = s.prediction_id) "
                "ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM aside)"
            )
            .format(
                attach=self._attach("mlscale_lstage"),
                ut=sql.Identifier(self.log.unmatched),
                e=self._e(),
                pt=sql.Identifier(self.log.name),
            )
            .as_string(None)
        )

    def attach_sql(self) -> str:
        """Unmatched labels whose prediction has arrived since, attached and removed
        from the unmatched table; answers how many were attached and how many remain."""
        return (
            sql.SQL(
                "WITH written AS ({attach} RETURNING 1), gone AS ("
                "DELETE FROM {ut} u USING {pt} p WHERE p.{e} = u.{e} "
                "AND p.prediction_id = u.prediction_id RETURNING 1) "
                "SELECT (SELECT count(*) FROM gone), "
                "(SELECT count(*) FROM {ut}) - (SELECT count(*) FROM gone)"
            )
            .format(
                attach=self._attach(self.log.unmatched),
                ut=sql.Identifier(self.log.unmatched),
                e=self._e(),
                pt=sql.Identifier(self.log.name),
            )
            .as_string(None)
        )
