"""A real Prometheus (Debian's) scrapes mlscale's exporter and returns the reads made.

Prometheus runs on a free loopback port with its storage in a temp dir, scraping
every second an exporter over a fresh cluster client (its counters start at zero),
and is stopped by PID. Takes a few seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.metrics import Exporter, start_exporter
from tests.integration.prometheus_server import PROMETHEUS, Prometheus, prometheus
from tests.unit.metrics.promql_names import (
    dashboard_exprs,
    for_prometheus,
    label_values_metric,
    template_queries,
)

pytestmark = pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="no prometheus binary")


@dataclass
class Setup:
    cluster: Cluster
    exporter: Exporter
    server: Prometheus

    def query(self, promql: str) -> Any:
        return self.server.query(promql)

    def scraped_after(self, t: float) -> None:
        self.server.scraped_after(t)


@pytest.fixture(scope="module")
def setup(local_cluster: LocalCluster) -> Iterator[Setup]:
    with Cluster.from_file(local_cluster.layout.config) as cluster:
        exporter = start_exporter(cluster, 0)
        try:
            with prometheus([f"127.0.0.1:{exporter.port}"]) as server:
                yield Setup(cluster, exporter, server)
        finally:
            exporter.stop()


def test_prometheus_returns_the_reads_made(setup: Setup) -> None:
    cluster = setup.cluster
    made = {"eventual": 7, "strong": 5, "bounded_staleness": 3}
    for _ in range(made["eventual"]):
        assert cluster.fetch_value("SELECT 1", consistency="eventual") == 1
    for _ in range(made["strong"]):
        assert cluster.fetch_value("SELECT 1", consistency="strong") == 1
    for _ in range(made["bounded_staleness"]):
        assert (
            cluster.fetch_value("SELECT 1", consistency="bounded_staleness", max_lag_ms=60_000) == 1
        )
    cluster.execute("SELECT pg_notify('mlscale_metrics_test', 'x')")  # a write: the primary
    cluster.execute("SELECT pg_notify('mlscale_metrics_test', 'y')")
    setup.scraped_after(time.time())

    result = setup.query('sum by (consistency) (mlscale_reads_total{job="mlscale"})')["result"]
    got = {r["metric"]["consistency"]: float(r["value"][1]) for r in result}
    assert got == {**{k: float(v) for k, v in made.items()}, "read_your_writes": 0.0}
    strong = setup.query(
        'sum by (role) (mlscale_reads_total{job="mlscale", consistency="strong"})'
    )["result"]
    assert {r["metric"]["role"]: float(r["value"][1]) for r in strong} == {
        "primary": 5.0,
        "replica": 0.0,
    }
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
