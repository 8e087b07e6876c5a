"""Durable write-behind (mlscale.cache.writebehind) against a real Redis with
``appendfsync always`` and a real PostgreSQL, both started here.

Counted on the database side: a trigger logs every row version the flusher applied
(key, version, the writer's sequence number) in an audit table, so a write applied
twice, a write lost, or a key moving backwards shows up as rows, not as a guess.

The crash tests run N = 100,000 writes (the acceptance; about 10 s each here), or
MLSCALE_WB_N of them; ``-s`` prints the counts:

    MLSCALE_WB_N=100000 PYTHONPATH=src python -m pytest \
        tests/integration/test_cache_writebehind.py -k kill9 -q -s
"""

# ruff: noqa: S608 - table names are generated here (wb_<hex>), never input

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.cache import Cache, RemoteCache
from mlscale.cache.journal import (
    Append,
    DurabilityMode,
    Journal,
    JournalNotDurable,
    WriteOutcomeUnknown,
)
from mlscale.cache.local import LocalCache
from mlscale.cache.remote import CacheUnavailable
from mlscale.cache.writebehind import FlushResult, PostgresSink, Target, WriteBehind
from mlscale.errors import CacheError
from mlscale.local import ports as portsmod
from mlscale.local.osuser import resolve_service_user
from mlscale.local.redisnode import RedisNode
from mlscale.local.tempdirs import reachable_tempdir
from tests.integration.wb_flusher import COLUMNS

pytestmark = pytest.mark.integration

N = int(os.environ.get("MLSCALE_WB_N", "100000"))
ROOT = Path(__file__).resolve().parents[2]


# -- servers ----------------------------------------------------------------------------


@dataclass
class Pg:
    cluster: Cluster
    config: Path


@pytest.fixture(scope="module")
def pg() -> Iterator[Pg]:
    base = reachable_tempdir("mlscale-wb-it-")
    local = LocalCluster(base / "c")
    try:
        local.up(shards=1, replicas=0, redis=False)
        with Cluster.from_file(local.layout.config) as c:
            yield Pg(c, local.layout.config)
    finally:
        try:
            local.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


class JournalRedis:
    """A Redis with appendonly yes + appendfsync always that a test can kill -9 and
    start again on the same directory and port."""

    def __init__(self, base: Path) -> None:
        (port,) = portsmod.claim_ports(base, ["wb-redis"])  # kept while it is down
        self.node = RedisNode(None, base / "redis", port, resolve_service_user())
        self.password = uuid.uuid4().hex
        self.node.write_conf(self.password, appendfsync="always")
        self.node.start(self.password)
        self.port = port

    def kill9(self) -> None:
        pid = self.node.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.node.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.01)

    def start(self) -> None:
        self.node.start(self.password)

    def journal(self, stream: str, **kw: object) -> Journal:
        return Journal.connect(stream, port=self.port, password=self.password, **kw)  # type: ignore[arg-type]


@pytest.fixture()
def jredis() -> Iterator[JournalRedis]:
    base = reachable_tempdir("mlscale-wb-redis-")
    srv: JournalRedis | None = None
    try:
        srv = JournalRedis(base)
        yield srv
    finally:
        try:
            if srv is not None:
                srv.node.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def table(pg: Pg) -> Iterator[str]:
    """A fresh target table plus its audit table and trigger."""
    name = f"wb_{uuid.uuid4().hex[:10]}"
    pg.cluster.execute(
        f"CREATE TABLE {name} (id bigint PRIMARY KEY, val bigint, seq bigint, "
        "version bigint NOT NULL)"
    )
    pg.cluster.execute(
        f"CREATE TABLE {name}_audit (n bigserial PRIMARY KEY, id bigint, version bigint, "
        "seq bigint)"
    )
    pg.cluster.execute(
        f"CREATE FUNCTION {name}_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO {name}_audit (id, version, seq) VALUES (NEW.id, NEW.version, NEW.seq); "
        "RETURN NULL; END $$"
    )
    pg.cluster.execute(
        f"CREATE TRIGGER {name}_log AFTER INSERT OR UPDATE ON {name} "
        f"FOR EACH ROW EXECUTE FUNCTION {name}_log()"
    )
    try:
        yield name
    finally:
        pg.cluster.execute(f"DROP TABLE {name}, {name}_audit")
        pg.cluster.execute(f"DROP FUNCTION {name}_log()")


def target(table: str) -> Target:
    return Target(table, key="id", columns=COLUMNS)


