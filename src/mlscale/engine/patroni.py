"""Patroni's REST API: a scope's members as Patroni sees them, its failover history,
and planned switchovers / manual failovers.

Patroni's view (``GET /cluster``) is the truth about who leads a scope: only the
member holding the leader key in the DCS may take writes. Parsing is kept apart
from I/O (:func:`parse_cluster`, :func:`parse_history` are pure) so a client that
follows Patroni (issue 17, item 2) can reuse it with its own transport.

Endpoints used (Patroni 4.x): ``GET /cluster``, ``GET /history``, ``POST /switchover``
with ``{"leader": ..., "candidate": ...}`` (``candidate`` optional), ``POST /failover``
with ``{"candidate": ...}``. POSTs need the REST API's basic-auth credentials when
it has them (a local HA cluster's: its user and secret).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ClusterError

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = [
    "FailoverEvent",
    "HandoverResult",
    "PatroniError",
    "PatroniMember",
    "PatroniView",
    "ScopeStatus",
    "fetch_history",
    "fetch_view",
    "handover",
    "inspect_scope",
    "inspect_scopes",
    "parse_cluster",
    "parse_history",
    "scope_endpoints",
]

# One member that does not answer must not stall the caller: try the next one.
DEFAULT_TIMEOUT_S = 2.0


class PatroniError(ClusterError):
    """Patroni's REST API could not be reached or refused the request."""


