"""Reads of a prediction log (async source).

- :meth:`~AsyncPredictionQueries.by_entity`: one entity over a time range, with its
  labels: the entity places the read on one group (the primary key serves it).
- :meth:`~AsyncPredictionQueries.by_model`: one model over a time range, from every
  group, merged in time order (scatter-gather with ORDER BY + LIMIT).
- :meth:`~AsyncPredictionQueries.daily`: counts per model version and UTC day.
- :meth:`~AsyncPredictionQueries.quality`: accuracy, mean absolute error and
  calibration bins per model version and UTC day, over labeled predictions.

The cross-group reads are the cluster's scatter-gather: every group sums and counts
its own rows (the partitions of the range only), the merge adds them exactly, and the
ratios are computed here from the merged sums. A day whose partitions were dropped
by retention simply has no rows.

Statements are built from constant fragments, checked integers (LIMIT, bins: the
merger reads them as literals) and identifiers quoted by psycopg.sql; every value is
a bound parameter.

``queries_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg import sql

from ...core.causal import CausalToken
from ...core.consistency import Consistency
from ...core.predictions.results import CalibrationBin, DailyCount, Prediction, Quality
from ...core.predictions.spec import PredictionLog
from ...engine.cluster_async import AsyncCluster
from ...errors import PredictionError

__all__ = ["AsyncPredictionQueries"]

_ROW = (
    "p.{e}, p.prediction_id, p.ts, p.model, p.model_version, p.score, p.predicted, p.extra, "
    "l.label_ts, l.outcome, l.label"
)
_JOIN = (
    "{pt} p LEFT JOIN {lt} l ON l.{e} = p.{e} AND l.ts = p.ts AND l.prediction_id = p.prediction_id"
)
_DAY = "(date_trunc('day', p.ts AT TIME ZONE 'UTC'))::date"
MAX_BINS = 100


def _time(value: Any, what: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise PredictionError(f"{what} must be a datetime or a date; got {value!r}")


def _range(start: Any, end: Any) -> tuple[dt.datetime, dt.datetime]:
    lo, hi = _time(start, "start"), _time(end, "end")
    if hi < lo:
        raise PredictionError(f"the time range ends ({hi}) before it starts ({lo})")
    return lo, hi


def _limit(limit: int) -> int:
    """A LIMIT written as a literal (the cross-shard merger reads it), checked."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PredictionError(f"limit must be a whole number >= 1; got {limit!r}")
    return limit


def _prediction(row: Any) -> Prediction:
    return Prediction(*row)