def make_wb(pg: Pg, journal: Journal, table: str, **kw: object) -> WriteBehind:
    t = target(table)
    return WriteBehind(journal, [t], sink=PostgresSink(pg.cluster.connection, [t]), **kw)  # type: ignore[arg-type]


# -- the ledger and the check -----------------------------------------------------------


@dataclass
class Ledger:
    """What writers were told: per key, the last acknowledged (version, seq); and the
    writes whose outcome is unknown (seq -> key)."""

    acked: dict[int, tuple[int, int]] = field(default_factory=dict)
    in_doubt: dict[int, int] = field(default_factory=dict)
    n_acked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Verdict:
    keys: int
    lost: int  # keys whose row is not their last acknowledged write (nor a newer in-doubt one)
    applied_twice: int  # (key, version) or seq applied more than once
    went_backwards: int  # keys whose applied versions did not only increase
    unknown_rows: int  # rows no writer wrote
    in_doubt_applied: int  # writes whose reply was lost that were journaled after all


def verify(pg: Pg, table: str, ledger: Ledger) -> Verdict:
    rows = {
        r[0]: (r[1], r[2]) for r in pg.cluster.fetch_all(f"SELECT id, version, seq FROM {table}")
    }
    lost = 0
    for key, (version, seq) in ledger.acked.items():
        got = rows.get(key)
        if got == (version, seq):
            continue
        if got is not None and ledger.in_doubt.get(got[1]) == key and got[0] > version:
            continue  # a later write whose reply was lost, journaled after all
        lost += 1
    unknown = sum(
        1
        for key, (_, seq) in rows.items()
        if key not in ledger.acked and ledger.in_doubt.get(seq) != key
    )
    applied_seqs = {r[0] for r in pg.cluster.fetch_all(f"SELECT seq FROM {table}_audit")}
    in_doubt_applied = len(applied_seqs & set(ledger.in_doubt))
    twice = pg.cluster.fetch_value(
        f"SELECT (SELECT count(*) - count(DISTINCT (id, version)) FROM {table}_audit) "
        f"+ (SELECT count(*) - count(DISTINCT seq) FROM {table}_audit)"
    )
    backwards = pg.cluster.fetch_value(
        f"SELECT count(DISTINCT id) FROM (SELECT id, version, "
        f"lag(version) OVER (PARTITION BY id ORDER BY n) AS prev FROM {table}_audit) a "
        "WHERE prev >= version"
    )
    return Verdict(len(ledger.acked), lost, int(twice), int(backwards), unknown, in_doubt_applied)


def assert_exact(v: Verdict) -> None:
    assert (v.lost, v.applied_twice, v.went_backwards, v.unknown_rows) == (0, 0, 0, 0), v


class Writers:
    """``threads`` writers, each owning its own keys (so per key, acks come in
    version order), appending ``total`` writes in batches of ``batch`` through
    write_many, recording every acknowledged write in the ledger. A batch that was
    not sent is retried; a batch whose outcome is unknown is recorded as in doubt."""

    def __init__(
        self,
        make_journal: Callable[[], Journal],
        total: int,
        keys: int,
        *,
        table: str,
        threads: int = 4,
        batch: int = 50,
    ) -> None:
        self.ledger = Ledger()
        self._table = table
        self._make = make_journal
        self._total, self._keys, self._threads, self._batch = total, keys, threads, batch
        self._seq = iter(range(1, 10**12))
        self._seq_lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.retries = 0
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def start(self) -> Writers:
        for w in self._workers:
            w.start()
        return self

    def join(self, timeout: float) -> None:
        for w in self._workers:
            w.join(timeout)
        assert not any(w.is_alive() for w in self._workers), "writers did not finish"
        assert not self.errors, self.errors

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        journal = self._make()
        wb = WriteBehind(journal, [target(self._table)])
        mine = [k for k in range(self._keys) if k % self._threads == index]
        share = self._total // self._threads
        done = 0
        try:
            while done < share:
                n = min(self._batch, share - done)
                with self._seq_lock:
                    seqs = [next(self._seq) for _ in range(n)]
                keys = [rng.choice(mine) for _ in range(n)]
                writes = [
                    Append(self._table, k, {"val": s * 7, "seq": s})
                    for k, s in zip(keys, seqs, strict=True)
                ]
                while True:
                    try:
                        acks = wb.write_many(writes)
                        break
                    except WriteOutcomeUnknown:
                        with self.ledger.lock:
                            self.ledger.in_doubt.update(zip(seqs, keys, strict=True))
                        acks = []
                        break
                    except CacheUnavailable:
                        self.retries += 1
                        time.sleep(0.02)
                with self.ledger.lock:
                    for k, s, a in zip(keys, seqs, acks, strict=False):
                        self.ledger.acked[k] = (a.version, s)
                    self.ledger.n_acked += len(acks)
                done += n
        except BaseException as exc:  # reported by join
            self.errors.append(exc)
        finally:
            journal.close()


