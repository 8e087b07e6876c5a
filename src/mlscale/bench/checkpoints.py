"""``mlscale bench checkpoints``: write and read MB/s of the checkpoint store against
writing and reading the same bytes as a local file.

One local cluster of 2 shard groups (no replicas). Each round makes a new checkpoint
file (1 GiB; 256 MiB with ``--quick``) whose 8 MiB chunks all differ from every
earlier round's (so nothing is deduplicated: every chunk is sent), then runs, in
this order, alternating over at least 5 rounds after a warm-up:

- ``mlscale_write``: ``Checkpoints.save`` of the file (read, hashed, sent by 4
  workers over both groups, manifest committed); the servers' commits are durable
  (fsync'd WAL, the local cluster's default);
- ``local_write``: the same bytes copied into a local file by 8 MiB blocks, then
  fsync'd: a durable local save;
- ``mlscale_read``: ``Checkpoints.load`` of that checkpoint into a sink that drops
  the bytes (every chunk fetched and its BLAKE3 hash verified);
- ``local_read``: the local file read by 8 MiB blocks after
  ``posix_fadvise(DONTNEED)`` dropped its own clean pages from the page cache
  (no root, nothing else evicted): a read from the device;
- ``local_read_cached``: the same file read again, from the page cache.

The servers' data is written moments before it is read: their reads come from
PostgreSQL's buffers and the page cache, like ``local_read_cached``; dropping their
cache would need root-wide effects, so none of the comparisons is cold against cold.
The servers run with ``shared_buffers`` of 1 GiB each (``SERVER_CACHE``; 2 GiB of the
machine's memory, under the quarter of RAM PostgreSQL's documentation suggests for a
server) instead of the local cluster's 128 MB default, which is too small to hold a
1 GiB checkpoint: with it, every 8 KB page of a chunk is first copied in from the page
cache (measured: 806 against 935 MB/s, 1 GiB read by 4 threads over 2 groups,
alternating restarts).
Gate: ``read_ratio_vs_local_file`` (median mlscale_read / median local_read) >= 0.5,
and every checkpoint read back bit-exactly (checked once, outside the timed rounds).
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from psycopg import sql

from ..core.topology import Role, nodes_of
from ..engine.cluster_sync import Cluster
from ..engine.connect import connect
from ..local.cluster import LocalCluster
from ..stores.checkpoints import Checkpoints
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "Plan", "run"]

GROUPS = 2
WORKERS = 4
MIB = 1 << 20
CHUNK = 8 * MIB
BLOCK = 8 * MIB  # the local file's read and write size
GATE_READ_RATIO = 0.5
SERVER_CACHE = "1GB"  # each server's shared_buffers (see the module docstring)
RUN = "bench"


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and rounds of one run (quick or full)."""

    size_bytes: int
    rounds: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(size_bytes=128 * MIB, rounds=5)
        return cls(size_bytes=1024 * MIB, rounds=5)