class AsyncPredictionQueries:
    """Reads of prediction logs on one cluster (see the module docstring)."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster

    def _sql(self, log: PredictionLog, text: str) -> str:
        return (
            sql.SQL(text)
            .format(
                e=sql.Identifier(log.entity),
                pt=sql.Identifier(log.name),
                lt=sql.Identifier(log.labels),
            )
            .as_string(None)
        )

    async def by_entity(
        self,
        log: PredictionLog,
        entity: Any,
        start: Any,
        end: Any,
        *,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
        limit: int = 10_000,
    ) -> list[Prediction]:
        """``entity``'s predictions with ``start <= ts < end`` (datetimes, or dates
        taken as UTC midnight), oldest first, with their labels; at most ``limit``.
        ``token``: read your writes (a writer's or log_labels' causal token);
        ``consistency``: or say how fresh (``"strong"``: the primaries), as for any read."""
        lo, hi = _range(start, end)
        query = self._sql(
            log,
            f"SELECT {_ROW} FROM {_JOIN} WHERE p.{{e}} = %s AND p.ts >= %s AND p.ts < %s "  # noqa: S608
            f"ORDER BY p.ts, p.prediction_id LIMIT {_limit(limit)}",
        )
        key = uuid.UUID(str(entity)) if log.key_type.value == "uuid" else entity
        rows = await self._cluster.fetch_all(
            query, (key, lo, hi), token=token, consistency=consistency
        )
        return [_prediction(r) for r in rows]

    async def by_model(
        self,
        log: PredictionLog,
        model: str,
        start: Any,
        end: Any,
        *,
        version: str | None = None,
        limit: int = 10_000,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
    ) -> list[Prediction]:
        """``model``'s predictions (of ``version`` if given) with ``start <= ts < end``
        from every group, oldest first, with their labels; at most ``limit``."""
        lo, hi = _range(start, end)
        both = " AND p.model_version = %s" if version is not None else ""
        query = self._sql(
            log,
            f"SELECT {_ROW} FROM {_JOIN} WHERE p.model = %s{both} AND p.ts >= %s AND p.ts < %s "  # noqa: S608
            f"ORDER BY p.ts, p.prediction_id LIMIT {_limit(limit)}",
        )
        params: tuple[Any, ...] = (model, *((version,) if version is not None else ()), lo, hi)
        result = await self._cluster.scatter(query, params, token=token, consistency=consistency)
        return [_prediction(r) for r in result.rows]

    async def daily(
        self,
        log: PredictionLog,
        start: Any,
        end: Any,
        *,
        model: str | None = None,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
    ) -> list[DailyCount]:
        """Per model version and UTC day in ``[start, end)``: predictions, mean score,
        labeled (of ``model`` only if given)."""
        lo, hi = _range(start, end)
        only = " AND p.model = %s" if model is not None else ""
        query = self._sql(
            log,
            f"SELECT p.model, p.model_version, {_DAY} AS day, count(*), sum(p.score), "  # noqa: S608
            f"count(p.score), count(l.label_ts) FROM {_JOIN} "
            f"WHERE p.ts >= %s AND p.ts < %s{only} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        params = (lo, hi, *((model,) if model is not None else ()))
        result = await self._cluster.scatter(query, params, token=token, consistency=consistency)
        return [
            DailyCount(r[0], r[1], r[2], int(r[3]), r[4] / r[5] if r[5] else None, int(r[6]))
            for r in result.rows
        ]

    async def quality(
        self,
        log: PredictionLog,
        model: str,
        start: Any,
        end: Any,
        *,
        version: str | None = None,
        bins: int = 10,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
    ) -> list[Quality]:
        """``model``'s quality per version and UTC day in ``[start, end)`` (see
        :class:`~mlscale.core.predictions.results.Quality`); ``bins`` calibration bins
        of equal width over [0, 1] (0: none)."""
        if isinstance(bins, bool) or not isinstance(bins, int) or not 0 <= bins <= MAX_BINS:
            raise PredictionError(f"bins must be a whole number 0..{MAX_BINS}")
        lo, hi = _range(start, end)
        both = " AND p.model_version = %s" if version is not None else ""
        where = f"p.model = %s{both} AND p.ts >= %s AND p.ts < %s"
        params: tuple[Any, ...] = (model, *((version,) if version is not None else ()), lo, hi)
        query = self._sql(
            log,
            f"SELECT p.model, p.model_version, {_DAY} AS day, count(*), count(l.label_ts), "  # noqa: S608
            "count(*) FILTER (WHERE p.predicted IS NOT NULL AND l.label IS NOT NULL), "
            "count(*) FILTER (WHERE p.predicted = l.label), "
            "count(*) FILTER (WHERE p.score IS NOT NULL AND l.outcome IS NOT NULL), "
            f"sum(abs(p.score - l.outcome)) FROM {_JOIN} WHERE {where} "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        result = await self._cluster.scatter(query, params, token=token, consistency=consistency)
        calibration: dict[tuple[str, dt.date], list[CalibrationBin]] = {}
        if bins:
            calibration = await self._calibration(log, where, params, bins, token, consistency)
        out = []
        for r in result.rows:
            model_name, ver, day, n, labeled, classified, correct, regressed, abs_err = r
            out.append(
                Quality(
                    model_name,
                    ver,
                    day,
                    int(n),
                    int(labeled),
                    correct / classified if classified else None,
                    float(abs_err) / regressed if regressed else None,
                    tuple(calibration.get((ver, day), ())),
                )
            )
        return out

    async def _calibration(
        self,
        log: PredictionLog,
        where: str,
        params: tuple[Any, ...],
        bins: int,
        token: CausalToken | str | None,
        consistency: Consistency | str | None,
    ) -> dict[tuple[str, dt.date], list[CalibrationBin]]:
        # width_bucket puts a score of exactly 1 in bin n + 1: folded into the last.
        # ``bins`` (a checked int) is written as a literal: the merger groups by text.
        query = self._sql(
            log,
            f"SELECT p.model_version, {_DAY} AS day, "  # noqa: S608
            f"least(width_bucket(p.score, 0, 1, {bins}), {bins}) AS bin, count(*), sum(p.score), "
            f"sum(l.outcome) FROM {log_join()} WHERE {where} AND p.score >= 0 AND p.score <= 1 "
            "AND l.outcome IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        result = await self._cluster.scatter(query, params, token=token, consistency=consistency)
        out: dict[tuple[str, dt.date], list[CalibrationBin]] = {}
        width = 1.0 / bins
        for ver, day, b, n, s_score, s_outcome in result.rows:
            k = int(b) - 1
            out.setdefault((ver, day), []).append(
                CalibrationBin(
                    k * width,
                    min(1.0, (k + 1) * width),
                    int(n),
                    float(s_score) / int(n),
                    float(s_outcome) / int(n),
                )
            )
        return out


def log_join() -> str:
    """Predictions joined to their labels (inner): labeled predictions only."""
    return (
        "{pt} p JOIN {lt} l ON l.{e} = p.{e} AND l.ts = p.ts AND l.prediction_id = p.prediction_id"
    )
