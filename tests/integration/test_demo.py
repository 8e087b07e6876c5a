"""`mlscale demo --quick` end to end: starts a cluster, measures, prints, saves, stops it.

The demo runs as a user would run it, in a subprocess whose working directory
the servers' OS user can traverse (pytest's own tmp dirs are mode 0700).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mlscale import LocalCluster
from mlscale.demo.failover import ha_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The failover chapter (its own HA cluster: start, one trial, destroy) adds ~30 s.
DEMO_TIMEOUT_S = 240.0
STOP_GRACE_S = 45.0


def _demo_dirs(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("mlscale-demo-*"))


def _processes_in(workdir: Path) -> dict[int, str]:
    """Live processes whose working directory lies in a demo cluster dir under ``workdir``.

    PostgreSQL runs in its data directory and Redis in its own, so this finds
    the servers even after their directory was deleted (``... (deleted)``).
    """
    prefix = str(workdir / "mlscale-demo-")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(prefix):
            found[int(entry.name)] = argv.strip()
    return found


def _positive_numbers(value: Any, where: str) -> list[str]:
    """Paths (in ``where`` notation) of every number in ``value`` that is not > 0."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _positive_numbers(v, f"{where}.{k}")]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return []
    return [] if value > 0 else [f"{where}={value}"]


