# Generated from tables_async.py by scripts/async_to_sync.py: do not edit.
# Change tables_async.py and run the script again.
"""The measurements of a cluster: their definitions (in the catalog) and their tables
(on every shard group), partitioned by day ahead of time (async source).

A measurement is created by making its sharded tables (points, series, rollups:
:mod:`mlscale.core.timeseries.layout`), their indexes, each group's dirty-minutes
table and the day partitions of yesterday, today and ``days_ahead`` days ahead,
then recording its spec last, so a recorded measurement always has its tables.
Creating an equal measurement again is a no-op; another definition under a
recorded name is refused. Writes make the partitions of any other day they need.

The definitions live in ``mlscale_catalog.metric_measurements`` (catalog migration 8),
with the type of each field written (the spec's ``fields``: name -> float, integer,
boolean or string). A write bringing a new field adds its column on every group
under a lock on the measurement's catalog row, then records its type, in that row's
transaction: concurrent writers agree on one type, a value of another type is refused
(as InfluxDB refuses a field type conflict).

The row also records the measurement's tag keys (``tag_keys``: every key any series
has had), and so does each group (its ``_tagkeys`` table), so that a read whose
``where`` names all of them is one series, on one group. A writer records a new key
(under the same lock) on every group, then in the catalog, before it commits a
series that has it; a measurement recorded before keys were kept has no
``tag_keys`` and never gets one (its keys are unknown: its reads ask every group).

``tables_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from ...core.causal import CausalToken
from ...core.dayparts import utc_day
from ...core.timeseries.layout import MeasurementLayout
from ...core.timeseries.results import RetentionResult
from ...core.timeseries.spec import FAMILY, FIELD_TYPES, Measurement
from ...engine.cluster_sync import Cluster
from ...errors import MeasurementNotFound, MetricsError, MlscaleError
from ..shared_sync import DayPartitions, catalog, ensure_family

__all__ = ["MetricTables"]

_TABLE = "mlscale_catalog.metric_measurements"


class MetricTables:
    """The measurements of one cluster: their definitions and their tables."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.partitions = DayPartitions(cluster)

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return [g.name for g in self._cluster.config.shard_groups]

    def load(self) -> list[Measurement]:
        """Every recorded measurement, by name."""
        with catalog(self._cluster, "metric measurements") as conn:
            cur = conn.execute(f"SELECT spec FROM {_TABLE} ORDER BY name")  # noqa: S608
            rows = cur.fetchall()
        return [Measurement.from_spec(r[0]) for r in rows]

    def find(self, name: str) -> Measurement | None:
        """The recorded measurement ``name``, or None."""
        with catalog(self._cluster, "metric measurements") as conn:
            cur = conn.execute(
                f"SELECT spec FROM {_TABLE} WHERE name = %s",  # noqa: S608
                (name,),
            )
            row = cur.fetchone()
        return None if row is None else Measurement.from_spec(row[0])

    def get(self, name: str) -> Measurement:
        """The recorded measurement ``name``; MeasurementNotFound naming the known ones."""
        found = self.find(name)
        if found is None:
            known = ", ".join(m.name for m in self.load()) or "none"
            raise MeasurementNotFound(f"no measurement {name!r} (known: {known})")
        return found

    def fields(self, m: Measurement) -> dict[str, int]:
        """The kinds (batch.KIND_*) of ``m``'s fields written so far, by name."""
        with catalog(self._cluster, "metric measurements") as conn:
            cur = conn.execute(
                f"SELECT spec -> 'fields' FROM {_TABLE} WHERE name = %s",  # noqa: S608
                (m.name,),
            )
            row = cur.fetchone()
        return _kinds(row[0] if row else None)

    def tag_keys(self, m: Measurement) -> frozenset[str] | None:
        """Every tag key ``m``'s series have had (None: not known, see the module
        docstring)."""
        with catalog(self._cluster, "metric measurements") as conn:
            cur = conn.execute(
                f"SELECT spec -> 'tag_keys' FROM {_TABLE} WHERE name = %s",  # noqa: S608
                (m.name,),
                prepare=True,
            )
            row = cur.fetchone()
        return None if row is None or row[0] is None else frozenset(row[0])

    def add_tag_keys(
        self, m: Measurement, keys: frozenset[str]
    ) -> tuple[frozenset[str] | None, CausalToken]:
        """Record tag ``keys`` among ``m``'s (if its keys are known): on every group,
        then in the catalog. Every key after, and the groups' commits (a reader
        passing a write's token is to see its keys as well as its points)."""
        token = CausalToken()
        with (
            catalog(self._cluster, "metric measurements") as conn,
            conn.transaction(),
        ):
            recorded = _locked(conn, m, "tag_keys")
            if recorded is None:
                return None, token
            have = frozenset(recorded)
            if not keys <= have:
                new = sorted(keys - have)
                for group in self.groups:
                    with self._cluster.transaction(group=group, as_written=True) as tx:
                        tx.execute(MeasurementLayout(m).add_tag_keys_sql(), (new,))
                    token = token.merge(tx.token or CausalToken())
                have |= keys
                conn.execute(
                    f"UPDATE {_TABLE} SET spec = jsonb_set(spec, '{{tag_keys}}', %s) "  # noqa: S608
                    "WHERE name = %s",
                    (Jsonb(sorted(have)), m.name),
                )
        return have, token

    def add_fields(self, m: Measurement, wanted: dict[str, int]) -> dict[str, int]:
        """Record the fields of ``wanted`` (name -> kind) ``m`` lacks, their columns added
        on every group first; every field's kind after. MetricsError naming a field
        recorded with another type (nothing is added then)."""
        layout = MeasurementLayout(m)
        with (
            catalog(self._cluster, "metric measurements") as conn,
            conn.transaction(),
        ):
            have = _kinds(_locked(conn, m, "fields"))
            for name, kind in wanted.items():
                if name in have and have[name] != kind:
                    raise MetricsError(
                        f"field {name!r} of {m.name!r} is {FIELD_TYPES[have[name]]}: a "
                        f"{FIELD_TYPES[kind]} value is refused (a field's type is fixed)"
                    )
            new = {n: k for n, k in wanted.items() if n not in have}
            if new:
                for group in self.groups:
                    scope = self._cluster.as_written(group)
                    for name, kind in new.items():
                        scope.execute(layout.add_field_sql(name, kind))
                have.update(new)
                conn.execute(
                    f"UPDATE {_TABLE} SET spec = jsonb_set(spec, '{{fields}}', %s) "  # noqa: S608
                    "WHERE name = %s",
                    (Jsonb({n: FIELD_TYPES[k] for n, k in have.items()}), m.name),
                )
        return have

    def create(self, m: Measurement) -> Measurement:
        """Make ``m``'s tables where missing and record it (see the module docstring)."""
        have = self.find(m.name)
        if have is not None:
            if have != m:
                raise MetricsError(
                    f"measurement {m.name!r} exists with another definition "
                    f"({have.to_spec()}); drop it first or pick another name"
                )
            return have
        ensure_family(
            self._cluster,
            FAMILY,
            "int8",
            what="metrics store",
            error=MetricsError,
            keys="series ids",
        )
        layout = MeasurementLayout(m)
        known = (self._cluster.shards()).tables
        for name, ddl in layout.sharded_ddl().items():
            if name in known:
                continue
            try:
                self._cluster.create_sharded_table(ddl, shard_key="sid", family=FAMILY)
            except MlscaleError:
                if name not in (self._cluster.refresh_shards()).tables:
                    raise
        for group in self.groups:
            scope = self._cluster.as_written(group)
            for ddl in layout.index_ddl():
                scope.execute(ddl)
            scope.execute(layout.tag_keys_ddl())
            if m.rollups:
                scope.execute(layout.dirty_ddl())
        self.ensure_ahead(m)
        with catalog(self._cluster, "metric measurements") as conn:
            conn.execute(
                f"INSERT INTO {_TABLE} (name, spec) VALUES (%s, %s) "  # noqa: S608
                "ON CONFLICT (name) DO NOTHING",
                # No series yet: its tag keys are known (none).
                (m.name, Jsonb({**m.to_spec(), "tag_keys": []})),
            )
        return m

    def ensure_ahead(self, m: Measurement, today: dt.date | None = None) -> None:
        """Partitions of yesterday, today and ``m.days_ahead`` days ahead."""
        day = today or dt.datetime.now(dt.UTC).date()
        self.partitions.ensure(
            m.partitioned, [day + dt.timedelta(days=d) for d in range(-1, m.days_ahead + 1)]
        )

    def drop(self, m: Measurement) -> None:
        """Drop ``m``'s tables on every group and forget it (its data is gone)."""
        layout = MeasurementLayout(m)
        known = (self._cluster.shards()).tables
        for name in layout.sharded_ddl():
            if name in known:
                self._cluster.drop_sharded_table(name)
        for group in self.groups:
            self._cluster.as_written(group).execute(layout.drop_dirty_sql())
            self._cluster.as_written(group).execute(layout.drop_tag_keys_sql())
        with catalog(self._cluster, "metric measurements") as conn:
            conn.execute(f"DELETE FROM {_TABLE} WHERE name = %s", (m.name,))  # noqa: S608
        self.partitions.forget_tables(m.partitioned)

    def retain(self, m: Measurement, now: dt.datetime) -> RetentionResult:
        """Drop ``m``'s partitions (points and rollups) of every UTC day before the
        ``retention_days`` last ones (today, by ``now``, included) on every group."""
        assert m.retention_days is not None
        before = utc_day(now) - dt.timedelta(days=m.retention_days - 1)
        dropped: dict[str, tuple[str, ...]] = {}
        days: set[dt.date] = set()
        token = CausalToken()
        for group in self.groups:
            with self._cluster.transaction(group=group, as_written=True) as tx:
                gone = self.partitions.drop_before(tx, group, m.partitioned, before)
                if m.rollups:
                    tx.execute(
                        MeasurementLayout(m).expire_dirty_sql(),
                        (dt.datetime.combine(before, dt.time(), tzinfo=dt.UTC),),
                    )
            dropped[group] = tuple(name for name, _ in gone)
            days.update(day for _, day in gone)
            token = token.merge(tx.token or CausalToken())
        return RetentionResult(
            before={m.name: before},
            days={m.name: tuple(sorted(days))},
            dropped={m.name: dropped},
        )


def _locked(conn: Connection[Any], m: Measurement, entry: str) -> Any:
    """``entry`` of ``m``'s recorded spec (None if absent), its row locked until the
    transaction ends; MeasurementNotFound if ``m`` is not recorded."""
    cur = conn.execute(
        f"SELECT spec -> %s::text FROM {_TABLE} WHERE name = %s FOR UPDATE",  # noqa: S608
        (entry, m.name),
    )
    row = cur.fetchone()
    if row is None:
        raise MeasurementNotFound(f"no measurement {m.name!r} (dropped meanwhile?)")
    return row[0]


def _kinds(recorded: dict[str, str] | None) -> dict[str, int]:
    """The spec's ``fields`` (name -> type name) as name -> kind."""
    return {name: FIELD_TYPES.index(t) for name, t in (recorded or {}).items()}