class _Sink:
    """A writable that keeps nothing (what the read variant writes into)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


class _Hashing(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return super().write(data)


def _size_server_caches(local: LocalCluster) -> None:
    """``shared_buffers = SERVER_CACHE`` on every group's primary, then a restart (the
    setting takes effect only at server start)."""
    config = local.config()
    for node in (n for n in nodes_of(config) if n.role is Role.PRIMARY):
        with connect(node, config) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(SERVER_CACHE))
            )
    local.down()
    local.up()


def _make_file(path: Path, size: int, stamp: int, base: bytes) -> str:
    """``size`` bytes whose chunks differ from every other stamp's (each a window of
    ``base`` with the stamp and chunk index at its head); their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as out:
        for i in range(size // CHUNK):
            start = (i * 40_961 + stamp * 7_919) % MIB
            block = stamp.to_bytes(8, "big") + i.to_bytes(8, "big")
            block += base[start + 16 : start + CHUNK]
            h.update(block)
            out.write(block)
    return h.hexdigest()


def _copy_fsync(src: Path, dst: Path) -> None:
    with open(src, "rb") as inp, open(dst, "wb") as out:
        while block := inp.read(BLOCK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _read(path: Path, drop_cache: bool) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        size = 0
        while block := os.read(fd, BLOCK):
            size += len(block)
        return size
    finally:
        os.close(fd)


def run(ctx: BenchContext) -> BenchResult:
    """Gate: read >= 0.5x the local file's read rate; every checkpoint bit-exact."""
    plan = Plan.of(ctx.quick)
    result = BenchResult(
        name="checkpoints",
        title=(
            f"Checkpoints: write and read MB/s of a {plan.size_bytes // MIB} MiB checkpoint on "
            f"{GROUPS} groups vs the same bytes as a local file"
        ),
    )
    progress = Progress(quiet=ctx.quiet)
    mb = plan.size_bytes / 1e6
    scratch = ctx.workdir / "checkpoint-files"
    scratch.mkdir(parents=True, exist_ok=True)
    src, local_file = scratch / "source.bin", scratch / "local.bin"
    base = np.random.default_rng(20261207).bytes(CHUNK + MIB)
    state: dict[str, int] = {"step": 0}
    expected: dict[int, str] = {}
    with ExitStack() as stack:
        with progress.phase("starting the cluster", 1) as phase:
            phase.step("up")
            local = LocalCluster(ctx.workdir / "checkpoints")
            stack.callback(local.destroy)
            local.up(shards=GROUPS, replicas=0, redis=False)
            _size_server_caches(local)
            cluster = stack.enter_context(Cluster(local.config()))
            store = Checkpoints(cluster, chunk_size=CHUNK, workers=WORKERS)

        def mlscale_write() -> float:
            state["step"] += 1
            step = state["step"]
            expected[step] = _make_file(src, plan.size_bytes, step, base)  # not timed
            t0 = time.perf_counter()
            saved = store.save(RUN, step, src)
            took = time.perf_counter() - t0
            if saved.sent != saved.chunks:
                raise RuntimeError(f"round {step}: {saved.skipped} chunks were deduplicated")
            return mb / took

        def local_write() -> float:
            t0 = time.perf_counter()
            _copy_fsync(src, local_file)
            return mb / (time.perf_counter() - t0)

        def mlscale_read() -> float:
            t0 = time.perf_counter()
            store.load(RUN, _Sink(), step=state["step"])  # type: ignore[arg-type]
            return mb / (time.perf_counter() - t0)

        def local_read(drop_cache: bool) -> float:
            t0 = time.perf_counter()
            _read(local_file, drop_cache)
            return mb / (time.perf_counter() - t0)

        cpu0, wall0 = time.process_time(), time.perf_counter()
        runs = ab_rounds(
            {
                "mlscale_write": mlscale_write,
                "local_write": local_write,
                "mlscale_read": mlscale_read,
                "local_read": lambda: local_read(True),
                "local_read_cached": lambda: local_read(False),
            },
            rounds=plan.rounds, progress=progress, title="write and read, alternating",
        )  # fmt: skip
        client_cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        with progress.phase("checking every checkpoint bit-exactly", len(expected)) as phase:
            exact = True
            for step, want in expected.items():
                phase.step(f"step {step}")
                sink = _Hashing()
                store.load(RUN, sink, step=step)  # type: ignore[arg-type]
                exact = exact and sink.h.hexdigest() == want and sink.size == plan.size_bytes
    _report(result, plan, runs, exact, client_cores)
    _print_figures(result)
    return result


def _report(
    result: BenchResult,
    plan: Plan,
    runs: dict[str, list[float]],
    exact: bool,
    client_cores: float,
) -> None:
    rates = {k: Spread.of(v) for k, v in runs.items()}
    read_ratio = ratio_of_medians(rates["mlscale_read"], rates["local_read"])
    result.params = {
        "groups": GROUPS,
        "replicas_per_group": 0,
        "checkpoint_bytes": plan.size_bytes,
        "chunk_bytes": CHUNK,
        "workers": WORKERS,
        "server_shared_buffers": SERVER_CACHE,
        "rounds": plan.rounds,
        "local_block_bytes": BLOCK,
    }
    result.metrics = {
        **spread_metrics(rates, "_mb_per_s"),
        "read_ratio_vs_local_file": read_ratio,
        "read_ratio_vs_local_file_rounds": paired_ratios(
            runs["mlscale_read"], runs["local_read"]
        ).as_dict(),
        "read_ratio_vs_cached_file": ratio_of_medians(
            rates["mlscale_read"], rates["local_read_cached"]
        ),
        "write_ratio_vs_local_file": ratio_of_medians(rates["mlscale_write"], rates["local_write"]),
        "bit_exact": exact,
        "client_cpu_cores": client_cores,
    }
    result.gates = [
        Verdict("read_ratio_vs_local_file", read_ratio, ">=", GATE_READ_RATIO, "x"),
        Verdict("bit_exact", 1.0 if exact else 0.0, ">=", 1.0),
    ]
    result.charts = [
        chart(
            "Checkpoint write and read (median of rounds, min..max)",
            "MB/s",
            {
                "write": {k: rates[k] for k in ("mlscale_write", "local_write")},
                "read": {k: rates[k] for k in ("mlscale_read", "local_read", "local_read_cached")},
            },
        )
    ]
    cpus = os.cpu_count() or 1
    result.notes = [
        f"client and {GROUPS} PostgreSQL primaries share one {cpus}-CPU machine over loopback",
        "MB = 10**6 bytes; each round's checkpoint has new chunks (nothing deduplicated)",
        "local_read: the file's own pages dropped with posix_fadvise(DONTNEED) first, so it "
        "reads the device (a VM's disk may be cached by its host); local_read_cached: the "
        "page cache. The servers' reads come from their caches (written moments before): "
        "dropping those needs root-wide effects",
        "mlscale_read verifies every chunk's BLAKE3 hash and drops the bytes; a load into a file "
        "adds the local write",
        "mlscale_write includes reading the source file (page cache) and hashing it",
        f"each server's shared_buffers is {SERVER_CACHE} (the local cluster's default: 128MB, "
        "too small to hold the checkpoint)",
    ]


def _print_figures(result: BenchResult) -> None:
    m = result.metrics
    lines = []
    for name in ("mlscale_write", "local_write", "mlscale_read", "local_read", "local_read_cached"):
        s = m[f"{name}_mb_per_s"]
        lines.append(f"  {name:<18} {s['median']:8.0f} MB/s ({s['min']:.0f}..{s['max']:.0f})")
    lines.append(
        f"  read vs local file {m['read_ratio_vs_local_file']:.2f}x   vs cached "
        f"{m['read_ratio_vs_cached_file']:.2f}x   write vs local "
        f"{m['write_ratio_vs_local_file']:.2f}x   bit-exact {m['bit_exact']}"
    )
    print("\n".join(lines))


BENCHMARK = Benchmark(name="checkpoints", title="Checkpoint write and read MB/s", run=run)
