"""A real Prometheus (Debian's) scrapes mlscale's exporter and returns the reads made.

Prometheus runs on a free loopback port with its storage in a temp dir, scraping
every second an exporter over a fresh cluster client (its counters start at zero),
and is stopped by PID. Takes a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.metrics import Exporter, start_exporter
from tests.unit.metrics.promql_names import (
    dashboard_exprs,
    for_prometheus,
    label_values_metric,
    template_queries,
)

PROMETHEUS = "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="no prometheus binary")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    cluster: Cluster
    exporter: Exporter
    api: str  # http://127.0.0.1:PORT/api/v1

    def query(self, promql: str) -> Any:
        url = f"{self.api}/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def scraped_after(self, t: float, timeout_s: float = 10.0) -> None:
        """Wait until Prometheus has scraped the exporter after wall time ``t``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query('timestamp(up{job="mlscale"} == 1)')["result"]
            if result and float(result[0]["value"][1]) > t:
                return
            time.sleep(0.2)
        raise AssertionError(f"no scrape after {t} within {timeout_s} s")


@pytest.fixture(scope="module")
def setup(local_cluster: LocalCluster) -> Iterator[Setup]:
    base = Path(tempfile.mkdtemp(prefix="mlscale-prom-"))
    proc: subprocess.Popen[bytes] | None = None
    with Cluster.from_file(local_cluster.layout.config) as cluster:
        exporter = start_exporter(cluster, 0)
        try:
            port = free_port()
            (base / "prometheus.yml").write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: mlscale\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{exporter.port}']\n"
            )
            log = open(base / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={base / 'prometheus.yml'}",
                 f"--storage.tsdb.path={base / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=base,
            )
            log.close()
            api = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"{api}/-/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((base / "prometheus.log").read_text()[-2000:])
                time.sleep(0.1)
            yield Setup(cluster, exporter, f"{api}/api/v1")
        finally:
            if proc is not None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            exporter.stop()
            shutil.rmtree(base, ignore_errors=True)


def test_prometheus_returns_the_reads_made(setup: Setup) -> None:
    cluster = setup.cluster
    made = {"eventual": 7, "strong": 5, "bounded_staleness": 3}
    for _ in range(made["eventual"]):
        assert cluster.fetch_value("SELECT 1", consistency="eventual") == 1
    for _ in range(made["strong"]):
        assert cluster.fetch_value("SELECT 1", consistency="strong") == 1
    for _ in range(made["bounded_staleness"]):
        assert cluster.fetch_value("SELECT 1", consistency="bounded_staleness",
                                   max_lag_ms=60_000) == 1
    cluster.execute("SELECT pg_notify('mlscale_metrics_test', 'x')")  # a write: the primary
    cluster.execute("SELECT pg_notify('mlscale_metrics_test', 'y')")
    setup.scraped_after(time.time())

    result = setup.query('sum by (consistency) (mlscale_reads_total{job="mlscale"})')["result"]
    got = {r["metric"]["consistency"]: float(r["value"][1]) for r in result}
    assert got == {**{k: float(v) for k, v in made.items()}, "read_your_writes": 0.0}
    strong = setup.query(
        'sum by (role) (mlscale_reads_total{job="mlscale", consistency="strong"})')["result"]
    assert {r["metric"]["role"]: float(r["value"][1]) for r in strong} == {
        "primary": 5.0, "replica": 0.0}
    writes = setup.query('sum(mlscale_writes_total{job="mlscale", group="g0"})')["result"]
    assert float(writes[0]["value"][1]) == 2.0
    # The monitor's lag of each replica of the group is there too.
    lag = setup.query('mlscale_replica_lag_bytes{job="mlscale", group="g0"}')["result"]
    assert {r["metric"]["node"] for r in lag} == set(cluster.replica_nodes("g0"))


def test_every_dashboard_query_evaluates(setup: Setup) -> None:
    setup.scraped_after(time.time())
    for title, expr in dashboard_exprs():
        data = setup.query(for_prometheus(expr))  # asserts status success
        assert data["resultType"] == "vector", title
    for query in template_queries():
        for metric in label_values_metric(query):
            assert setup.query(metric)["result"], f"{metric} has no series"
