"""The demo's failover chapter without Patroni or etcd: skipped, saying why, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlscale.demo.failover import ha_missing, run_failover
from mlscale.demo.foundation import Params


def test_without_etcd_the_chapter_is_skipped_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLSCALE_ETCD", str(tmp_path / "no-etcd"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    said: list[str] = []
    result = run_failover(None, Params.for_run(quick=True), said.append)  # type: ignore[arg-type]
    reason = ha_missing()
    assert reason is not None and "etcd not found" in reason
    assert result.metrics == {"failover_skipped": reason}
    assert [r.value for r in result.rows] == ["skipped"]
    assert said and "skipped" in said[0]
    assert list(tmp_path.iterdir()) == []  # no cluster directory made
