"""Chapter 7, predictions and training data: the tutorials' prediction logging and
training read vs mlscale's prediction log and training reader.

The tutorials (``../shared/reference/000``): ``save_prediction`` inserts one row and
commits, on the shard the user's id picks; ``get_all_predictions_last_hour`` queries
each shard in turn and ``fetchall()``s everything into memory. Here both run on the
same sharded table mlscale writes (plain psycopg on each group's primary, the row's
group from the table's map), the training read into a pandas DataFrame.

mlscale's: a :class:`~mlscale.stores.predictions.PredictionLog` written by its writer
(``log_many`` of DataFrame chunks, binary COPY per group, flushed), the first chunk
then resent (stored once: counted on the servers), labels for 70% of the rows and the
quality per model version and day, then a training read of the whole log by the
:class:`~mlscale.stores.training.TrainingReader` into numpy (every group at once,
binary COPY), and retention dropping the oldest day.
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd
from psycopg import sql

from ..core.predictions.rows import new_ids
from ..engine.cluster_sync import Cluster
from ..stores.predictions import PredictionLog, PredictionStore
from ..stores.training import TrainingReader
from .foundation import ChapterResult, Echo, Params, Row

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["drop_predictions", "needs", "run_predictions"]

LOG: Final = "demo_predictions"
DAYS: Final = 3
CHUNK: Final = 50_000
LABELED: Final = 0.7
MODELS: Final = ("ctr", "fraud")


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if not config.shard_groups:
        return "the predictions chapter needs shard groups"
    return None


def row_count(params: Params) -> int:
    """Predictions the writer logs: 1M, or 50k for a quick run."""
    return 50_000 if params.users < 20_000 else 1_000_000


def drop_predictions(cluster: Cluster) -> None:
    """Remove the chapter's prediction log (its tables and catalog entry)."""
    store = PredictionStore(cluster)
    if any(log.name == LOG for log in store.logs()):
        store.drop(LOG)


def _frame(n: int, users: int, rng: np.random.Generator, now: dt.datetime) -> pd.DataFrame:
    minutes = rng.integers(0, DAYS * 1440, size=n)
    ts = pd.to_datetime(now, utc=True) - pd.to_timedelta(minutes, unit="m")
    # The client's idempotency keys: v7 ids of each row's time, kept to resend with.
    ids = new_ids(np.asarray(ts.tz_convert(None).to_numpy("datetime64[us]")).view(np.int64))
    return pd.DataFrame(
        {
            "prediction_id": [bytes(r) for r in ids],
            "user_id": rng.integers(1, users + 1, size=n),
            "ts": ts,
            "model": np.array(MODELS)[rng.integers(0, 2, size=n)],
            "model_version": np.where(rng.random(n) < 0.5, "v1", "v2"),
            "score": rng.random(n),
            "predicted": np.where(rng.random(n) < 0.5, "click", "skip"),
        }
    )


