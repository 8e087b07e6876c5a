"""Which replica serves a read: balancing policies, and the decision itself.

``pick_replica`` is the one decision: given the replicas of a shard group as
last sampled, a :class:`~mlscale.core.consistency.ReadRequirement` and a
policy, it answers with a closed type -- :class:`UseReplica`,
:class:`UsePrimary` (with a cause and a reason in words), :class:`WaitFor`
(a replica is about to replay the token: wait, then decide again) or
:class:`NoReplica` (the primary may not serve reads and no replica can).

Bans (:mod:`mlscale.core.replicas`, re-exported here) carry a reason. When
every replica is banned or down, reads go to the primary and the decision says
so; only when the primary may not serve reads are bans other than manual ones
ignored, as PgDog does. :class:`RouterMetrics` counts what was decided.
"""

from __future__ import annotations

import enum
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .consistency import Consistency, ReadRequirement, Shortfall, ShortfallKind
from .lsn import format_lsn
from .replicas import Ban, BanKind, BanPolicy, ReplicaState, manual_ban

__all__ = [
    "STRATEGIES",
    "Ban",
    "BanKind",
    "BanPolicy",
    "Cause",
    "Decision",
    "LeastLag",
    "LeastOutstanding",
    "NoReplica",
    "Policy",
    "RandomChoice",
    "ReplicaState",
    "RoundRobin",
    "RouterMetrics",
    "Strategy",
    "UsePrimary",
    "UseReplica",
    "WaitFor",
    "choose",
    "manual_ban",
    "pick_replica",
]


class Policy(enum.StrEnum):
    """How to spread reads over the replicas fresh enough to serve them."""

    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LEAST_OUTSTANDING = "least_outstanding"
    LEAST_LAG = "least_lag"


class Strategy(Protocol):
    """Picks one of a non-empty list of candidates, all with weight > 0."""

    def choose(
        self, candidates: Sequence[ReplicaState], *, turn: int, rng: random.Random
    ) -> ReplicaState: ...


_FIB64 = 0x9E3779B97F4A7C15  # 2^64 / golden ratio


def _by_weight(candidates: Sequence[ReplicaState], x: float) -> ReplicaState:
    """The candidate whose slice of [0, total weight) holds ``x``."""
    for r in candidates:
        x -= r.weight
        if x < 0:
            return r
    return candidates[-1]


def _rotate_ties(
    candidates: Sequence[ReplicaState], key: Callable[[ReplicaState], tuple[float, ...]], turn: int
) -> ReplicaState:
    keys = [key(r) for r in candidates]
    best = min(keys)
    tied = [r for r, k in zip(candidates, keys, strict=True) if k == best]
    return tied[turn % len(tied)]


class RoundRobin:
    """Turn ``turn`` takes candidate ``turn mod n``. Unequal weights: the golden-ratio
    sequence over the weights' slices, so shares match the weights and stay interleaved."""

    def choose(
        self, candidates: Sequence[ReplicaState], *, turn: int, rng: random.Random
    ) -> ReplicaState:
        if len({r.weight for r in candidates}) == 1:
            return candidates[turn % len(candidates)]
        fraction = ((turn * _FIB64) % 2**64) / 2**64
        return _by_weight(candidates, fraction * sum(r.weight for r in candidates))


class RandomChoice:
    """A weighted draw from ``rng``."""

    def choose(
        self, candidates: Sequence[ReplicaState], *, turn: int, rng: random.Random
    ) -> ReplicaState:
        return _by_weight(candidates, rng.random() * sum(r.weight for r in candidates))


class LeastOutstanding:
    """The fewest in-flight requests per unit of weight; ties rotate with ``turn``."""

    def choose(
        self, candidates: Sequence[ReplicaState], *, turn: int, rng: random.Random
    ) -> ReplicaState:
        return _rotate_ties(candidates, lambda r: (r.outstanding / r.weight,), turn)


class LeastLag:
    """The least lag in bytes, then ms (unknown counts as worst), then least
    outstanding per weight; ties rotate with ``turn``."""

    def choose(
        self, candidates: Sequence[ReplicaState], *, turn: int, rng: random.Random
    ) -> ReplicaState:
        def key(r: ReplicaState) -> tuple[float, float, float]:
            lag_b = math.inf if r.lag_bytes is None else r.lag_bytes
            lag_ms = math.inf if r.lag_ms is None else r.lag_ms
            return (lag_b, lag_ms, r.outstanding / r.weight)

        return _rotate_ties(candidates, key, turn)


STRATEGIES: dict[Policy, Strategy] = {
    Policy.ROUND_ROBIN: RoundRobin(),
    Policy.RANDOM: RandomChoice(),
    Policy.LEAST_OUTSTANDING: LeastOutstanding(),
    Policy.LEAST_LAG: LeastLag(),
}


