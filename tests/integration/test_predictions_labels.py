"""Labels, reads, quality and retention of a prediction log against real servers:
quality per model version and day equals a pandas reference on the same data;
unmatched labels are kept and counted, then attached; retention drops whole days."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest

from mlscale import AsyncCluster, Cluster, PredictionError, PredictionLogNotFound
from mlscale.stores.predictions import AsyncPredictionStore, PredictionLog
from tests.integration.predictions_help import scratch_predictions, seed, synthetic, unique

BINS = 5


def _reference(preds: pd.DataFrame, labels: pd.DataFrame, model: str) -> pd.DataFrame:
    lab = labels.assign(has_label=True)
    m = preds[preds.model == model].merge(lab, how="left", on=["prediction_id", "entity_id"])
    m["day"] = pd.to_datetime(m.ts, utc=True).dt.date
    m["has_label"] = m["has_label"].eq(True)
    m["classified"] = m.predicted.notna() & m.label.notna()
    m["correct"] = m.classified & (m.predicted == m.label)
    m["regressed"] = m.score.notna() & m.outcome.notna()
    m["abs_err"] = (m.score - m.outcome).abs().where(m.regressed)
    g = m.groupby(["model_version", "day"])
    return pd.DataFrame(
        {
            "predictions": g.size(),
            "labeled": g.has_label.sum(),
            "classified": g.classified.sum(),
            "correct": g.correct.sum(),
            "regressed": g.regressed.sum(),
            "mae": g.abs_err.sum() / g.regressed.sum(),
        }
    ), m


def test_quality_equals_pandas(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("plq")))
        preds, labels = synthetic(6000)
        seed(store, log, preds)
        got = store.log_labels(log, labels)
        assert (got.written, got.unmatched, got.superseded) == (len(labels), 0, 0)
        start, end = preds.ts.min().date(), preds.ts.max().date() + dt.timedelta(days=1)
        for model in ("ranker", "fraud"):
            ref, merged = _reference(preds, labels, model)
            quality = store.quality(log, model, start, end, bins=BINS, token=got.token)
            assert [(q.model_version, q.day) for q in quality] == list(ref.index)
            for q in quality:
                r = ref.loc[(q.model_version, q.day)]
                assert q.model == model
                assert (q.predictions, q.labeled) == (r.predictions, r.labeled)
                assert q.accuracy == pytest.approx(r.correct / r.classified, rel=1e-12)
                assert q.mae == pytest.approx(r.mae, rel=1e-9)
                day = merged[(merged.model_version == q.model_version) & (merged.day == q.day)]
                cal = day[day.has_label & day.score.notna() & day.outcome.notna()]
                cal = cal[(cal.score >= 0) & (cal.score <= 1)]
                bins = np.minimum(np.floor(cal.score.to_numpy(float) * BINS) + 1, BINS).astype(int)
                want = {
                    b: (
                        int((bins == b).sum()),
                        cal.score[bins == b].mean(),
                        cal.outcome[bins == b].mean(),
                    )
                    for b in sorted(set(bins.tolist()))
                }
                assert want and len(q.calibration) == len(want)
                for c in q.calibration:
                    b = round(c.low * BINS) + 1
                    n, mean_score, mean_outcome = want[b]
                    assert c.count == n
                    assert c.mean_score == pytest.approx(mean_score, rel=1e-9)
                    assert c.mean_outcome == pytest.approx(mean_outcome, rel=1e-9)
        daily = store.daily(log, start, end, token=got.token)
        assert sum(d.predictions for d in daily) == len(preds)
        assert sum(d.labeled for d in daily) == len(labels)


def test_unmatched_labels_are_kept_counted_and_attached_later(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("plu")))
        preds, _ = synthetic(200)
        early = preds.iloc[:50]
        labels = pd.DataFrame(
            {"prediction_id": early.prediction_id, "entity_id": early.entity_id, "outcome": 1.0}
        )
        got = store.log_labels(log, labels)  # the predictions are not there yet
        assert (got.written, got.unmatched) == (0, 50)
        seed(store, log, preds)
        attached = store.attach_labels(log)
        assert (attached.attached, attached.remaining) == (50, 0)
        stranger = pd.DataFrame(
            {"prediction_id": [uuid.uuid4()], "entity_id": [3], "label": ["cat"]}
        )
        assert store.log_labels(log, stranger).unmatched == 1
        assert store.attach_labels(log).remaining == 1
        start = preds.ts.min().date()
        end = preds.ts.max().date() + dt.timedelta(days=1)
        daily = store.daily(log, start, end, token=attached.token)
        assert sum(d.labeled for d in daily) == 50


def test_a_newer_label_replaces_an_older_one_never_the_reverse(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("pln")))
        preds, _ = synthetic(20)
        seed(store, log, preds)
        row = preds.iloc[0]
        t0 = dt.datetime.now(dt.UTC)

        def label(outcome: float, at: dt.datetime) -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "prediction_id": [row.prediction_id],
                    "entity_id": [row.entity_id],
                    "outcome": [outcome],
                    "label_ts": [at],
                }
            )

        assert store.log_labels(log, label(1.0, t0)).written == 1
        assert store.log_labels(log, label(0.0, t0 - dt.timedelta(hours=1))).superseded == 1
        newer = store.log_labels(log, label(0.5, t0 + dt.timedelta(hours=1)))
        assert newer.written == 1
        start, end = row.ts - dt.timedelta(seconds=1), row.ts + dt.timedelta(seconds=1)
        got = store.by_entity(log, int(row.entity_id), start, end, token=newer.token)
        mine = [p for p in got if p.prediction_id == row.prediction_id]
        assert len(mine) == 1 and mine[0].outcome == 0.5


def test_reads_by_entity_and_by_model(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("plr")))
        preds, _ = synthetic(3000)
        token = seed(store, log, preds)
        start = preds.ts.min() - dt.timedelta(days=1)
        end = preds.ts.max() + dt.timedelta(days=1)
        entity = int(preds.entity_id.iloc[0])
        mine = preds[preds.entity_id == entity].sort_values(["ts"])
        got = store.by_entity(log, entity, start, end, token=token)
        assert sorted(p.prediction_id for p in got) == sorted(mine.prediction_id)
        assert [p.ts for p in got] == sorted(p.ts for p in got)
        ranker = preds[(preds.model == "ranker") & (preds.model_version == "v2")]
        first = store.by_model(log, "ranker", start, end, version="v2", limit=100, token=token)
        want = ranker.sort_values(["ts"]).ts.iloc[:100].tolist()
        assert [p.ts for p in first] == want
        assert all(p.model == "ranker" and p.model_version == "v2" for p in first)


def test_retention_drops_whole_days_and_queries_return_the_rest(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("plt")))
        now = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        preds, labels = synthetic(2000, days=6, now=now)
        seed(store, log, preds)
        store.log_labels(log, labels)
        stray = [
            {"prediction_id": uuid.uuid4(), "entity_id": 1, "outcome": 1.0, "label_ts": at}
            for at in (now - dt.timedelta(days=5), now)
        ]
        assert store.log_labels(log, stray).unmatched == 2
        cut = now.date() - dt.timedelta(days=2)
        result = store.retain(log, before=cut)
        assert result.unmatched_deleted == 1  # the old one; the new one waits for its prediction
        assert store.attach_labels(log).remaining == 1
        old_days = sorted({d for d in pd.to_datetime(preds.ts, utc=True).dt.date if d < cut})
        assert list(result.days) == old_days
        for group, names in result.partitions.items():
            assert len(names) == 2 * len(old_days), group  # predictions and labels
        for days in store.days(log).values():
            assert min(days) >= cut
        start, end = now.date() - dt.timedelta(days=10), now.date() + dt.timedelta(days=1)
        kept = preds[pd.to_datetime(preds.ts, utc=True).dt.date >= cut]
        daily = store.daily(log, start, end, token=result.token)
        assert sum(d.predictions for d in daily) == len(kept)
        assert min(d.day for d in daily) >= cut
        kept_labels = labels[labels.prediction_id.isin(set(kept.prediction_id))]
        assert sum(d.labeled for d in daily) == len(kept_labels)


def test_bad_labels_raise_and_write_nothing(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("plb")))
        preds, _ = synthetic(10)
        seed(store, log, preds)
        pid, ent = preds.prediction_id.iloc[0], int(preds.entity_id.iloc[0])
        cases = [
            ([{"entity_id": ent, "outcome": 1.0}], "prediction_id"),
            ([{"prediction_id": pid, "outcome": 1.0}], "entity_id"),
            ([{"prediction_id": "nope", "entity_id": ent, "outcome": 1.0}], "not a uuid"),
            ([{"prediction_id": pid, "entity_id": "x", "outcome": 1.0}], "int8"),
            ([{"prediction_id": pid, "entity_id": ent, "outcome": "high"}], "number"),
            ([{"prediction_id": pid, "entity_id": ent}], "outcome, a label or both"),
            ([{"prediction_id": pid, "entity_id": ent, "outcome": 1.0, "x": 1}], "unknown column"),
            (
                [{"prediction_id": pid, "entity_id": ent, "label_ts": "soon", "outcome": 1.0}],
                "time",
            ),
        ]
        for data, words in cases:
            with pytest.raises(PredictionError, match=words):
                store.log_labels(
                    log, [*[{"prediction_id": pid, "entity_id": ent, "outcome": 0.0}], *data]
                )
        start, end = preds.ts.min().date(), preds.ts.max().date() + dt.timedelta(days=1)
        assert sum(d.labeled for d in store.daily(log, start, end, consistency="strong")) == 0
        with pytest.raises(PredictionLogNotFound, match="no prediction log"):
            store.log_labels("no_such_log", [])
        with pytest.raises(PredictionError, match="limit"):
            store.by_model(log, "ranker", start, end, limit=0)
        with pytest.raises(PredictionError, match="before it starts"):
            store.daily(log, end, start)


def test_async_store_reads_what_the_sync_one_wrote(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("pla")))
        preds, labels = synthetic(500)
        seed(store, log, preds)
        start, end = preds.ts.min().date(), preds.ts.max().date() + dt.timedelta(days=1)

        async def main() -> tuple[int, int]:
            async with AsyncCluster(cluster.config) as ac:
                astore = AsyncPredictionStore(ac)
                got = await astore.log_labels(log.name, labels)
                daily = await astore.daily(log.name, start, end, token=got.token)
                return sum(d.predictions for d in daily), got.written

        predictions, written = asyncio.run(main())
        assert (predictions, written) == (len(preds), len(labels))


def test_training_reader_over_labeled_predictions(cluster: Cluster) -> None:
    """Predictions joined to their labels on each group, read back for training split
    between 2 readers: every labeled prediction once, with its label."""
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("plr")))
        preds, labels = synthetic(3000)
        seed(store, log, preds)
        got = store.log_labels(log, labels)
        ids: list[bytes] = []
        outcome_sum = 0.0
        for rank in (0, 1):
            reader = store.training_reader(
                log, model="ranker", consistency="strong", batch_size=500
            ).split(rank, 2)
            for batch in reader:
                ids += [
                    bytes(u) if isinstance(u, bytes) else u for u in batch.columns["prediction_id"]
                ]
                valid = batch.valid.get("outcome")
                outcomes = batch.columns["outcome"]
                outcome_sum += float(outcomes[valid].sum() if valid is not None else outcomes.sum())
        want = labels.merge(preds[["prediction_id", "model"]], on="prediction_id")
        want = want[want.model == "ranker"]
        assert len(ids) == len(set(map(str, ids))) == len(want)
        assert outcome_sum == pytest.approx(float(want.outcome.sum()), rel=1e-12)
        assert got.written == len(labels)