def _labels(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Labels for about 70% of the predictions: an outcome drawn with the score's
    probability (a calibrated model) and a class that agrees 80% of the time."""
    chosen = frame[rng.random(len(frame)) < LABELED]
    m = len(chosen)
    agree = rng.random(m) < 0.8
    other = np.where(chosen.predicted == "click", "skip", "click")
    return pd.DataFrame(
        {
            "prediction_id": chosen.prediction_id.to_numpy(),
            "user_id": chosen.user_id.to_numpy(),
            "outcome": (rng.random(m) < chosen.score.to_numpy()).astype(float),
            "label": np.where(agree, chosen.predicted, other),
        }
    )


def _tutorial_inserts(cluster: Cluster, frame: pd.DataFrame, budget_s: float) -> tuple[int, float]:
    """``save_prediction`` as the tutorials write it, for up to ``budget_s`` seconds:
    one INSERT per row committed on its own (autocommit), on the primary of the row's
    group (its "shard engine")."""
    shard_map = cluster.shards().map_of(LOG)
    insert = sql.SQL(
        "INSERT INTO {} (user_id, prediction_id, ts, model, model_version, score, predicted) "
        "VALUES (%s, gen_random_uuid(), %s, 'tutorial', %s, %s, %s)"
    ).format(sql.Identifier(LOG))
    done = 0
    with ExitStack() as stack:
        conns = {
            g: stack.enter_context(cluster.connection(cluster.primary_node(g)))
            for g in shard_map.groups
        }
        started = time.perf_counter()
        for row in frame.itertuples(index=False):
            conns[shard_map.locate(int(row.user_id))].execute(
                insert, (int(row.user_id), row.ts, row.model_version, row.score, row.predicted)
            )
            done += 1
            if time.perf_counter() - started > budget_s:
                break
        took = time.perf_counter() - started
    return done, took


def _tutorial_read(cluster: Cluster) -> tuple[int, float]:
    """``get_all_predictions_last_hour`` as the tutorials write it, over the whole log:
    each group's primary in turn, ``fetchall()``, then one pandas DataFrame."""
    query = sql.SQL("SELECT user_id, ts, score FROM {}").format(sql.Identifier(LOG))
    started = time.perf_counter()
    rows: list[tuple[object, ...]] = []
    for group in cluster.shards().map_of(LOG).groups:
        with cluster.connection(cluster.primary_node(group)) as conn:
            rows.extend(conn.execute(query).fetchall())
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "score"])
    return len(frame), time.perf_counter() - started


def _reader_read(cluster: Cluster) -> tuple[int, float]:
    """The same columns through the training reader, into numpy."""
    started = time.perf_counter()
    n = 0
    reader = TrainingReader(
        cluster, LOG, columns=["user_id", "ts", "score"], batch_size=65_536, consistency="strong"
    )
    for batch in reader:
        n += len(batch.to_numpy(["user_id", "score"]))
    return n, time.perf_counter() - started


def _count(cluster: Cluster, where: str = "") -> int:
    query = sql.SQL("SELECT count(*) FROM {}{}").format(sql.Identifier(LOG), sql.SQL(where))
    return int(cluster.fetch_value(query.as_string(None), consistency="strong"))


