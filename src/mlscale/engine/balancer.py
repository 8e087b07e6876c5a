"""Which replica takes a read: the engine's bookkeeping around core/balance.

Holds what the pure decision needs between reads -- bans (error, lag, manual),
consecutive failures, requests in flight, metrics, the turn counter -- and turns
the monitor's samples into :class:`ReplicaState`. No I/O: the async and sync
clusters share one instance type, and ``mlscale status`` asks it for the same
lag verdicts routing acts on.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from ..core.balance import Decision, Policy, RouterMetrics, pick_replica
from ..core.causal import CausalToken
from ..core.consistency import Consistency, ReadRequirement, parse_consistency, requirement
from ..core.replicas import Ban, BanPolicy, ReplicaState, manual_ban
from ..core.topology import replica_name
from ..errors import MlscaleError, RoutingError
from .samples import ReplicaSample
from .stats import BanInfo

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["EVENTUAL", "ReadOptions", "ReplicaBalancer", "Seen", "SeenPositions"]


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """A read's guarantee: consistency level, causal token, staleness bound (ms, bytes)."""

    consistency: Consistency = Consistency.EVENTUAL
    token: CausalToken | None = None
    max_lag_ms: float | None = None
    max_lag_bytes: int | None = None

    @classmethod
    def of(
        cls,
        consistency: Consistency | str | None,
        token: CausalToken | str | None,
        max_lag_ms: float | None = None,
        max_lag_bytes: int | None = None,
    ) -> ReadOptions:
        """Options from what a caller passed (a token may be its string form); a
        :class:`RoutingError` for an unknown level or a negative bound, before anything
        is sent."""
        if consistency is None and token is None and max_lag_ms is None and max_lag_bytes is None:
            return EVENTUAL
        if isinstance(token, str):
            try:
                token = CausalToken.parse(token)
            except ValueError as exc:
                raise MlscaleError(f"bad causal token: {exc}") from None
        for name, bound in (("max_lag_ms", max_lag_ms), ("max_lag_bytes", max_lag_bytes)):
            if bound is not None and bound < 0:
                raise RoutingError(f"{name} must be >= 0, got {bound}")
        level = parse_consistency(consistency) if consistency is not None else None
        if level is None:
            level = Consistency.READ_YOUR_WRITES if token else Consistency.EVENTUAL
        return cls(level, token, max_lag_ms, max_lag_bytes)


EVENTUAL = ReadOptions()


class Seen(Protocol):
    """What a caller has already read, per shard group (a monotonic session): reads
    must not go older. Positions are WAL bytes."""

    def seen_lsn(self, group: str) -> int | None:
        """The newest position read in ``group`` (None: nothing to keep up with)."""

    def saw(self, group: str, lsn: int) -> None:
        """A read in ``group`` saw data as of ``lsn``."""


def ban_policy(config: ClusterConfig) -> BanPolicy:
    """When replicas leave and rejoin the rotation, by ``config``'s policies."""
    p = config.policies
    return BanPolicy(
        error_backoff_s=p.error_backoff_s,
        max_backoff_s=max(60.0, p.error_backoff_s),
        lag_ban_bytes=p.max_replica_lag_bytes,
        lag_ban_ms=p.max_replica_lag_ms,
    )


