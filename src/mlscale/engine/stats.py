"""Typed results of a cluster's inspection calls: stats, bans, explained routes.

Dataclasses, each with ``to_dict()`` for JSON; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.balance import RouterMetrics
from ..core.route import Route
from ..core.scatter.plan import ScatterPlan
from ..core.scatter.prepare import GroupQuery

__all__ = [
    "BanInfo",
    "ClassifierStats",
    "ClusterStats",
    "FanOut",
    "LeaderInfo",
    "NodeInfo",
    "PrimaryPosition",
    "RouteExplanation",
]


@dataclass(frozen=True, slots=True)
class BanInfo:
    """Why reads avoid a replica: ``kind`` (manual, error, lag), ``reason`` in words,
    ``seconds_left`` until it expires (None: until lifted, or until caught up)."""

    kind: str
    reason: str
    seconds_left: float | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ClassifierStats:
    """Statement classifications answered from the cache (``hits``) or parsed (``misses``)."""

    hits: int
    misses: int


@dataclass(frozen=True, slots=True)
class PrimaryPosition:
    """A group's primary as last seen: its WAL position then, and how long ago (s).
    While a primary is down, replica staleness and bounded-staleness reads are
    measured against this position (nothing can commit without the primary)."""

    lsn: str
    seen_s_ago: float


def _by_node(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """``{(node, level): n}`` as ``{node: {level: n}}`` (JSON has no tuple keys)."""
    out: dict[str, dict[str, int]] = {}
    for (node, level), n in sorted(counts.items()):
        out.setdefault(node, {})[level] = n
    return out


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Where a node sits: its shard ``group`` and ``role`` (primary or replica)."""

    group: str
    role: str


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """A scope's leader (a shard group's, or the control database's) as this client
    sees it: ``leader`` takes its writes (None while a followed scope has none, or
    before its first view). ``followed``: the view is Patroni's ``/cluster``, polled by
    this client; else the config's primary (the other fields are then None).
    ``timeline``: the leader's, as Patroni gave it; ``changed_s_ago``: seconds since
    the leader last changed in this client's view (None: not since its first view);
    ``seen_s_ago``: seconds since the last view; ``error``: why the last poll got no
    answer (None if it did)."""

    leader: str | None
    followed: bool
    timeline: int | None = None
    changed_s_ago: float | None = None
    seen_s_ago: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """One cluster client's counters now.

    ``pools``: per node, psycopg_pool's counters (``pool_size``, ``requests_num``,
    ...); ``cluster``: the client's own (``pools_opened``, ``fork_resets``);
    ``reads``: routed reads by node, by consistency, fallbacks, refusals, token
    waits, retries; ``outstanding``: reads in flight by node (least-outstanding
    balancing only); ``bans``: replicas out of read rotation, by node; ``primaries``:
    each group's primary position as last seen; ``down``: nodes seen down, with why;
    ``writes``: write statements run, by the primary node they ran on (counted when
    sent, so a statement of a transaction rolled back later counts too); ``nodes``:
    every node's group and role; ``leaders``: each scope's leader as this client
    sees it (Patroni's, where it follows Patroni).
    """

    pools: dict[str, dict[str, int]]
    cluster: dict[str, int]
    classifier: ClassifierStats
    reads: RouterMetrics
    outstanding: dict[str, int] = field(default_factory=dict)
    bans: dict[str, BanInfo] = field(default_factory=dict)
    primaries: dict[str, PrimaryPosition] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    leaders: dict[str, LeaderInfo] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "primaries": {g: asdict(p) for g, p in self.primaries.items()},
            "down": self.down,
            "pools": self.pools,
            "cluster": self.cluster,
            "classifier": asdict(self.classifier),
            "reads": {
                **self.reads.snapshot(),
                "outstanding": self.outstanding,
                "reads_by_node_consistency": _by_node(self.reads.reads_by_node_consistency),
            },
            "bans": {node: ban.to_dict() for node, ban in self.bans.items()},
            "writes": self.writes,
            "nodes": {name: asdict(info) for name, info in self.nodes.items()},
            "leaders": {scope: asdict(info) for scope, info in self.leaders.items()},
        }


@dataclass(frozen=True, slots=True)
class FanOut:
    """How a cross-shard read runs: the query each group sends (restricted to the slots
    it owns in the map version used, parameters bound) and the merge ``plan``."""

    queries: tuple[GroupQuery, ...]
    plan: ScatterPlan

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [q.group for q in self.queries],
            "group_sql": {q.group: q.sql for q in self.queries},
            "plan": self.plan.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class RouteExplanation:
    """Where a call would run now, and why: its ``route`` (groups and role), the
    ``node`` a call made now would use in the first of those groups (None when it
    would be refused), the read's ``consistency``, and the ``bans`` that kept
    replicas out of the choice."""

    route: Route
    node: str | None
    reason: str
    consistency: str | None = None
    bans: dict[str, BanInfo] = field(default_factory=dict)
    fanout: FanOut | None = None  # a cross-shard read's queries and merge

    @property
    def target(self) -> str:
        """``primary`` or ``replica``: the role of :attr:`node`."""
        return self.route.target.value

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.route.to_dict(),
            "node": self.node,
            "reason": self.reason,
            "consistency": self.consistency,
            "bans": {node: ban.to_dict() for node, ban in self.bans.items()},
            "fanout": None if self.fanout is None else self.fanout.to_dict(),
        }
