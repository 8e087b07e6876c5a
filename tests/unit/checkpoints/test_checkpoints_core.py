"""The checkpoint store's pure half: names, chunking, manifests, placement, retention,
and how sources are planned (no cluster)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from blake3 import blake3

from mlscale.core.checkpoints import names, placement
from mlscale.core.checkpoints.chunking import ChunkRef, digest, pieces, verify
from mlscale.core.checkpoints.manifest import (
    Checkpoint,
    FileEntry,
    files_from_json,
    files_to_json,
)
from mlscale.core.checkpoints.results import LoadResult, TransferProgress
from mlscale.errors import CheckpointError, QueryError
from mlscale.stores.checkpoints.sources import plan_sources, writing
from mlscale.stores.checkpoints.store import _lag_hint
from mlscale.stores.checkpoints.tables import not_replayed


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("model.safetensors", True),
        ("shards/model-00001-of-00002.safetensors", True),
        ("../etc/passwd", False),
        ("/abs", False),
        ("a//b", False),
        ("a/./b", False),
        ("", False),
        ("a\\b", False),
        ("nul\x00", False),
    ],
)
def test_file_names_stay_inside_the_checkpoint(name: str, ok: bool) -> None:
    if ok:
        assert names.check_file_name(name) == name
    else:
        with pytest.raises(CheckpointError):
            names.check_file_name(name)


@pytest.mark.parametrize(
    ("check", "value", "ok"),
    [
        (names.check_run, "run-7", True),
        (names.check_run, "team/run@2026-12-07", True),
        (names.check_run, "", False),
        (names.check_run, "-x", False),
        (names.check_run, "a b", False),
        (names.check_step, 0, True),
        (names.check_step, -1, False),
        (names.check_step, True, False),
        (names.check_step, 2**63, False),
        (names.check_keep, 1, True),
        (names.check_keep, 0, False),
        (names.check_chunk_size, 8 << 20, True),
        (names.check_chunk_size, 1024, False),
        (names.check_chunk_size, 1 << 30, False),
    ],
)
def test_checks(check: object, value: object, ok: bool) -> None:
    assert callable(check)
    if ok:
        assert check(value) == value
    else:
        with pytest.raises(CheckpointError):
            check(value)


class _Trickle(io.RawIOBase):
    """A stream that returns at most 3 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        out = self.data[self.at : self.at + min(n, 3)]
        self.at += len(out)
        return out


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 30, 31])
def test_pieces_are_full_but_the_last_even_from_short_reads(size: int) -> None:
    data = bytes(range(256)) * 1
    data = (data * (size // 256 + 1))[:size]
    for stream in (io.BytesIO(data), _Trickle(data)):
        got = list(pieces(stream.read, 10))
        assert b"".join(got) == data
        assert all(len(p) == 10 for p in got[:-1])
        assert not got or 0 < len(got[-1]) <= 10


def test_digest_and_verify() -> None:
    # BLAKE3's published hash of the empty input (a chunk's name is the 256-bit hash)
    assert digest(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    data = b"weights" * 1000
    ref = ChunkRef(blake3(data).hexdigest(), len(data))
    assert digest(data) == ref.digest
    assert digest(memoryview(data)) == ref.digest
    assert verify(data, ref) is None
    flipped = bytearray(data)
    flipped[5] ^= 1
    assert "BLAKE3" in (verify(bytes(flipped), ref) or "")
    assert "bytes where" in (verify(data[:-1], ref) or "")


def _ckpt() -> Checkpoint:
    a, b = ChunkRef("a" * 64, 10), ChunkRef("b" * 64, 4)
    files = (FileEntry("x.bin", 24, (a, a, b)), FileEntry("y/z.bin", 10, (a,)))
    return Checkpoint("run", 3, files, 34, 10, "s1", {"loss": 0.5})


def test_manifest_round_trips_through_json_and_counts_chunks() -> None:
    ckpt = _ckpt()
    assert files_from_json(files_to_json(ckpt.files)) == ckpt.files
    assert ckpt.chunk_count == 4 and ckpt.digests() == ["a" * 64, "b" * 64]
    assert ckpt.file("y/z.bin").size == 10
    info = ckpt.info()
    assert (info.files, info.chunks, info.total_bytes) == (2, 4, 34)
    assert ckpt.to_dict()["files"][0]["chunks"][2] == ["b" * 64, 4]
    with pytest.raises(CheckpointError, match="2 files"):
        ckpt.file(None)
    with pytest.raises(CheckpointError, match="no file"):
        ckpt.file("nope")
    with pytest.raises(CheckpointError, match="add up"):
        FileEntry("bad", 11, (ChunkRef("a" * 64, 10),))


def test_placement_groups_distinct_digests_in_first_seen_order() -> None:
    got = placement.by_group(["c", "a", "b", "a", "d"], lambda d: "g0" if d < "c" else "g1")
    assert got == {"g1": ["c", "d"], "g0": ["a", "b"]}


@pytest.mark.parametrize(
    ("steps", "keep", "kept", "dropped"),
    [
        ([1, 2, 3, 4], 2, [4, 3], [2, 1]),
        ([5], 3, [5], []),
        ([], 1, [], []),
        ([10, 2, 30], 1, [30], [10, 2]),
    ],
)
def test_retention_keeps_the_highest_steps(
    steps: list[int], keep: int, kept: list[int], dropped: list[int]
) -> None:
    assert placement.retention(steps, keep) == (kept, dropped)


def test_unreferenced_leaves_chunks_other_checkpoints_name() -> None:
    assert placement.unreferenced(["a", "b", "c", "a"], ["b"]) == ["a", "c"]


def test_progress_fraction() -> None:
    assert TransferProgress("r", 1, 5, 10, 1, 1, "f").fraction == 0.5
    assert TransferProgress("r", 1, 5, None, 1, 1, "f").fraction is None
    assert TransferProgress("r", 1, 0, 0, 0, 0, "f").fraction == 1.0


def test_load_result_counts_primary_fallbacks() -> None:
    done = LoadResult("r", 1, ("<stream>",), 10, 2, 0.5)
    assert done.primary_fallbacks == 0
    more = LoadResult("r", 1, ("x",), 10, 2, 0.5, primary_fallbacks=2)
    assert more.to_dict()["primary_fallbacks"] == 2


def test_a_replica_behind_the_first_save_and_the_not_found_hint() -> None:
    assert not_replayed(QueryError("no table", sqlstate="42P01", node="g0-replica1"))
    assert not not_replayed(QueryError("syntax", sqlstate="42601"))
    assert not not_replayed(QueryError("refused by the driver"))
    assert "token=" in _lag_hint(None, None)
    assert "token=" in _lag_hint("eventual", None)
    assert _lag_hint("strong", None) == _lag_hint(None, "c1") == ""


def test_sources_directory_mapping_bytes_and_streams(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.bin").write_bytes(b"bb")
    (tmp_path / "d" / "sub" / "a.bin").write_bytes(b"a")
    assert [(f.name, f.size) for f in plan_sources(tmp_path / "d")] == [
        ("b.bin", 2),
        ("sub/a.bin", 1),
    ]
    assert [f.name for f in plan_sources(tmp_path / "d" / "b.bin")] == ["b.bin"]
    assert [(f.name, f.size) for f in plan_sources(b"xyz", "w.bin")] == [("w.bin", 3)]
    stream = io.BytesIO(b"12345")
    stream.read(2)
    assert plan_sources(stream)[0].size == 3
    both = plan_sources({"m/x": b"1", "y": io.BytesIO(b"22")})
    assert [f.name for f in both] == ["m/x", "y"]
    with pytest.raises(CheckpointError, match="twice"):
        plan_sources({"x": tmp_path / "d"} | {"x/b.bin": b""}, None)
    with pytest.raises(CheckpointError, match="neither"):
        plan_sources(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="cannot save"):
        plan_sources(42)  # type: ignore[arg-type]


def test_writing_renames_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out" / "w.bin"
    with writing(target, fsync=True) as out:
        out.write(b"ok")
    assert target.read_bytes() == b"ok"
    with pytest.raises(RuntimeError), writing(tmp_path / "bad.bin", fsync=False) as out:
        out.write(b"half")
        raise RuntimeError("stop")
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.partial").exists()
