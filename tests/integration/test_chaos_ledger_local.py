"""Issue 17's chaos acceptance in the suite, on one local HA cluster (one group of 3
nodes, synchronous_mode_strict, 3 etcd members) shared by the module.

- 3 trials of each scenario -- ``kill -9`` of the leader's postmaster, the leader's
  whole node killed (agent and every PostgreSQL process), the whole node frozen with
  SIGSTOP (continued only once the writers have recovered from it), a planned
  switchover -- each with three clients writing at once through the same fault, each
  keeping its own ledger: an mlscale Cluster following Patroni with writes marked
  ``idempotent=True`` (``mlscale``) and not (``mlscale_plain``), and plain libpq
  multi-host (``target_session_attrs=read-write``). After each: 0 acknowledged rows
  missing; every CommitOutcomeUnknown counted and placed (present or absent); 0 acks
  by the old primary after the takeover; the old primary streaming again (pg_rewind)
  within 60 s. Idempotent mlscale writers see no error at all through kill -9 and
  switchover. While the node is still frozen, no mlscale writer is left waiting on
  its sockets (the follower cuts the connections in flight to a node that lost the
  leadership); libpq's writers are counted waiting there until it is continued.
- 1,000 read-your-writes pairs through a ``kill -9`` failover, then every token read
  again on the new timeline: 0 stale.
- Asynchronous replication (Patroni switched to ``synchronous_mode: false``, then back):
  one frozen-node trial; the acknowledged rows lost are counted, and each one's commit
  LSN lies beyond where the promoted node's history forked.

Figures are printed (run with -s). About 7 minutes on a 2-core machine (417 s
measured), most of it the 7 whole-node trials: each waits out Patroni's ttl (20 s, the
least Patroni 4.1 accepts) and then the old primary's rewind and rejoin (10-20 s).
Marker ``chaos``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mlscale import Cluster
from mlscale.bench.chaos.clients import LedgerClient, LibpqClient, MlscaleClient
from mlscale.bench.chaos.faults import Faults
from mlscale.bench.chaos.trial import HaGroup, Scenario, TrialPlan, TrialResult, run_trials
from mlscale.bench.failover import following_cluster
from mlscale.engine.hooks import Committed
from mlscale.errors import NodeUnavailableError
from tests.integration.local_clusters import require_ha, throwaway_cluster

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# Two writers per client, three clients: 6 writers through every fault. A frozen node
# stays frozen until every client recovered or 10 s after the takeover: mlscale's
# writers are cut and ride to the new leader, which under strict synchronous mode can
# take ~8 s to accept writes on a loaded machine (two CI rehearsals saw it with 5 s).
PLAN = TrialPlan(writers=2, warmup_s=1.0, after_takeover_s=1.0, recovery_timeout_s=20.0,
                 rejoin_timeout_s=60.0, resume="after_recovery", freeze_hold_s=10.0)  # fmt: skip
TRIALS = 3
# Acceptance: the old primary streams again within this many seconds of the fault.
REJOIN_S = 60.0
RYW_PAIRS = 1_000


@pytest.fixture(scope="module")
def ha_group() -> Iterator[HaGroup]:
    require_ha()
    up = {"shards": 1, "replicas": 2, "redis": False, "ha": True, "ha_sync": "strict"}
    with throwaway_cluster("mlscale-chaos-", **up) as local:
        group = HaGroup.of(local)
        group.prepare()
        yield group


@pytest.fixture(scope="module")
def following(ha_group: HaGroup) -> Iterator[Cluster]:
    """One mlscale Cluster from the HA cluster's config (its Patroni endpoints), kept
    across every trial: it must find each new leader itself."""
    with following_cluster(ha_group) as cluster:
        yield cluster


def _clients(group: HaGroup, cluster: Cluster) -> list[LedgerClient]:
    members = [(h, p) for h, p, _ in group.members.values()]
    return [
        MlscaleClient(cluster, group.scope, idempotent=True, name="mlscale"),
        MlscaleClient(cluster, group.scope, idempotent=False, name="mlscale_plain"),
        LibpqClient(group.config, members),
    ]


def _show(r: TrialResult) -> str:
    a = r.account
    nan = float("nan")
    hung = "" if r.writers_hung_while_frozen is None else f", hung {r.writers_hung_while_frozen}"
    return (
        f"{r.scenario} #{r.index} {r.client}: {a.acked} acked, {a.lost_acked} lost, gap "
        f"{a.writer_gap_s:.2f} s, longest write {a.longest_write_s:.2f} s, takeover "
        f"{a.takeover_s or nan:.2f} s, rejoin {a.rejoin_s or nan:.2f} s, failed {a.failed}, "
        f"unknown {a.unknown} ({a.unknown_present} committed){hung}"
    )


CASES = [
    (scenario, trial)
    for scenario in ("pg_crash", "switchover", "node_kill", "node_freeze")
    for trial in range(1, TRIALS + 1)
]


@pytest.mark.parametrize(("scenario", "trial"), CASES)
def test_trial_accounts_for_every_write(
    ha_group: HaGroup, following: Cluster, scenario: Scenario, trial: int
) -> None:
    index = CASES.index((scenario, trial)) + 1
    etcd = {n: p for n, p in ha_group.local.processes().items() if n.startswith("etcd")}
    cut_before = following.stats().cluster.get("connections_interrupted", 0)

    results = run_trials(ha_group, _clients(ha_group, following), scenario, index, PLAN)

    cut = following.stats().cluster.get("connections_interrupted", 0) - cut_before
    print("\n" + "\n".join(_show(r) for r in results) + f"\nconnections cut: {cut}")
    for r in results:
        a, s = r.account, r.switch
        assert not r.notes, r.notes
        # Self-consistent: every write acked, failed or unknown; every unknown placed.
        assert a.consistent, a.to_dict()
        assert a.acked > 0 and a.acks_after_fault > 0, a.to_dict()
        # What issue 17 asks of a synchronous trial.
        assert a.lost_acked == 0, (r.client, a.lost_ids)
        assert a.old_primary_acks_after_takeover == 0, (r.client, a.old_primary_ack_ids)
        assert a.failed_present == 0, r.client  # an error before COMMIT never committed
        if r.client.startswith("mlscale") and scenario in ("pg_crash", "switchover"):
            # A write not sent waits for the next leader: nothing fails outright.
            assert a.failed == 0, (r.client, a.errors)
            if r.client == "mlscale":  # idempotent: a pause, no error at all
                assert a.unknown == 0, a.errors
        # The switch as observed: a new leader, the fork point, the rejoin.
        assert s.new_leader is not None and s.new_leader != s.old_leader
        assert s.switch_lsn is not None and s.takeover_at is not None
        assert a.takeover_s is not None and 0 < a.takeover_s < 60
        assert a.rejoin_s is not None and a.rejoin_s < REJOIN_S, a.rejoin_s
        assert r.rejoin_confirmed is True
        assert 0 < a.writer_gap_s < 60
        assert r.writers_stuck == 0
    if scenario == "node_freeze":
        by = {r.client: r for r in results}
        # While the node was still frozen (within the hold) every mlscale writer
        # finished a write after the takeover: none waited on the frozen node's
        # sockets (cut, then ridden); libpq's did until the node was continued.
        assert by["mlscale"].writers_hung_while_frozen == 0
        assert by["mlscale_plain"].writers_hung_while_frozen == 0
        assert cut > 0
        for name in ("mlscale", "mlscale_plain"):
            a = by[name].account
            assert a.takeover_s is not None
            assert a.longest_write_s < a.takeover_s + 10, (name, a.longest_write_s)
    # Nothing left frozen or dead: every agent and etcd member still runs.
    after = ha_group.local.processes()
    assert all(after[n] for n in after if n.startswith("patroni:")), after
    assert {n: after[n] for n in etcd} == etcd


def test_read_your_writes_pairs_through_a_kill_9_failover(
    ha_group: HaGroup, following: Cluster
) -> None:
    """Pairs of (idempotent write, read with its causal token) before, through and
    after a ``kill -9`` of the leader's postmaster; then every token read again on the
    new timeline, once the old leader streams again. Stale: a read missing its write."""
    view = ha_group.settle()
    assert view.leader is not None
    old = view.leader.name
    following.execute("CREATE TABLE IF NOT EXISTS ryw (id bigint PRIMARY KEY)")
    mine = threading.get_ident()
    tokens: list[object] = []

    def hook(done: Committed) -> None:
        if threading.get_ident() == mine and done.token is not None:
            tokens.append(done.token)

    following.on_commit(hook)
    pairs: list[tuple[int, object]] = []
    stale = retried = 0
    kill_at = RYW_PAIRS // 3
    started = time.monotonic()
    try:
        with Faults(ha_group.local) as faults:
            for i in range(RYW_PAIRS):
                if i == kill_at:
                    faults.crash_postmaster(old)
                tokens.clear()
                following.execute(
                    "INSERT INTO ryw VALUES (%s) ON CONFLICT DO NOTHING", (i,), idempotent=True
                )
                assert len(tokens) == 1, tokens
                token = tokens[0]
                pairs.append((i, token))
                for _attempt in range(50):
                    try:
                        found = following.fetch_value(
                            "SELECT count(*) FROM ryw WHERE id = %s", (i,), token=token
                        )
                        break
                    except NodeUnavailableError:  # no node could serve it yet: again
                        retried += 1
                        time.sleep(0.1)
                else:
                    pytest.fail(f"pair {i}: no node served its read")
                stale += found != 1
    finally:
        following.remove_commit_hook(hook)
    through = time.monotonic() - started
    now = ha_group.settle()  # the old leader streams again (pg_rewind)
    assert now.leader is not None and now.leader.name != old
    reads_before = following.stats().reads
    stale_after = sum(
        following.fetch_value("SELECT count(*) FROM ryw WHERE id = %s", (i,), token=t) != 1
        for i, t in pairs
    )
    reads_after = following.stats().reads
    leader = following.primary_node(ha_group.scope)
    by_replicas = sum(
        n - reads_before.reads_by_node.get(node, 0)
        for node, n in reads_after.reads_by_node.items()
        if node != leader
    )
    print(
        f"\nread-your-writes: {RYW_PAIRS} pairs through kill -9 of {old} at pair {kill_at} "
        f"in {through:.1f} s: {stale} stale, {retried} reads tried again; every token read "
        f"again on the new timeline: {stale_after} stale, {by_replicas} served by replicas"
    )
    assert len(pairs) == RYW_PAIRS
    assert stale == 0 and stale_after == 0


def test_async_replication_loss_is_counted_and_lies_beyond_the_fork(
    ha_group: HaGroup, following: Cluster
) -> None:
    """``--sync off``'s loss, measured: the scope switched to asynchronous replication
    (``synchronous_mode: false``), one frozen-node trial with the libpq and the
    idempotent mlscale clients, then back to strict."""
    group = ha_group.set_sync("off")
    try:
        clients = _clients(group, following)
        plan = TrialPlan(writers=3, warmup_s=1.0, after_takeover_s=1.0, recovery_timeout_s=20.0,
                         rejoin_timeout_s=60.0)  # fmt: skip
        results = run_trials(group, [clients[0], clients[2]], "node_freeze", 99, plan)
    finally:
        ha_group.set_sync("strict")
    for r in results:
        a = r.account
        print(
            f"\nsync off, node frozen, {r.client}: {a.acked} acked, {a.lost_acked} lost "
            f"({a.missing_beyond_switch} beyond the fork, {a.missing_maybe_beyond_switch} "
            f"maybe, {a.missing_before_switch} before, {a.missing_lsn_unknown} unknown), "
            f"old-primary acks after takeover {a.old_primary_acks_after_takeover}"
        )
        assert a.consistent, a.to_dict()
        assert r.switch.switch_lsn is not None
        # Every missing acknowledged row committed past what the promoted node had.
        assert a.missing_before_switch == 0, a.to_dict()
        if r.client == "libpq":  # it reads each commit's end: every loss is placed
            assert a.missing_lsn_unknown == 0, a.to_dict()
            # A writer's [lsn_low, lsn_high] windows follow one another in WAL order,
            # so the fork falls inside at most one window per writer: only those
            # commits (insert before the fork, commit record maybe after) stay unproven.
            assert a.missing_maybe_beyond_switch <= plan.writers, a.to_dict()
            assert a.missing_beyond_switch + a.missing_maybe_beyond_switch == a.lost_acked
