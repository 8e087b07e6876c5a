"""A client that follows Patroni rides through failovers, counted on a real HA cluster.

One HA cluster for the module (`mlscale up --ha`, sync strict: 1 shard group of 2
nodes, the control database of 2, 3 etcd members). Through the mlscale Cluster:
idempotent writers see only a pause across a switchover; a `kill -9` of the leader's
PostgreSQL loses no acknowledged write and every CommitOutcomeUnknown is reconciled;
causal tokens taken before a switchover are honoured after it; the catalog is
writable again after its leader is killed. Figures are printed (run with -s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from mlscale import Cluster, CommitOutcomeUnknown, KeyFamily, LocalCluster, SlotMap
from mlscale.config import ClusterConfig
from mlscale.engine.patroni import PatroniView, fetch_view, handover, scope_endpoints
from mlscale.local import procs
from tests.conftest import run_cli
from tests.integration.local_clusters import require_ha, throwaway_dir

pytestmark = pytest.mark.integration

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY, writer int NOT NULL)"


@pytest.fixture(scope="module")
def ha_dir() -> Iterator[Path]:
    require_ha()
    with throwaway_dir("mlscale-follow-") as root:
        made = run_cli(
            "up", "--dir", str(root), "--ha", "--shards", "1", "--replicas", "1", "--no-redis"
        )
        assert made.returncode == 0, made.stderr
        yield root


@pytest.fixture(scope="module")
def config(ha_dir: Path) -> ClusterConfig:
    return LocalCluster(ha_dir).config()


@pytest.fixture(scope="module")
def cluster(config: ClusterConfig) -> Iterator[Cluster]:
    with Cluster(config) as c:
        c.execute(LEDGER)
        yield c


def view(config: ClusterConfig, scope: str) -> PatroniView:
    return fetch_view(scope_endpoints(config)[scope], timeout=1.0)


def settled(config: ClusterConfig, scope: str, timeout: float = 90.0) -> PatroniView:
    """``scope`` with a running leader and every other member a streaming sync standby."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            now = view(config, scope)
        except Exception:
            now = None
        if (
            now is not None
            and now.leader is not None
            and now.leader.state == "running"
            and all(m.state == "streaming" and m.is_sync for m in now.members if not m.is_leader)
        ):
            return now
        assert time.monotonic() < deadline, now
        time.sleep(0.2)


def kill_postgres(root: Path, node: str) -> None:
    """`kill -9` of ``node``'s PostgreSQL: the postmaster and every process under it
    (PostgreSQL's children call setsid, so the tree is walked, not the group)."""
    pid = int((root / "nodes" / node / "data" / "postmaster.pid").read_text().split()[0])
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(procs.children(p))
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


@dataclass
class Ledger:
    """What writers were told: ids acknowledged, ids whose outcome is unknown, errors,
    and the longest time between two acknowledged writes (s)."""

    acked: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    last_ack: float = field(default_factory=time.monotonic)
    gap_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, i: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.gap_s = max(self.gap_s, now - self.last_ack)
            self.last_ack = now
            self.acked.add(i)


def writers(
    cluster: Cluster, ledger: Ledger, stop: threading.Event, *, n: int, base: int, idempotent: bool
) -> list[threading.Thread]:
    def write(w: int) -> None:
        i = base + w
        while not stop.is_set():
            try:
                if idempotent:
                    cluster.execute(
                        "INSERT INTO ledger VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (i, w),
                        idempotent=True,
                    )
                else:
                    cluster.execute("INSERT INTO ledger VALUES (%s, %s)", (i, w))
                ledger.ack(i)
            except CommitOutcomeUnknown:
                with ledger.lock:
                    ledger.unknown.add(i)
            except Exception as exc:
                with ledger.lock:
                    ledger.errors.append(f"{type(exc).__name__}: {exc}")
            i += n

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(n)]
    for t in threads:
        t.start()
    return threads


def present(cluster: Cluster, ids: set[int]) -> set[int]:
    rows = cluster.fetch_all(
        "SELECT id FROM ledger WHERE id = ANY(%s)", (sorted(ids),), consistency="strong"
    )
    return {r[0] for r in rows}


def run_under_writers(
    cluster: Cluster, *, base: int, idempotent: bool, fault: object
) -> tuple[Ledger, float]:
    """Writers for a second, then ``fault()``, then writers until the group has been
    writable for 2 s; the ledger and the fault's own duration (s)."""
    ledger, stop = Ledger(), threading.Event()
    threads = writers(cluster, ledger, stop, n=3, base=base, idempotent=idempotent)
    time.sleep(1.0)
    started = time.monotonic()
    fault()  # type: ignore[operator]
    took = time.monotonic() - started
    deadline = time.monotonic() + 40
    while time.monotonic() - ledger.last_ack < 2.0 or time.monotonic() - started < 4.0:
        assert time.monotonic() < deadline, ledger.errors[-3:]
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(40)
    return ledger, took


def test_idempotent_writers_ride_a_switchover_with_only_a_pause(
    cluster: Cluster, config: ClusterConfig, ha_dir: Path
) -> None:
    settled(config, "g0")
    before = cluster.primary_node("g0")
    endpoints = scope_endpoints(config)["g0"]

    def switchover() -> None:
        handover(endpoints, action="switchover", auth=_auth(ha_dir))

    ledger, took = run_under_writers(cluster, base=1_000_000, idempotent=True, fault=switchover)
    print(
        f"\nswitchover: {len(ledger.acked)} acked writes, writer gap {ledger.gap_s:.2f} s, "
        f"switchover {took:.2f} s, errors {len(ledger.errors)}, unknown {len(ledger.unknown)}"
    )
    assert ledger.errors == [] and ledger.unknown == set(), ledger.errors[:3]
    assert cluster.primary_node("g0") != before
    assert present(cluster, ledger.acked) == ledger.acked  # 0 acknowledged writes missing
    settled(config, "g0")