# -- small correctness tests ------------------------------------------------------------


def test_durability_is_read_from_the_server(jredis: JournalRedis) -> None:
    j = jredis.journal("wb:dur")
    assert j.durability.mode is DurabilityMode.FSYNC_ALWAYS and j.durability.loss_window_s == 0
    j.client.config_set("appendfsync", "everysec")
    try:
        with pytest.raises(JournalNotDurable, match="everysec"):
            jredis.journal("wb:dur")
        weak = jredis.journal("wb:dur", accept_loss_window=True)
        assert weak.durability.mode is DurabilityMode.FSYNC_EVERYSEC
        wb = WriteBehind(weak)
        s = wb.stats()
        assert (s.durability, s.loss_window_s) == (DurabilityMode.FSYNC_EVERYSEC, 2.0)
        weak.close()
    finally:
        j.client.config_set("appendfsync", "always")
        j.close()


def test_newest_version_per_key_wins_in_any_batching(
    pg: Pg, jredis: JournalRedis, table: str
) -> None:
    j = jredis.journal(f"wb:{table}")
    wb = make_wb(pg, j, table, batch_size=7)
    rng = random.Random(1)
    last: dict[int, tuple[int, int]] = {}
    for seq in range(1, 301):
        key = rng.randrange(20)
        ack = wb.write(table, key, {"val": seq, "seq": seq})
        assert key not in last or ack.version > last[key][0]
        last[key] = (ack.version, seq)
    assert wb.stats().queue_depth == 300
    assert wb.drain() == 300
    rows = {
        r[0]: (r[1], r[2]) for r in pg.cluster.fetch_all(f"SELECT id, version, seq FROM {table}")
    }
    assert rows == last
    s = wb.stats()
    assert (s.queue_depth, s.flushed_entries, s.batches) == (0, 300, 43)
    assert s.flushed_rows == s.applied  # no replays: nothing skipped
    # Explicit versions: an older one is journaled, flushed, and refused by the guard.
    key = next(iter(last))
    wb.write(table, key, {"val": -1, "seq": -1}, version=last[key][0] - 1)
    wb.write(table, 10_000, {"val": 1, "seq": 1_000_001}, version=5)
    wb.write(table, 10_000, {"val": 2, "seq": 1_000_002}, version=4)
    wb.drain()
    assert (
        pg.cluster.fetch_one(f"SELECT version, seq FROM {table} WHERE id = %s", (key,)) == last[key]
    )
    assert pg.cluster.fetch_one(f"SELECT version, seq FROM {table} WHERE id = 10000") == (
        5,
        1_000_001,
    )
    assert wb.stats().skipped_not_newer >= 1
    assert_exact(verify(pg, table, _ledger(last | {10_000: (5, 1_000_001)})))
    wb.close()


def _ledger(acked: dict[int, tuple[int, int]]) -> Ledger:
    ledger = Ledger()
    ledger.acked = dict(acked)
    return ledger


class Crash(BaseException):
    """A simulated crash of the flusher (not an Exception: nothing catches it)."""


def test_replay_after_a_crash_between_commit_and_trim(
    pg: Pg, jredis: JournalRedis, table: str
) -> None:
    j = jredis.journal(f"wb:{table}")
    committed: list[FlushResult] = []

    def crash(result: FlushResult) -> None:
        committed.append(result)
        raise Crash

    first = make_wb(pg, j, table, batch_size=100, after_commit=crash)
    last: dict[int, tuple[int, int]] = {}
    for seq in range(1, 251):
        ack = first.write(table, seq % 40, {"val": seq, "seq": seq})
        last[seq % 40] = (ack.version, seq)
    with pytest.raises(Crash):
        first.flush_once()
    # The batch is in the database and still in the journal.
    assert committed[0].applied == committed[0].rows == 40
    assert pg.cluster.fetch_value(f"SELECT count(*) FROM {table}") == 40
    assert j.state().depth == 250
    # A new flusher replays from the journal: the committed batch is skipped, once.
    second = make_wb(pg, jredis.journal(f"wb:{table}"), table, batch_size=100)
    assert second.drain() == 250
    s = second.stats()
    assert s.skipped_not_newer == 40 and s.queue_depth == 0
    assert_exact(verify(pg, table, _ledger(last)))
    first.close()
    second.close()


