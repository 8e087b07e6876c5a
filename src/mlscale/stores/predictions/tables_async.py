"""A prediction log's tables: made on every group, recorded in the catalog, partitioned
by day ahead of time, and dropped a whole day at a time (async source).

A log is created by making its three sharded tables first (placed by its key family,
whose map is made evenly over every shard group if the family has none) and
recording its spec last, so a recorded log always has its tables. Creating an
equal log again is a no-op; a different definition under a recorded name is refused.

Daily partitions of the predictions and labels are made for yesterday, today and
``days_ahead`` days ahead when the log is opened, and for any other day the moment a
write needs it (remembered per process, so a write checks nothing it already made).
Retention drops whole partitions: no DELETE, no bloat, no vacuum debt.

``tables_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from psycopg.types.json import Jsonb

from ...core.causal import CausalToken
from ...core.predictions.layout import PredictionLayout, day_of_partition
from ...core.predictions.results import RetentionResult
from ...core.predictions.spec import PredictionLog
from ...core.shardmaps import KeyFamily, SlotMap
from ...engine.cluster_async import AsyncCluster
from ...errors import MlscaleError, PredictionError, PredictionLogNotFound
from ..shared_async import catalog

__all__ = ["AsyncPredictionTables"]

_TABLE = "mlscale_catalog.prediction_logs"
_EXISTS = ("42P07", "23505")  # duplicate table; a racing CREATE's catalog collision


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class AsyncPredictionTables:
    """The prediction logs of one cluster: their definitions and their tables."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster
        self._made: set[tuple[str, str]] = set()  # (group, partition) known to exist

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return [g.name for g in self._cluster.config.shard_groups]

    async def load(self) -> list[PredictionLog]:
        """Every recorded prediction log, by name."""
        async with catalog(self._cluster, "prediction logs") as conn:
            cur = await conn.execute(f"SELECT spec FROM {_TABLE} ORDER BY name")  # noqa: S608
            rows = await cur.fetchall()
        return [PredictionLog.from_spec(r[0]) for r in rows]

    async def get(self, name: str) -> PredictionLog:
        """The recorded log ``name``; PredictionLogNotFound (a PredictionError) naming the
        known ones if none."""
        async with catalog(self._cluster, "prediction logs") as conn:
            cur = await conn.execute(
                f"SELECT spec FROM {_TABLE} WHERE name = %s",  # noqa: S608
                (name,),
            )
            row = await cur.fetchone()
        if row is None:
            known = ", ".join(log.name for log in await self.load()) or "none"
            raise PredictionLogNotFound(f"no prediction log {name!r} (known: {known})")
        return PredictionLog.from_spec(row[0])

    async def create(self, log: PredictionLog) -> PredictionLog:
        """Make ``log``'s tables where missing and record it (see the module docstring)."""
        async with catalog(self._cluster, "prediction logs") as conn:
            cur = await conn.execute(
                f"SELECT spec FROM {_TABLE} WHERE name = %s",  # noqa: S608
                (log.name,),
            )
            row = await cur.fetchone()
        if row is not None and PredictionLog.from_spec(row[0]) != log:
            raise PredictionError(
                f"prediction log {log.name!r} exists with another definition "
                f"({PredictionLog.from_spec(row[0]).to_spec()}); pick another name"
            )
        await self._family(log)
        layout = PredictionLayout(log)
        known = (await self._cluster.shards()).tables
        for name, ddl in zip(
            layout.tables,
            (layout.predictions_ddl(), layout.labels_ddl(), layout.unmatched_ddl()),
            strict=True,
        ):
            if name not in known:
                await self._cluster.create_sharded_table(
                    ddl, shard_key=log.entity, family=log.family
                )
        await self.ensure_ahead(log)
        if row is None:
            async with catalog(self._cluster, "prediction logs") as conn:
                await conn.execute(
                    f"INSERT INTO {_TABLE} (name, spec) VALUES (%s, %s) "  # noqa: S608
                    "ON CONFLICT (name) DO NOTHING",
                    (log.name, Jsonb(log.to_spec())),
                )
        return log

    async def _family(self, log: PredictionLog) -> None:
        """The log's key family: made (an even slot map over every group) if missing,
        else checked to have the entity's key type."""
        shards = await self._cluster.shards()
        if log.family in shards.maps:
            have = tuple(shards.map_of(log.family).key_types)
            if have != (log.key_type,):
                raise PredictionError(
                    f"prediction log {log.name!r}: key family {log.family!r} has key types "
                    f"{', '.join(have)}, the entity {log.key_type}"
                )
            return
        family = KeyFamily.of(log.family, log.key_type)
        try:
            even = SlotMap.even(family, self.groups)
            await self._cluster.create_shard_map(even, "prediction log")
        except MlscaleError:
            shards = await self._cluster.refresh_shards()
            if log.family not in shards.maps:  # not a racing creation: a real failure
                raise

    async def drop(self, log: PredictionLog) -> None:
        """Drop ``log``'s tables on every group and forget it (its data is gone)."""
        known = (await self._cluster.shards()).tables
        for name in PredictionLayout(log).tables:
            if name in known:
                await self._cluster.drop_sharded_table(name)
        async with catalog(self._cluster, "prediction logs") as conn:
            await conn.execute(f"DELETE FROM {_TABLE} WHERE name = %s", (log.name,))  # noqa: S608
        self._made = {(g, p) for g, p in self._made if not p.startswith(f"{log.name}_")}

    async def ensure_ahead(self, log: PredictionLog) -> None:
        """Partitions of yesterday, today and ``log.days_ahead`` days ahead."""
        today = _today()
        await self.ensure_days(
            log, [today + dt.timedelta(days=d) for d in range(-1, log.days_ahead + 1)]
        )

    async def ensure_days(
        self, log: PredictionLog, days: Iterable[dt.date], groups: Iterable[str] | None = None
    ) -> None:
        """The predictions' and labels' partitions of ``days`` on ``groups`` (default:
        every group), made if missing."""
        layout = PredictionLayout(log)
        wanted = list(days)
        for group in self.groups if groups is None else groups:
            for day in wanted:
                for table in layout.partitioned:
                    name = layout.partition(table, day)
                    if (group, name) in self._made:
                        continue
                    try:
                        await self._cluster.as_written(group).execute(
                            layout.partition_ddl(table, day)
                        )
                    except MlscaleError as exc:
                        if getattr(exc, "sqlstate", None) not in _EXISTS:
                            raise
                    self._made.add((group, name))

    def forget_days(self, log: PredictionLog, days: Iterable[dt.date], group: str) -> None:
        """Forget that ``days``' partitions exist on ``group`` (one was dropped since this
        process made it): the next :meth:`ensure_days` makes them again."""
        layout = PredictionLayout(log)
        for day in days:
            for table in layout.partitioned:
                self._made.discard((group, layout.partition(table, day)))

    async def days(self, log: PredictionLog) -> dict[str, list[dt.date]]:
        """Per group, the days whose prediction partitions exist."""
        layout = PredictionLayout(log)
        out: dict[str, list[dt.date]] = {}
        for group in self.groups:
            rows = await self._cluster.as_written(group).fetch_all(
                layout.partitions_sql(), (log.name,), consistency="strong"
            )
            days = [day_of_partition(r[0]) for r in rows]
            out[group] = sorted(d for d in days if d is not None)
        return out

    async def retain(
        self, log: PredictionLog, *, keep_days: int | None = None, before: dt.date | None = None
    ) -> RetentionResult:
        """Drop the predictions' and labels' partitions of every day before ``before``
        (default: ``keep_days`` days before today, itself defaulting to the log's
        ``retention_days``) on every group, and the unmatched labels sent before it.
        Queries over a dropped day return the rest."""
        if before is None:
            keep = keep_days if keep_days is not None else log.retention_days
            if keep is None:
                raise PredictionError(
                    f"prediction log {log.name!r} has no retention_days; say keep_days or before"
                )
            if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
                raise PredictionError("keep_days must be a whole number >= 1")
            before = _today() - dt.timedelta(days=keep - 1)
        layout = PredictionLayout(log)
        dropped: dict[str, tuple[str, ...]] = {}
        days: set[dt.date] = set()
        unmatched = 0
        token = CausalToken()
        for group in self.groups:
            names: list[str] = []
            # One transaction a group: its token lets a read see the days gone.
            async with self._cluster.transaction(group=group, as_written=True) as tx:
                for table in layout.partitioned:
                    for (name,) in await tx.fetch_all(layout.partitions_sql(), (table,)):
                        day = day_of_partition(name)
                        if day is not None and day < before:
                            await tx.execute(layout.drop_sql(name))
                            names.append(name)
                            days.add(day)
                unmatched += await tx.execute(
                    layout.expire_unmatched_sql(), (_utc_midnight(before),)
                )
            self._made -= {(group, name) for name in names}
            dropped[group] = tuple(names)
            token = token.merge(tx.token or CausalToken())
        return RetentionResult(before, tuple(sorted(days)), dropped, unmatched, token)
