"""The demo's failover chapter when it cannot run: skipped, saying why, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlscale.demo import failover
from mlscale.demo.failover import ha_missing, run_failover
from mlscale.demo.foundation import Params
from mlscale.errors import NodeStartError
from mlscale.local.cluster import LocalCluster


def test_without_etcd_the_chapter_is_skipped_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLSCALE_ETCD", str(tmp_path / "no-etcd"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    said: list[str] = []
    result = run_failover(None, Params.for_run(quick=True), said.append)  # type: ignore[arg-type]
    reason = ha_missing()
    assert reason is not None and "etcd not found" in reason
    assert (
        list(result.metrics) == ["failover_skipped"]
        and reason in result.metrics["failover_skipped"]
    )
    assert [r.value for r in result.rows] == ["skipped"]
    assert said and "skipped" in said[0]
    assert list(tmp_path.iterdir()) == []  # no cluster directory made


def test_an_ha_cluster_that_never_starts_is_tried_twice_and_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tries: list[Path] = []

    def refuse(self: LocalCluster, **kwargs: object) -> None:
        tries.append(self.root)
        raise NodeStartError(f"port taken ({len(tries)})")

    monkeypatch.setattr(failover, "ha_missing", lambda: None)
    monkeypatch.setattr(LocalCluster, "up", refuse)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    said: list[str] = []
    result = failover.run_failover(None, Params.for_run(quick=True), said.append)  # type: ignore[arg-type]
    assert len(tries) == failover.START_TRIES == 2 and tries[0] != tries[1]
    assert "did not start in 2 tries: port taken (2)" in result.metrics["failover_skipped"]
    assert sum("did not start" in s for s in said) == 3  # each try, then the skip
    assert list(tmp_path.iterdir()) == []  # each try's directory removed
