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
from ...core.dayparts import utc_midnight
from ...core.predictions.layout import PredictionLayout
from ...core.predictions.results import RetentionResult
from ...core.predictions.spec import PredictionLog
from ...engine.cluster_async import AsyncCluster
from ...errors import PredictionError, PredictionLogNotFound
from ..shared_async import AsyncDayPartitions, catalog, ensure_family

__all__ = ["AsyncPredictionTables"]

_TABLE = "mlscale_catalog.prediction_logs"


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class AsyncPredictionTables:
    """The prediction logs of one cluster: their definitions and their tables."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster
        self._days = AsyncDayPartitions(cluster)

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
        await ensure_family(
            self._cluster,
            log.family,
            log.key_type.value,
            what=f"prediction log {log.name!r}",
            error=PredictionError,
            keys=f"the entity {log.entity}",
        )

    async def drop(self, log: PredictionLog) -> None:
        """Drop ``log``'s tables on every group and forget it (its data is gone)."""
        known = (await self._cluster.shards()).tables
        for name in PredictionLayout(log).tables:
            if name in known:
                await self._cluster.drop_sharded_table(name)
        async with catalog(self._cluster, "prediction logs") as conn:
            await conn.execute(f"DELETE FROM {_TABLE} WHERE name = %s", (log.name,))  # noqa: S608
        self._days.forget_tables(PredictionLayout(log).partitioned)

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
        await self._days.ensure(PredictionLayout(log).partitioned, days, groups)

    def forget_days(self, log: PredictionLog, days: Iterable[dt.date], group: str) -> None:
        """Forget that ``days``' partitions exist on ``group`` (one was dropped since this
        process made it): the next :meth:`ensure_days` makes them again."""
        self._days.forget(PredictionLayout(log).partitioned, days, group)

    async def days(self, log: PredictionLog) -> dict[str, list[dt.date]]:
        """Per group, the days whose prediction partitions exist."""
        return await self._days.days(log.name)

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
            # One transaction a group: its token lets a read see the days gone.
            async with self._cluster.transaction(group=group, as_written=True) as tx:
                gone = await self._days.drop_before(tx, group, layout.partitioned, before)
                unmatched += await tx.execute(
                    layout.expire_unmatched_sql(), (utc_midnight(before),)
                )
            days.update(day for _, day in gone)
            dropped[group] = tuple(name for name, _ in gone)
            token = token.merge(tx.token or CausalToken())
        return RetentionResult(before, tuple(sorted(days)), dropped, unmatched, token)