def test_dirty_entries_stay_pinned_in_l1_until_flushed(
    pg: Pg, jredis: JournalRedis, table: str
) -> None:
    l1 = LocalCache(max_entries=50)
    j = jredis.journal(f"wb:{table}")
    wb = make_wb(pg, j, table, l1=l1, l1_key=lambda t, k: f"{t}:{k}", l1_ttl=0.05, batch_size=10)
    acks = [wb.write(table, k, {"val": k, "seq": k + 1}) for k in range(30)]
    # Fill L1 far past its bound and past the TTL: no dirty entry goes.
    for i in range(500):
        l1.set(f"other:{i}", i, ttl=60)
    time.sleep(0.1)
    for k, ack in enumerate(acks):
        hit = l1.get(f"{table}:{k}")
        assert (
            hit is not None and hit.value == {"val": k, "seq": k + 1} and hit.version == ack.version
        )
    assert l1.stats().pinned_entries == 30 and wb.stats().pinned == 30
    wb.flush_once()  # 10 flushed: exactly those 10 are released
    assert l1.stats().pinned_entries == 20
    # A writer in another process learns of flushes from the journal's watermark.
    other = make_wb(pg, jredis.journal(f"wb:{table}"), table)
    other.drain()
    assert wb.release_flushed() == 20
    assert l1.stats().pinned_entries == 0 and wb.stats().pinned == 0
    # A write that fails drops its key from L1: nothing unacknowledged is served.
    jredis.kill9()
    with pytest.raises(CacheUnavailable):
        wb.write(table, 3, {"val": 0, "seq": 0})
    assert l1.get(f"{table}:3") is None
    wb.close()
    other.close()


# -- crash acceptance -------------------------------------------------------------------


