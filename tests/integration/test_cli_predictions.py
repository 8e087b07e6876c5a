"""``mlscale predictions list|retain|attach|quality`` against the session cluster, run as
a user runs them (a subprocess): what they print, their JSON, and their errors."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from mlscale import Cluster, LocalCluster
from mlscale.stores.predictions import PredictionLog
from tests.conftest import run_cli
from tests.integration.predictions_help import scratch_predictions, seed, synthetic, unique

pytestmark = pytest.mark.integration


def test_list_quality_attach_retain(cluster: Cluster, local_cluster: LocalCluster) -> None:
    config = str(local_cluster.layout.config)

    def cli(*args: str) -> tuple[int, str, str]:
        res = run_cli("predictions", *args, "--config", config, timeout=120)
        return res.returncode, res.stdout, res.stderr

    with scratch_predictions(cluster) as store:
        log = store.create(PredictionLog(unique("clip"), entity="user_id", retention_days=3))
        now = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        preds, labels = synthetic(1000, entity="user_id", days=6, now=now)
        seed(store, log, preds)
        store.log_labels(log, labels)

        code, out, _ = cli("list", "--json")
        assert code == 0
        mine = [d for d in json.loads(out) if d["name"] == log.name]
        assert mine and mine[0]["entity"] == "user_id" and mine[0]["retention_days"] == 3

        code, out, _ = cli(
            "quality", log.name, "ranker", "--days", "10", "--consistency", "strong", "--json"
        )
        assert code == 0
        rows = json.loads(out)
        want = preds[preds.model == "ranker"]
        assert sum(r["predictions"] for r in rows) == len(want)

        code, out, _ = cli("attach", log.name)
        assert code == 0 and "attached 0, still unmatched 0" in out

        code, out, _ = cli("retain", log.name, "--json")  # the log's 3 days
        assert code == 0
        result = json.loads(out)
        cut = now.date() - dt.timedelta(days=2)
        assert result["before"] == cut.isoformat()
        days = pd.to_datetime(preds.ts, utc=True).dt.date
        assert result["days"] == sorted({d.isoformat() for d in days if d < cut})

        code, _, err = cli("retain", "no_such_log")
        assert code == 2 and "no prediction log 'no_such_log'" in err
