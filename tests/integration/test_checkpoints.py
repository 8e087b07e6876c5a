"""The checkpoint store on a real cluster of 2 shard groups (primaries only, one
cluster for the module): a 1 GB checkpoint round-trips bit-exactly, versions share
their unchanged chunks, ``kill -9`` of an uploading process leaves no visible
checkpoint and the resumed save sends only the missing chunks, retention removes
what only old checkpoints named, a flipped byte is caught on load, gc collects an
abandoned upload. Chunk rows are counted on the servers, not by the client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlscale import CheckpointCorrupt, CheckpointError, CheckpointNotFound, Cluster, LocalCluster
from mlscale.core.checkpoints import sql
from mlscale.stores.checkpoints import Checkpoints, TransferProgress
from tests.conftest import run_cli
from tests.integration.local_clusters import throwaway_cluster

MIB = 1 << 20
GB = 1 << 30
CHILD = Path(__file__).with_name("checkpoints_kill_child.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    with throwaway_cluster("mlscale-ckpt-", shards=2, replicas=0, redis=False) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.from_file(local.layout.config) as c:
        yield c


@pytest.fixture()
def store(cluster: Cluster) -> Checkpoints:
    return Checkpoints(cluster, chunk_size=MIB)


def _random_file(path: Path, size: int, seed: int) -> Path:
    """``size`` bytes of a seeded generator, written 64 MiB at a time."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 64 * MIB)
            out.write(rng.bytes(n))
            left -= n
    return path


def _generated_gb(path: Path) -> str:
    """1 GiB whose 128 chunks of 8 MiB all differ (each a different window of 9 MiB of
    random bytes, stamped with its index), written and hashed in one pass; its sha256."""
    base = np.random.default_rng(1).bytes(9 * MIB)
    h = hashlib.sha256()
    with open(path, "wb") as out:
        for i in range(128):
            start = (i * 40_961) % MIB
            block = i.to_bytes(8, "big") + base[start + 8 : start + 8 * MIB]
            h.update(block)
            out.write(block)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def _chunk_rows(cluster: Cluster) -> int:
    if cluster.as_written("g0").fetch_value("SELECT to_regclass(%s)", (sql.CHUNKS,)) is None:
        return 0
    return sum(
        int(cluster.as_written(g.name).fetch_value(f"SELECT count(*) FROM {sql.CHUNKS}"))  # noqa: S608
        for g in cluster.config.shard_groups
    )


def test_one_gb_round_trips_bit_exactly(cluster: Cluster, tmp_path: Path) -> None:
    started = time.monotonic()
    src = tmp_path / "model.safetensors"
    expected = _generated_gb(src)
    store = Checkpoints(cluster)  # the default 8 MiB chunks
    seen: list[TransferProgress] = []
    saved = store.save("big", 1, src, metadata={"loss": 0.5}, progress=seen.append)
    assert (saved.files, saved.total_bytes, saved.chunks) == (1, GB, 128)
    assert saved.sent == 128 and saved.skipped == 0 and not saved.resumed
    assert len(saved.groups) == 2 and all(n > 20 for n in saved.groups.values())
    assert seen[-1].done_bytes == GB and seen[-1].fraction == 1.0
    got = store.get("big")
    assert got.step == 1 and got.metadata == {"loss": 0.5} and got.files[0].path == src.name
    out = tmp_path / "restored"
    loaded = store.load("big", out)
    assert loaded.total_bytes == GB and loaded.chunks == 128
    restored = out / src.name if out.is_dir() else out
    assert _sha256(restored) == expected
    took = time.monotonic() - started
    print(
        f"\n1 GB: save {saved.elapsed_s:.1f} s ({saved.mb_per_s:.0f} MB/s), load "
        f"{loaded.elapsed_s:.1f} s ({loaded.mb_per_s:.0f} MB/s); test {took:.1f} s"
    )


