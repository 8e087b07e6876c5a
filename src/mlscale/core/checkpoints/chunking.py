"""Content-addressed chunks: a file is cut into fixed-size pieces (the last shorter),
each named by the sha256 of its bytes. Equal bytes give equal names, so a chunk that
two versions, two runs or two files share is stored once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["ChunkRef", "digest", "pieces", "verify"]


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a file: its sha256 (64 hex digits) and its size in bytes."""

    digest: str
    size: int

    def to_list(self) -> list[object]:
        """``[digest, size]``, the manifest's compact form."""
        return [self.digest, self.size]


def digest(data: bytes | bytearray | memoryview) -> str:
    """The sha256 of ``data``, in hex (hashlib releases the GIL on large buffers, so
    threads hash in parallel)."""
    return hashlib.sha256(data).hexdigest()


def verify(data: bytes | bytearray | memoryview, ref: ChunkRef) -> str | None:
    """None if ``data`` is the chunk ``ref`` names, else what differs (in words)."""
    if len(data) != ref.size:
        return f"{len(data):,} bytes where {ref.size:,} were stored"
    got = digest(data)
    if got != ref.digest:
        return f"sha256 {got[:16]}... where {ref.digest[:16]}... was stored"
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