def choose(
    candidates: Iterable[ReplicaState], policy: Policy, *, turn: int, rng: random.Random
) -> ReplicaState | None:
    """The candidate ``policy`` picks, or None if none has weight > 0.

    Deterministic given ``turn`` (a counter the caller advances per read) and
    ``rng`` (only RANDOM draws from it).
    """
    weighted = [r for r in candidates if r.weight > 0]
    if not weighted:
        return None
    return STRATEGIES[Policy(policy)].choose(weighted, turn=turn, rng=rng)


class Cause(enum.StrEnum):
    """Why a read goes to the primary (or nowhere)."""

    STRONG = "strong"  # asked for; not a fallback
    NO_REPLICA = "no replica"  # none configured in the group
    ALL_BANNED = "all banned"  # every replica banned, down or drained
    INCOMPARABLE = "incomparable"  # token from another cluster or timeline
    NOT_REPLAYED = "not replayed"  # no replica has replayed the token or the session's mark
    TOO_STALE = "too stale"  # no replica within the staleness bound


@dataclass(frozen=True, slots=True)
class UseReplica:
    """Read on replica ``name``."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class UsePrimary:
    """Read on the group's primary."""

    cause: Cause
    reason: str


@dataclass(frozen=True, slots=True)
class WaitFor:
    """No replica has replayed ``lsn`` (bytes) yet, but ``replicas`` are about to.

    Wait up to ``timeout_ms`` for one of them, then decide again with
    ``requirement.without_wait()``: a replica if it caught up, else the primary.
    """

    lsn: int
    replicas: tuple[str, ...]
    timeout_ms: float
    reason: str


@dataclass(frozen=True, slots=True)
class NoReplica:
    """The primary may not serve reads and no replica can serve this one."""

    cause: Cause
    reason: str


Decision = UseReplica | UsePrimary | WaitFor | NoReplica

# When no replica fits, the cause reported is the first of these present.
_CAUSES = {
    ShortfallKind.NOT_REPLAYED: Cause.NOT_REPLAYED,
    ShortfallKind.TOO_STALE: Cause.TOO_STALE,
    ShortfallKind.INCOMPARABLE: Cause.INCOMPARABLE,
}


def _describe_unavailable(replicas: Sequence[ReplicaState]) -> str:
    def why(r: ReplicaState) -> str:
        if r.ban is not None:
            return f"banned ({r.ban})"
        return "down" if not r.up else "drained (weight 0)"

    listed = "; ".join(f"{r.name} {why(r)}" for r in replicas)
    if all(r.ban is not None for r in replicas):
        return f"all replicas banned: {listed}"
    return f"no replica available: {listed}"


def _describe_unfit(
    unfit: Sequence[tuple[ReplicaState, Shortfall]], req: ReadRequirement
) -> tuple[Cause, str]:
    kinds = {s.kind for _, s in unfit}
    kind = next(k for k in _CAUSES if k in kinds)
    if kind is ShortfallKind.NOT_REPLAYED and req.min_lsn is not None:
        headline = f"no replica has replayed {format_lsn(req.min_lsn)} yet"
    elif kind is ShortfallKind.TOO_STALE:
        headline = "no replica within the staleness bound"
    else:
        headline = f"no replica can compare with the token's position {req.position}"
    details = "; ".join(f"{r.name}: {s.detail}" for r, s in unfit)
    return _CAUSES[kind], f"{headline}: {details}"


def _about_to_replay(r: ReplicaState, req: ReadRequirement) -> bool:
    # WAL already received, or the replica usually replays within the wait bound.
    if req.min_lsn is None:
        return False
    received = r.receive_lsn is not None and r.receive_lsn >= req.min_lsn
    return received or (r.lag_ms is not None and r.lag_ms <= req.wait_ms)


def _not_sampled(r: ReplicaState) -> bool:
    # Up, but the monitor has not sampled it yet (a fresh process): ask it directly.
    return r.replay_lsn is None and r.system_identifier is None


