"""Every query of the Grafana dashboard reads only metrics of the names table."""

from __future__ import annotations

import json

from mlscale.metrics.names import METRICS, MetricType
from tests.unit.metrics.promql_names import (
    DASHBOARD,
    dashboard_exprs,
    exposed_names,
    label_values_metric,
    metric_names,
    template_queries,
)


def test_the_lexer_finds_metrics_not_labels_functions_or_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (view, le) (rate(mlscale_feature_read_seconds_bucket'
        '{job=~"$job", view!="x y"}[$__rate_interval]))) / on (node) group_left '
        "clamp_min(mlscale_pool_size offset 5m, 1e-9) and up"
    )
    assert metric_names(expr) == {"mlscale_feature_read_seconds_bucket", "mlscale_pool_size", "up"}
    assert metric_names('sum(rate(mlscale_reads_total{role="replica"}[1m]))') == {
        "mlscale_reads_total"}
    assert label_values_metric("label_values(mlscale_node_up, job)") == {"mlscale_node_up"}


def test_every_dashboard_query_names_metrics_of_the_table() -> None:
    exposed = exposed_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used = set()
    for title, expr in exprs:
        found = metric_names(expr)
        assert found, f"{title}: no metric in {expr!r}"
        unknown = found - set(exposed)
        assert not unknown, f"{title}: {sorted(unknown)} not in mlscale.metrics.names"
        used |= {exposed[n] for n in found}
    for query in template_queries():
        assert label_values_metric(query) <= set(exposed), query
    # The panels the issue asks for are there.
    for name in ("mlscale_reads", "mlscale_read_fallbacks", "mlscale_replica_lag_bytes",
                 "mlscale_replica_lag_seconds", "mlscale_replica_banned", "mlscale_pool_waiting",
                 "mlscale_cache_hits", "mlscale_cache_misses", "mlscale_feature_read_seconds",
                 "mlscale_registry_lookup_seconds"):
        assert name in used, f"the dashboard shows no {name}"


def test_histograms_are_read_through_quantiles_and_counters_through_rates() -> None:
    kinds = {s: m.type for m in METRICS for s in m.series_names}
    for title, expr in dashboard_exprs():
        for name in metric_names(expr):
            if kinds[name] is MetricType.COUNTER:
                assert f"rate({name}" in expr, f"{title}: a counter read without rate()"
            if name.endswith("_bucket"):
                assert "histogram_quantile(" in expr, title


def test_the_dashboard_takes_its_datasource_as_a_variable() -> None:
    d = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
