"""The prediction store end to end on the session cluster: its writer, bad input refused
whole (nothing queued or written), a resend by id alone stored once, then labels and
reads with the writer's token."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlscale import Cluster, LocalCluster, PredictionError
from mlscale.stores.predictions import PredictionLog, PredictionStore
from tests.integration.predictions_help import scratch_predictions, unique


def _stored(store: PredictionStore, log: PredictionLog) -> int:
    query = f"SELECT count(*) FROM {log.name}"  # noqa: S608
    return int(store.cluster.fetch_value(query, consistency="strong"))  # replicas may lag


def _one(row: dict[str, Any]) -> dict[str, Any]:
    """A row as ``writer.log``'s keywords: the entity column is ``entity=``."""
    return {("entity" if k == "user_id" else k): v for k, v in row.items()}


GOOD: dict[str, Any] = {"user_id": 1, "model": "m", "model_version": "v1", "score": 0.5}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model": None}, "model is missing"),
        ({"model_version": ""}, "model_version is missing"),
        ({"user_id": None}, "user_id"),
        ({"user_id": "seven"}, "int8"),
        ({"user_id": 2**63}, "out of range"),
        ({"score": "high"}, "must be a number"),
        ({"score": None}, "score, a predicted class or both"),
        ({"predicted": 3, "score": None}, "must be text"),
        ({"prediction_id": "not-a-uuid"}, "not a uuid"),
        ({"ts": "yesterday-ish"}, "not a time"),
        ({"extra": {"x": float("nan")}}, "JSON"),
        ({"color": "red"}, "unknown column"),
    ],
)
def test_bad_predictions_are_refused_whole(
    cluster: Cluster, change: dict[str, Any], words: str
) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("psb"), entity="user_id"))
        with store.writer(log) as w:
            good = [{**GOOD, "user_id": i} for i in range(10)]
            with pytest.raises(PredictionError, match=words):
                w.log_many([*good, {**GOOD, **change}])  # 10 good rows and one bad
            if "color" not in change:
                with pytest.raises(PredictionError, match=words):
                    w.log(**_one({**GOOD, **change}))
            w.flush()
            assert w.stats().queued == 0
        assert _stored(store, log) == 0  # the good rows of the refused call are not taken


def test_a_resend_by_id_alone_is_stored_once(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("psr"), entity="user_id"))
        n = 5_000
        frame = pd.DataFrame(
            {"user_id": np.arange(n) % 97, "model": "m", "model_version": "v1",
             "score": np.linspace(0, 1, n)}
        )  # fmt: skip
        ids: list[tuple[uuid.UUID, int]] = []
        with store.writer(log, batch_rows=1_000) as w:
            for i in range(0, n, 1_000):  # single rows too: their ids are returned
                ids += [(w.log(**_one({**GOOD, "user_id": u})), u) for u in range(i, i + 3)]
            w.log_many(frame.assign(prediction_id=[uuid.uuid4() for _ in range(n)]))
            first = w.flush()
        assert _stored(store, log) == n + len(ids)
        # A crash later, the caller resends what it has: ids and entities, no times.
        with store.writer(log) as w:
            for pid, user in ids:
                w.log(**_one({**GOOD, "user_id": user}), prediction_id=pid)
            again = w.flush()
        assert (again.rows, again.duplicates) == (0, len(ids))
        assert _stored(store, log) == n + len(ids)
        assert (first.rows, first.duplicates) == (n + len(ids), 0)


def test_written_predictions_get_labels_and_are_read_back(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("psl"), entity="user_id"))
        with store.writer(log) as w:
            pids = [
                w.log(entity=7, model="ranker", model_version="v2", score=s, predicted="a")
                for s in (0.1, 0.9)
            ]
            done = w.flush()
        labels = store.log_labels(
            log,
            pd.DataFrame({"prediction_id": pids, "user_id": [7, 7], "outcome": [0.0, 1.0],
                          "label": ["a", "b"]}),
        )  # fmt: skip
        assert (labels.written, labels.unmatched) == (2, 0)
        today = dt.datetime.now(dt.UTC).date()
        got = store.by_entity(log, 7, today, today + dt.timedelta(days=1), token=labels.token)
        # Same entity, same millisecond: ordered by id within it.
        assert sorted((p.prediction_id, p.outcome, p.label) for p in got) == sorted(
            [(pids[0], 0.0, "a"), (pids[1], 1.0, "b")]
        )
        (q,) = store.quality(log, "ranker", today, today + dt.timedelta(days=1), token=done.token)
        assert (q.labeled, q.accuracy) == (2, 0.5)
        assert q.mae == pytest.approx(0.1)


def test_a_writer_left_open_is_flushed_at_exit(
    cluster: Cluster, local_cluster: LocalCluster
) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("pse"), entity="user_id"))
        script = (
            "import sys\n"
            "from mlscale import Cluster\n"
            "from mlscale.stores.predictions import PredictionStore\n"
            "c = Cluster.from_file(sys.argv[1])\n"
            "w = PredictionStore(c).writer(sys.argv[2], flush_interval_s=600)\n"
            "w.log_many([{'user_id': i, 'model': 'm', 'model_version': 'v', 'score': 0.5}\n"
            "            for i in range(1000)])\n"
            "print(w.stats().queued)\n"  # neither flushed nor closed: exit must do it
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(local_cluster.layout.config), log.name],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _stored(store, log) == 1000


def test_a_writer_refuses_a_forked_child(cluster: Cluster) -> None:
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("psf"), entity="user_id"))
        with store.writer(log) as w:
            w.log(**_one(GOOD))
            pid = os.fork()
            if pid == 0:  # the child: its writer has no threads
                try:
                    w.log(**_one(GOOD))
                except PredictionError as exc:
                    os._exit(0 if "did not cross the fork" in str(exc) else 2)
                os._exit(1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        assert _stored(store, log) == 1


def test_a_day_dropped_by_another_process_is_made_again(cluster: Cluster) -> None:
    """A writer remembers the partitions it made; when retention elsewhere drops one,
    its next write to that day makes it again instead of failing for ever."""
    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("psd"), entity="user_id"))
        old = dt.datetime(2020, 3, 1, 12, tzinfo=dt.UTC)
        with store.writer(log, flush_interval_s=0.05) as w:
            w.log(**_one({**GOOD, "ts": old}))
            w.flush(timeout=30)
            dropped = PredictionStore(cluster).retain(log.name, before=dt.date(2021, 1, 1))
            assert dt.date(2020, 3, 1) in dropped.days
            w.log(**_one({**GOOD, "ts": old + dt.timedelta(minutes=1)}))
            w.flush(timeout=30)
        assert _stored(store, log) == 1
