# Generated from store_async.py by scripts/async_to_sync.py: do not edit.
# Change store_async.py and run the script again.
"""The prediction store's façade (async source): prediction logs, their writers,
labels, reads, quality and retention, over one cluster's public API.

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...core.causal import CausalToken
from ...core.consistency import Consistency
from ...core.predictions.layout import PredictionLayout
from ...core.predictions.queueing import OnFull
from ...core.predictions.results import (
    AttachResult,
    DailyCount,
    LabelResult,
    Prediction,
    Quality,
    RetentionResult,
)
from ...core.predictions.spec import PredictionLog
from ...engine.cluster_sync import Cluster
from ..training.reader_sync import TrainingReader
from .labels_sync import Labels
from .queries_sync import PredictionQueries
from .tables_sync import PredictionTables
from .writer_sync import PredictionWriter

__all__ = ["PredictionStore"]


class PredictionStore:
    """Prediction logs on a cluster: ``store.create(PredictionLog(...))`` once, then
    write through :meth:`writer`, attach labels with :meth:`log_labels`, and read with
    :meth:`by_entity`, :meth:`by_model`, :meth:`daily` and :meth:`quality`.

    ``log`` arguments take a :class:`PredictionLog` or a recorded log's name.
    """

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._tables = PredictionTables(cluster)
        self._labels = Labels(cluster)
        self._queries = PredictionQueries(cluster)
        self._logs: dict[str, PredictionLog] = {}

    @property
    def cluster(self) -> Cluster:
        """The cluster the store runs on."""
        return self._cluster

    @property
    def tables(self) -> PredictionTables:
        """The logs' tables and partitions (what writers use to make partitions)."""
        return self._tables

    def create(self, log: PredictionLog) -> PredictionLog:
        """Make ``log``'s tables (if missing) and record it; an equal log again is a no-op."""
        made = self._tables.create(log)
        self._logs[made.name] = made
        return made

    def drop(self, log: str | PredictionLog) -> None:
        """Drop a log's tables on every group and forget it: its data is gone."""
        found = self.get(log)
        self._tables.drop(found)
        self._logs.pop(found.name, None)

    def get(self, log: str | PredictionLog) -> PredictionLog:
        """The log named ``log`` (recorded), or ``log`` itself."""
        if isinstance(log, PredictionLog):
            return log
        known = self._logs.get(log)
        if known is None:
            known = self._logs[log] = self._tables.get(log)
        return known

    def logs(self) -> list[PredictionLog]:
        """Every recorded prediction log."""
        return self._tables.load()

    def writer(
        self,
        log: str | PredictionLog,
        *,
        batch_rows: int = 50_000,
        flush_interval_s: float = 1.0,
        queue_rows: int = 500_000,
        on_full: OnFull = "block",
        block_timeout_s: float | None = None,
    ) -> PredictionWriter:
        """A writer of ``log``'s predictions (see :class:`PredictionWriter`):
        batches of ``batch_rows`` or every ``flush_interval_s`` seconds, at most
        ``queue_rows`` waiting (then ``on_full``: "block", up to ``block_timeout_s``,
        or "raise" :class:`~mlscale.errors.WriterQueueFull`). Close it (or use it as a
        context manager): rows still queued when the process exits are lost, and a
        resend is stored once only if it carries the same id and time (ids the
        writer makes carry their time; see ``log``)."""
        return PredictionWriter(
            self._cluster,
            self._tables,
            self.get(log),
            batch_rows=batch_rows,
            flush_interval_s=flush_interval_s,
            queue_rows=queue_rows,
            on_full=on_full,
            block_timeout_s=block_timeout_s,
        )

    def training_reader(
        self,
        log: str | PredictionLog,
        *,
        model: str | None = None,
        start: dt.datetime | dt.date | None = None,
        end: dt.datetime | dt.date | None = None,
        labeled_only: bool = True,
        **options: Any,
    ) -> TrainingReader:
        """A training reader (:class:`~mlscale.stores.training.TrainingReader`) of
        ``log``'s predictions joined to their labels on each group (of ``model`` and in
        ``[start, end)`` if given; with ``labeled_only`` those with a label only), with
        the columns of the predictions and ``label_ts``, ``outcome``, ``label``.
        ``options`` go to the reader (``columns``, ``batch_size``, ``seed``, ...)."""
        found = self.get(log)
        query = PredictionLayout(found).training_sql(
            model=model, start=start, end=end, labeled_only=labeled_only
        )
        return TrainingReader(
            self._cluster,
            query=query,
            shard_key=found.entity,
            family=found.family,
            order_by=(found.entity, "ts", "prediction_id"),
            **options,
        )

    def log_labels(self, log: str | PredictionLog, data: Any) -> LabelResult:
        """Attach labels to their predictions (see :class:`Labels`): ``data`` has
        ``prediction_id``, the entity column, ``outcome`` and/or ``label``, optionally
        ``label_ts`` (default: now). Labels whose prediction is not found are kept
        aside and counted (``unmatched``), never dropped."""
        return self._labels.log_labels(self.get(log), data)

    def attach_labels(self, log: str | PredictionLog) -> AttachResult:
        """Attach the unmatched labels whose prediction has arrived since."""
        return self._labels.attach(self.get(log))

    def by_entity(
        self,
        log: str | PredictionLog,
        entity: Any,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        *,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
        limit: int = 10_000,
    ) -> list[Prediction]:
        """An entity's predictions in ``[start, end)``, oldest first, with labels (one group)."""
        return self._queries.by_entity(
            self.get(log),
            entity,
            start,
            end,
            token=token,
            consistency=consistency,
            limit=limit,
        )

    def by_model(
        self,
        log: str | PredictionLog,
        model: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        *,
        version: str | None = None,
        limit: int = 10_000,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
    ) -> list[Prediction]:
        """A model's predictions in ``[start, end)`` from every group, oldest first."""
        return self._queries.by_model(
            self.get(log),
            model,
            start,
            end,
            version=version,
            limit=limit,
            token=token,
            consistency=consistency,
        )

    def daily(
        self,
        log: str | PredictionLog,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        *,
        model: str | None = None,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
    ) -> list[DailyCount]:
        """Counts per model version and UTC day in ``[start, end)``."""
        return self._queries.daily(
            self.get(log), start, end, model=model, token=token, consistency=consistency
        )

    def quality(
        self,
        log: str | PredictionLog,
        model: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        *,
        version: str | None = None,
        bins: int = 10,
        token: CausalToken | str | None = None,
        consistency: Consistency | str | None = None,
    ) -> list[Quality]:
        """Accuracy, MAE and calibration per model version and UTC day in ``[start, end)``."""
        return self._queries.quality(
            self.get(log),
            model,
            start,
            end,
            version=version,
            bins=bins,
            token=token,
            consistency=consistency,
        )

    def retain(
        self,
        log: str | PredictionLog,
        *,
        keep_days: int | None = None,
        before: dt.date | None = None,
    ) -> RetentionResult:
        """Drop whole days of predictions and labels older than ``keep_days`` days (or
        before ``before``; default: the log's ``retention_days``)."""
        return self._tables.retain(self.get(log), keep_days=keep_days, before=before)

    def days(self, log: str | PredictionLog) -> dict[str, list[dt.date]]:
        """Per group, the days whose partitions exist."""
        return self._tables.days(self.get(log))
