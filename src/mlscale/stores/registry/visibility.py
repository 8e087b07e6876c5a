"""How soon every process sees a transition: the registry's cross-process coherence,
measured.

:func:`measure_visibility` starts ``processes`` child processes (spawned: they share
nothing with the caller but the cluster and its Redis), each with its own
:class:`ModelRegistry` behind its own cache (L1 + Redis L2 + L1 broadcast, one
namespace) polling ``get_production_model(model)`` every ``poll_s``. The caller then
makes ``transitions`` promotions of new versions through a registry with a cache of
the same namespace (so its invalidations reach L2 and the broadcast), in lockstep:
after each one it waits until every child has reported seeing it (at most
``timeout_s``), then ``interval_s`` more. So no version is overtaken by the next
before a child could see it, and a version not seen within ``timeout_s`` is
``missed``. Each child reports when it first saw each version; the lag of a version
in a child is that time minus the parent's commit time (taken by a commit hook the
moment COMMIT returned, before the invalidation), on the one wall clock of the host.

Counted: ``regressions`` (a child saw an older version after a newer one: must be 0),
``missed`` (a (child, version) not seen within ``timeout_s``), and lag percentiles
over every (child, version) seen. The benchmark's 100 ms p99 gate reads ``p99_ms``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import time
import uuid
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ...engine.cluster_sync import Cluster
from ...engine.hooks import Committed
from ...errors import MlscaleError, ModelNotFound
from .caching import registry_cache
from .store_sync import ModelRegistry

__all__ = ["VisibilityResult", "measure_visibility"]

ACTOR = "mlscale-visibility"


@dataclass(frozen=True, slots=True)
class VisibilityResult:
    """What :func:`measure_visibility` saw: per child process, for each transition, how
    long after the parent's commit the child's ``get_production_model`` returned it.

    ``processes``, ``transitions``: as run; ``observations``: (child, version) pairs
    seen; ``missed``: pairs never seen; ``regressions``: times a child saw an older
    version after a newer one; ``p50_ms``, ``p99_ms``, ``max_ms``: lag percentiles
    (milliseconds, nearest rank; NaN if nothing was seen); ``lags_ms``: every lag;
    ``l1``: whether the children's caches had an L1; ``model``: the model used."""

    processes: int
    transitions: int
    observations: int
    missed: int
    regressions: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lags_ms: tuple[float, ...]
    l1: bool
    model: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data (NaN percentiles as None: JSON has no NaN)."""
        out = asdict(self)
        for k in ("p50_ms", "p99_ms", "max_ms"):
            if math.isnan(out[k]):
                out[k] = None
        out["lags_ms"] = list(self.lags_ms)
        return out


def _rank(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure_visibility(
    config: str | Path,
    *,
    processes: int = 3,
    transitions: int = 50,
    interval_s: float = 0.05,
    poll_s: float = 0.0005,
    timeout_s: float = 2.0,
    l1: bool = True,
    namespace: str | None = None,
    model: str | None = None,
    start_timeout_s: float = 60.0,
) -> VisibilityResult:
    """Measure how soon ``processes`` other processes see each of ``transitions``
    promotions (see the module docstring). ``config``: the cluster's mlscale.toml (it
    needs a ``[redis]``). ``interval_s``: seconds between one promotion being seen
    everywhere and the next; ``poll_s``: seconds between a child's lookups (the
    measurement's resolution); ``timeout_s``: how long children may take to see a
    promotion; ``l1``: children cache in L1 too (False: L2 only). ``namespace`` and
    ``model`` default to fresh names, so runs never see each other; the model is
    created here and left behind (its rows are small). Raises MlscaleError if a child
    fails. Takes about ``transitions * (interval_s + lag)`` plus the children's start."""
    if processes < 1 or transitions < 1:
        raise ValueError("processes and transitions must be >= 1")
    path = str(config)
    ns = namespace or f"mlscale-visibility-{uuid.uuid4().hex[:8]}"
    name = model or f"visibility-{uuid.uuid4().hex[:8]}"
    with Cluster.from_file(path) as cluster, registry_cache(cluster.config, ns) as cache:
        registry = ModelRegistry(cluster, cache=cache)
        registry.create_model(name, description="visibility measurement", actor=ACTOR)
        for _ in range(transitions + 1):
            registry.register_version(name, artifact_uri=f"mem://{name}", actor=ACTOR)
        first = registry.transition(name, 1, "production", actor=ACTOR, reason="baseline")
        ctx = mp.get_context("spawn")
        children: list[_Child] = []
        try:
            for i in range(processes):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=_child,
                    args=(theirs, path, ns, name, l1, poll_s, first.token),
                    name=f"mlscale-visibility-{i}",
                    daemon=True,
                )
                proc.start()
                theirs.close()
                children.append(_Child(proc, mine))
            for child in children:
                if not child.wait_for(1, start_timeout_s):
                    raise MlscaleError(f"visibility: child {child.proc.name} did not start")
            commits = _promote(
                cluster, registry, name, children, transitions, interval_s, timeout_s
            )
            regressions = sum(child.finish() for child in children)
        finally:
            for child in children:
                child.close()
    lags: list[float] = []
    missed = 0
    for child in children:
        for version, at_ns in commits.items():
            seen = child.seen.get(version)
            if seen is None:
                missed += 1
            else:
                lags.append(max(0.0, (seen - at_ns) / 1e6))
    return VisibilityResult(
        processes=processes,
        transitions=transitions,
        observations=len(lags),
        missed=missed,
        regressions=regressions,
        p50_ms=_rank(lags, 0.50),
        p99_ms=_rank(lags, 0.99),
        max_ms=max(lags) if lags else math.nan,
        lags_ms=tuple(lags),
        l1=l1,
        model=name,
    )