@pytest.mark.timeout(310)
def test_quick_demo_measures_prints_saves_and_stops_its_cluster() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mlscale-demo-it-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    out = workdir / "results"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlscale", "demo", "--quick", "--out", str(out)],
            cwd=workdir,
            env={**os.environ, "TMPDIR": str(workdir)},  # the demo's cluster goes here
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the demo stops its cluster on SIGTERM
            stdout, stderr = proc.communicate(timeout=STOP_GRACE_S)
            pytest.fail(f"demo still running after {DEMO_TIMEOUT_S:.0f} s:\n{stdout}\n{stderr}")
        assert proc.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

        # The table, with the figures the issue asks for.
        assert "figure" in stdout and "how measured" in stdout, stdout
        for label in (
            "user features loaded",
            "commit visible on a replica",
            "point reads, pooled",
            "point reads, new connection each",
            "point reads, primary only",
            "prediction inserts",
            "stale reads after a write, eventual",
            "stale reads, read-your-writes token",
            "sharded COPY",
            "rows on the wrong group",
            "keys moved adding a group, slots",
            "keys moved adding a group, md5 % N",
            "cross-shard GROUP BY, parallel fan-out",
            "cross-shard GROUP BY, sequential loop",
            "cross-shard fan-out / sequential loop",
            "fan-out answer equals the loop's",
            "window function across groups refused",
            "user read p50, tutorials' cache (GET/SETEX)",
            "user read p50, mlscale Cache (L1 + L2)",
            "read p50, tutorials' / mlscale",
            "database queries saved, tutorials' cache (GET/SETEX)",
            "database queries saved, mlscale Cache (L1 + L2)",
            "feature load, mlscale push",
            "feature load, tutorials' EAV table",
            "online read, tutorials' EAV + pivot",
            "online read, mlscale, cache off",
            "online read, mlscale, cache on",
            "push, then read with its token",
            "point-in-time training set",
            "model lookup, tutorials' get_model_config",
            "model lookup, mlscale get_production_model",
            "after a promotion, tutorials' cache answers",
            "after a promotion, mlscale answers the new one",
            "mlscale serve start, 2 workers",
            "HTTP push, then read with Mlscale-Causal-Token",
            "HTTP push, then read without the token",
            "promotion, last old answer from the service",
            "which model is in production?, over HTTP",
            "10-entity online feature request, over HTTP",
            "/metrics: lookups of the model",
            "/metrics: online reads of the view",
        ):
            assert label in stdout, stdout
        # Chapter 5's stale read: the tutorials' cache served the old row, mlscale's not.
        lines = stdout.splitlines()
        naive = [x for x in lines if x.startswith("stale read after a write, tutorials' cache")]
        ours = [x for x in lines if x.startswith("stale read after a write, mlscale Cache")]
        assert len(naive) == 1 and "served old" in naive[0], stdout
        assert len(ours) == 1 and "served new" in ours[0], stdout
        assert "no CPU caps" in stdout, stdout
        assert str(out / "demo.json") in stdout, stdout
        assert str(out / "report.html") in stdout, stdout
        html = (out / "report.html").read_text()
        assert "<svg" in html and "<rect" in html

        # The JSON: measured, positive figures; at least 5 rounds per compared variant.
        doc = json.loads((out / "demo.json").read_text())
        assert doc["name"] == "demo"
        assert set(doc) >= {"params", "metrics", "rounds", "machine"}
        metrics = doc["metrics"]
        for key in (
            "load_rows_per_s",
            "replica_visibility_ms",
            "reads_pooled_per_s",
            "reads_unpooled_per_s",
            "pooled_over_unpooled",
            "reads_replicas_per_s",
            "reads_primary_per_s",
            "replicas_over_primary",
            "prediction_writes_per_s",
            "prediction_write_latency_ms",
            "reads_pooled_client_cpu_per_s",
        ):
            assert key in metrics, sorted(metrics)
        counted = {
            k: v
            for k, v in metrics.items()
            # Chapter 8's counts of stale or wrong answers are checked below (0 expected).
            # Chapter 9's counts of lost writes and errors are checked below (0 expected).
            if not k.startswith(("stale_", "features_token_reads", "serving_", "failover_"))
            and k != "shard_misplaced_rows"
        }
        assert _positive_numbers(counted, "metrics") == []
        # Chapter 2: a token never reads stale; the delayed replica makes eventual reads stale.
        assert metrics["stale_read_your_writes"] == 0
        assert metrics["stale_eventual"] > 0
        assert metrics["token_reads_on_replicas_share"] >= 0.5
        # Chapter 3: every row on the group of its slot, found by key; adding a third
        # group moves about a third of the keys with slots, most of them with md5 % N.
        assert metrics["shard_misplaced_rows"] == 0
        assert metrics["sharded_lookups_found"] == 500
        assert metrics["keyless_write_refused"] is True
        assert 0.28 < metrics["moved_on_add_slots"] < 0.39
        assert metrics["moved_on_add_md5_mod_n"] > 0.6
        # Chapter 4: the fan-out answers what the tutorials' loop adds up; a window
        # function across groups is refused, the construct named.
        assert metrics["crossshard_answers_equal"] is True
        assert metrics["crossshard_refused"] is True
        assert "window function" in metrics["crossshard_refusal"]
        assert "crossshard_fanout_over_loop" in metrics
        # Chapter 5: both caches on the same requests, queries counted by the database;
        # after the slow reader's fill, the tutorials' cache serves the old row and
        # mlscale's refuses the fill and serves the new one.
        for name in ("tutorial", "mlscale"):
            for key in ("read_p50_ms", "reads_per_s", "db_queries", "db_queries_saved"):
                assert f"cache_{name}_{key}" in metrics, sorted(metrics)
            assert 0 < metrics[f"cache_{name}_db_queries_saved_share"] < 1
        assert metrics["cache_read_p50_tutorial_over_mlscale"] > 0
        stale = metrics["cache_stale_read"]
        assert metrics["cache_stale_tutorial_served_old"] is True
        assert stale["tutorial"]["served_ctr"] == stale["tutorial"]["old_ctr"]
        assert stale["tutorial"]["served_ctr"] != stale["tutorial"]["new_ctr"]
        assert metrics["cache_stale_mlscale_served_old"] is False
        assert stale["mlscale"]["served_ctr"] == stale["mlscale"]["new_ctr"]
        assert stale["mlscale"]["old_ctr"] != stale["mlscale"]["new_ctr"]
        assert metrics["cache_stale_mlscale_fills_refused"] == 1
        for variant in ("cache_tutorial", "cache_mlscale"):
            rounds = doc["rounds"][variant]
            assert len(rounds) >= 5, (variant, rounds)
            assert all(0 < r["db_queries"] < r["ops"] for r in rounds), (variant, rounds)
        for variant in (
            "reads_pooled",
            "reads_unpooled",
            "reads_replicas",
            "reads_primary",
            "crossshard_fanout",
            "crossshard_loop",
        ):
            rounds = doc["rounds"][variant]
            assert len(rounds) >= 5, (variant, rounds)
            assert all(r["ops"] > 0 and r["per_s"] > 0 for r in rounds), (variant, rounds)
            assert all(r["client_cpu_s"] >= 0 for r in rounds), (variant, rounds)
        # Chapter 6: the same batch reads the loaded values three ways; a push read with
        # its token returns the pushed values; the training set equals merge_asof.
        assert metrics["features_answers_equal"] == {
            "eav": True,
            "store_cache_off": True,
            "store_cache_on": True,
        }
        assert metrics["features_token_read_fresh"] is True
        assert metrics["features_training_equals_merge_asof"] is True
        assert 0 < metrics["features_training_missing"] < metrics["features_training_rows"]
        for name in ("eav", "store_cache_off", "store_cache_on"):
            for key in ("entities_per_s", "batch_p50_ms", "batch_p99_ms"):
                assert metrics[f"features_{name}_{key}"]["median"] > 0, name
            rounds = doc["rounds"][f"features_{name}"]
            assert len(rounds) >= 5 and all(r["entities_per_s"] > 0 for r in rounds), rounds
        # Chapter 7: the resent chunk is stored once; retention keeps exactly the rest.
        n = metrics["predictions_rows"]
        assert metrics["predictions_stored"] == metrics["predictions_stored_after_resend"] == n
        assert metrics["predictions_resent_duplicates"] == metrics["predictions_resent"]
        assert (
            metrics["predictions_after_retention"]
            == (metrics["predictions_after_retention_expected"])
        )
        assert metrics["predictions_retention_days_dropped"] >= 1
        assert metrics["training_read_rows"] > n  # the writer's rows and the tutorial's
        # Chapter 8: after a promotion the tutorials' cache answers the old model every
        # time, mlscale's never; over HTTP a read with the push's token sees the push;
        # the service's /metrics counted exactly the lookups and reads the chapter sent.
        for side in ("tutorial", "mlscale"):
            assert metrics[f"serving_{side}_lookups_per_s"]["median"] > 0
            assert len(doc["rounds"][f"serving_{side}_lookups"]) >= 5
        assert metrics["serving_promotion_lookups"] > 0
        assert metrics["serving_promotion_tutorial_old"] == metrics["serving_promotion_lookups"]
        assert metrics["serving_promotion_mlscale_old"] == 0
        assert metrics["serving_promotion_mlscale_first_new_ms"]["n"] == 5
        assert metrics["serving_promotion_mlscale_first_new_ms"]["median"] > 0
        assert metrics["serving_http_workers"] == 2
        assert metrics["serving_http_pairs"] == 50
        assert metrics["serving_http_stale_with_token"] == 0
        assert 0 <= metrics["serving_http_stale_without_token"] <= 50
        assert metrics["serving_http_promotions"] == 3
        assert metrics["serving_http_promotion_answers"] > 0
        alias = metrics["serving_http_alias"]
        assert alias["errors"] == 0 and alias["lookups_per_s"] > 0, alias
        assert metrics["serving_http_features_requests_per_s"] > 0
        assert metrics["serving_http_features_errors"] == 0
        assert metrics["serving_http_features_mismatches"] == 0
        assert metrics["serving_http_features_p99_ms"] >= metrics["serving_http_features_p50_ms"]
        lookups_sent = metrics["serving_metrics_registry_lookups_sent"]
        assert lookups_sent > alias["lookups"]
        assert metrics["serving_metrics_registry_lookups"] == lookups_sent
        reads_sent = metrics["serving_metrics_feature_reads_sent"]
        assert reads_sent > 100
        assert metrics["serving_metrics_feature_reads"] == reads_sent
        # Chapter 9: the leader's PostgreSQL killed under idempotent writers on the
        # chapter's own HA cluster: no acked write lost, no error, a new leader, the old
        # primary streaming again; skipped, saying why, without Patroni or etcd.
        missing = ha_missing()
        if missing:
            assert "failover: skipped" in stdout and missing in metrics["failover_skipped"]
        else:
            for label in (
                "failover: writer gap",
                "failover: acked writes lost",
                "failover: unknown outcomes, reconciled",
                "failover: new leader",
                "failover: old primary streaming again",
            ):
                assert label in stdout, stdout
            assert metrics["failover_acked"] > 0
            assert metrics["failover_acks_after_fault"] > 0
            assert metrics["failover_lost_acked"] == 0
            assert metrics["failover_old_primary_acks_after_takeover"] == 0
            assert metrics["failover_failed"] == 0
            assert metrics["failover_counts_consistent"] is True
            assert (
                metrics["failover_unknown"]
                == metrics["failover_unknown_committed"] + metrics["failover_unknown_not_committed"]
            )
            assert metrics["failover_new_leader"] not in (None, metrics["failover_old_leader"])
            assert 0 < metrics["failover_writer_gap_s"] < 20
            assert 0 < metrics["failover_rejoin_s"] < 60
            assert metrics["failover_rejoin_confirmed"] is True
        # Chapter 10: the tutorial's MongoDB query and counts equal Python's answers, its
        # metrics queries numpy's; the embeddings reach recall 0.95; the checkpoint comes
        # back bit-exactly and a second version that changed one MiB sends one chunk.
        assert metrics["experiments_top10_equal_python"] is True
        assert metrics["experiments_param_counts_equal_python"] is True
        assert metrics["metrics_hour_mean_equal_numpy"] is True
        assert metrics["metrics_day_p99_panel_equal_numpy"] is True
        assert metrics["embeddings_recall_at_10"] >= 0.95
        assert metrics["checkpoint_bit_exact"] is True
        assert metrics["checkpoint_second_version_sent"] == 1
        assert metrics["checkpoint_second_version_chunks"] > 1
        assert doc["machine"]["cpus"] == os.cpu_count()
        assert doc["machine"]["postgres_version"]

        # Nothing of the demo's cluster is left: no directory, no server process.
        leftover = {d.name: LocalCluster(d).processes() for d in _demo_dirs(workdir)}
        assert all(not pids for procs in leftover.values() for pids in procs.values()), leftover
        assert _demo_dirs(workdir) == []
        assert _processes_in(workdir) == {}
    finally:
        for d in _demo_dirs(workdir):
            if (d / "mlscale.toml").exists():
                LocalCluster(d).destroy()
        shutil.rmtree(workdir, ignore_errors=True)
