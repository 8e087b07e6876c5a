"""What the prediction log's calls return (plain values with ``to_dict()``)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..causal import CausalToken
from ..plain import plain_dict

__all__ = [
    "AttachResult",
    "CalibrationBin",
    "DailyCount",
    "FlushResult",
    "LabelResult",
    "Prediction",
    "Quality",
    "RetentionResult",
    "WriterStats",
]


@dataclass(frozen=True, slots=True)
class FlushResult:
    """Predictions written by one flush: ``rows`` new rows stored, ``duplicates``
    already there (resent: not stored twice), per shard group the rows sent, the causal
    ``token`` of the commits, how long it took (seconds), and ``rejected``: rows the
    server refused for good and the writer set aside (``writer.rejected()``)."""

    rows: int
    duplicates: int
    groups: dict[str, int]
    token: CausalToken
    seconds: float
    rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the token as its string)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A prediction writer's counters since it started.

    ``queued``: predictions taken and not yet written (the queue depth), of at most
    ``queue_limit``; ``written``/``duplicates``: rows stored / found already stored;
    ``rows_per_s``: written over the writer's lifetime; ``flushes`` and the flush
    latency (ms, from a batch's first row queued to its commit: ``flush_p50_ms``,
    ``flush_p99_ms`` over the last 1,000 flushes); ``blocked_s``: time callers spent
    waiting for room; ``refused_full``: rows refused because the queue was full
    (``on_full="raise"``); ``failures`` and the last ``error`` of a write that will
    be retried; ``rejected_rows``: rows taken but refused by the server for good (a
    data exception, a not-null or check violation: see
    :func:`~mlscale.core.predictions.rejects.is_permanent`), set aside and not
    written, with the last such ``rejected_error`` (``writer.rejected()`` lists them).
    """

    queued: int
    queue_limit: int
    written: int
    duplicates: int
    rows_per_s: float
    flushes: int
    flush_p50_ms: float
    flush_p99_ms: float
    blocked_s: float
    refused_full: int
    failures: int
    error: str | None = None
    rejected_rows: int = 0
    rejected_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class LabelResult:
    """Labels sent: ``written`` (attached to their prediction), ``superseded`` (older
    than the label already there, or sent twice), ``unmatched`` (no such prediction on
    the entity's group: kept aside in the unmatched table and attached later by
    ``attach_labels``), and the causal ``token`` of the commits."""

    written: int
    superseded: int
    unmatched: int
    token: CausalToken

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the token as its string)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class AttachResult:
    """Unmatched labels attached to predictions that arrived after them, how many are
    still unmatched, and the causal ``token`` of the commits."""

    attached: int
    remaining: int
    token: CausalToken

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the token as its string)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One stored prediction and its label, if it has one."""

    entity: Any
    prediction_id: uuid.UUID
    ts: dt.datetime
    model: str
    model_version: str
    score: float | None
    predicted: str | None
    extra: Any
    label_ts: dt.datetime | None = None
    outcome: float | None = None
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (times in ISO 8601, the id as text)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class DailyCount:
    """Predictions of one model version on one UTC day: how many, their mean score
    (None if none has a score), and how many have a label."""

    model: str
    model_version: str
    day: dt.date
    predictions: int
    mean_score: float | None
    labeled: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """Labeled predictions whose score fell in [``low``, ``high``): how many, their
    mean score and their mean outcome (a calibrated model has the two close)."""

    low: float
    high: float
    count: int
    mean_score: float
    mean_outcome: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class Quality:
    """A model version's quality on one UTC day, over its predictions with a label.

    ``accuracy``: share of labeled predictions whose ``predicted`` class equals the
    ``label`` (over those having both; None if none); ``mae``: mean absolute error of
    ``score`` against ``outcome`` (over those having both); ``calibration``: bins of
    score in [0, 1] (scores outside are left out) with their mean outcome.
    """

    model: str
    model_version: str
    day: dt.date
    predictions: int
    labeled: int
    accuracy: float | None
    mae: float | None
    calibration: tuple[CalibrationBin, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        out = plain_dict(self)
        out["calibration"] = [b.to_dict() for b in self.calibration]
        return out


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """Partitions dropped by a retention run: the days (UTC) whose predictions and
    labels are gone, the partitions dropped per shard group, how many unmatched labels
    sent before ``before`` were deleted, and the causal ``token`` of the drops (a read
    with it no longer sees those days, even on a replica)."""

    before: dt.date
    days: tuple[dt.date, ...]
    partitions: dict[str, tuple[str, ...]]
    unmatched_deleted: int = 0
    token: CausalToken = field(default_factory=CausalToken)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "before": self.before.isoformat(),
            "days": [d.isoformat() for d in self.days],
            "partitions": {g: list(p) for g, p in self.partitions.items()},
            "unmatched_deleted": self.unmatched_deleted,
            "token": self.token.to_string(),
        }
