"""The checkpoint store on real streaming replicas (2 shard groups of a primary and one
replica, one cluster for the module): where a load's reads go, and what a load sees
while the replicas replay WAL 3 s late (``recovery_min_apply_delay``, as
``demo/replicas.py`` does; reset after each test).

Reads are counted twice: by the client's router (``cluster.stats().reads``, per node
and consistency) and by the servers (``pg_stat_statements`` on every node: the chunk
COPYs each ran, and the rows they found). A chunk a replica lacks is a COPY there
that found no row, then one on the primary. The first test must run first: its save
makes the store's tables, so the lagging replicas lack even those.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql as pgsql

from mlscale import CheckpointNotFound, Cluster
from mlscale.core.checkpoints import sql
from mlscale.stores.checkpoints import Checkpoints, LoadResult
from tests.integration.local_clusters import throwaway_cluster

MIB = 1 << 20
DELAY_S = 3
# The statements a load's chunk reads run as, top level (pg_stat_statements also lists
# the SELECT inside each COPY, as a nested statement).
_COPIES = (
    "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM pg_stat_statements "
    "WHERE toplevel AND query LIKE 'COPY (SELECT data FROM mlscale_ckpt_chunks%%'"
)
_HELD = "SELECT digest FROM mlscale_ckpt_chunks WHERE digest = ANY(%s)"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with (
        throwaway_cluster("mlscale-ckpt-rep-", shards=2, replicas=1, redis=False) as local,
        Cluster.from_file(local.layout.config) as c,
    ):
        for node in _data_nodes(c):
            with c.connection(node) as conn:
                if conn.execute("SELECT to_regclass('pg_stat_statements')").fetchone() == (None,):
                    pytest.skip("the servers have no pg_stat_statements to count reads with")
        yield c


@pytest.fixture()
def store(cluster: Cluster) -> Checkpoints:
    return Checkpoints(cluster, chunk_size=MIB)


# -- helpers -------------------------------------------------------------------------------


def _data_nodes(cluster: Cluster) -> list[str]:
    return [n.name for n in cluster.nodes if n.group is not None]


def _primaries(cluster: Cluster) -> list[str]:
    return [n.name for n in cluster.nodes if n.group is not None and n.role.value == "primary"]


def _replicas(cluster: Cluster) -> list[str]:
    return [n.name for n in cluster.nodes if n.group is not None and n.role.value == "replica"]


def _payload(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _set_delay(cluster: Cluster, value: str | None) -> None:
    for node in _replicas(cluster):
        with cluster.connection(node) as conn:
            if value is None:
                conn.execute("ALTER SYSTEM RESET recovery_min_apply_delay")
            else:
                conn.execute(
                    pgsql.SQL("ALTER SYSTEM SET recovery_min_apply_delay = {}").format(
                        pgsql.Literal(value)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")


def _caught_up(cluster: Cluster, timeout_s: float = 20.0) -> None:
    """Wait until every replica has replayed its primary's WAL as of now."""
    for group in sorted({n.group for n in cluster.nodes if n.group is not None}):
        with cluster.connection(cluster.primary_node(group)) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        for replica in cluster.replica_nodes(group):
            deadline = time.monotonic() + timeout_s
            with cluster.connection(replica) as conn:
                while not conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target
                ).fetchone()[0]:
                    assert time.monotonic() < deadline, f"{replica} did not catch up"
                    time.sleep(0.02)


@contextmanager
def _replaying_late(cluster: Cluster, seconds: int) -> Iterator[None]:
    """The replicas replay WAL ``seconds`` late in the block; caught up again after."""
    _caught_up(cluster)
    _set_delay(cluster, f"{seconds}s")
    try:
        for node in _replicas(cluster):  # the reload is asynchronous: see it applied
            with cluster.connection(node) as conn:
                while conn.execute("SHOW recovery_min_apply_delay").fetchone() != (f"{seconds}s",):
                    time.sleep(0.01)
        yield
    finally:
        _set_delay(cluster, None)
        _caught_up(cluster)


@dataclass(frozen=True)
class Reads:
    """Reads counted on both sides since a snapshot: the router's, by (node,
    consistency), its token waits (and their ms) and fallbacks; and the servers' chunk
    COPYs, by node (statements run, rows they returned)."""

    routed: Counter[tuple[str, str]]
    token_waits: int
    token_wait_timeouts: int
    token_wait_ms: float
    fallbacks: Counter[str]
    copies: Counter[str]
    rows: Counter[str]

    def routed_to(self, nodes: Sequence[str], consistency: str) -> int:
        return sum(self.routed[n, consistency] for n in nodes)


