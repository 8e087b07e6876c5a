"""One chaos trial: writers keep a ledger while a fault hits a group's leader; then the
ledger is accounted against the rows found on the new leader.

A trial, on a settled scope (a running leader, every other member streaming on its
timeline, a sync standby in synchronous mode):

1. writers start through the client and run ``warmup_s``;
2. the fault hits the leader (:data:`SCENARIOS`) while an :class:`Observer` polls
   Patroni; once another member leads, a frozen node is continued and a killed one has
   its agent started again;
3. the writers go on until a write sent after the takeover is acked by a server other
   than the old leader, plus ``after_takeover_s`` (or ``recovery_timeout_s`` passes
   without one: the trial did not recover), then stop;
4. the trial waits until the old leader streams again (its rejoin, with pg_rewind),
   confirms it in its ``pg_stat_wal_receiver``, reads where the old timeline ended from
   Patroni's /history, and the ledger's ids from the new leader;
5. :func:`~.ledger.account` gives the counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from ...config import ClusterConfig
from ...core.topology import Node, Role
from ...engine.connect import connect_kwargs
from ...engine.patroni import PatroniError, PatroniView, fetch_view, handover
from ...local.cluster import LocalCluster
from ...local.ha import ha_members
from .clients import LEDGER_TABLE, LedgerClient, WriterPool, create_table
from .faults import Faults
from .ledger import Ledger, Switch, TrialAccount, account
from .observe import Observer, settle, switch_point

__all__ = ["SCENARIOS", "HaGroup", "Scenario", "TrialPlan", "TrialResult", "run_trial"]

log = logging.getLogger(__name__)

Scenario = Literal["pg_crash", "node_kill", "node_freeze", "switchover"]
SCENARIOS: tuple[Scenario, ...] = ("pg_crash", "node_kill", "node_freeze", "switchover")
# Ids of trial k are k * ID_SPAN + 0, 1, ...: trials never share an id.
ID_SPAN = 10_000_000


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """How long each phase of a trial may take (seconds) and how many writers."""

    writers: int = 4
    warmup_s: float = 2.0
    after_takeover_s: float = 3.0
    takeover_timeout_s: float = 90.0
    recovery_timeout_s: float = 30.0
    rejoin_timeout_s: float = 90.0
    settle_timeout_s: float = 180.0


@dataclass(frozen=True, slots=True)
class HaGroup:
    """One Patroni scope of a local HA cluster, as a trial needs it."""

    local: LocalCluster
    config: ClusterConfig
    scope: str
    members: dict[str, tuple[str, int, str]]  # name -> (host, port, REST URL)
    sync: str

    @classmethod
    def of(cls, local: LocalCluster, scope: str = "g0") -> HaGroup:
        config = local.config()
        members = {
            m.name: (m.host, m.port, m.rest_url) for m in ha_members(config) if m.scope == scope
        }
        if not members:
            raise ValueError(f"no Patroni scope {scope!r} in {local.root}")
        ha = config.local.ha if config.local else None
        return cls(local, config, scope, members, ha.sync if ha else "off")

    @property
    def endpoints(self) -> list[str]:
        return [url for _, _, url in self.members.values()]

    @property
    def rest_auth(self) -> tuple[str, str]:
        """The REST API's credentials (a local cluster's user and secret; never shown)."""
        return (self.config.auth.user, self.local.layout.secret.read_text().strip())

    def connect(self, name: str, **extra: Any) -> psycopg.Connection[Any]:
        host, port, _ = self.members[name]
        node = Node(
            name, Role.PRIMARY, None, host, port, self.config.auth.dbname, self.config.auth.user
        )
        return psycopg.connect(**connect_kwargs(node, self.config, connect_timeout=3), **extra)

    def settle(self, timeout_s: float = 180.0) -> PatroniView:
        return settle(self.endpoints, members=len(self.members), sync=self.sync != "off",
                      timeout_s=timeout_s)  # fmt: skip

    def prepare(self) -> None:
        """Create the ledger table on the leader."""
        view = self.settle()
        leader = view.leader
        if leader is None:
            raise RuntimeError(f"{self.scope} has no leader")
        with self.connect(leader.name, autocommit=True) as conn:
            create_table(conn)


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One trial: what happened (``switch``) and its counts (``account``)."""

    scenario: str
    client: str
    index: int
    sync: str
    switch: Switch
    account: TrialAccount
    rejoin_confirmed: bool | None
    writers_stuck: int = 0
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["switch"] = self.switch.to_dict()
        out["account"] = self.account.to_dict()
        return out


ClientFactory = Callable[[PatroniView], AbstractContextManager[LedgerClient]]