def pick_replica(
    replicas: Iterable[ReplicaState],
    requirement: ReadRequirement,
    policy: Policy,
    *,
    turn: int,
    rng: random.Random,
    primary_reads: bool = True,
) -> Decision:
    """Where a read with ``requirement`` goes, among the replicas of its group.

    Bans are taken as given: run :meth:`BanPolicy.effective` first to lift
    expired ones. ``primary_reads``: whether the primary may serve reads no
    replica can (STRONG reads go there regardless); when False, every replica
    banned means non-manual bans are ignored, and nothing fit means
    :class:`NoReplica`.
    """
    req = requirement
    if req.primary_only:
        return UsePrimary(Cause.STRONG, req.reason)
    mine = [r for r in replicas if r.group == req.group]
    if not mine:
        reason = f"no replica configured in shard group {req.group}"
        return (
            UsePrimary(Cause.NO_REPLICA, reason)
            if primary_reads
            else NoReplica(Cause.NO_REPLICA, reason)
        )
    usable = [r for r in mine if r.available]
    note = ""
    if not usable:
        reason = _describe_unavailable(mine)
        if primary_reads:
            return UsePrimary(Cause.ALL_BANNED, reason)
        usable = [r for r in mine if r.up and r.weight > 0 and not (r.ban and r.ban.manual)]
        if not usable:
            return NoReplica(Cause.ALL_BANNED, reason)
        note = f" ({reason}; primary reads off, so bans other than manual are ignored)"
    fit: list[ReplicaState] = []
    unfit: list[tuple[ReplicaState, Shortfall]] = []
    for r in usable:
        shortfall = req.shortfall(r)
        if shortfall is None:
            fit.append(r)
        else:
            unfit.append((r, shortfall))
    chosen = choose(fit, policy, turn=turn, rng=rng)
    if chosen is not None:
        return UseReplica(chosen.name, f"{req.consistency} by {policy} of {len(fit)}{note}")
    if req.wait_ms > 0 and req.min_lsn is not None:
        waiting = tuple(
            r.name
            for r, s in unfit
            if (s.kind is ShortfallKind.NOT_REPLAYED and _about_to_replay(r, req))
            or _not_sampled(r)
        )
        if waiting:
            return WaitFor(
                req.min_lsn,
                waiting,
                req.wait_ms,
                f"{', '.join(waiting)} not yet at {format_lsn(req.min_lsn)}; "
                f"waiting up to {req.wait_ms:g} ms",
            )
    cause, reason = _describe_unfit(unfit, req)
    return UsePrimary(cause, reason) if primary_reads else NoReplica(cause, reason)


@dataclass(slots=True)
class RouterMetrics:
    """Counters of routed reads; the engine mutates it under its own lock.

    ``fallbacks_by_cause`` counts reads sent to the primary that asked for less
    than STRONG; ``token_wait_ms`` is the total time spent waiting, in ms.
    ``reads_by_node_consistency`` counts the same reads by (node, consistency)
    together, for metrics labelled by both (left out of :meth:`snapshot`, whose keys
    stay as they were; ``ClusterStats.to_dict`` nests it by node).
    """

    reads_by_node: Counter[str] = field(default_factory=Counter)
    reads_by_consistency: Counter[str] = field(default_factory=Counter)
    fallbacks_by_cause: Counter[str] = field(default_factory=Counter)
    refusals_by_cause: Counter[str] = field(default_factory=Counter)
    token_waits: int = 0
    token_wait_timeouts: int = 0
    token_wait_ms: float = 0.0
    retries: int = 0
    reads_by_node_consistency: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, decision: Decision, consistency: Consistency, *, primary: str) -> None:
        """Count a final decision; ``primary`` names the group's primary node."""
        if isinstance(decision, UseReplica):
            node = decision.name
        elif isinstance(decision, UsePrimary):
            node = primary
            if decision.cause is not Cause.STRONG:
                self.fallbacks_by_cause[decision.cause.value] += 1
        elif isinstance(decision, NoReplica):
            self.refusals_by_cause[decision.cause.value] += 1
            return
        else:  # a WaitFor is counted by record_wait once it ends
            return
        level = Consistency(consistency).value
        self.reads_by_node[node] += 1
        self.reads_by_consistency[level] += 1
        self.reads_by_node_consistency[node, level] += 1

    def record_wait(self, waited_ms: float, *, replayed: bool) -> None:
        """Count one wait for a token to replay, of ``waited_ms``; ``replayed``: it did."""
        self.token_waits += 1
        self.token_wait_ms += waited_ms
        if not replayed:
            self.token_wait_timeouts += 1

    def record_retry(self) -> None:
        """Count a read retried elsewhere after its node failed."""
        self.retries += 1

    def snapshot(self) -> dict[str, object]:
        """The counters as plain dicts and numbers."""
        return {
            "reads_by_node": dict(self.reads_by_node),
            "reads_by_consistency": dict(self.reads_by_consistency),
            "fallbacks_by_cause": dict(self.fallbacks_by_cause),
            "refusals_by_cause": dict(self.refusals_by_cause),
            "token_waits": self.token_waits,
            "token_wait_timeouts": self.token_wait_timeouts,
            "token_wait_ms": self.token_wait_ms,
            "retries": self.retries,
        }

    def pop(self) -> dict[str, object]:
        """The snapshot, then every counter back to zero."""
        out = self.snapshot()
        fresh = RouterMetrics()
        for name in RouterMetrics.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))
        return out
