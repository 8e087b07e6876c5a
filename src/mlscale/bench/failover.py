"""``mlscale bench failover``: writes through failovers on a local Patroni + etcd cluster,
counted by a ledger (issue 17).

One local HA cluster (``mlscale up --ha``, synchronous_mode_strict) of one shard group
of 3 nodes. Trials of each scenario -- ``kill -9`` of the leader's postmaster
(``pg_crash``), the leader's whole node killed (``node_kill``) or frozen with SIGSTOP
until a new leader is up (``node_freeze``), a planned ``switchover`` -- run in rounds;
in each trial every client writes through the same fault at once, side by side: plain
libpq multi-host (``target_session_attrs=read-write``, reconnect on error) and one
mlscale Cluster following Patroni, its writes marked ``idempotent=True``
(``mlscale``) or not (``mlscale_plain``; see :mod:`.chaos.clients`). Each client's
writers keep their own ledger of their own ids, accounted against the new leader's
rows (:mod:`.chaos.ledger`).
Then a second cluster with ``--sync off`` runs ``pg_crash`` and ``node_freeze`` trials
with the libpq client: the loss of asynchronous replication, measured, and each
missing row's commit LSN set against where the promoted node's history forked.

Gates: ``lost_acked_writes_sync`` <= 0 and ``old_primary_acks_after_takeover`` <= 0
(every synchronous trial, every client), ``writer_gap_pg_crash_p50_s`` <= 3.5 and
``writer_gap_switchover_p50_s`` <= 3.5 (the idempotent mlscale client). The mlscale
Cluster is made once from the HA cluster's config, with the group's Patroni endpoints,
and lives across every trial: it finds each new leader by following Patroni.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..engine.cluster_sync import Cluster
from ..engine.patroni import PatroniError
from ..local.cluster import LocalCluster
from .chaos.clients import LedgerClient, LibpqClient, MlscaleClient
from .chaos.trial import SCENARIOS, HaGroup, Scenario, TrialPlan, TrialResult, run_trials
from .compare import Spread, chart
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "Plan", "run", "summarise"]

GATE_GAP_S = 3.5
# ``mlscale``: writes marked idempotent=True (the gated client); ``mlscale_plain``: the
# same Cluster, writes not marked (a write in flight at the crash is CommitOutcomeUnknown).
CLIENTS = ("mlscale", "mlscale_plain", "libpq")
GATED_CLIENT = "mlscale"
ASYNC_SCENARIOS: tuple[Scenario, ...] = ("pg_crash", "node_freeze")
WRITERS = 4


@dataclass(frozen=True, slots=True)
class Plan:
    """Trials per scenario of each client (synchronous cluster; a client not in
    ``trials`` gets ``default_trials``) and per async scenario."""

    default_trials: int
    async_trials: int
    trial: TrialPlan
    trials: Mapping[str, int] = field(default_factory=dict)

    def trials_of(self, client: str) -> int:
        return self.trials.get(client, self.default_trials)

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            # Quick: 2 trials of each scenario for the gated client (its medians), 1
            # for the others and for each async scenario -- enough to see each work.
            return cls(
                default_trials=1,
                async_trials=1,
                trials={GATED_CLIENT: 2},
                trial=TrialPlan(
                    writers=WRITERS, warmup_s=1.5, after_takeover_s=2.0, recovery_timeout_s=10.0
                ),
            )
        return cls(default_trials=20, async_trials=5, trial=TrialPlan(writers=WRITERS))


@contextmanager
def following_cluster(group: HaGroup) -> Iterator[Cluster]:
    """One mlscale Cluster from the HA cluster's config (its Patroni endpoints), for
    every trial on ``group``: it must find each new leader itself."""
    # The pool logs a warning per failed reconnect while a node is down: expected
    # during a trial, and noise among the progress lines.
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        with Cluster(group.config) as cluster:
            yield cluster
    finally:
        pool_log.setLevel(level)


def _clients(group: HaGroup, cluster: Cluster) -> dict[str, LedgerClient]:
    members = [(h, p) for h, p, _ in group.members.values()]
    return {
        "libpq": LibpqClient(group.config, members),
        "mlscale": MlscaleClient(cluster, group.scope, idempotent=True, name="mlscale"),
        "mlscale_plain": MlscaleClient(
            cluster, group.scope, idempotent=False, name="mlscale_plain"
        ),
    }


def _trials(
    local: LocalCluster,
    plan: Plan,
    *,
    scenarios: Sequence[Scenario],
    clients: Sequence[str],
    trials: Mapping[str, int],
    first_index: int,
    progress: Progress,
    title: str,
    skipped: list[str],
) -> list[TrialResult]:
    """Each round, each scenario: one fault with every client that still has trials to
    run writing through it at once (each its own writers, ledger and ids), so their
    gaps are measured side by side in the same fault."""
    group = HaGroup.of(local)
    group.prepare()
    out: list[TrialResult] = []
    index = first_index
    rounds = max(trials[c] for c in clients)
    steps = rounds * len(scenarios)
    with following_cluster(group) as cluster, progress.phase(title, steps) as phase:
        made = _clients(group, cluster)
        for r in range(1, rounds + 1):
            for scenario in scenarios:
                names = [c for c in clients if r <= trials[c]]
                phase.step(f"{scenario} ({r}/{rounds}): {', '.join(names)}")
                try:
                    out += run_trials(group, [made[c] for c in names], scenario, index, plan.trial)
                except (TimeoutError, RuntimeError, PatroniError, psycopg.Error) as exc:
                    # One trial that could not run (the scope never settled, say)
                    # must not lose the others: it is reported, not counted.
                    skipped.append(f"{scenario}/{'+'.join(names)} #{index}: {exc}")
                index += 1
    return out


def _median(values: Sequence[float]) -> float | None:
    """The median, or None (written as null) when there is no value."""
    return statistics.median(values) if values else None


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    known = [v for v in values if v is not None]
    return Spread.of(known).as_dict(with_values=True) if known else None


def summarise(results: Sequence[TrialResult]) -> dict[str, Any]:
    """Per client and scenario: trials, writer gap, takeover and rejoin (seconds, as
    median/min/max/values), and the summed counts."""
    out: dict[str, Any] = {}
    for r in results:
        out.setdefault(r.client, {}).setdefault(r.scenario, []).append(r)
    summary: dict[str, Any] = {}
    for client, by_scenario in out.items():
        for scenario, rs in by_scenario.items():
            a = [r.account for r in rs]
            summary.setdefault(client, {})[scenario] = {
                "trials": len(rs),
                "writer_gap_s": _spread([x.writer_gap_s for x in a]),
                "takeover_s": _spread([x.takeover_s for x in a]),
                "rejoin_s": _spread([x.rejoin_s for x in a]),
                "recovered_trials": sum(1 for r in rs if _recovered(r)),
                "rejoin_confirmed_trials": sum(1 for r in rs if r.rejoin_confirmed),
                "writes": sum(x.writes for x in a),
                "acked": sum(x.acked for x in a),
                "failed": sum(x.failed for x in a),
                "failed_but_committed": sum(x.failed_present for x in a),
                "unknown": sum(x.unknown for x in a),
                "unknown_committed": sum(x.unknown_present for x in a),
                "unknown_not_committed": sum(x.unknown_absent for x in a),
                "lost_acked": sum(x.lost_acked for x in a),
                "old_primary_acks_after_takeover": sum(
                    x.old_primary_acks_after_takeover for x in a
                ),
                "old_primary_acks_sent_after_takeover": sum(
                    x.old_primary_acks_sent_after_takeover for x in a
                ),
                "missing_beyond_switch": sum(x.missing_beyond_switch for x in a),
                "missing_maybe_beyond_switch": sum(x.missing_maybe_beyond_switch for x in a),
                "missing_before_switch": sum(x.missing_before_switch for x in a),
                "missing_lsn_unknown": sum(x.missing_lsn_unknown for x in a),
                "counts_consistent": all(x.consistent for x in a),
                "errors": _merged_errors(a),
                "notes": sorted({n for r in rs for n in r.notes}),
            }
    return summary


def _recovered(r: TrialResult) -> bool:
    """Whether writing resumed: a write sent after the takeover was acked by a server
    other than the old leader (see :func:`~.chaos.trial.run_trial`)."""
    return not any("no ack within" in n for n in r.notes)


def _merged_errors(accounts: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in accounts:
        for k, v in a.errors.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _gap_median(summary: dict[str, Any], client: str, scenario: str) -> float:
    gap = summary.get(client, {}).get(scenario, {}).get("writer_gap_s")
    return float(gap["median"]) if gap else float("nan")


def run(ctx: BenchContext) -> BenchResult:
    """Trials of each scenario with each client, then the asynchronous-mode trials."""
    plan = Plan.of(ctx.quick)
    result = BenchResult(
        name="failover",
        title=(
            "Writes through failovers on Patroni + etcd (3 nodes, synchronous_mode_strict): "
            "lost acked rows, unknown outcomes, writer gap, rejoin; mlscale vs libpq multi-host"
        ),
    )
    progress = Progress(quiet=ctx.quiet)
    skipped: list[str] = []
    with ExitStack() as stack:
        with progress.phase("starting the HA cluster (strict sync)", 1) as phase:
            phase.step("up --ha --sync strict")
            local = LocalCluster(ctx.workdir / "failover")
            stack.callback(local.destroy)
            local.up(shards=1, replicas=2, redis=False, ha=True, ha_sync="strict")
        per_client = {c: plan.trials_of(c) for c in CLIENTS}
        sync_results = _trials(
            local,
            plan,
            scenarios=SCENARIOS,
            clients=CLIENTS,
            trials=per_client,
            first_index=1,
            progress=progress,
            title="synchronous trials",
            skipped=skipped,
        )
        stack.close()
    with ExitStack() as stack:
        with progress.phase("starting the HA cluster (async)", 1) as phase:
            phase.step("up --ha --sync off")
            local = LocalCluster(ctx.workdir / "failover-async")
            stack.callback(local.destroy)
            local.up(shards=1, replicas=2, redis=False, ha=True, ha_sync="off")
        async_results = _trials(
            local,
            plan,
            scenarios=ASYNC_SCENARIOS,
            clients=("libpq",),
            trials={"libpq": plan.async_trials},
            first_index=1,
            progress=progress,
            title="async trials (--sync off)",
            skipped=skipped,
        )
    _report(result, plan, sync_results, async_results)
    result.metrics["trials_not_run"] = skipped
    if skipped:
        result.notes.append(f"{len(skipped)} trial(s) could not run: " + "; ".join(skipped[:3]))
    _print_figures(result)
    return result


def _report(
    result: BenchResult,
    plan: Plan,
    sync_results: Sequence[TrialResult],
    async_results: Sequence[TrialResult],
) -> None:
    sync = summarise(sync_results)
    asynchronous = summarise(async_results)
    lost_sync = sum(r.account.lost_acked for r in sync_results)
    old_acks = sum(r.account.old_primary_acks_after_takeover for r in sync_results)
    sent_after = sum(r.account.old_primary_acks_sent_after_takeover for r in sync_results)
    gap_crash = _gap_median(sync, GATED_CLIENT, "pg_crash")
    gap_switch = _gap_median(sync, GATED_CLIENT, "switchover")
    async_before = sum(r.account.missing_before_switch for r in async_results)
    result.params = {
        "nodes": 3,
        "groups": 1,
        "sync": "strict (then off for the asynchronous trials)",
        "trials_per_scenario": {c: plan.trials_of(c) for c in CLIENTS},
        "async_trials_per_scenario": plan.async_trials,
        "scenarios": list(SCENARIOS),
        "async_scenarios": list(ASYNC_SCENARIOS),
        "clients": list(CLIENTS),
        "writers": plan.trial.writers,
        "trial": {
            "warmup_s": plan.trial.warmup_s,
            "after_takeover_s": plan.trial.after_takeover_s,
            "recovery_timeout_s": plan.trial.recovery_timeout_s,
            "rejoin_timeout_s": plan.trial.rejoin_timeout_s,
        },
        "gated_client": GATED_CLIENT,
    }
    result.metrics = {
        "lost_acked_writes_sync": lost_sync,
        "old_primary_acks_after_takeover": old_acks,
        "old_primary_acks_sent_after_takeover": sent_after,
        "writer_gap_pg_crash_p50_s": _or_none(gap_crash),
        "writer_gap_switchover_p50_s": _or_none(gap_switch),
        "writer_gap_node_kill_p50_s": _or_none(_gap_median(sync, GATED_CLIENT, "node_kill")),
        "writer_gap_node_freeze_p50_s": _or_none(_gap_median(sync, GATED_CLIENT, "node_freeze")),
        "libpq_writer_gap_p50_s": {s: _or_none(_gap_median(sync, "libpq", s)) for s in SCENARIOS},
        "mlscale_writer_gap_p50_s": {
            s: _or_none(_gap_median(sync, "mlscale", s)) for s in SCENARIOS
        },
        "mlscale_plain_writer_gap_p50_s": {
            s: _or_none(_gap_median(sync, "mlscale_plain", s)) for s in SCENARIOS
        },
        "mlscale_idempotent_writer_errors": sum(
            r.account.failed + r.account.unknown for r in sync_results if r.client == "mlscale"
        ),
        "rejoin_p50_s": {
            s: _median(
                [
                    r.account.rejoin_s
                    for r in sync_results
                    if r.scenario == s and r.account.rejoin_s is not None
                ]
            )
            for s in SCENARIOS
        },
        "lost_acked_writes_async": sum(r.account.lost_acked for r in async_results),
        "async_missing_before_switch": async_before,
        "async_missing_proven_beyond_switch": sum(
            r.account.missing_beyond_switch for r in async_results
        ),
        "by_client_sync": sync,
        "by_client_async": asynchronous,
        "trials": [r.to_dict() for r in (*sync_results, *async_results)],
    }
    result.gates = [
        Verdict("lost_acked_writes_sync", float(lost_sync), "<=", 0, "rows"),
        Verdict("old_primary_acks_after_takeover", float(old_acks), "<=", 0, "rows"),
        Verdict("writer_gap_pg_crash_p50_s", gap_crash, "<=", GATE_GAP_S, "s"),
        Verdict("writer_gap_switchover_p50_s", gap_switch, "<=", GATE_GAP_S, "s"),
    ]
    result.goals = [
        Verdict("async_missing_before_switch", float(async_before), "<=", 0, "rows"),
    ]
    gaps: dict[str, dict[str, Spread]] = {
        s: {
            c: Spread.of(
                [r.account.writer_gap_s for r in sync_results if r.scenario == s and r.client == c]
            )
            for c in CLIENTS
            if any(r.scenario == s and r.client == c for r in sync_results)
        }
        for s in SCENARIOS
    }
    rejoins: dict[str, dict[str, Spread]] = {
        s: {"rejoin": Spread.of(v)}
        for s in SCENARIOS
        if (
            v := [
                r.account.rejoin_s
                for r in sync_results
                if r.scenario == s and r.account.rejoin_s is not None
            ]
        )
    }
    result.charts = [
        chart(
            "Writer gap: longest time with no ack (median of trials, min..max)",
            "s",
            gaps,
            target=GATE_GAP_S,
        ),
        chart("Old primary back as a streaming replica, from the fault", "s", rejoins),
    ]
    cpus = os.cpu_count() or 1
    result.notes = [
        f"3 PostgreSQL nodes, their Patroni agents, 3 etcd members and the control "
        f"database's 3 nodes share one {cpus}-CPU machine with the {plan.trial.writers} "
        "writer threads; Patroni ttl 20 s, loop_wait 1 s: a whole node lost or frozen "
        "cannot be replaced before its leader key expires (~20 s)",
        "writer gap: the longest time with no ack from any writer, from the last ack "
        "before the fault until the writers stopped (after_takeover_s past the first ack "
        "after the takeover, or recovery_timeout_s without one: then the gap is a lower "
        "bound)",
        "old-primary acks after takeover: acks by the old leader's port not in the new "
        "leader's history -- on the old timeline past the fork LSN in /history, or sent "
        "after the takeover instant (the earlier of the observer's first sight of the new "
        "running leader and the /history timestamp) and missing; "
        "old_primary_acks_sent_after_takeover also counts such acks that survived (the "
        "new leader, shown as soon as it holds the key, may still receive WAL from a "
        "resumed old primary until its promotion ends)",
        "unknown outcomes: a COMMIT whose connection broke, or that came back with the "
        "'committed locally' warning; each is reconciled against the new leader's rows",
        "async: each missing acked row's commit LSN bounds (insert position in the "
        "transaction; pg_current_wal_lsn() after COMMIT) against the switch LSN in "
        "/history; 'beyond' is proven (even the lower bound is past it), 'maybe' and 'no "
        "bound' (the post-COMMIT read failed: the server died) are consistent with it but "
        "unproven, 'before' would be a loss replication lag cannot explain",
        "the mlscale clients share one Cluster made from the HA cluster's config (its "
        "Patroni endpoints) for every trial: it follows Patroni to each new leader; "
        "'mlscale' marks its writes idempotent=True (the insert is ON CONFLICT DO "
        "NOTHING; the issue expects no error through pg_crash and switchover, only a "
        "pause), 'mlscale_plain' does not (a write in flight at the crash is "
        "CommitOutcomeUnknown); writes reported failed are reconciled like unknown ones "
        "(failed_but_committed)",
    ]


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    lines = []
    for client in CLIENTS:
        by = m["by_client_sync"].get(client, {})
        for scenario, s in by.items():
            gap = s["writer_gap_s"] or {}
            rejoin = s["rejoin_s"] or {}
            lines.append(
                f"  {client:<13} {scenario:<12} gap p50 {gap.get('median', float('nan')):6.2f} s"
                f"  rejoin p50 {rejoin.get('median', float('nan')):6.2f} s"
                f"  acked {s['acked']:6d}  lost {s['lost_acked']}  failed {s['failed']}"
                f" (committed {s['failed_but_committed']})  unknown {s['unknown']}"
                f" (committed {s['unknown_committed']})  old-primary acks"
                f" {s['old_primary_acks_after_takeover']}"
                f" (sent after takeover {s['old_primary_acks_sent_after_takeover']})"
                f"  recovered"
                f" {s['recovered_trials']}/{s['trials']}"
            )
    for scenario, s in m["by_client_async"].get("libpq", {}).items():
        lines.append(
            f"  async         {scenario:<12} acked {s['acked']:6d}  lost {s['lost_acked']}"
            f"  (beyond switch {s['missing_beyond_switch']}, maybe"
            f" {s['missing_maybe_beyond_switch']}, before {s['missing_before_switch']},"
            f" no bound {s['missing_lsn_unknown']})"
        )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="failover", title="Writes through failovers", run=run)