def _inject(
    scenario: Scenario, group: HaGroup, faults: Faults, old: str, notes: list[str]
) -> threading.Thread | None:
    if scenario == "pg_crash":
        faults.crash_postmaster(old)
    elif scenario == "node_kill":
        faults.kill_node(old)
    elif scenario == "node_freeze":
        faults.freeze_node(old)
    elif scenario == "switchover":
        # Patroni answers the POST only once the switchover is done; the observer times it.
        def ask() -> None:
            try:
                handover(group.endpoints, action="switchover", auth=group.rest_auth)
            except PatroniError as exc:
                notes.append(f"switchover: {exc}")

        thread = threading.Thread(target=ask, name="chaos-switchover", daemon=True)
        thread.start()
        return thread
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return None


def _leader_now(group: HaGroup, timeout_s: float = 60.0) -> str:
    """The member leading and running now (waiting up to ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            leader = fetch_view(group.endpoints, timeout=1.0).leader
            if leader is not None and leader.state == "running":
                return leader.name
        except PatroniError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{group.scope} has no running leader to count on")
        time.sleep(0.2)


def _present(group: HaGroup, lo: int, hi: int) -> set[int]:
    """Ledger ids in [lo, hi) on the member leading now."""
    leader = _leader_now(group)
    with group.connect(leader, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT id FROM {} WHERE id >= %s AND id < %s").format(
                sql.Identifier(LEDGER_TABLE)
            ),
            (lo, hi),
        ).fetchall()
    return {int(r[0]) for r in rows}


def _streaming(group: HaGroup, name: str) -> bool | None:
    """Whether ``name``'s WAL receiver streams (None if it could not be asked)."""
    try:
        with group.connect(name, autocommit=True) as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
    except psycopg.Error:
        return None
    return bool(row and row[0] == "streaming")


def run_trial(
    group: HaGroup,
    make_client: ClientFactory,
    scenario: Scenario,
    index: int,
    plan: TrialPlan | None = None,
) -> TrialResult:
    """Run one trial of ``scenario`` (number ``index``, which picks its ids) with the
    client ``make_client`` gives for the settled view; its result."""
    plan = plan or TrialPlan()
    view = group.settle(plan.settle_timeout_s)
    leader = view.leader
    if leader is None or leader.timeline is None:
        raise RuntimeError(f"{group.scope}: no leader with a timeline: {view.to_dict()}")
    old, old_tl = leader.name, leader.timeline
    old_port = group.members[old][1]
    lo, hi = index * ID_SPAN, (index + 1) * ID_SPAN
    ledger = Ledger()
    notes: list[str] = []
    rest = {name: url for name, (_, _, url) in group.members.items()}
    stuck = 0
    with make_client(view) as client, Faults(group.local) as faults:
        pool = WriterPool(client, ledger, writers=plan.writers, first_id=lo).start()
        try:
            if not pool.wait_acks(plan.writers, plan.warmup_s + 10.0):
                notes.append("writers had fewer acks than writers before the fault")
            time.sleep(plan.warmup_s)
            with Observer(rest, old, old_tl) as observer:
                fault_at = time.time()
                asker = _inject(scenario, group, faults, old, notes)
                took_over = observer.took_over.wait(plan.takeover_timeout_s)
                if scenario == "node_freeze":
                    faults.resume(old)
                elif scenario == "node_kill":
                    faults.restart(old)
                if not took_over:
                    notes.append(f"no new leader within {plan.takeover_timeout_s:.0f} s")
                since = observer.takeover_seen_at or fault_at
                if not pool.wait_acks(
                    1, plan.recovery_timeout_s, sent_after=since, not_port=old_port
                ):
                    notes.append(
                        f"no ack within {plan.recovery_timeout_s:.0f} s after the takeover "
                        "of a write sent after it"
                    )
                time.sleep(plan.after_takeover_s)
                ended_at, stuck = pool.stop()
                if asker is not None:
                    asker.join(60.0)
                if not observer.rejoined.wait(plan.rejoin_timeout_s):
                    notes.append(f"{old} not streaming again within {plan.rejoin_timeout_s:.0f} s")
        finally:
            pool.stop(timeout_s=5.0)
        if pool.errors:
            notes.append("writer errors: " + "; ".join(pool.errors[:3]))
    point = switch_point(group.endpoints, old_tl)
    switch = Switch(
        old_leader=old,
        old_port=old_port,
        new_leader=observer.new_leader,
        fault_at=fault_at,
        takeover_seen_at=observer.takeover_seen_at,
        history_at=point.at if point else None,
        old_timeline=old_tl,
        switch_lsn=point.lsn if point else None,
        rejoined_at=observer.rejoined_at,
    )
    if point is None:
        notes.append(f"timeline {old_tl} not in /history")
    confirmed = _streaming(group, old) if observer.rejoined.is_set() else None
    present = _present(group, lo, hi)
    counts = account(ledger.writes(), present, switch, ended_at)
    return TrialResult(scenario, client.name, index, group.sync, switch, counts, confirmed,
                       stuck, tuple(notes))  # fmt: skip
