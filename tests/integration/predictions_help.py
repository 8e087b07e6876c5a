"""Prediction logs on the session cluster for one test module, dropped after it, and
rows seeded straight into their tables (so label and query tests do not depend on
the writer, which has its own tests)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from mlscale import Cluster
from mlscale.core.causal import CausalToken
from mlscale.core.predictions.layout import PredictionLayout
from mlscale.core.predictions.rows import to_predictions
from mlscale.stores.predictions import PredictionLog, PredictionStore
from mlscale.stores.predictions.flush_sync import group_index
from tests.integration.sharding_cleanup import restore_sharding

__all__ = ["scratch_predictions", "seed", "synthetic", "unique"]


def unique(name: str) -> str:
    """``name`` with a short random suffix."""
    return f"{name}_{uuid.uuid4().hex[:6]}"


@contextmanager
def scratch_predictions(cluster: Cluster) -> Iterator[PredictionStore]:
    """A PredictionStore on ``cluster``; the logs created through it are dropped after."""
    before = cluster.refresh_shards()
    store = PredictionStore(cluster)
    known = {log.name for log in store.logs()}
    try:
        yield store
    finally:
        try:
            for log in store.logs():
                if log.name not in known:
                    store.drop(log)
        finally:
            restore_sharding(cluster, before)


def seed(store: PredictionStore, log: PredictionLog, frame: pd.DataFrame) -> CausalToken:
    """Copy ``frame``'s predictions into the log's tables, group by group; the commits'
    causal token (read them with it: replicas may lag)."""
    batch = to_predictions(log, frame)
    store.tables.ensure_days(log, batch.days())
    cluster = store.cluster
    layout = PredictionLayout(log)
    shard_map = cluster.shards().map_of(log.family)
    where = group_index(shard_map, log, batch.entity)
    token = CausalToken()
    for gi, group in enumerate(shard_map.groups):
        part = batch.take(np.flatnonzero(where == gi))
        if part.size:
            with cluster.transaction(group=group, as_written=True) as tx:
                tx.copy(layout.copy_sql(), part.copy_payload())
            token = token.merge(tx.token or CausalToken())
    return token


def synthetic(
    n: int,
    *,
    entity: str = "entity_id",
    days: int = 4,
    seed_: int = 7,
    now: dt.datetime | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` predictions of 2 models x 2 versions spread over ``days`` UTC days before
    ``now``, and labels for about 70% of them (some with only an outcome, some with only
    a class). Scores are in [0, 1]; a few predictions have no score or no class."""
    rng = np.random.default_rng(seed_)
    now = now or dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = [uuid.UUID(int=int(x)) for x in rng.integers(1, 2**62, size=n)]
    ts = [now - dt.timedelta(minutes=int(m)) for m in rng.integers(0, days * 1440, size=n)]
    score = rng.random(n)
    score_missing = rng.random(n) < 0.05
    predicted = np.where(rng.random(n) < 0.5, "cat", "dog").astype(object)
    predicted[rng.random(n) < 0.05] = None
    both_missing = score_missing & pd.isna(predicted)
    score_missing &= ~both_missing
    preds = pd.DataFrame(
        {
            entity: rng.integers(0, max(1, n // 5), size=n),
            "prediction_id": ids,
            "ts": ts,
            "model": np.where(rng.random(n) < 0.5, "ranker", "fraud"),
            "model_version": np.where(rng.random(n) < 0.5, "v1", "v2"),
            "score": pd.array(np.where(score_missing, np.nan, score), dtype="Float64"),
            "predicted": predicted,
        }
    )
    preds.loc[score_missing, "score"] = pd.NA
    chosen = rng.random(n) < 0.7
    lab = preds[chosen]
    m = len(lab)
    outcome = (rng.random(m) < lab["score"].fillna(0.5).to_numpy(dtype=float)).astype(float)
    label = np.where(rng.random(m) < 0.8, lab["predicted"].fillna("cat"), "bird").astype(object)
    labels = pd.DataFrame(
        {
            "prediction_id": lab["prediction_id"].to_numpy(),
            entity: lab[entity].to_numpy(),
            "outcome": pd.array(np.where(rng.random(m) < 0.1, np.nan, outcome), dtype="Float64"),
            "label": label,
        }
    )
    labels.loc[rng.random(m) < 0.1, "label"] = None
    both = labels["outcome"].isna() & labels["label"].isna()
    labels.loc[both, "outcome"] = 1.0
    return preds, labels
