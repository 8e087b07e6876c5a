"""Read guarantees, counted: read-your-writes with tokens, monotonic sessions, replica loss.

One replica of the cluster here replays WAL 300 ms late (recovery_min_apply_delay),
so a read that goes to it right after a write misses the write unless the router
honours the reader's token. The EVENTUAL runs show the stale reads a guarantee
prevents, so these tests can fail.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.core.causal import CausalToken
from mlscale.local import procs
from mlscale.local.tempdirs import reachable_tempdir

DELAY_MS = 300
WORKERS = 20
PAIRS_PER_THREAD = 80  # 20 x 80 = 1,600 pairs in threads
PROCESS_PAIRS = 400  # and 400 whose tokens cross into other processes as strings


@pytest.fixture(scope="module")
def delayed() -> Iterator[LocalCluster]:
    """One group: a primary, a prompt replica and one replaying 300 ms late."""
    base = reachable_tempdir("mlscale-consistency-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=1, replicas=2, redis=False)
        with Cluster.from_file(local.layout.config) as c, c.connection("g0-replica2") as conn:
            conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{DELAY_MS}ms'")
            conn.execute("SELECT pg_reload_conf()")
        with Cluster.from_file(local.layout.config) as c:
            c.execute("CREATE TABLE pairs (id bigint PRIMARY KEY, worker int NOT NULL)")
            c.execute("CREATE TABLE counter (n bigint PRIMARY KEY)")
            c.execute("CREATE SEQUENCE pair_ids")
        time.sleep(1.0)  # the delayed replica has the tables before we start counting
        yield local
    finally:
        local.destroy()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def _pairs(
    cluster: Cluster, worker: int, count: int, consistency: str, out: dict[str, int]
) -> None:
    stale = 0
    for _ in range(count):
        with cluster.session(consistency="read_your_writes") as s:
            new_id = s.fetch_value("SELECT nextval('pair_ids')")
            s.execute("INSERT INTO pairs VALUES (%s, %s)", (new_id, worker))
            token = s.token
        found = cluster.fetch_value(
            "SELECT count(*) FROM pairs WHERE id = %s",
            (new_id,),
            consistency=consistency,
            token=token.to_string() if consistency == "read_your_writes" else None,
        )
        stale += found != 1
    out[f"w{worker}"] = stale


def _run_threads(cluster: Cluster, consistency: str, pairs: int) -> int:
    results: dict[str, int] = {}
    threads = [
        threading.Thread(target=_pairs, args=(cluster, w, pairs, consistency, results))
        for w in range(WORKERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(results) == WORKERS, "a worker died"
    return sum(results.values())


def _reader(config: str, tokens: Any, results: Any) -> None:
    """In another process: read each id with the token string it came with."""
    stale = reads = 0
    with Cluster.from_file(config) as cluster:
        while (item := tokens.get()) is not None:
            new_id, token = item
            found = cluster.fetch_value(
                "SELECT count(*) FROM pairs WHERE id = %s", (new_id,), token=token
            )
            reads += 1
            stale += found != 1
        results.put((reads, stale, cluster.stats().reads.reads_by_node))


def _replica_share(by_node: dict[str, int]) -> float:
    total = sum(by_node.values())
    replicas = sum(n for node, n in by_node.items() if "replica" in node)
    return replicas / total if total else 0.0


def test_read_your_writes_counted(delayed: LocalCluster) -> None:
    config = str(delayed.layout.config)
    with Cluster.from_file(config) as cluster:
        stale = _run_threads(cluster, "read_your_writes", PAIRS_PER_THREAD)
        reads = cluster.stats().reads
        assert stale == 0, f"{stale} stale reads with read-your-writes tokens"
        by_node = reads.reads_by_node
        assert sum(by_node.values()) >= WORKERS * PAIRS_PER_THREAD
        assert _replica_share(by_node) >= 0.5, by_node
        print(f"read-your-writes in threads: {stale} stale, replica share "
              f"{_replica_share(by_node):.2f}, {reads.token_waits} waits, {by_node}")

        # Tokens as strings, read in two other processes.
        ctx = multiprocessing.get_context("spawn")
        tokens, results = ctx.Queue(), ctx.Queue()
        readers = [ctx.Process(target=_reader, args=(config, tokens, results)) for _ in range(2)]
        for p in readers:
            p.start()
        for _ in range(PROCESS_PAIRS):
            with cluster.session(consistency="read_your_writes") as s:
                new_id = s.fetch_value("SELECT nextval('pair_ids')")
                s.execute("INSERT INTO pairs VALUES (%s, -1)", (new_id,))
                assert CausalToken.parse(s.token.to_string()) == s.token
                tokens.put((new_id, s.token.to_string()))
        for _ in readers:
            tokens.put(None)
        outcomes = [results.get(timeout=120) for _ in readers]
        for p in readers:
            p.join(60)
        assert sum(o[0] for o in outcomes) == PROCESS_PAIRS
        assert sum(o[1] for o in outcomes) == 0, outcomes
        merged: dict[str, int] = {}
        for _, _, by in outcomes:
            for node, n in by.items():
                merged[node] = merged.get(node, 0) + n
        assert _replica_share(merged) >= 0.5, merged
        print(f"tokens across processes: 0 stale of {PROCESS_PAIRS}, replica share "
              f"{_replica_share(merged):.2f}")


def test_eventual_reads_do_go_stale(delayed: LocalCluster) -> None:
    # The same pairs without a guarantee: the delayed replica serves about half of
    # the reads, 300 ms behind, so some of them miss the write just made.
    with Cluster.from_file(delayed.layout.config) as cluster:
        stale = _run_threads(cluster, "eventual", 20)
    print(f"eventual: {stale} stale of {WORKERS * 20} pairs")
    assert stale > 0, "no stale read without a token: the test could not catch one"


def _monotonic_run(cluster: Cluster, monotonic: bool, seconds: float) -> tuple[int, int]:
    """(reads, times the value went backwards) while a writer bumps the counter."""
    stop = threading.Event()

    def writer() -> None:
        n = int(cluster.primary().fetch_value("SELECT coalesce(max(n), 0) FROM counter"))
        while not stop.is_set():
            n += 1
            cluster.execute("INSERT INTO counter VALUES (%s)", (n,))
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    reads = backwards = 0
    last = -1
    try:
        with cluster.session(monotonic=monotonic) as s:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                value = int(s.fetch_value("SELECT coalesce(max(n), 0) FROM counter"))
                reads += 1
                backwards += value < last
                last = max(last, value)
    finally:
        stop.set()
        thread.join(30)
    return reads, backwards


def test_monotonic_sessions_never_go_back_in_time(delayed: LocalCluster) -> None:
    with Cluster.from_file(delayed.layout.config) as cluster:
        reads, backwards = _monotonic_run(cluster, True, 3.0)
        assert reads > 50
        assert backwards == 0
        reads, backwards = _monotonic_run(cluster, False, 3.0)
        assert backwards > 0, "a plain session never went back: the test could not catch it"


def test_a_killed_replica_costs_readers_nothing(scratch_dir: Path) -> None:
    local = LocalCluster(scratch_dir / "c")
    local.up(shards=1, replicas=2, redis=False)
    errors: list[BaseException] = []
    stop = threading.Event()
    with Cluster.from_file(local.layout.config) as cluster:
        cluster.execute("CREATE TABLE items (id int PRIMARY KEY)")
        cluster.execute("INSERT INTO items SELECT generate_series(1, 100)")
        # The readers start only once every replica has the table (setup, not the test).
        for node in cluster.replica_nodes():
            for _ in range(1000):
                with cluster.connection(node) as conn:
                    row = conn.execute("SELECT to_regclass('items') IS NOT NULL").fetchone()
                if row == (True,):
                    break
                time.sleep(0.01)

        def reader() -> None:
            while not stop.is_set():
                try:
                    assert cluster.fetch_value("SELECT count(*) FROM items") in (0, 100)
                except BaseException as exc:  # every error is counted
                    errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        try:
            time.sleep(1.0)
            victim = local.processes()["g0-replica1"][0]
            os.kill(victim, signal.SIGKILL)
            assert procs.wait_dead(victim, 10)
            time.sleep(2.0)
            bans = cluster.stats().bans
            samples = cluster.replica_samples()
            assert "g0-replica1" in bans or not samples["g0-replica1"].up, (bans, samples)
            if "g0-replica1" in bans:
                assert bans["g0-replica1"].reason
            before = cluster.stats().reads.reads_by_node.get("g0-replica1", 0)
            local.up()
            deadline = time.monotonic() + 30
            while (
                cluster.stats().reads.reads_by_node.get("g0-replica1", 0) <= before
                or "g0-replica1" in cluster.stats().bans
            ):
                assert time.monotonic() < deadline, (
                    f"the restarted replica was not back in rotation: {cluster.stats().bans}"
                )
                time.sleep(0.1)
        finally:
            stop.set()
            for t in readers:
                t.join(30)
    assert errors == [], f"{len(errors)} errors reached readers, first: {errors[:1]}"
