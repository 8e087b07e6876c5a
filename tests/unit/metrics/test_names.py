"""The metrics table is well formed: names, types, labels, multiprocess modes."""

from __future__ import annotations

import re

from mlscale.metrics import names
from mlscale.metrics.names import METRICS, MetricType

_NAME = re.compile(r"^mlscale_[a-z][a-z0-9_]*[a-z0-9]$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
# Labels Prometheus or prometheus_client set themselves.
_RESERVED = {"le", "quantile", "job", "instance", "pid"}


def test_names_are_unique_prefixed_and_valid() -> None:
    seen = [m.name for m in METRICS]
    assert len(seen) == len(set(seen))
    series = [s for m in METRICS for s in m.series_names]
    assert len(series) == len(set(series)), "two metrics expose the same series name"
    for m in METRICS:
        assert _NAME.match(m.name), m.name
        assert m.help and m.help.endswith(".") and "\n" not in m.help, m.name
        assert len(m.labels) == len(set(m.labels)), m.name
        for label in m.labels:
            assert _LABEL.match(label) and label not in _RESERVED, (m.name, label)


def test_types_follow_the_conventions() -> None:
    for m in METRICS:
        if m.type is MetricType.COUNTER:
            assert not m.name.endswith("_total"), "Prometheus's exposition adds _total"
            assert not m.multiprocess_mode
        elif m.type is MetricType.GAUGE:
            assert m.multiprocess_mode in {"livesum", "livemax", "livemin"}, m.name
        else:
            assert m.name.endswith("_seconds") and len(m.labels) == 1
    assert names.FEATURE_READ_SECONDS.labels == ("view",)
    assert names.REGISTRY_LOOKUP_SECONDS.labels == ("model",)


def test_buckets_span_50us_to_1s() -> None:
    b = names.BUCKETS_S
    assert list(b) == sorted(set(b))
    assert b[0] == 0.00005 and b[-1] == 1.0


def test_the_issue_asks_for_these() -> None:
    want = {
        "mlscale_reads": ("group", "node", "role", "consistency"),
        "mlscale_writes": ("group", "node"),
        "mlscale_read_fallbacks": ("cause",),
        "mlscale_replica_lag_bytes": ("group", "node"),
        "mlscale_replica_lag_seconds": ("group", "node"),
        "mlscale_replica_banned": ("group", "node", "kind"),
        "mlscale_pool_waiting": ("group", "node"),
        "mlscale_cache_hits": ("namespace", "tier"),
        "mlscale_cache_misses": ("namespace", "tier"),
        "mlscale_cache_loads": ("namespace",),
    }
    for name, labels in want.items():
        assert names.by_name(name).labels == labels