def flusher(
    pg: Pg, jredis: JournalRedis, stream: str, table: str, *extra: str
) -> subprocess.Popen[str]:
    args = [
        sys.executable, "-m", "tests.integration.wb_flusher",
        "--config", str(pg.config), "--port", str(jredis.port), "--password", jredis.password,
        "--stream", stream, "--table", table, *extra,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def drain_in_new_process(
    pg: Pg, jredis: JournalRedis, stream: str, table: str
) -> dict[str, object]:
    p = flusher(pg, jredis, stream, table, "--drain")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0
    stats: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return stats


def ready(p: subprocess.Popen[str]) -> None:
    """Wait until a flusher process is connected and flushing."""
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"


def kill9(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(10)


def test_crash_kill9_flusher_mid_flush(
    pg: Pg, jredis: JournalRedis, table: str, tmp_path: Path
) -> None:
    stream = f"wb:{table}"
    hold = tmp_path / "held.json"
    t0 = time.monotonic()
    writers = Writers(
        lambda: jredis.journal(stream), N, keys=max(N // 10, 100), table=table
    ).start()
    # 1: killed between the commit of its 3rd batch and the journal trim.
    f1 = flusher(pg, jredis, stream, table, "--hold-file", str(hold), "--hold-batch", "3")
    deadline = time.monotonic() + 120
    while not hold.exists():
        assert time.monotonic() < deadline and f1.poll() is None, "flusher never held"
        time.sleep(0.01)
    kill9(f1)
    held = json.loads(hold.read_text())
    j = jredis.journal(stream)
    assert j.client.xrange(stream, held["last_id"], held["last_id"]), "held batch was trimmed"
    # 2: killed at a random moment while it flushes a backlog.
    f2 = flusher(pg, jredis, stream, table, "--batch", "500")
    ready(f2)
    time.sleep(random.uniform(0.05, 0.3))
    kill9(f2)
    # 3: flushes until the writers are done, then is killed too.
    f3 = flusher(pg, jredis, stream, table)
    ready(f3)
    writers.join(timeout=600)
    kill9(f3)
    stats = drain_in_new_process(pg, jredis, stream, table)
    elapsed = time.monotonic() - t0
    v = verify(pg, table, writers.ledger)
    print(
        f"\nwrite-behind kill -9 flusher: N={N} acked={writers.ledger.n_acked} "
        f"keys={v.keys} lost={v.lost} applied_twice={v.applied_twice} "
        f"held_batch_rows={held['rows']} final_drain={stats['flushed_entries']} "
        f"in {elapsed:.1f} s"
    )
    assert writers.ledger.n_acked == N and not writers.ledger.in_doubt
    assert j.state().depth == 0
    assert_exact(v)
    j.close()


def test_crash_kill9_redis_mid_run(pg: Pg, jredis: JournalRedis, table: str) -> None:
    stream = f"wb:{table}"
    t0 = time.monotonic()
    f1 = flusher(pg, jredis, stream, table)
    ready(f1)
    writers = Writers(
        lambda: jredis.journal(stream), N, keys=max(N // 10, 100), table=table
    ).start()
    kills = 0
    for fraction in (0.3, 0.6):
        while writers.ledger.n_acked < N * fraction:
            time.sleep(0.005)
        jredis.kill9()
        kills += 1
        time.sleep(0.3)  # writers and the flusher see it down
        jredis.start()
    writers.join(timeout=600)
    f1.send_signal(signal.SIGTERM)
    f1.communicate(timeout=60)
    stats = drain_in_new_process(pg, jredis, stream, table)
    elapsed = time.monotonic() - t0
    v = verify(pg, table, writers.ledger)
    print(
        f"\nwrite-behind kill -9 redis x{kills}: N={N} acked={writers.ledger.n_acked} "
        f"in_doubt={len(writers.ledger.in_doubt)} (applied {v.in_doubt_applied}) "
        f"retries={writers.retries} keys={v.keys} lost={v.lost} "
        f"applied_twice={v.applied_twice} final_drain={stats['flushed_entries']} in {elapsed:.1f} s"
    )
    assert writers.ledger.n_acked + len(writers.ledger.in_doubt) == N
    assert_exact(v)


# -- through the cache façade -------------------------------------------------------------


def test_write_behind_through_the_cache(pg: Pg, jredis: JournalRedis, table: str) -> None:
    l1 = LocalCache(max_entries=50)
    remote = RemoteCache.connect("127.0.0.1", jredis.port, password=jredis.password)
    wb = make_wb(pg, jredis.journal(f"wb:{table}"), table, batch_size=10, poll_s=0.01)
    cache = Cache(f"wbc-{table}", local=l1, remote=remote, write_behind=wb)
    assert wb.l1 is l1  # the façade's L1, and its key names below
    before = cache.stats().write_behind
    assert before is not None and before.queue_depth == 0 and before.loss_window_s == 0.0

    # Writer-supplied versions (a row version column): L2 holds them too.
    acks = [
        cache.write_behind(table, k, {"val": k, "seq": k + 1}, version=1000 + k) for k in range(29)
    ]
    # A journal-assigned version (past L2's 2**53): L2's old value is invalidated.
    assert cache.set((table, 29), {"val": -1, "seq": -1})
    acks.append(cache.write_behind(table, 29, {"val": 29, "seq": 30}))
    assert acks[-1].version > 2**53
    assert Cache(f"wbc-{table}", remote=remote).get((table, 29)) is None

    def never() -> None:
        raise AssertionError("a write-behind value must be served without loading")

    # Before the flush: served from L1 (pinned, at the ack's version) and from L2.
    for i in range(200):  # L1 filled far past its bound: no dirty entry goes
        cache.set(("other", i), i)
    for k, ack in enumerate(acks):
        hit = l1.get(cache.name((table, k)))
        assert hit is not None and hit.version == ack.version
        assert cache.get((table, k), never) == {"val": k, "seq": k + 1}
    other = Cache(f"wbc-{table}", remote=remote)  # another process's view: L2 only
    assert other.get((table, 7)) == {"val": 7, "seq": 8}
    assert pg.cluster.fetch_one(f"SELECT count(*) FROM {table}")[0] == 0
    st = cache.stats().write_behind
    assert st is not None and st.queue_depth == 30 and st.pinned == 30
    assert st.journal_bytes > 0 and st.lag_s >= 0.0 and st.writes == 30
    assert l1.stats().pinned_entries == 30

    wb.start()  # the flusher drains the journal into PostgreSQL
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = cache.stats().write_behind
        assert st is not None
        if st.queue_depth == 0 and st.pinned == 0:
            break
        time.sleep(0.02)
    assert st.queue_depth == 0 and st.pinned == 0 and st.flushed_entries == 30
    assert l1.stats().pinned_entries == 0  # unpinned once flushed, still served
    assert cache.get((table, 3), never) == {"val": 3, "seq": 4}
    rows = pg.cluster.fetch_all(f"SELECT id, val, seq, version FROM {table} ORDER BY id")
    assert [tuple(r) for r in rows] == [(k, k, k + 1, ack.version) for k, ack in enumerate(acks)]
    assert cache.stats().to_dict()["write_behind"]["queue_depth"] == 0

    plain = Cache(f"wbc-{table}", local=LocalCache())
    assert plain.stats().write_behind is None
    with pytest.raises(CacheError, match="no write-behind"):
        plain.write_behind(table, 1, {"val": 1, "seq": 1})
    wb.close()
    remote.close()
