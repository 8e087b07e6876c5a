"""A load's read path: a file's chunks fetched by a pool of threads, each verified
against its BLAKE3 address before a byte of it is written, written in order.

Each chunk is one binary ``COPY (SELECT data ...) TO STDOUT`` on its group: a replica
fit for the call first, then the primary if the replica lacks the row or the table
itself (it has not replayed the chunk's insert, or the store's first save, yet). A
chunk never changes, so any copy of it that verifies is the one saved, and a read on
a replica needs no causal token; a load counts the chunks the primary had to serve.
The bytes arrive as the driver's own buffer and are hashed and written as a
``memoryview``, never copied into a ``bytes`` (why, and what it was measured to
gain: ``core/checkpoints/wire.py``).
Threads overlap one chunk's transfer with another's hashing (BLAKE3 and the socket
waits release the GIL). A window of ``workers + 2`` chunks bounds memory to about
that many chunks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

from psycopg import sql as pgsql

from ...core.checkpoints import sql
from ...core.checkpoints.chunking import ChunkRef, verify
from ...core.checkpoints.manifest import FileEntry
from ...core.checkpoints.wire import WireError, single_value
from ...engine.cluster_sync import Cluster
from ...errors import CheckpointCorrupt
from .tables import unless_not_replayed

__all__ = ["ChunkReader"]

OnChunk = Callable[[str, int], None]  # (file, bytes) after each chunk is written


class ChunkReader:
    """Reads checkpoint files chunk by chunk from ``cluster`` (see the module
    docstring); ``workers`` is the size of the pool the caller gives to
    :meth:`read_file`."""

    def __init__(self, cluster: Cluster, workers: int) -> None:
        self._cluster = cluster
        self._workers = workers

    def read_file(
        self, pool: ThreadPoolExecutor, entry: FileEntry, out: IO[bytes], on_chunk: OnChunk
    ) -> int:
        """Write ``entry``'s chunks to ``out`` in order, each verified first;
        CheckpointCorrupt (nothing of the bad chunk written) if one is missing or wrong.
        Returns how many of its chunks the primary served after a replica lacked them."""
        where = self._cluster.shards().map_of(sql.CHUNK_FAMILY)
        window: deque[Future[tuple[memoryview, bool]]] = deque()
        chunks = iter(entry.chunks)
        depth = self._workers + 2
        fallbacks = 0
        while True:
            while len(window) < depth:
                ref = next(chunks, None)
                if ref is None:
                    break
                window.append(pool.submit(self.fetch, where.locate(ref.digest), ref, entry.path))
            if not window:
                return fallbacks
            try:
                data, fell_back = window.popleft().result()
            except BaseException:
                for f in window:
                    f.cancel()
                raise
            out.write(data)
            fallbacks += fell_back
            on_chunk(entry.path, len(data))

    def fetch(self, group: str, ref: ChunkRef, file: str) -> tuple[memoryview, bool]:
        """Chunk ``ref`` from ``group`` (a replica, else the primary), verified, and
        whether it came from the primary after the first read found no row."""
        query = pgsql.SQL(sql.COPY_CHUNK).format(pgsql.Literal(ref.digest)).as_string(None)
        scope = self._cluster.as_written(group)
        try:
            data = unless_not_replayed(lambda: single_value(scope.copy_out(query)), None)
            fell_back = data is None
            if fell_back:  # a replica behind the chunk's insert: ask the primary
                data = single_value(scope.copy_out(query, consistency="strong"))
        except WireError as exc:
            raise CheckpointCorrupt(
                f"file {file!r}: chunk {ref.digest[:16]}... from group {group} came "
                f"malformed ({exc})",
                digest=ref.digest, file=file, group=group,
            ) from exc  # fmt: skip
        if data is None:
            raise CheckpointCorrupt(
                f"file {file!r}: chunk {ref.digest[:16]}... is missing from group {group}",
                digest=ref.digest, file=file, group=group,
            )  # fmt: skip
        wrong = verify(data, ref)
        if wrong is not None:
            raise CheckpointCorrupt(
                f"file {file!r}: chunk {ref.digest[:16]}... from group {group} is corrupt "
                f"({wrong}); nothing of it was written",
                digest=ref.digest, file=file, group=group,
            )  # fmt: skip
        return data, fell_back
