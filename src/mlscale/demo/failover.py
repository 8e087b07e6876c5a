"""Chapter 9, failover: the leader's PostgreSQL killed under a write load, counted.

The demo's own cluster is not HA, so this chapter starts one of its own beside it
(``LocalCluster.up(shards=1, replicas=2, ha=True, ha_sync="strict")``: one shard
group of 3 nodes on Patroni, the control database's 3, 3 etcd members; about 12 s
here) and destroys it at the end, whatever happened. Without Patroni or etcd
(scripts/setup.sh installs both) the chapter is skipped and says why.

On that cluster, one trial of the chaos harness (:mod:`mlscale.bench.chaos`, the
``pg_crash`` scenario of ``mlscale bench failover``): writer threads insert
idempotent rows (``ON CONFLICT DO NOTHING``, marked ``idempotent=True``) through one
mlscale Cluster that follows Patroni, each keeping a ledger of what it was told;
the leader's postmaster gets ``kill -9`` by PID; the writers go on until a write
sent after the takeover is acknowledged by the new leader; then the ledger is
counted against the rows on the new leader. Printed: the longest time with no
acknowledged write (the writer gap), acknowledged writes, acknowledged writes
missing (0 expected), outcomes the client could not know and how they reconciled,
the new leader, and when the old primary streamed again (its agent rewinds it with
pg_rewind; whether it ran is read from the agent's log).
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bench.chaos.clients import MlscaleClient
from ..bench.chaos.trial import HaGroup, TrialPlan, TrialResult, run_trial
from ..bench.failover import following_cluster
from ..errors import ClusterError, MissingBinaryError
from ..local.binaries import find_patroni
from ..local.cluster import LocalCluster
from ..local.etcd import find_etcd
from ..local.ha import LocalHa
from ..local.osuser import resolve_service_user
from ..local.tempdirs import reachable_tempdir
from .foundation import ChapterResult, Echo, Params, Row

if TYPE_CHECKING:
    from ..config import ClusterConfig
    from ..engine.cluster_sync import Cluster

__all__ = ["HA_REPLICAS", "START_TRIES", "WRITERS", "ha_missing", "needs", "run_failover"]

log = logging.getLogger(__name__)

WRITERS = 4
START_TRIES = 2
"""Tries to start the chapter's HA cluster. A port chosen free can be taken before its
server binds it (another cluster's node restarting on it, say): a second try, in a new
directory, chooses its ports anew."""
HA_REPLICAS = 2
"""Replicas of the chapter's shard group: with one sync standby left after the crash,
commits need not wait for the old primary to rejoin (with 2 nodes they would)."""
# Patroni logs this line each time it rewinds a node (patroni/postgresql/rewind.py).
_REWIND_LINE = "running pg_rewind from"


def needs(config: ClusterConfig) -> str | None:
    """Nothing of the demo's cluster: the chapter starts an HA cluster of its own."""
    return None


def ha_missing() -> str | None:
    """Why no local HA cluster can be started here (Patroni or etcd missing), or None."""
    try:
        find_patroni()
        find_etcd()
    except MissingBinaryError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class _Timed:
    """The chapter's own cluster: how long starting (every try) and destroying it
    took, and the whole chapter (s); how many tries to start it failed."""

    start_s: float
    destroy_s: float
    chapter_s: float
    failed_starts: int = 0


def _rewinds(local: LocalCluster, node: str) -> int:
    """How many times ``node``'s Patroni agent has run pg_rewind (lines in its log)."""
    config = local.config()
    user = resolve_service_user(config.local.os_user if config.local else None)
    path = LocalHa(local.layout, user).agent(node).log_file
    try:
        return path.read_text(errors="replace").count(_REWIND_LINE)
    except OSError:
        return 0


def _trial(local: LocalCluster, params: Params) -> tuple[TrialResult, bool]:
    """One ``pg_crash`` trial on ``local``'s group g0; (its result, whether the old
    leader's agent ran pg_rewind during it)."""
    group = HaGroup.of(local)
    group.prepare()
    plan = TrialPlan(
        writers=WRITERS,
        warmup_s=params.write_s,
        after_takeover_s=params.write_s,
        recovery_timeout_s=20.0,
        rejoin_timeout_s=60.0,
        settle_timeout_s=120.0,
    )
    before = {name: _rewinds(local, name) for name in group.members}
    with following_cluster(group) as cluster:
        client = MlscaleClient(cluster, group.scope, idempotent=True, name="mlscale")
        trial = run_trial(group, lambda _view: nullcontext(client), "pg_crash", 1, plan)
    old = trial.switch.old_leader
    return trial, _rewinds(local, old) > before.get(old, 0)


def _destroy(local: LocalCluster, made: Path) -> None:
    """Stop and delete the chapter's cluster, or what a failed start left of it."""
    if local.layout.is_cluster() or local.layout.is_complete():
        local.destroy()
    shutil.rmtree(made, ignore_errors=True)


def _not_run(reason: str, how: str, echo: Echo) -> ChapterResult:
    """The chapter's result when it could not run: one row, a note, the reason."""
    echo(f"failover: skipped, {reason}")
    result = ChapterResult()
    result.metrics["failover_skipped"] = reason
    result.rows.append(Row("failover under writes", "skipped", "", how))
    result.notes.append(f"failover chapter skipped: {reason}")
    return result


def _start(echo: Echo) -> tuple[LocalCluster, list[str]]:
    """The chapter's HA cluster, started (``local.root`` exists), and why earlier tries
    failed; after ``START_TRIES`` failures the cluster returned is not running."""
    failures: list[str] = []
    for _ in range(START_TRIES):
        local = LocalCluster(reachable_tempdir("mlscale-demo-ha-"))
        echo(
            f"failover: starting an HA cluster of its own in {local.root} (Patroni + etcd, "
            f"1 shard group of {1 + HA_REPLICAS} nodes, synchronous_mode_strict) ..."
        )
        try:
            local.up(shards=1, replicas=HA_REPLICAS, redis=False, ha=True, ha_sync="strict")
            return local, failures
        except ClusterError as exc:
            # up rolled back what it started; another directory gets ports chosen anew.
            failures.append(str(exc))
            echo(f"failover: the HA cluster did not start: {exc}")
            _destroy(local, local.root)
    return local, failures


def run_failover(cluster: Cluster, params: Params, echo: Echo) -> ChapterResult:
    """Kill the leader's PostgreSQL under idempotent writers on an HA cluster made for
    the chapter; count the ledger. ``cluster`` (the demo's, not HA) is not used."""
    missing = ha_missing()
    if missing:
        return _not_run(f"no local HA cluster can run here: {missing}",
                        "needs Patroni and etcd (scripts/setup.sh)", echo)  # fmt: skip
    t0 = time.perf_counter()
    local, failures = _start(echo)
    if len(failures) == START_TRIES:
        return _not_run(f"its HA cluster did not start in {START_TRIES} tries: {failures[-1]}",
                        "its HA cluster did not start (see the notes)", echo)  # fmt: skip
    start_s = time.perf_counter() - t0
    try:
        echo(f"failover: kill -9 of g0's leader under {WRITERS} idempotent writers ...")
        trial, rewound = _trial(local, params)
    finally:
        t1 = time.perf_counter()
        _destroy(local, local.root)
        destroy_s = time.perf_counter() - t1
    timed = _Timed(start_s, destroy_s, time.perf_counter() - t0, len(failures))
    return _figures(trial, rewound, timed)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _figures(trial: TrialResult, rewound: bool, timed: _Timed) -> ChapterResult:
    a, s = trial.account, trial.switch
    result = ChapterResult()
    metrics: dict[str, Any] = {
        "failover_writers": WRITERS,
        "failover_writer_gap_s": a.writer_gap_s,
        "failover_takeover_s": a.takeover_s,
        "failover_acked": a.acked,
        "failover_acks_after_fault": a.acks_after_fault,
        "failover_lost_acked": a.lost_acked,
        "failover_failed": a.failed,
        "failover_unknown": a.unknown,
        "failover_unknown_committed": a.unknown_present,
        "failover_unknown_not_committed": a.unknown_absent,
        "failover_old_primary_acks_after_takeover": a.old_primary_acks_after_takeover,
        "failover_counts_consistent": a.consistent,
        "failover_old_leader": s.old_leader,
        "failover_new_leader": s.new_leader,
        "failover_rejoin_s": a.rejoin_s,
        "failover_rejoin_confirmed": trial.rejoin_confirmed,
        "failover_pg_rewind_ran": rewound,
        "failover_ha_start_s": timed.start_s,
        "failover_ha_destroy_s": timed.destroy_s,
        "failover_chapter_s": timed.chapter_s,
        "failover_ha_failed_starts": timed.failed_starts,
    }
    result.metrics.update(metrics)
    how = f"{WRITERS} idempotent writers, kill -9 of {s.old_leader}'s postmaster"
    rejoin_how = (
        f"from the kill until Patroni shows {s.old_leader} streaming on the new timeline"
        + ("; pg_rewind ran (agent's log)" if rewound else "; no pg_rewind in the agent's log")
    )
    result.rows += [
        Row("failover: writer gap", _seconds(a.writer_gap_s), "s",
            "longest time with no acked write, from the last ack before the kill"),
        Row("failover: Patroni takeover seen", _seconds(a.takeover_s), "s",
            "from the kill to the first poll showing a new running leader"),
        Row("failover: acked writes", str(a.acked), "rows", how),
        Row("failover: acked writes lost", str(a.lost_acked), "rows",
            "acked ids missing on the new leader"),
        Row("failover: unknown outcomes, reconciled",
            f"{a.unknown} ({a.unknown_present} committed, {a.unknown_absent} not)", "writes",
            "CommitOutcomeUnknown, each looked up on the new leader"),
        Row("failover: errors seen by the writers", str(a.failed), "writes",
            "idempotent writes are ridden through: 0 expected"),
        Row("failover: new leader", s.new_leader or "none", "", f"was {s.old_leader}"),
        Row("failover: old primary streaming again", _seconds(a.rejoin_s), "s", rejoin_how),
        Row("failover: HA cluster start | destroy | chapter",
            f"{timed.start_s:.1f} | {timed.destroy_s:.1f} | {timed.chapter_s:.1f}", "s",
            "the chapter's own Patroni + etcd cluster (6 nodes, 3 etcd), the trial"),
    ]  # fmt: skip
    result.notes += [f"failover: {n}" for n in trial.notes]
    if timed.failed_starts:
        result.notes.append(
            f"failover: the HA cluster started at try {timed.failed_starts + 1}; the time "
            "to start counts every try"
        )
    if a.lost_acked:
        result.notes.append(f"failover: {a.lost_acked} acknowledged writes lost: that is a bug")
    if not a.consistent:
        result.notes.append("failover: the ledger's counts do not add up: that is a bug")
    if trial.rejoin_confirmed is False:
        result.notes.append(f"failover: {s.old_leader}'s WAL receiver is not streaming")
    return result
