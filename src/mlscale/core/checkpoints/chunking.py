"""Content-addressed chunks: a file is cut into fixed-size pieces (the last shorter),
each named by the BLAKE3 hash (256 bits) of its bytes. Equal bytes give equal names,
so a chunk that two versions, two runs or two files share is stored once.

Why BLAKE3 and not sha256: a load verifies every chunk it reads, and on the 2-core
machine the checkpoint benchmark runs on, sha256 (1.9 GB/s a core, with the CPU's SHA
instructions) took about a quarter of all CPU during a load, which the transfer
needed: reads went at 718 MB/s hashing with sha256, 941 with BLAKE3 (7.2 GB/s a core
here) and 1,065 hashing nothing (1 GiB, 4 threads, 2 groups, alternating, median of
5). BLAKE3 is a cryptographic hash like sha256 (a chunk's name still proves its
bytes), and it releases the GIL as hashlib does, so threads hash in parallel."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from blake3 import blake3

__all__ = ["ChunkRef", "digest", "pieces", "verify"]


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a file: its BLAKE3 hash (64 hex digits) and its size in bytes."""

    digest: str
    size: int

    def to_list(self) -> list[object]:
        """``[digest, size]``, the manifest's compact form."""
        return [self.digest, self.size]


def digest(data: bytes | bytearray | memoryview) -> str:
    """The BLAKE3 hash of ``data`` (256 bits), in hex; single-threaded (callers run
    several at once), without the GIL."""
    return blake3(data).hexdigest()


def verify(data: bytes | bytearray | memoryview, ref: ChunkRef) -> str | None:
    """None if ``data`` is the chunk ``ref`` names, else what differs (in words)."""
    if len(data) != ref.size:
        return f"{len(data):,} bytes where {ref.size:,} were stored"
    got = digest(data)
    if got != ref.digest:
        return f"BLAKE3 {got[:16]}... where {ref.digest[:16]}... was stored"
    return None


def pieces(read: Callable[[int], bytes], chunk_size: int) -> Iterator[bytes]:
    """The chunks of a stream, read with ``read(n)`` (a file's ``read``): each exactly
    ``chunk_size`` bytes but the last; a stream that returns short reads is read until
    the chunk is full or the stream ends. Nothing for an empty stream."""
    while True:
        data = read(chunk_size)
        if not data:
            return
        if len(data) < chunk_size:
            parts = [data]
            have = len(data)
            while have < chunk_size:
                more = read(chunk_size - have)
                if not more:
                    break
                parts.append(more)
                have += len(more)
            data = b"".join(parts)
        yield bytes(data)
        if len(data) < chunk_size:
            return