@dataclass(frozen=True, slots=True)
class PatroniMember:
    """One member of a scope as Patroni reports it.

    ``role``: ``leader``, ``sync_standby``, ``quorum_standby``, ``replica`` or
    ``standby_leader``. ``state``: ``running``, ``streaming``, ``stopped``,
    ``starting``, ``creating replica``, ... ``lag_bytes``: how far its replay is
    behind the leader's last known WAL position (None for the leader, or unknown).
    """

    name: str
    role: str
    state: str
    api_url: str | None
    host: str | None
    port: int | None
    timeline: int | None
    lag_bytes: int | None
    receive_lag_bytes: int | None = None
    lsn: str | None = None

    @property
    def is_leader(self) -> bool:
        return self.role in ("leader", "standby_leader")

    @property
    def is_sync(self) -> bool:
        return self.role in ("sync_standby", "quorum_standby")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PatroniView:
    """A scope (one Patroni cluster) as one member's REST API described it."""

    scope: str
    members: tuple[PatroniMember, ...]
    source: str  # the endpoint that answered
    paused: bool = False

    @property
    def leader(self) -> PatroniMember | None:
        """The member holding the leader key, if any (None during an election)."""
        return next((m for m in self.members if m.is_leader), None)

    def member(self, name: str) -> PatroniMember | None:
        return next((m for m in self.members if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        leader = self.leader
        return {
            "scope": self.scope,
            "leader": leader.name if leader else None,
            "paused": self.paused,
            "source": self.source,
            "members": [m.to_dict() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """One line of a scope's history: the timeline that ended at ``lsn`` and why."""

    timeline: int
    lsn: int
    reason: str
    at: str | None
    new_leader: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HandoverResult:
    """What a switchover or failover did: who led before and now, and how long it took
    from the request until the new leader was running (seconds)."""

    scope: str
    action: str
    old_leader: str | None
    new_leader: str
    seconds: float
    message: str = ""
    view: PatroniView | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "view"}
        out["view"] = self.view.to_dict() if self.view else None
        return out


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_cluster(doc: dict[str, Any], source: str) -> PatroniView:
    """A :class:`PatroniView` from the JSON of ``GET /cluster``."""
    members = []
    for m in doc.get("members") or []:
        lag = m.get("replay_lag", m.get("lag"))
        members.append(
            PatroniMember(
                name=str(m.get("name")),
                role=str(m.get("role", "")),
                state=str(m.get("state", "")),
                api_url=m.get("api_url"),
                host=m.get("host"),
                port=_int_or_none(m.get("port")),
                timeline=_int_or_none(m.get("timeline")),
                lag_bytes=_int_or_none(lag),
                receive_lag_bytes=_int_or_none(m.get("receive_lag")),
                lsn=m.get("replay_lsn") or m.get("lsn"),
            )
        )
    return PatroniView(
        scope=str(doc.get("scope", "")),
        members=tuple(members),
        source=source,
        paused=bool(doc.get("pause", False)),
    )


def parse_history(doc: object) -> list[FailoverEvent]:
    """The events of ``GET /history`` (lists of timeline, lsn, reason, time, leader)."""
    out = []
    for line in doc if isinstance(doc, list) else []:
        if not isinstance(line, list) or len(line) < 3:
            continue
        out.append(
            FailoverEvent(
                timeline=int(line[0]),
                lsn=int(line[1]),
                reason=str(line[2]),
                at=str(line[3]) if len(line) > 3 and line[3] is not None else None,
                new_leader=str(line[4]) if len(line) > 4 and line[4] is not None else None,
            )
        )
    return out


def _root(url: str) -> str:
    """``scheme://host:port`` of a REST URL."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _get(endpoints: Sequence[str], path: str, timeout: float) -> tuple[object, str]:
    """The JSON of ``GET path`` from the first of ``endpoints`` that answers."""
    errors = []
    for endpoint in endpoints:
        try:
            resp = httpx.get(endpoint + path, timeout=timeout)
            resp.raise_for_status()
            return resp.json(), endpoint
        except (httpx.HTTPError, ValueError) as exc:
            errors.append(f"{endpoint}: {type(exc).__name__}: {exc}")
    raise PatroniError(f"no Patroni REST endpoint answered {path}: " + "; ".join(errors))


def fetch_view(endpoints: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> PatroniView:
    """The scope as the first answering member of ``endpoints`` sees it."""
    doc, source = _get(endpoints, "/cluster", timeout)
    if not isinstance(doc, dict):
        raise PatroniError(f"{source}/cluster did not return a JSON object")
    return parse_cluster(doc, source)


def fetch_history(
    endpoints: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S
) -> list[FailoverEvent]:
    """The scope's failover and switchover history, oldest first."""
    doc, _ = _get(endpoints, "/history", timeout)
    return parse_history(doc)


def handover(
    endpoints: Sequence[str],
    *,
    action: str,
    candidate: str | None = None,
    auth: tuple[str, str] | None = None,
    wait_s: float = 60.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> HandoverResult:
    """A planned switchover (``action="switchover"``, to ``candidate`` or Patroni's
    choice) or a manual failover (``action="failover"``, to ``candidate``), then wait
    up to ``wait_s`` seconds until a new leader is running; what happened.

    The request goes to the current leader's REST API when it answers, else to any
    member (a failover is for when the leader is gone).
    """
    if action not in ("switchover", "failover"):
        raise ValueError(f"action must be switchover or failover, not {action!r}")
    if action == "failover" and not candidate:
        raise PatroniError("a failover needs a candidate (--to NODE)")
    before = fetch_view(endpoints, timeout)
    old = before.leader
    if action == "switchover" and old is None:
        raise PatroniError(
            f"scope {before.scope} has no leader now; a switchover needs one "
            "(use failover --to NODE)"
        )
    if candidate is not None:
        target = before.member(candidate)
        if target is None:
            known = ", ".join(m.name for m in before.members)
            raise PatroniError(f"{candidate!r} is not a member of {before.scope}; members: {known}")
        if target.is_leader:
            raise PatroniError(f"{candidate} already leads {before.scope}")
    body: dict[str, str] = {}
    if old is not None:
        body["leader"] = old.name
    if candidate is not None:
        body["candidate"] = candidate
    # api_url is the member's status page (``http://host:port/patroni``): keep its root.
    first = [_root(old.api_url)] if old is not None and old.api_url else []
    targets = first + [e for e in endpoints if e not in first]
    started = time.monotonic()
    message = ""
    last_error = ""
    for endpoint in targets:
        try:
            # Patroni answers once the operation is done or has failed (it polls for up
            # to about loop_wait + a few seconds itself); allow for that.
            resp = httpx.post(f"{endpoint}/{action}", json=body, auth=auth, timeout=timeout + 30.0)
        except httpx.HTTPError as exc:
            last_error = f"{endpoint}: {type(exc).__name__}: {exc}"
            continue
        message = resp.text.strip()
        if resp.status_code == 401:
            raise PatroniError(f"{endpoint} refused the {action}: wrong REST API credentials")
        if resp.status_code not in (200, 202, 503):
            raise PatroniError(f"{action} of {before.scope} refused by {endpoint}: {message}")
        break
    else:
        raise PatroniError(f"no Patroni REST endpoint took the {action}: {last_error}")
    deadline = started + wait_s
    while True:
        try:
            view = fetch_view(endpoints, timeout)
        except PatroniError:
            view = None
        leader = view.leader if view else None
        moved = leader is not None and (old is None or leader.name != old.name)
        if (
            view is not None
            and leader is not None
            and moved
            and leader.state == "running"
            and (candidate is None or leader.name == candidate)
        ):
            return HandoverResult(
                scope=view.scope,
                action=action,
                old_leader=old.name if old else None,
                new_leader=leader.name,
                seconds=time.monotonic() - started,
                message=message,
                view=view,
            )
        if time.monotonic() > deadline:
            now = leader.name if leader else "nobody"
            raise PatroniError(
                f"{action} of {before.scope} did not complete within {wait_s:.0f} s "
                f"(Patroni said: {message or 'nothing'}); {now} leads now"
            )
        time.sleep(0.1)


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """One scope now: Patroni's view (None if no member answered, with ``error``) and
    its last failover or switchover (None if it never had one)."""

    scope: str
    view: PatroniView | None
    last_failover: FailoverEvent | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "leader": self.view.leader.name if self.view and self.view.leader else None,
            "members": [m.to_dict() for m in self.view.members] if self.view else [],
            "last_failover": self.last_failover.to_dict() if self.last_failover else None,
            "error": self.error,
        }


def scope_endpoints(config: ClusterConfig) -> dict[str, list[str]]:
    """The Patroni REST endpoints of each scope ``config`` names (``control`` and the
    shard groups that have ``patroni``), in config order."""
    out: dict[str, list[str]] = {}
    if config.control.patroni:
        out["control"] = list(config.control.patroni)
    for group in config.shard_groups:
        if group.patroni:
            out[group.name] = list(group.patroni)
    return out


def inspect_scope(scope: str, endpoints: Sequence[str], timeout: float = 1.0) -> ScopeStatus:
    """``scope`` as the first answering member sees it, with its last failover."""
    try:
        view = fetch_view(endpoints, timeout)
    except PatroniError as exc:
        return ScopeStatus(scope, None, None, str(exc))
    try:
        history = fetch_history([view.source, *endpoints], timeout)
    except PatroniError:
        history = []
    return ScopeStatus(scope, view, history[-1] if history else None)


def inspect_scopes(config: ClusterConfig, timeout: float = 1.0) -> list[ScopeStatus]:
    """Every Patroni scope of ``config``, asked in parallel."""
    items = list(scope_endpoints(config).items())
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(lambda item: inspect_scope(item[0], item[1], timeout), items))