def test_versions_share_unchanged_chunks(
    store: Checkpoints, cluster: Cluster, tmp_path: Path
) -> None:
    v1 = _random_file(tmp_path / "w.bin", 12 * MIB + 123, seed=2)
    before = _chunk_rows(cluster)
    first = store.save("dedup", 1, v1)
    assert (first.chunks, first.sent) == (13, 13)
    data = bytearray(v1.read_bytes())
    for i in (3, 9):  # two chunks change
        data[i * MIB + 7] ^= 0xFF
    second = store.save("dedup", 2, bytes(data), name="w.bin")
    assert (second.sent, second.skipped, second.bytes_sent) == (2, 11, 2 * MIB)
    assert _chunk_rows(cluster) == before + 15
    assert store.read_bytes("dedup", step=2, token=second.token) == bytes(data)
    assert second.token.startswith("c1")  # the manifest commit's causal token
    assert store.read_bytes("dedup", step=1) == v1.read_bytes()
    # A directory of files and a mapping of streams: same chunks, nothing sent.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(bytes(data))
    again = store.save("dedup", 3, {"x/a.bin": io.BytesIO(bytes(data)), "b": b""})
    assert (again.sent, again.files) == (0, 2)
    with pytest.raises(CheckpointError, match="exists"):
        store.save("dedup", 3, b"other")
    store.load("dedup", tmp_path / "out3", step=3)
    assert (tmp_path / "out3" / "x" / "a.bin").read_bytes() == bytes(data)
    assert (tmp_path / "out3" / "b").read_bytes() == b""