class ReplicaBalancer:
    """Bans, in-flight counts, metrics and turns for one cluster's replica reads."""

    def __init__(self, config: ClusterConfig) -> None:
        p = config.policies
        self.policy = Policy(p.balance)
        self.wait_ms = p.read_wait_ms
        self.primary_reads = p.primary_reads
        self.ban_policy = ban_policy(config)
        self.metrics = RouterMetrics()
        self.weights = {
            replica_name(g.name, i): r.weight
            for g in config.shard_groups
            for i, r in enumerate(g.replicas, start=1)
        }
        self.bans: dict[str, Ban] = {}
        self.failures: Counter[str] = Counter()
        self.outstanding: Counter[str] = Counter()
        # EVENTUAL reads may take quick_pick: round robin with equal weights.
        self.quick = self.policy is Policy.ROUND_ROBIN and all(
            w == 1.0 for w in self.weights.values()
        )
        self._lock = threading.Lock()
        self._rng = random.Random()
        # Bans change -> version bump; available replicas per group, per
        # (monitor round, bans version): the fast path of an EVENTUAL read.
        self._bans_version = 0
        self._catalog_bans: Mapping[str, str] = {}
        # Bans (reason) and unbans (None) made here that the catalog does not show yet.
        self._pending: dict[str, str | None] = {}
        self._available: dict[str, tuple[int, int, list[str]]] = {}
        # EVENTUAL reads by node from quick_pick: one dict per thread, summed by snapshot.
        self._local = threading.local()
        self._quick_counts: dict[int, dict[str, int]] = {}  # by thread ident
        self._quick_folded: Counter[str] = Counter()  # of threads that have ended
        self._turns = itertools.count()  # whose turn it is; next() on it is atomic

    # -- states and decisions ----------------------------------------------------------

    def states(
        self, group: str, names: list[str], samples: Mapping[str, ReplicaSample]
    ) -> list[ReplicaState]:
        """The group's replicas as the balancer sees them, lag bans refreshed."""
        now = time.monotonic()
        out = []
        with self._lock:
            for name in names:
                s = samples.get(name)
                state = ReplicaState(
                    name=name,
                    group=group,
                    up=s.up if s is not None else True,
                    replay_lsn=s.replay_lsn if s else None,
                    receive_lsn=s.receive_lsn if s else None,
                    lag_bytes=s.lag_bytes if s else None,
                    lag_ms=s.staleness_ms if s else None,
                    system_identifier=s.system_identifier if s else None,
                    timeline=s.timeline if s else None,
                    outstanding=self.outstanding[name],
                    weight=self.weights.get(name, 1.0),
                    ban=self.bans.get(name),
                )
                ban = self.ban_policy.evaluate_lag(state, now)
                if ban != self.bans.get(name):
                    self._bans_version += 1
                if ban is None:
                    self.bans.pop(name, None)
                else:
                    self.bans[name] = ban
                out.append(replace(state, ban=ban))
        return self.ban_policy.effective(out, now)

    def quick_pick(
        self,
        group: str,
        names: list[str],
        samples: Callable[[], Mapping[str, ReplicaSample]],
        round_: int,
    ) -> str | None:
        """The replica for an EVENTUAL read under round robin, or None if none is
        available: what :meth:`decide` would answer, without re-deciding per read.

        The list of available replicas is rebuilt (from ``samples()``) once per
        monitor round ``round_`` or ban change, so a hot read path pays a turn
        counter, not a balancing decision. Its reads are counted apart and
        merged into the metrics by :meth:`snapshot`.
        """
        cached = self._available.get(group)
        if cached is None or cached[0] != round_ or cached[1] != self._bans_version:
            states = self.states(group, names, samples())
            cached = (round_, self._bans_version, [s.name for s in states if s.available])
            self._available[group] = cached
        available = cached[2]
        if not available:
            return None
        name = available[next(self._turns) % len(available)]
        # Each thread counts into its own dict: no lock on the hot path, no lost counts.
        counts: dict[str, int] | None = getattr(self._local, "reads", None)
        if counts is None:
            counts = self._local.reads = self._thread_counts()
        counts[name] = counts.get(name, 0) + 1
        return name

    def _thread_counts(self) -> dict[str, int]:
        """A new counting dict for the calling thread; the dicts of threads that have
        ended are folded into one total first, so they do not pile up."""
        counts: dict[str, int] = {}
        with self._lock:
            self._fold_ended()
            self._quick_counts[threading.get_ident()] = counts
        return counts

    def _fold_ended(self) -> None:
        """Fold the counts of threads no longer alive (call with the lock held).

        A new thread may reuse an ended one's ident: its dict replaces the old one
        only after the old one was folded here.
        """
        alive = {t.ident for t in threading.enumerate()} - {threading.get_ident()}
        for ident in [i for i in self._quick_counts if i not in alive]:
            self._quick_folded.update(self._quick_counts.pop(ident))

    def requirement(
        self,
        options: ReadOptions,
        group: str,
        seen_lsn: int | None,
        switch_points: Mapping[int, int] | None = None,
    ) -> ReadRequirement:
        """What a read with ``options`` needs in ``group``; a :class:`RoutingError`
        (before anything is sent) for options that ask nothing coherent, such as
        bounded staleness without a bound."""
        try:
            return requirement(
                options.consistency,
                group=group,
                token=options.token,
                seen_lsn=seen_lsn,
                max_lag_ms=options.max_lag_ms,
                max_lag_bytes=options.max_lag_bytes,
                wait_ms=self.wait_ms,
                switch_points=switch_points,
            )
        except ValueError as exc:
            raise RoutingError(f"{exc}; nothing was sent") from None

    def decide(self, states: list[ReplicaState], req: ReadRequirement) -> Decision:
        return pick_replica(
            states,
            req,
            self.policy,
            turn=next(self._turns),
            rng=self._rng,
            primary_reads=self.primary_reads,
        )

    def record(self, decision: Decision, consistency: Consistency, primary: str) -> None:
        with self._lock:
            self.metrics.record(decision, consistency, primary=primary)

    def record_wait(self, waited_ms: float, replayed: bool) -> None:
        with self._lock:
            self.metrics.record_wait(waited_ms, replayed=replayed)

    def record_retry(self) -> None:
        with self._lock:
            self.metrics.record_retry()

    # -- health ---------------------------------------------------------------------------------

    def begin(self, node: str) -> None:
        if self.policy is Policy.LEAST_OUTSTANDING:  # the only reader of these counts
            with self._lock:
                self.outstanding[node] += 1

    def end(self, node: str, *, failed: str | None = None) -> None:
        """A request on ``node`` ended; ``failed`` is the reason if the node failed it."""
        if (
            failed is None
            and node not in self.failures
            and self.policy is not Policy.LEAST_OUTSTANDING
        ):
            return  # the hot path: nothing to record
        with self._lock:
            if self.policy is Policy.LEAST_OUTSTANDING:
                self.outstanding[node] -= 1
            if failed is None:
                self.failures.pop(node, None)
                return
            self.failures[node] += 1
            state = ReplicaState(name=node, group="", ban=self.bans.get(node))
            self.bans[node] = self.ban_policy.after_error(
                state, time.monotonic(), failed, self.failures[node]
            )
            self._bans_version += 1

    def sync_manual(self, catalog_bans: Mapping[str, str]) -> None:
        """Make the manual bans those of the catalog (cheap when they did not change).

        A ban or unban made in this process counts until the catalog shows it: a
        snapshot read before it was written must not undo it."""
        if catalog_bans is self._catalog_bans and not self._pending:
            return
        now = time.monotonic()
        with self._lock:
            for node, want in list(self._pending.items()):
                if catalog_bans.get(node) == want:  # the catalog caught up
                    del self._pending[node]
            wanted = {**catalog_bans, **self._pending}
            for node, ban in list(self.bans.items()):
                if ban.manual and wanted.get(node) is None:
                    del self.bans[node]
            for node, reason in wanted.items():
                current = self.bans.get(node)
                if reason is not None and (
                    current is None or not current.manual or current.reason != reason
                ):
                    self.bans[node] = manual_ban(reason, now)
            self._catalog_bans = catalog_bans
            self._bans_version += 1

    def ban(self, node: str, reason: str) -> None:
        """Ban ``node`` by hand until :meth:`unban` (never lifted automatically)."""
        with self._lock:
            self.bans[node] = manual_ban(reason, time.monotonic())
            self._pending[node] = reason
            self._bans_version += 1

    def unban(self, node: str) -> None:
        with self._lock:
            self.bans.pop(node, None)
            self.failures.pop(node, None)
            self._pending[node] = None
            self._bans_version += 1

    def members_changed(self) -> None:
        """A group's replicas changed (a failover): no cached choice outlives it."""
        with self._lock:
            self._available = {}
            self._bans_version += 1

    def after_fork(self) -> None:
        """In a forked child: a new lock, no requests in flight, no cached choices."""
        self._lock = threading.Lock()
        self.outstanding.clear()
        self._available = {}

    def bans_now(self) -> dict[str, BanInfo]:
        """Current bans by node: kind, reason, seconds left (None: until lifted)."""
        now = time.monotonic()
        with self._lock:
            return {
                node: BanInfo(
                    ban.kind.value,
                    ban.reason,
                    None if ban.until is None else max(0.0, ban.until - now),
                )
                for node, ban in self.bans.items()
                if not ban.expired(now)
            }

    def metrics_now(self) -> tuple[RouterMetrics, dict[str, int]]:
        """A copy of the read counters (quick-path reads folded in), and requests in
        flight by node."""
        with self._lock:
            quick: Counter[str] = Counter(self._quick_folded)
            for counts in self._quick_counts.values():
                quick.update(dict(counts))  # a copy: its thread may be counting meanwhile
            m = self.metrics
            metrics = replace(
                m,
                reads_by_node=m.reads_by_node + quick,
                reads_by_consistency=m.reads_by_consistency
                + Counter({Consistency.EVENTUAL.value: quick.total()}),
                reads_by_node_consistency=m.reads_by_node_consistency
                + Counter({(node, Consistency.EVENTUAL.value): n for node, n in quick.items()}),
                fallbacks_by_cause=Counter(m.fallbacks_by_cause),
                refusals_by_cause=Counter(m.refusals_by_cause),
            )
            return metrics, dict(self.outstanding)


class SeenPositions:
    """A :class:`Seen` that remembers the newest position read per group."""

    def __init__(self) -> None:
        self.by_group: dict[str, int] = {}

    def seen_lsn(self, group: str) -> int | None:
        return self.by_group.get(group)

    def saw(self, group: str, lsn: int) -> None:
        if lsn > self.by_group.get(group, -1):
            self.by_group[group] = lsn
