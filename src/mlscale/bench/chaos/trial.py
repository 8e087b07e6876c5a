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

:func:`run_trials` runs several clients through the same fault at once (each with its
own writers, ledger and ids, one result each): one fault serves every client, which
keeps trials of the slow scenarios (a whole node lost: Patroni's ttl, 20 s at least)
affordable in the test suite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import httpx
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

__all__ = [
    "SCENARIOS",
    "HaGroup",
    "Scenario",
    "TrialPlan",
    "TrialResult",
    "run_trial",
    "run_trials",
]

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
    # node_freeze: continue the node once the new leader is up ("at_takeover"), or only
    # once every client has recovered from it or ``freeze_hold_s`` passed, plus
    # ``after_takeover_s`` ("after_recovery": shows which writers hung on the frozen
    # node's sockets, :attr:`TrialResult.writers_hung_while_frozen`).
    resume: Literal["at_takeover", "after_recovery"] = "at_takeover"
    # "after_recovery": the longest the node stays frozen after the takeover waiting for
    # the clients to recover (one whose writers all wait on its sockets never does).
    freeze_hold_s: float = 5.0


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

    def set_sync(self, sync: str, timeout_s: float = 60.0) -> HaGroup:
        """Switch the scope's replication mode (``off``, ``on``, ``strict``) through
        Patroni's dynamic configuration (``PATCH /config``) and wait until the leader
        runs with it (``synchronous_standby_names`` empty exactly when ``off``); this
        group as it is now. Saves a second cluster for asynchronous trials."""
        if sync not in ("off", "on", "strict"):
            raise ValueError(f"sync must be off, on or strict, not {sync!r}")
        body = {"synchronous_mode": sync != "off", "synchronous_mode_strict": sync == "strict"}
        errors = []
        for url in self.endpoints:
            try:
                resp = httpx.patch(f"{url}/config", json=body, auth=self.rest_auth, timeout=5.0)
                resp.raise_for_status()
                break
            except httpx.HTTPError as exc:
                errors.append(f"{url}: {type(exc).__name__}")
        else:
            raise PatroniError("PATCH /config failed everywhere: " + "; ".join(errors))
        group = replace(self, sync=sync)
        deadline = time.monotonic() + timeout_s
        while True:
            leader = _leader_now(group, timeout_s)
            with group.connect(leader, autocommit=True) as conn:
                row = conn.execute("SHOW synchronous_standby_names").fetchone()
            if (row is not None and row[0] == "") == (sync == "off"):
                group.settle(timeout_s)
                return group
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.scope} did not switch to sync {sync} in {timeout_s} s")
            time.sleep(0.2)

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
    """One trial: what happened (``switch``) and its counts (``account``).

    ``writers_stuck``: writer threads still blocked when asked to stop;
    ``writers_hung_while_frozen`` (node_freeze held until recovery, else None): writers
    that finished no write between the takeover and the frozen node's continuation.
    """

    scenario: str
    client: str
    index: int
    sync: str
    switch: Switch
    account: TrialAccount
    rejoin_confirmed: bool | None
    writers_stuck: int = 0
    notes: tuple[str, ...] = field(default=())
    writers_hung_while_frozen: int | None = None

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
    with make_client(view) as client:
        return run_trials(group, [client], scenario, index, plan, view=view)[0]


def _recovered(pools: Sequence[WriterPool], todo: set[int], since: float, old_port: int,
               timeout_s: float) -> set[int]:  # fmt: skip
    """Wait up to ``timeout_s`` for each pool in ``todo`` (indexes) to have an ack of a
    write sent after ``since`` by a server other than ``old_port``; those that did."""
    deadline = time.monotonic() + timeout_s
    done: set[int] = set()
    while True:
        for i in todo - done:
            if any(
                w.outcome == "acked" and w.sent_at > since and w.server_port != old_port
                for w in pools[i].ledger.writes()
            ):
                done.add(i)
        if done == todo or time.monotonic() >= deadline:
            return done
        time.sleep(0.05)


def _hung(ledger: Ledger, writers: int, since: float, until: float) -> int:
    """Writers of ``ledger`` that finished no write between ``since`` and ``until``
    (wall clock): blocked all along, e.g. on a frozen server's socket."""
    busy = {w.writer for w in ledger.writes() if since < w.done_at <= until}
    return writers - len(busy)