def _snapshot(cluster: Cluster) -> Reads:
    reads = cluster.stats().reads
    copies: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    for node in _data_nodes(cluster):
        with cluster.connection(node) as conn:
            row = conn.execute(_COPIES).fetchone()
            copies[node], rows[node] = int(row[0]), int(row[1])
    return Reads(
        Counter(reads.reads_by_node_consistency),
        reads.token_waits,
        reads.token_wait_timeouts,
        reads.token_wait_ms,
        Counter(reads.fallbacks_by_cause),
        copies,
        rows,
    )


@contextmanager
def _counted(cluster: Cluster) -> Iterator[list[Reads]]:
    """The reads made in the block, in the list's one element once it ends."""
    before = _snapshot(cluster)
    out: list[Reads] = []
    yield out
    after = _snapshot(cluster)
    out.append(
        Reads(
            after.routed - before.routed,
            after.token_waits - before.token_waits,
            after.token_wait_timeouts - before.token_wait_timeouts,
            after.token_wait_ms - before.token_wait_ms,
            after.fallbacks - before.fallbacks,
            after.copies - before.copies,
            after.rows - before.rows,
        )
    )


def _digests(store: Checkpoints, run: str, step: int) -> list[str]:
    ckpt = store.get(run, step, consistency="strong")
    return [c.digest for f in ckpt.files for c in f.chunks]


def _lacking(cluster: Cluster, digests: Sequence[str]) -> set[str]:
    """The chunks among ``digests`` that the replica of their group does not hold now,
    asked of the replica itself."""
    where = cluster.shards().map_of(sql.CHUNK_FAMILY)
    lacking: set[str] = set()
    for group in sorted({where.locate(d) for d in digests}):
        mine = [d for d in digests if where.locate(d) == group]
        for replica in cluster.replica_nodes(group):
            with cluster.connection(replica) as conn:
                try:
                    held = {r[0] for r in conn.execute(_HELD, (mine,)).fetchall()}
                except psycopg.errors.UndefinedTable:
                    held = set()
                lacking.update(d for d in mine if d not in held)
    return lacking


def _load(store: Checkpoints, run: str, **kw: Any) -> tuple[LoadResult, bytes]:
    out = io.BytesIO()
    result = store.load(run, out, **kw)
    return result, out.getvalue()


# -- tests ---------------------------------------------------------------------------------


def test_first_save_while_replicas_lag(cluster: Cluster, store: Checkpoints) -> None:
    """The store's first save, replicas 3 s behind: they lack the new tables too. A load
    without a token says clearly that nothing is visible yet; ``consistency="strong"``
    and the save's token both load bit-exact, every chunk from the primaries (one
    fall-back each); once caught up, a plain load reads every chunk on a replica."""
    primaries = _primaries(cluster)
    replicas = _replicas(cluster)
    data = _payload(1, 4 * MIB + 4321)  # 5 chunks
    with _replaying_late(cluster, DELAY_S):
        saved = store.save("lag-first", 1, data)
        digests = _digests(store, "lag-first", 1)

        with pytest.raises(CheckpointNotFound, match="pass the save's token=") as caught:
            store.load("lag-first", io.BytesIO())
        assert "no checkpoint of run 'lag-first' is committed" in str(caught.value)
        assert store.list_checkpoints("lag-first") == []

        with _counted(cluster) as strong:
            result, got = _load(store, "lag-first", consistency="strong")
        assert _sha256(got) == _sha256(data) and result.step == 1
        assert result.chunks == len(digests) == 5
        assert result.primary_fallbacks == 5
        (s,) = strong
        # Each chunk asked of a replica first (none there: no table even, when this test
        # runs first, and pg_stat_statements counts no failed statement), then of its
        # primary; the manifest read on the run's primary.
        assert s.routed_to(replicas, "eventual") == 5
        assert s.routed_to(primaries, "strong") == 5 + 1
        assert sum(s.rows[n] for n in replicas) == 0
        assert sum(s.copies[n] for n in primaries) == 5
        assert sum(s.rows[n] for n in primaries) == 5

        with _counted(cluster) as tokened:
            started = time.perf_counter()
            result, got = _load(store, "lag-first", token=saved.token)
            took = time.perf_counter() - started
        assert _sha256(got) == _sha256(data) and result.primary_fallbacks == 5
        (t,) = tokened
        # The manifest's read did not wait the 3 s for a replica: at most one bounded
        # wait (read_wait_ms), then the run's primary.
        home = cluster.primary_node(cluster.locate(sql.RUN_FAMILY, "lag-first"))
        assert t.routed[home, "read_your_writes"] == 1
        assert t.routed_to(replicas, "read_your_writes") == 0
        assert t.fallbacks["not replayed"] == 1
        assert t.token_waits == t.token_wait_timeouts <= 1
        assert took < DELAY_S - 1
        assert sum(t.copies[n] for n in primaries) == 5
        print(f"\ntoken load, replicas {DELAY_S} s late: {t.token_waits} bounded wait(s) "
              f"of {t.token_wait_ms:.0f} ms, load {took * 1000:.0f} ms")  # fmt: skip

        # All of it happened while the replicas still lacked every chunk (else the
        # counts above would differ).
        assert _lacking(cluster, digests) == set(digests)

    with _counted(cluster) as later:
        result, got = _load(store, "lag-first")
    assert _sha256(got) == _sha256(data) and result.primary_fallbacks == 0
    (c,) = later
    assert sum(c.copies[n] for n in replicas) == sum(c.rows[n] for n in replicas) == 5
    assert sum(c.copies[n] for n in primaries) == 0


