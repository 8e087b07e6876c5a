"""Metrics of a service's worker processes, summed: prometheus_client's multiprocess mode.

uvicorn runs a service as several worker processes, each with its own cluster
client; a scrape reaches one of them. prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` set before any process imports prometheus_client)
makes every metric object write to a per-process mmap file in that directory,
and :class:`~prometheus_client.multiprocess.MultiProcessCollector` merges the
files at scrape time. A custom collector (:class:`ClusterCollector`) is not merged:
it would show the scraped worker only.

So each worker runs a :class:`MetricsMirror`: every ``interval_s`` (and before each
render in its own process) it reads its cluster's counters and copies them into
ordinary prometheus_client metrics -- a counter's increase since the last copy
becomes ``Counter.inc(delta)``, a gauge is ``set`` -- which the mmap files carry to
whoever renders. Counters sum over workers, dead ones included (a count never goes
back); gauges merge by their ``multiprocess_mode`` in :mod:`mlscale.metrics.names`
(pools summed over live workers, lag and bans the worst any live worker sees).

Limits:
- Another worker's numbers are up to ``interval_s`` old in a scrape.
- The directory must be emptied before the service starts (prometheus_client's
  rule): files of an earlier run would add to this run's counters.
- A dead worker's counter file stays (its counts remain in the totals; files pile
  up with worker restarts until the next start). Its live-gauge files are
  removed by :func:`render_multiprocess` once its PID is gone (uvicorn has no
  child-exit hook to call ``mark_process_dead``); a reused PID delays that.
- Label values multiply files' entries: views and models are capped per process
  (:mod:`mlscale.metrics.latency`); node, group and namespace labels are bounded by
  the topology.
- A gauge whose value vanished (a replica no longer sampled) is set to NaN.
- Two mirrors in one process: counters add up, gauges of the same labels overwrite.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .collector import read_samples
from .latency import histograms
from .names import METRICS, MetricType

__all__ = [
    "MetricsMirror",
    "multiprocess_dir",
    "multiprocess_enabled",
    "prune_dead_workers",
    "render_multiprocess",
    "start_mirror",
]

log = logging.getLogger(__name__)

_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess files, if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def multiprocess_enabled() -> bool:
    """Whether this process's metric objects write to the multiprocess files
    (prometheus_client decides once, at its import, from the environment)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


_objects: dict[str, Counter | Gauge] = {}
_objects_lock = threading.Lock()


def _metric_objects() -> dict[str, Counter | Gauge]:
    """One prometheus_client metric per counter and gauge of the names table, made
    once per process, in no registry (multiprocess files do not need one)."""
    with _objects_lock:
        if not _objects:
            for spec in METRICS:
                if spec.type is MetricType.COUNTER:
                    _objects[spec.name] = Counter(spec.name, spec.help, spec.labels, registry=None)
                elif spec.type is MetricType.GAUGE:
                    _objects[spec.name] = Gauge(
                        spec.name,
                        spec.help,
                        spec.labels,
                        registry=None,
                        multiprocess_mode=spec.multiprocess_mode or "livemax",  # type: ignore[arg-type]
                    )
        return _objects


def _child(metric: Any, label_values: tuple[str, ...]) -> Any:
    """The series of ``metric`` with ``label_values`` (an unlabelled metric is its own)."""
    return metric.labels(*label_values) if label_values else metric


_MIRRORS: weakref.WeakSet[MetricsMirror] = weakref.WeakSet()


class MetricsMirror:
    """Copies one cluster client's counters (and ``caches``') into prometheus_client
    metrics every ``interval_s`` seconds, on a daemon thread (see the module
    docstring). Start it in each worker once its cluster exists; :meth:`stop` copies
    a last time."""

    def __init__(
        self, cluster: Any, caches: Sequence[Any] = (), *, interval_s: float = 1.0
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.cluster = cluster
        self.caches = tuple(caches)
        self.interval_s = interval_s
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        self._gauges: set[tuple[str, tuple[str, ...]]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _MIRRORS.add(self)

    def sync(self) -> None:
        """Copy the counters' increases and the gauges' values now."""
        objects = _metric_objects()
        samples = read_samples(self.cluster, self.caches)
        with self._lock:
            seen: set[tuple[str, tuple[str, ...]]] = set()
            for s in samples:
                key = (s.name, s.values)
                metric = objects[s.name]
                if isinstance(metric, Counter):
                    before = self._last.get(key)
                    delta = s.value - (before or 0.0)
                    if delta < 0:  # the source restarted (a pool made anew): all of it is new
                        delta = s.value
                    self._last[key] = s.value
                    if delta > 0:
                        _child(metric, s.values).inc(delta)
                    elif before is None:
                        _child(metric, s.values)  # the series exists from zero on
                else:
                    seen.add(key)
                    _child(metric, s.values).set(s.value)
            for name, labels in self._gauges - seen:
                gauge = objects[name]
                _child(gauge, labels).set(math.nan)
            self._gauges |= seen

    def start(self) -> MetricsMirror:
        """Copy now, then every ``interval_s`` on a daemon thread; returns self."""
        self.sync()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="mlscale-metrics-mirror", daemon=True
            )
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except Exception:  # a closed cluster, a cache gone: keep the service up
                log.warning("metrics: copying the cluster's counters failed", exc_info=True)

    def stop(self) -> None:
        """Stop the thread after a last copy (a closed cluster is not read again)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        try:
            self.sync()
        except Exception:
            log.debug("metrics: last copy skipped", exc_info=True)
        _MIRRORS.discard(self)

    def __enter__(self) -> MetricsMirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _after_fork(self) -> None:
        # The thread did not come along: a forked child calls start() again.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None


def _after_fork_in_child() -> None:
    for m in list(_MIRRORS):
        m._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def start_mirror(
    cluster: Any, caches: Sequence[Any] = (), *, interval_s: float = 1.0
) -> MetricsMirror:
    """A started :class:`MetricsMirror` of ``cluster`` (stop it before closing the
    cluster, e.g. in the service's shutdown)."""
    return MetricsMirror(cluster, caches, interval_s=interval_s).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def prune_dead_workers(path: str) -> list[int]:
    """Remove the live-gauge files of processes that no longer run (what gunicorn's
    ``child_exit`` hook would do; uvicorn has none); the PIDs pruned."""
    dead = set()
    for f in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        m = _LIVE_FILE.search(os.path.basename(f))
        if m is not None and not _alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in sorted(dead):
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(dead)


_warned = False


def render_multiprocess(path: str | None = None) -> tuple[bytes, str]:
    """The service's ``/metrics``: (body, content type).

    This process's mirrors copy first. With a multiprocess directory (``path``, else
    ``PROMETHEUS_MULTIPROC_DIR``), every worker's files merged, dead workers'
    live gauges pruned; without one, this process's mirrored metrics and latency
    histograms (a single-worker service).
    """
    global _warned
    for m in list(_MIRRORS):
        try:
            m.sync()
        except Exception:
            log.warning("metrics: copying the cluster's counters failed", exc_info=True)
    directory = path or multiprocess_dir()
    registry = CollectorRegistry(auto_describe=True)
    if directory:
        if path is None and not multiprocess_enabled() and not _warned:
            _warned = True
            log.warning(
                "metrics: PROMETHEUS_MULTIPROC_DIR is set but prometheus_client was imported "
                "before it: this process's metrics are not in the shared files"
            )
        prune_dead_workers(directory)
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        for metric in (*_metric_objects().values(), *histograms()):
            registry.register(metric)
    return generate_latest(registry), CONTENT_TYPE_LATEST