def _child(config: Path, run: str, step: int, path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(config), run, str(step), str(path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_kill_midway_then_resume_sends_only_missing_chunks(
    local: LocalCluster, store: Checkpoints, cluster: Cluster, tmp_path: Path
) -> None:
    total = 128
    src = _random_file(tmp_path / "k.bin", total * MIB, seed=3)
    before = _chunk_rows(cluster)
    child = _child(local.layout.config, "killed", 7, src)
    sent_at_kill = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            parts = line.split()
            if parts[0] == "chunk" and int(parts[2]) >= 16:
                os.kill(child.pid, signal.SIGKILL)
                sent_at_kill = int(parts[2])
                break
    finally:
        if child.poll() is None and sent_at_kill == 0:
            os.kill(child.pid, signal.SIGKILL)
        _, err = child.communicate()
    assert child.returncode == -signal.SIGKILL, err[-2000:]
    # Nothing visible: no checkpoint, the upload session remains.
    with pytest.raises(CheckpointNotFound):
        store.get("killed", 7, consistency="strong")
    assert all(i.run != "killed" for i in store.list_checkpoints())
    session = [u for u in store.uploads() if u.run == "killed"]
    assert len(session) == 1
    stored = _chunk_rows(cluster) - before
    assert sent_at_kill <= stored < total  # killed midway (sends in flight may land)

    resumed = store.save("killed", 7, src)
    assert resumed.resumed and resumed.session == session[0].session
    assert resumed.sent == total - stored and resumed.skipped == stored
    assert _chunk_rows(cluster) - before == total
    assert store.uploads() == [u for u in store.uploads() if u.run != "killed"]
    out = tmp_path / "k.out"
    store.load("killed", out)
    assert _sha256(out) == _sha256(src)
    print(f"\nkill: {sent_at_kill} chunks reported sent, {stored} stored, {resumed.sent} resent")


def test_keep_last_removes_what_only_old_checkpoints_named(
    store: Checkpoints, cluster: Cluster
) -> None:
    shared = os.urandom(2 * MIB)
    for step in range(1, 5):  # each step: 2 shared chunks + 1 of its own
        store.save("kept", step, shared + bytes([step]) * MIB)
    rows = _chunk_rows(cluster)
    result = store.keep_last("kept", 2, grace_s=0)
    assert (result.kept, result.deleted) == ((4, 3), (2, 1))
    assert (result.chunks_removed, result.bytes_removed) == (2, 2 * MIB)
    assert _chunk_rows(cluster) == rows - 2
    assert [i.step for i in store.list_checkpoints("kept")] == [3, 4]
    assert store.read_bytes("kept") == shared + bytes([4]) * MIB
    assert store.read_bytes("kept", step=3) == shared + bytes([3]) * MIB
    # Within the grace period a deletion keeps the chunks (gc takes them later).
    late = store.delete("kept", 3)
    assert late.deleted == (3,) and late.chunks_removed == 0


def test_flipped_byte_is_caught_on_load(
    store: Checkpoints, cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(3 * MIB)
    store.save("corrupt", 1, data, name="weights.bin")
    ref = store.get("corrupt").files[0].chunks[1]
    group = cluster.shards().map_of(sql.CHUNK_FAMILY).locate(ref.digest)
    changed = cluster.as_written(group).execute(
        f"UPDATE {sql.CHUNKS} SET data = set_byte(data, 100, (get_byte(data, 100) + 1) %% 256) "  # noqa: S608
        "WHERE digest = %s",
        (ref.digest,),
    )
    assert changed == 1
    out = tmp_path / "weights.bin"
    with pytest.raises(CheckpointCorrupt, match="corrupt") as caught:
        store.load("corrupt", out)
    assert caught.value.digest == ref.digest and caught.value.group == group
    assert caught.value.file == "weights.bin"
    assert not out.exists() and not (tmp_path / "weights.bin.partial").exists()
    # Into a stream as well: the chunks before the bad one are written, none of it.
    stream = io.BytesIO()
    with pytest.raises(CheckpointCorrupt, match="corrupt"):
        store.load("corrupt", stream)
    assert stream.getvalue() == data[:MIB]
    # A chunk gone from its group is named as missing.
    cluster.as_written(group).execute(
        f"DELETE FROM {sql.CHUNKS} WHERE digest = %s",  # noqa: S608
        (ref.digest,),
    )
    with pytest.raises(CheckpointCorrupt, match="missing") as caught:
        store.load("corrupt", io.BytesIO())
    assert caught.value.digest == ref.digest
    store.delete("corrupt", 1, grace_s=0)


class _Failing(io.RawIOBase):
    """A stream that fails after ``good`` bytes (an upload abandoned midway)."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the disk went away")
        n = min(n, self.left)
        self.left -= n
        return os.urandom(n)


def test_gc_collects_an_abandoned_upload_after_its_grace(
    store: Checkpoints, cluster: Cluster
) -> None:
    before = _chunk_rows(cluster)
    with pytest.raises(OSError, match="went away"):
        store.save("abandoned", 1, _Failing(8 * MIB))
    with pytest.raises(CheckpointNotFound):
        store.get("abandoned")
    orphans = _chunk_rows(cluster) - before
    assert orphans >= 4  # batches of `workers` chunks were sent before the failure
    kept = store.gc(grace_s=3600)
    assert (kept.uploads_forgotten, kept.chunks_removed) == (0, 0)
    swept = store.gc(grace_s=0)
    assert swept.uploads_forgotten >= 1 and swept.chunks_removed >= orphans
    assert all(u.run != "abandoned" for u in store.uploads())
    # The small committed checkpoints still load, verified (none lost a chunk).
    for info in store.list_checkpoints():
        if info.total_bytes <= 64 * MIB:
            for f in store.get(info.run, info.step).files:
                store.load(info.run, io.BytesIO(), step=info.step, file=f.path)


def test_cli_save_list_load(local: LocalCluster, tmp_path: Path) -> None:
    src = tmp_path / "m"
    src.mkdir()
    (src / "a.safetensors").write_bytes(os.urandom(3 * MIB + 5))
    (src / "b.json").write_bytes(b"{}")
    where = ("--config", str(local.layout.config))
    saved = run_cli("checkpoints", "save", "cli", "5", str(src), "--chunk-mib", "1", *where)
    assert saved.returncode == 0, saved.stderr
    assert "saved cli@5" in saved.stdout and "5 chunk(s) sent" in saved.stdout
    listed = run_cli("checkpoints", "list", "cli", "--json", *where)
    assert [i["step"] for i in json.loads(listed.stdout)] == [5]
    loaded = run_cli("checkpoints", "load", "cli", str(tmp_path / "out"), *where)
    assert loaded.returncode == 0, loaded.stderr
    for name in ("a.safetensors", "b.json"):
        assert (tmp_path / "out" / name).read_bytes() == (src / name).read_bytes()
    missing = run_cli("checkpoints", "load", "nope", str(tmp_path / "x"), *where)
    assert missing.returncode == 1 and "no checkpoint of run 'nope'" in missing.stderr