def run_trials(
    group: HaGroup,
    clients: Sequence[LedgerClient],
    scenario: Scenario,
    index: int,
    plan: TrialPlan | None = None,
    *,
    view: PatroniView | None = None,
) -> list[TrialResult]:
    """Run trial number ``index`` of ``scenario`` with every client of ``clients``
    writing at once (``plan.writers`` each, each client its own ledger and ids): one
    fault, one result per client, in order. ``view``: the settled view, if the caller
    has just waited for it."""
    plan = plan or TrialPlan()
    if view is None:
        view = group.settle(plan.settle_timeout_s)
    leader = view.leader
    if leader is None or leader.timeline is None:
        raise RuntimeError(f"{group.scope}: no leader with a timeline: {view.to_dict()}")
    old, old_tl = leader.name, leader.timeline
    old_port = group.members[old][1]
    lo = index * ID_SPAN
    span = ID_SPAN // max(1, len(clients))
    ranges = [(lo + j * span, lo + (j + 1) * span) for j in range(len(clients))]
    ledgers = [Ledger() for _ in clients]
    notes: list[str] = []
    rest = {name: url for name, (_, _, url) in group.members.items()}
    stuck = [0] * len(clients)
    hung: list[int | None] = [None] * len(clients)
    hold = scenario == "node_freeze" and plan.resume == "after_recovery"
    with Faults(group.local) as faults:
        pools = [
            WriterPool(c, ledger, writers=plan.writers, first_id=r[0])
            for c, ledger, r in zip(clients, ledgers, ranges, strict=True)
        ]
        for p in pools:
            p.start()
        try:
            for c, p in zip(clients, pools, strict=True):
                if not p.wait_acks(plan.writers, plan.warmup_s + 10.0):
                    notes.append(f"{c.name}: writers had fewer acks than writers before the fault")
            time.sleep(plan.warmup_s)
            with Observer(rest, old, old_tl) as observer:
                fault_at = time.time()
                asker = _inject(scenario, group, faults, old, notes)
                took_over = observer.took_over.wait(plan.takeover_timeout_s)
                if scenario == "node_freeze" and not hold:
                    faults.resume(old)
                elif scenario == "node_kill":
                    faults.restart(old)
                if not took_over:
                    notes.append(f"no new leader within {plan.takeover_timeout_s:.0f} s")
                since = observer.takeover_seen_at or fault_at
                todo = set(range(len(pools)))
                first_wait = plan.freeze_hold_s if hold else plan.recovery_timeout_s
                done = _recovered(pools, todo, since, old_port, first_wait)
                if hold:
                    # Still frozen: a client whose writers all wait on the frozen
                    # node's sockets has not recovered; it is given its time again
                    # once the node is continued.
                    time.sleep(plan.after_takeover_s)
                    resumed_at = time.time()
                    hung = [_hung(ledger, plan.writers, since, resumed_at) for ledger in ledgers]
                    faults.resume(old)
                    done |= _recovered(pools, todo - done, since, old_port,
                                       plan.recovery_timeout_s)  # fmt: skip
                for i in sorted(todo - done):
                    notes.append(
                        f"{clients[i].name}: no ack within {plan.recovery_timeout_s:.0f} s after "
                        "the takeover of a write sent after it"
                    )
                time.sleep(plan.after_takeover_s)
                ended = [p.stop() for p in pools]
                if asker is not None:
                    asker.join(60.0)
                if not observer.rejoined.wait(plan.rejoin_timeout_s):
                    notes.append(f"{old} not streaming again within {plan.rejoin_timeout_s:.0f} s")
        finally:
            for p in pools:
                p.stop(timeout_s=5.0)
        for i, p in enumerate(pools):
            stuck[i] = ended[i][1]
            if p.errors:
                notes.append(f"{clients[i].name}: writer errors: " + "; ".join(p.errors[:3]))
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
    out = []
    for i, client in enumerate(clients):
        present = _present(group, *ranges[i])
        counts = account(ledgers[i].writes(), present, switch, ended[i][0])
        out.append(TrialResult(scenario, client.name, index, group.sync, switch, counts,
                               confirmed, stuck[i], tuple(notes), hung[i]))  # fmt: skip
    return out
