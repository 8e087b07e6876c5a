"""The prediction log: predictions written at COPY speed, labels that arrive later,
quality per model and day, and retention a whole day at a time.

    from mlscale.stores.predictions import PredictionLog, PredictionStore

    store = PredictionStore(cluster)
    log = store.create(PredictionLog("predictions", entity="user_id"))
    with store.writer(log) as w:
        w.log_many(frame)                       # or w.log(entity=..., model=..., ...)
    labels = store.log_labels(log, [{"prediction_id": pid, "user_id": 7, "outcome": 1.0}])
    for q in store.quality(log, "ranker", start, end):
        print(q.day, q.model_version, q.accuracy, q.mae)
"""

from ...core.predictions.results import (
    AttachResult,
    CalibrationBin,
    DailyCount,
    FlushResult,
    LabelResult,
    Prediction,
    Quality,
    RetentionResult,
    WriterStats,
)
from ...core.predictions.spec import PredictionLog
from .store_async import AsyncPredictionStore
from .store_sync import PredictionStore
from .writer_async import AsyncPredictionWriter
from .writer_sync import PredictionWriter

__all__ = [
    "AsyncPredictionStore",
    "AsyncPredictionWriter",
    "AttachResult",
    "CalibrationBin",
    "DailyCount",
    "FlushResult",
    "LabelResult",
    "Prediction",
    "PredictionLog",
    "PredictionStore",
    "PredictionWriter",
    "Quality",
    "RetentionResult",
    "WriterStats",
]