class _Child:
    """A polling child process, as the parent sees it: the versions it reported."""

    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.seen: dict[int, int] = {}  # version -> first seen (time.time_ns())
        self.newest = 0

    def _message(self, timeout_s: float) -> Any:
        try:
            if self.conn.poll(max(0.0, timeout_s)):
                message = self.conn.recv()
                if isinstance(message, str):
                    raise MlscaleError(f"visibility: child {self.proc.name} failed: {message}")
                return message
            return None
        except (EOFError, OSError):
            raise MlscaleError(
                f"visibility: child {self.proc.name} exited (code {self.proc.exitcode})"
            ) from None

    def wait_for(self, version: int, timeout_s: float) -> bool:
        """Whether the child reported ``version`` (or newer) within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.newest < version:
            message = self._message(deadline - time.monotonic())
            if message is None:
                return False
            _, seen_version, at_ns = message
            self.seen.setdefault(seen_version, at_ns)
            self.newest = max(self.newest, seen_version)
        return True

    def finish(self) -> int:
        """Stop the child; the regressions it counted."""
        self.conn.send(("stop",))
        while True:
            message = self._message(30.0)
            if message is None:
                raise MlscaleError(f"visibility: child {self.proc.name} did not stop")
            if message[0] == "done":
                return int(message[1])
            self.seen.setdefault(message[1], message[2])

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        self.proc.join(5.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1.0)
        self.conn.close()


def _promote(
    cluster: Cluster,
    registry: ModelRegistry,
    name: str,
    children: list[_Child],
    transitions: int,
    interval_s: float,
    timeout_s: float,
) -> dict[int, int]:
    """Promote versions 2 .. transitions + 1 in turn, each once every child saw the
    previous one (or ``timeout_s`` passed); each one's commit time (ns)."""
    commits: dict[int, int] = {}
    last_commit = [0]

    def heard(event: Committed) -> None:
        last_commit[0] = time.time_ns()

    cluster.on_commit(heard)
    try:
        for version in range(2, transitions + 2):
            last_commit[0] = 0
            before = time.time_ns()
            registry.transition(name, version, "production", actor=ACTOR, reason="visibility")
            commits[version] = last_commit[0] or before
            deadline = time.monotonic() + timeout_s
            for child in children:
                child.wait_for(version, deadline - time.monotonic())
            time.sleep(interval_s)
    finally:
        cluster.remove_commit_hook(heard)
    return commits


def _child(
    conn: Connection, path: str, ns: str, name: str, l1: bool, poll_s: float, token: str
) -> None:
    """A polling process: sends ("seen", version, time_ns) at each newer version, and
    ("done", regressions) when told to stop (a str if it failed)."""
    try:
        with Cluster.from_file(path) as cluster, registry_cache(cluster.config, ns, l1=l1) as cache:
            registry = ModelRegistry(cluster, cache=cache)
            registry.get_production_model(name, token=token)  # the baseline is replayed here
            newest = 0
            backwards = 0
            while True:
                if conn.poll() and conn.recv()[0] == "stop":
                    conn.send(("done", backwards))
                    return
                try:
                    version = registry.get_production_model(name).version
                except ModelNotFound:
                    version = 0
                if version < newest:
                    backwards += 1
                elif version > newest:
                    newest = version
                    conn.send(("seen", version, time.time_ns()))
                time.sleep(poll_s)
    except Exception as exc:  # the parent reports it; a child has no one else to tell
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")