def run_predictions(cluster: Cluster, params: Params, echo: Echo) -> ChapterResult:
    """The tutorials' prediction logging and training read vs mlscale's (see the module
    docstring)."""
    result = ChapterResult()
    n = row_count(params)
    rng = np.random.default_rng(params.seed)
    now = dt.datetime.now(dt.UTC)
    frame = _frame(n, params.users, rng, now)
    drop_predictions(cluster)
    store = PredictionStore(cluster)
    log = store.create(PredictionLog(LOG, entity="user_id", days_ahead=1))
    store.tables.ensure_days(log, [now.date() - dt.timedelta(days=d) for d in range(DAYS + 1)])

    echo("predictions: the tutorials' save_prediction, one INSERT + COMMIT a row ...")
    budget = 1.0 if params.users < 20_000 else 5.0
    tut_rows, tut_s = _tutorial_inserts(cluster, frame, budget)
    tut_rate = tut_rows / tut_s

    echo(f"predictions: {n:,} rows through the writer (binary COPY per group) ...")
    started = time.perf_counter()
    with store.writer(log, batch_rows=CHUNK) as writer:
        for i in range(0, n, CHUNK):
            writer.log_many(frame.iloc[i : i + CHUNK])
        writer.flush()
        write_s = time.perf_counter() - started
        stats = writer.stats()
        first = frame.iloc[:CHUNK].copy()
    ours = _count(cluster, " WHERE model <> 'tutorial'")
    write_rate = n / write_s

    # The first chunk again, as a crashed client resends it: same ids and times.
    with store.writer(log) as writer:
        writer.log_many(first)
        resent = writer.flush()
    after = _count(cluster, " WHERE model <> 'tutorial'")

    echo("predictions: labels for 70% of them, quality per model version and day ...")
    chosen = _labels(frame, rng)
    started = time.perf_counter()
    labels = store.log_labels(log, chosen)
    label_s = time.perf_counter() - started
    started = time.perf_counter()
    quality = store.quality(
        log,
        MODELS[0],
        now.date() - dt.timedelta(days=DAYS),
        now.date() + dt.timedelta(days=1),
        token=labels.token,
    )
    quality_s = time.perf_counter() - started

    echo("predictions: the whole log back for training, both ways ...")
    tut_read_rows, tut_read_s = _tutorial_read(cluster)
    our_read_rows, our_read_s = _reader_read(cluster)

    oldest = now.date() - dt.timedelta(days=DAYS)
    dropped = store.retain(log, before=oldest + dt.timedelta(days=1))
    remaining = _count(cluster)
    kept = (frame.ts.dt.date > oldest).to_numpy()
    expected = int(kept.sum()) + int(kept[:tut_rows].sum())  # the tutorial wrote the first rows
    if remaining != expected:
        result.notes.append(
            f"predictions: {remaining:,} rows after retention, {expected:,} expected"
        )

    result.metrics.update(
        {
            "predictions_rows": n,
            "predictions_tutorial_rows_per_s": tut_rate,
            "predictions_writer_rows_per_s": write_rate,
            "predictions_writer_flush_p99_ms": stats.flush_p99_ms,
            "predictions_stored": ours,
            "predictions_resent": int(resent.rows + resent.duplicates),
            "predictions_resent_duplicates": resent.duplicates,
            "predictions_stored_after_resend": after,
            "predictions_labels_written": labels.written,
            "predictions_labels_per_s": (labels.written + labels.unmatched) / label_s,
            "predictions_quality_ms": quality_s * 1000,
            "training_read_tutorial_rows_per_s": tut_read_rows / tut_read_s,
            "training_read_reader_rows_per_s": our_read_rows / our_read_s,
            "training_read_rows": our_read_rows,
            "predictions_retention_days_dropped": len(dropped.days),
            "predictions_after_retention": remaining,
            "predictions_after_retention_expected": expected,
        }
    )
    day = quality[-1] if quality else None
    result.rows += [
        Row("prediction logging, tutorials' save_prediction", f"{tut_rate:,.0f}", "rows/s",
            f"{tut_rows:,} rows, INSERT + COMMIT each, on the row's group primary"),
        Row("prediction logging, mlscale writer", f"{write_rate:,.0f}", "rows/s",
            f"{n:,} rows, log_many of {CHUNK:,}-row DataFrames, binary COPY per group, "
            f"flush p99 {stats.flush_p99_ms:,.0f} ms ({write_rate / tut_rate:,.0f}x)"),
        Row("resend of the first chunk (a crashed client)", f"{resent.duplicates:,}",
            "duplicates", f"stored once: {after:,} rows on the servers before and after"),
        Row("labels attached (70% of predictions)", f"{labels.written:,}", "labels",
            f"{labels.unmatched} unmatched, {label_s:.2f} s, binary COPY + one join per group"),
        Row(f"quality of {MODELS[0]} per version and day", f"{quality_s * 1000:,.0f}", "ms",
            "accuracy, MAE, 10 calibration bins over every group"
            + (f"; {day.day} {day.model_version}: accuracy {day.accuracy:.1%}"
               if day and day.accuracy is not None else "")),
        Row("training read, tutorials' per-shard fetchall + pandas",
            f"{tut_read_rows / tut_read_s:,.0f}", "rows/s",
            f"{tut_read_rows:,} rows, each group's primary in turn"),
        Row("training read, mlscale TrainingReader into numpy",
            f"{our_read_rows / our_read_s:,.0f}", "rows/s",
            f"{our_read_rows:,} rows, binary COPY from every group at once "
            f"({tut_read_s / our_read_s:.1f}x)"),
        Row("retention: the oldest day dropped", f"{len(dropped.days)}", "days",
            f"{sum(len(p) for p in dropped.partitions.values())} partitions dropped, "
            f"{remaining:,} rows left"),
    ]  # fmt: skip
    return result
