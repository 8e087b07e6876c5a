"""The latency histograms the stores observe: feature reads by view, registry lookups by model.

One :class:`prometheus_client.Histogram` each, made once per process and shared by
every exposition (:func:`~mlscale.metrics.render_cluster`, the exporter, the
multiprocess files). In multiprocess mode prometheus_client writes each observation
to this process's mmap file itself, so the same call works in both modes.

Label values come from callers (view and model names): each histogram keeps at
most :data:`MAX_LABEL_VALUES` of them, and observes later newcomers under
:data:`OTHER_LABEL`, so a caller passing unbounded names cannot blow up the
number of series (each value costs 17 series: 15 buckets, a sum and a count).
"""

from __future__ import annotations

import threading

from prometheus_client import Histogram

from .names import BUCKETS_S, FEATURE_READ_SECONDS, REGISTRY_LOOKUP_SECONDS, MetricSpec

__all__ = [
    "MAX_LABEL_VALUES",
    "OTHER_LABEL",
    "histograms",
    "observe_feature_read",
    "observe_registry_lookup",
]

MAX_LABEL_VALUES = 1000
OTHER_LABEL = "_other"


class _Observed:
    """A histogram with one label, its children cached by label value.

    ``labels()`` of prometheus_client takes a lock and builds a key on every call;
    a dict lookup is the hot path here (about 1-2 us per observation in all).
    """

    def __init__(self, spec: MetricSpec) -> None:
        self.histogram = Histogram(
            spec.name, spec.help, spec.labels, buckets=BUCKETS_S, registry=None
        )
        self._children: dict[str, Histogram] = {}
        self._lock = threading.Lock()

    def observe(self, label: str, seconds: float) -> None:
        child = self._children.get(label)
        if child is None:
            child = self._child(label)
        child.observe(seconds)

    def _child(self, label: str) -> Histogram:
        with self._lock:
            child = self._children.get(label)
            if child is None:
                value = label if len(self._children) < MAX_LABEL_VALUES else OTHER_LABEL
                child = self.histogram.labels(value)
                if value == label:  # newcomers past the cap are not remembered
                    self._children[label] = child
            return child


_FEATURE_READ = _Observed(FEATURE_READ_SECONDS)
_REGISTRY_LOOKUP = _Observed(REGISTRY_LOOKUP_SECONDS)


def observe_feature_read(view: str, seconds: float) -> None:
    """Count one online feature read of feature view ``view`` that took ``seconds``.

    Cheap (a dict lookup and prometheus_client's observe), safe from any thread,
    and written to the shared files in multiprocess mode."""
    _FEATURE_READ.observe(view, seconds)


def observe_registry_lookup(model: str, seconds: float) -> None:
    """Count one model registry lookup of ``model`` that took ``seconds`` (as
    :func:`observe_feature_read`)."""
    _REGISTRY_LOOKUP.observe(model, seconds)


def histograms() -> tuple[Histogram, ...]:
    """The latency histograms of this process, to register in an exposition."""
    return (_FEATURE_READ.histogram, _REGISTRY_LOOKUP.histogram)