def test_load_right_after_save_with_token_reads_replicas(
    cluster: Cluster, store: Checkpoints
) -> None:
    """No delay: a load right after the save, with its token, is bit-exact and its
    chunks come from the replicas; a chunk a replica has not replayed within those
    milliseconds is one fall-back, counted the same by the store and the servers."""
    primaries = _primaries(cluster)
    replicas = _replicas(cluster)
    _caught_up(cluster)
    data = _payload(2, 6 * MIB + 17)  # 7 chunks
    saved = store.save("fresh", 1, data)
    with _counted(cluster) as counted:
        result, got = _load(store, "fresh", token=saved.token)
    assert _sha256(got) == _sha256(data) and result.chunks == 7
    (c,) = counted
    on_replicas = sum(c.rows[n] for n in replicas)
    assert sum(c.copies[n] for n in replicas) == 7  # every chunk asked of a replica
    assert on_replicas == 7 - result.primary_fallbacks > 0
    assert sum(c.copies[n] for n in primaries) == result.primary_fallbacks
    assert c.routed_to(primaries, "strong") == result.primary_fallbacks
    assert c.routed_to(replicas, "eventual") == 7
    print(f"\nright after a save: {on_replicas} of 7 chunks from replicas, "
          f"{result.primary_fallbacks} from primaries")  # fmt: skip


def test_lagging_replica_serves_old_chunks_and_primary_the_new(
    cluster: Cluster, store: Checkpoints
) -> None:
    """Step 2 of a run shares 3 chunks with step 1; the replicas replay 3 s late. A load
    without a token takes the replica's latest, step 1, whole and exact (a stale read,
    not an error); step 2 by number is not found yet. With the manifest read strong, or
    with the token, step 2 loads bit-exact and exactly the chunks the replicas lacked
    (asked of them directly, before and after) come from the primaries."""
    primaries = _primaries(cluster)
    replicas = _replicas(cluster)
    first = _payload(3, 6 * MIB)
    second = first[: 3 * MIB] + _payload(4, 3 * MIB + 999)  # 3 shared, 4 new chunks
    store.save("shared", 1, first)
    with _replaying_late(cluster, DELAY_S):
        saved = store.save("shared", 2, second)
        assert (saved.chunks, saved.sent, saved.skipped) == (7, 4, 3)
        digests = _digests(store, "shared", 2)
        lacked = _lacking(cluster, digests)
        assert len(lacked) == 4

        result, got = _load(store, "shared")
        assert result.step == 1 and _sha256(got) == _sha256(first)
        assert result.primary_fallbacks == 0
        with pytest.raises(CheckpointNotFound, match="pass the save's token="):
            store.load("shared", io.BytesIO(), step=2)

        for how in ({"consistency": "strong"}, {"token": saved.token}):
            with _counted(cluster) as counted:
                result, got = _load(store, "shared", **how)
            assert result.step == 2 and _sha256(got) == _sha256(second), how
            assert result.primary_fallbacks == len(lacked) == 4, how
            (c,) = counted
            assert sum(c.copies[n] for n in replicas) == 7, how
            assert sum(c.rows[n] for n in replicas) == 3, how
            assert sum(c.copies[n] for n in primaries) == 4, how
            assert sum(c.rows[n] for n in primaries) == 4, how

        assert _lacking(cluster, digests) == lacked