def test_kill_9_of_the_leader_loses_no_acknowledged_write(
    cluster: Cluster, config: ClusterConfig, ha_dir: Path
) -> None:
    leader = settled(config, "g0").leader
    assert leader is not None

    ledger, _ = run_under_writers(
        cluster, base=2_000_000, idempotent=False, fault=lambda: kill_postgres(ha_dir, leader.name)
    )
    missing = ledger.acked - present(cluster, ledger.acked)
    committed = present(cluster, ledger.unknown) if ledger.unknown else set()
    print(
        f"\nkill -9 of {leader.name}: {len(ledger.acked)} acked, {len(missing)} missing, "
        f"writer gap {ledger.gap_s:.2f} s, CommitOutcomeUnknown {len(ledger.unknown)} "
        f"({len(committed)} committed, {len(ledger.unknown) - len(committed)} not)"
    )
    assert missing == set()
    assert ledger.errors == []  # a write either succeeded or was told its outcome is unknown
    assert cluster.primary_node("g0") != leader.name
    settled(config, "g0")  # the old leader back as a streaming sync standby (pg_rewind)


def test_tokens_taken_before_a_switchover_are_honoured_after_it(
    cluster: Cluster, config: ClusterConfig, ha_dir: Path
) -> None:
    settled(config, "g0")
    tokens = []
    for i in range(3_000_000, 3_000_200):  # N pairs written on the old timeline
        with cluster.transaction() as tx:
            tx.execute("INSERT INTO ledger VALUES (%s, 0)", (i,))
        assert tx.token is not None
        tokens.append((i, tx.token))
    old_timeline = tokens[0][1]["g0"].timeline
    handover(scope_endpoints(config)["g0"], action="switchover", auth=_auth(ha_dir))
    settled(config, "g0")  # the old leader streams again: replicas can serve the tokens
    stale = 0
    during = cluster.stats().reads
    for i, token in tokens:
        found = cluster.fetch_value("SELECT count(*) FROM ledger WHERE id = %s", (i,), token=token)
        stale += found != 1
    after = cluster.stats().reads
    by_replica = sum(
        n for node, n in after.reads_by_node.items() if node != cluster.primary_node("g0")
    ) - sum(n for node, n in during.reads_by_node.items() if node != cluster.primary_node("g0"))
    new_timeline = view(config, "g0").leader.timeline  # type: ignore[union-attr]
    print(
        f"\ntokens across timeline {old_timeline} -> {new_timeline}: {len(tokens)} pairs, "
        f"{stale} stale, {by_replica} served by the replica"
    )
    assert new_timeline is not None and new_timeline > old_timeline
    assert stale == 0


def test_a_commit_whose_sync_wait_is_cancelled_is_commit_outcome_unknown(
    cluster: Cluster, config: ClusterConfig, ha_dir: Path
) -> None:
    now = settled(config, "g0")
    assert now.leader is not None and now.leader.port is not None
    standby = next(m.name for m in now.members if not m.is_leader)
    postmaster = int(
        (ha_dir / "nodes" / standby / "data" / "postmaster.pid").read_text().split()[0]
    )
    receiver = next(
        p for p in procs.children(postmaster) if "walreceiver" in " ".join(procs.cmdline(p))
    )
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            cluster.execute("INSERT INTO ledger VALUES (4000000, 0)")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    os.kill(receiver, signal.SIGSTOP)  # the sync standby stops acknowledging
    try:
        writer = threading.Thread(target=write)
        writer.start()
        with psycopg.connect(
            host="127.0.0.1",
            port=now.leader.port,
            user="mlscale",
            dbname="mlscale",
            passfile=str(ha_dir / "pgpass"),
            autocommit=True,
        ) as admin:
            deadline = time.monotonic() + 10
            while not admin.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                "WHERE wait_event = 'SyncRep' AND query LIKE 'INSERT INTO ledger VALUES (4000000%'"
            ).fetchall():
                assert time.monotonic() < deadline
                time.sleep(0.05)
        writer.join(10)
    finally:
        os.kill(receiver, signal.SIGCONT)
    (exc,) = outcome
    assert isinstance(exc, CommitOutcomeUnknown), exc
    assert not exc.idempotent and "synchronous replication" in exc.reason
    assert present(cluster, {4000000}) == {4000000}  # committed locally, as it said


def test_the_catalog_is_writable_again_after_its_leader_is_killed(
    cluster: Cluster, config: ClusterConfig, ha_dir: Path
) -> None:
    leader = settled(config, "control").leader
    assert leader is not None
    cluster.refresh_shards()
    kill_postgres(ha_dir, leader.name)
    started = time.monotonic()
    version = cluster.create_shard_map(SlotMap.even(KeyFamily.of("follow", "int8"), ["g0"]))
    took = time.monotonic() - started
    directory = cluster.refresh_shards()
    print(f"\ncontrol leader {leader.name} killed: shard map published in {took:.2f} s")
    assert took < 30 and directory.version == version
    assert cluster._context.control_node() != leader.name
    settled(config, "control")


def _auth(root: Path) -> tuple[str, str] | None:
    """The REST API's credentials of a local HA cluster (its user and secret)."""
    secret = root / "secret"
    return ("mlscale", secret.read_text().strip()) if secret.exists() else None
