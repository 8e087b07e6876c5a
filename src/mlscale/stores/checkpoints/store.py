"""The checkpoint store: model checkpoints as content-addressed chunks sharded over the
groups, written and read in parallel by a bounded pool of threads.

**Sync first, with threads.** The work is hashing (BLAKE3 releases the GIL on large
buffers), file reads and writes, and 8 MB round trips in which psycopg waits on the
socket with the GIL released: threads run all of them at once without an event loop
handing each buffer to an executor. An async caller runs a save or load in a thread
(``await asyncio.to_thread(store.save, ...)``).

**A save** reads each source as a stream, one chunk (default 8 MiB) at a time, hashes
it (BLAKE3) and, per batch of chunks, asks each group which of them it already holds
in one statement (which also refreshes their ``touched_at``); only the missing ones are
sent, ``workers`` at a time, while the next batch is read. At most about
``2 * workers`` chunks are in memory. When every chunk is stored, the save touches
and counts them all once more (one statement per group per 5,000 chunks) and then
commits the manifest and deletes its upload session in one transaction on the run's
group: until that commit the checkpoint does not exist for any reader, and a save
killed at any point leaves only chunks and a session row. Saving the same (run, step)
again resumes that session: chunks already stored are counted as skipped, not sent.

**A load** reads the manifest (by the call's ``consistency`` / ``token``: an
EVENTUAL read on a lagging replica may not see a checkpoint just saved, or see the
run's previous one as its latest; the save's ``token`` makes the read wait up to
``read_wait_ms`` for a replica to replay it, else read the primary), then its
chunks (a replica of their group first, the primary if the replica lacks the row,
counted in ``LoadResult.primary_fallbacks``), ``workers`` at a time, in order
through a window of ``workers + 2``, each by a binary COPY received without a copy
into ``bytes``; each chunk's BLAKE3 hash is checked before a byte of it is written
(:class:`~mlscale.errors.CheckpointCorrupt` otherwise; see ``reading.py``).

**Deleting** (``delete``, ``keep_last``) removes manifests in one transaction, then
the chunks only they named, unless touched within ``grace_s``. ``gc`` forgets upload
sessions idle for ``grace_s`` and removes every chunk that no manifest names and no
save has touched for ``grace_s``: an upload that resumes after that re-sends them.
"""

from __future__ import annotations

import io
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from psycopg.types.json import Jsonb

from ...core.causal import Token
from ...core.checkpoints import names, placement, sql
from ...core.checkpoints.chunking import ChunkRef, digest, pieces
from ...core.checkpoints.manifest import (
    Checkpoint,
    CheckpointInfo,
    FileEntry,
    files_from_json,
    files_to_json,
)
from ...core.checkpoints.results import (
    GcResult,
    LoadResult,
    RetentionResult,
    SaveResult,
    TransferProgress,
    Upload,
)
from ...core.consistency import Consistency, parse_consistency
from ...engine.cluster_sync import Cluster
from ...errors import CheckpointError, CheckpointNotFound
from .reading import ChunkReader
from .sources import Source, SourceFile, plan_sources, writing
from .tables import ChunkTables, RunTables, unless_not_replayed

__all__ = ["DEFAULT_WORKERS", "GC_GRACE_S", "RETENTION_GRACE_S", "Checkpoints"]

DEFAULT_WORKERS = 4
GC_GRACE_S = 24 * 3600.0
RETENTION_GRACE_S = 60.0
_VERIFY_BATCH = 5_000  # digests per presence statement at commit (a few hundred KB)
Progress = Callable[[TransferProgress], None]


class Checkpoints:
    """Model checkpoints of a cluster (see the module docstring).

    ``chunk_size``: bytes per chunk (64 KiB .. 256 MiB; default 8 MiB; a store reads
    checkpoints of any chunk size, and chunks dedupe only between saves of equal
    size); ``workers``: chunks sent or read at once (threads; each holds a pooled
    connection while it works, so keep it within the pools' ``max_size``).
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        chunk_size: int = names.DEFAULT_CHUNK_BYTES,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise CheckpointError(f"workers={workers!r}: use an int >= 1")
        self._cluster = cluster
        self._chunk_size = names.check_chunk_size(chunk_size)
        self._workers = workers
        self._chunks = ChunkTables(cluster)
        self._runs = RunTables(cluster)
        self._reader = ChunkReader(cluster, workers)

    @property
    def cluster(self) -> Cluster:
        """The cluster the checkpoints live on."""
        return self._cluster

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk of the checkpoints this store saves."""
        return self._chunk_size

    # -- save ---------------------------------------------------------------------------

    def save(
        self,
        run: str,
        step: int,
        source: Source,
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> SaveResult:
        """Save ``source`` as checkpoint ``step`` of ``run``: bytes, a file path, a
        directory (every regular file under it, by relative name), an open binary
        file, or a mapping of names to those. ``name``: the file name of a single
        source (default: the path's name, or ``checkpoint``); ``metadata``: JSON kept
        with the manifest; ``progress``: called with a :class:`TransferProgress` as
        chunks are stored or found stored. A step that exists raises CheckpointError;
        an interrupted save of the same (run, step) is resumed (``result.resumed``,
        ``result.skipped``)."""
        started = time.perf_counter()
        run, step = names.check_run(run), names.check_step(step)
        files = plan_sources(source, name)
        meta = dict(metadata or {})
        self._runs.ensure()
        self._chunks.ensure()
        home = self._cluster.locate(sql.RUN_FAMILY, run)
        if self._manifest_row(home, run, step, "strong", None) is not None:
            raise CheckpointError(f"checkpoint {run}@{step} exists: delete it first")
        fresh = uuid.uuid4().hex
        session = str(
            self._cluster.as_written(home).fetch_value(sql.UPLOAD_START, (run, step, fresh))
        )
        upload = _Upload(self, run, step, files, progress)
        entries = upload.send_all()
        digests = list(dict.fromkeys(c.digest for f in entries for c in f.chunks))
        self._confirm_stored(run, step, digests)
        total = sum(f.size for f in entries)
        with self._cluster.transaction(group=home, as_written=True) as tx:
            row = tx.fetch_one(
                sql.INSERT_MANIFEST,
                (run, step, session, Jsonb(files_to_json(entries)), digests, total,
                 self._chunk_size, Jsonb(meta)),
            )  # fmt: skip
            if row is None:
                raise CheckpointError(f"checkpoint {run}@{step} was committed by another save")
            tx.execute(sql.UPLOAD_DONE, (run, step))
        token = tx.token.to_string() if tx.token else ""
        return SaveResult(
            run=run,
            step=step,
            session=session,
            resumed=session != fresh,
            files=len(entries),
            total_bytes=total,
            chunks=sum(len(f.chunks) for f in entries),
            sent=upload.sent,
            skipped=upload.skipped,
            bytes_sent=upload.bytes_sent,
            groups=dict(upload.per_group),
            elapsed_s=time.perf_counter() - started,
            token=token,
        )

    def _confirm_stored(self, run: str, step: int, digests: Sequence[str]) -> None:
        """Touch every chunk about to be named by a manifest, and refuse the commit if
        one is gone (a gc removed it while the save ran longer than its grace)."""
        where = self._cluster.shards().map_of(sql.CHUNK_FAMILY)
        missing = 0
        for group, ds in placement.by_group(digests, where.locate).items():
            scope = self._cluster.as_written(group)
            for i in range(0, len(ds), _VERIFY_BATCH):
                part = ds[i : i + _VERIFY_BATCH]
                missing += len(part) - len(scope.fetch_all(sql.PRESENT, (part,)))
        if missing:
            raise CheckpointError(
                f"checkpoint {run}@{step}: {missing} chunk(s) vanished before the manifest's "
                "commit (a gc ran during a save longer than its grace): save again to resend them"
            )

    # -- load ---------------------------------------------------------------------------

    def load(
        self,
        run: str,
        dest: str | Path | IO[bytes],
        *,
        step: int | None = None,
        file: str | None = None,
        progress: Progress | None = None,
        fsync: bool = False,
        consistency: str | None = None,
        token: Token = None,
    ) -> LoadResult:
        """Write checkpoint ``step`` of ``run`` (default: its latest) to ``dest``,
        every chunk's hash verified first. ``dest``: a directory (every file, or
        ``file``, under it by name: used when it exists or the checkpoint has several
        files), a file path (the only file, or ``file``), or an open binary file.
        Files are written as ``NAME.partial`` and renamed when complete (with an fsync
        first if ``fsync``). ``consistency`` / ``token``: of the manifest's read (pass the
        save's ``token`` to load what was just saved: without it, a lagging replica may
        answer CheckpointNotFound, or the run's previous checkpoint as its latest).
        Chunks need neither: one a replica lacks is read from the primary."""
        started = time.perf_counter()
        ckpt = self.get(run, step, consistency=consistency, token=token)
        chosen = list(ckpt.files) if file is None else [ckpt.file(file)]
        shown = _Shown(ckpt, sum(f.size for f in chosen), progress)
        written: list[str] = []
        fallbacks = 0
        with ThreadPoolExecutor(self._workers, thread_name_prefix="ckpt-load") as pool:
            if not isinstance(dest, str | Path):
                entry = ckpt.file(file)
                fallbacks += self._reader.read_file(pool, entry, dest, shown.read)
                written.append("<stream>")
            else:
                path = Path(dest)
                as_dir = path.is_dir() or (file is None and len(ckpt.files) > 1)
                for entry in chosen:
                    target = path / entry.path if as_dir else path
                    with writing(target, fsync) as out:
                        fallbacks += self._reader.read_file(pool, entry, out, shown.read)
                    written.append(str(target))
        return LoadResult(
            run=ckpt.run,
            step=ckpt.step,
            files=tuple(written),
            total_bytes=sum(f.size for f in chosen),
            chunks=sum(len(f.chunks) for f in chosen),
            elapsed_s=time.perf_counter() - started,
            primary_fallbacks=fallbacks,
        )

    def read_bytes(
        self, run: str, *, step: int | None = None, file: str | None = None, token: Token = None
    ) -> bytes:
        """File ``file`` (default: the only one) of checkpoint ``step`` of ``run``
        (default: the latest), verified, as bytes: for small files (it is held whole)."""
        out = io.BytesIO()
        self.load(run, out, step=step, file=file, token=token)
        return out.getvalue()

    # -- manifests ----------------------------------------------------------------------

    def get(
        self,
        run: str,
        step: int | None = None,
        *,
        consistency: str | None = None,
        token: Token = None,
    ) -> Checkpoint:
        """Checkpoint ``step`` of ``run`` (default: its latest) with its files and
        chunks; CheckpointNotFound if none is committed."""
        run = names.check_run(run)
        if step is not None:
            step = names.check_step(step)
        if not self._runs.exist():
            raise CheckpointNotFound(f"no checkpoint of run {run!r}: none is stored yet")
        home = self._cluster.locate(sql.RUN_FAMILY, run)
        row = self._manifest_row(home, run, step, consistency, token)
        if row is None:
            what = f"checkpoint {run}@{step}" if step is not None else f"checkpoint of run {run!r}"
            raise CheckpointNotFound(f"no {what} is committed{_lag_hint(consistency, token)}")
        return Checkpoint(
            run=row[0],
            step=int(row[1]),
            session=row[2],
            files=files_from_json(row[3]),
            total_bytes=int(row[4]),
            chunk_size=int(row[5]),
            metadata=row[6],
            created_at=row[7],
        )

    def _manifest_row(
        self, home: str, run: str, step: int | None, consistency: str | None, token: Token
    ) -> Any:
        return unless_not_replayed(
            lambda: self._cluster.as_written(home).fetch_one(
                sql.MANIFEST, (run, step, step), consistency=consistency, token=token
            ),
            None,
        )

    def list_checkpoints(
        self, run: str | None = None, *, consistency: str | None = None, token: Token = None
    ) -> list[CheckpointInfo]:
        """The committed checkpoints of ``run`` (every run if None), by run then step."""
        if not self._runs.exist():
            return []
        if run is not None:
            run = names.check_run(run)
            home = self._cluster.locate(sql.RUN_FAMILY, run)
            rows = self._summaries(home, sql.LIST_RUN, (run,), consistency, token)
        else:
            rows = [
                r
                for g in self._runs.groups
                for r in self._summaries(g, sql.LIST_ALL, None, consistency, token)
            ]
        infos = [
            CheckpointInfo(
                run=r[0],
                step=int(r[1]),
                files=int(r[2]),
                chunks=int(r[3]),
                total_bytes=int(r[4]),
                metadata=r[5],
                created_at=r[6],
            )
            for r in rows
        ]
        return sorted(infos, key=lambda i: (i.run, i.step))

    def _summaries(
        self, group: str, query: str, params: Any, consistency: str | None, token: Token
    ) -> list[Any]:
        return unless_not_replayed(
            lambda: self._cluster.as_written(group).fetch_all(
                query, params, consistency=consistency, token=token
            ),
            [],
        )

    def uploads(self) -> list[Upload]:
        """Saves started and not committed (in progress, or interrupted: resumable)."""
        if not self._runs.exist():
            return []
        out = [
            Upload(r[0], int(r[1]), r[2], r[3], r[4])
            for g in self._runs.groups
            for r in self._cluster.as_written(g).fetch_all(sql.LIST_UPLOADS, consistency="strong")
        ]
        return sorted(out, key=lambda u: (u.run, u.step))

    # -- deletion -----------------------------------------------------------------------

    def delete(self, run: str, step: int, *, grace_s: float = RETENTION_GRACE_S) -> RetentionResult:
        """Delete checkpoint ``step`` of ``run`` (CheckpointNotFound if there is none),
        then the chunks only it named and no save touched within ``grace_s``."""
        run, step = names.check_run(run), names.check_step(step)
        return self._drop(run, lambda steps: ([s for s in steps if s != step], [step]), grace_s)

    def keep_last(
        self, run: str, keep: int, *, grace_s: float = RETENTION_GRACE_S
    ) -> RetentionResult:
        """Keep the last ``keep`` checkpoints of ``run`` (highest steps); delete the
        others in one transaction, then the chunks only they named and no save touched
        within ``grace_s`` seconds (a later :meth:`gc` takes those)."""
        run, keep = names.check_run(run), names.check_keep(keep)
        return self._drop(run, lambda steps: placement.retention(steps, keep), grace_s)

    def _drop(
        self,
        run: str,
        decide: Callable[[list[int]], tuple[list[int], list[int]]],
        grace_s: float,
    ) -> RetentionResult:
        grace_s = _check_grace(grace_s)
        if not self._runs.exist():
            raise CheckpointNotFound(f"no checkpoint of run {run!r}: none is stored yet")
        home = self._cluster.locate(sql.RUN_FAMILY, run)
        # Each chunk group's cutoff is taken before the manifests are read, so a save
        # touching a chunk after it is safe whatever this call reads.
        cutoffs = self._cutoffs(grace_s)
        with self._cluster.transaction(group=home, as_written=True) as tx:
            steps = [int(r[0]) for r in tx.fetch_all(sql.STEPS_OF_RUN, (run,))]
            kept, dropped = decide(steps)
            missing = [s for s in dropped if s not in steps]
            if missing:
                raise CheckpointNotFound(f"no checkpoint {run}@{missing[0]} is committed")
            rows = tx.fetch_all(sql.DELETE_MANIFEST, (run, dropped)) if dropped else []
        candidates = [d for r in rows for d in r[0]]
        removed, size, _ = self._sweep(cutoffs, candidates)
        return RetentionResult(run, tuple(sorted(kept, reverse=True)),
                               tuple(sorted(dropped, reverse=True)), removed, size)  # fmt: skip

    def gc(self, *, grace_s: float = GC_GRACE_S) -> GcResult:
        """Forget upload sessions idle for ``grace_s`` seconds and remove every chunk
        that no checkpoint names and no save touched within ``grace_s``."""
        grace_s = _check_grace(grace_s)
        if not self._chunks.exist():
            return GcResult(0, 0, 0, {}, grace_s)
        forgotten = 0
        if self._runs.exist():
            for g in self._runs.groups:
                forgotten += self._cluster.as_written(g).execute(sql.FORGET_UPLOADS, (grace_s,))
        cutoffs = self._cutoffs(grace_s)
        removed, size, groups = self._sweep(cutoffs, None)
        return GcResult(forgotten, removed, size, groups, grace_s)

    def _cutoffs(self, grace_s: float) -> dict[str, Any]:
        """Each chunk group's ``now() - grace`` by its own clock."""
        if not self._chunks.exist():
            return {}
        return {
            g: self._cluster.as_written(g).fetch_value(
                sql.NOW_MINUS, (grace_s,), consistency="strong"
            )
            for g in self._chunks.groups
        }

    def _sweep(
        self, cutoffs: Mapping[str, Any], candidates: Sequence[str] | None
    ) -> tuple[int, int, dict[str, int]]:
        """Delete unreferenced chunks older than each group's cutoff (only among
        ``candidates`` if given): (chunks, bytes, chunks per group)."""
        if not cutoffs or candidates == []:
            return 0, 0, {}
        referenced: set[str] = set()
        if self._runs.exist():
            for g in self._runs.groups:
                rows = self._cluster.as_written(g).fetch_all(sql.REFERENCED, consistency="strong")
                referenced.update(r[0] for r in rows)
        where = self._cluster.shards().map_of(sql.CHUNK_FAMILY)
        if candidates is not None:
            todo = placement.by_group(placement.unreferenced(candidates, referenced), where.locate)
        else:
            todo = {g: [] for g in cutoffs}
        mine = placement.by_group(referenced, where.locate)
        removed = size = 0
        groups: dict[str, int] = {}
        for g, ds in todo.items():
            scope = self._cluster.as_written(g)
            keep = mine.get(g, [])
            if candidates is None:
                row = scope.fetch_one(sql.SWEEP_ALL, (cutoffs[g], keep))
            else:
                row = scope.fetch_one(sql.SWEEP, (ds, cutoffs[g], keep))
            n, b = (int(row[0]), int(row[1])) if row is not None else (0, 0)
            removed, size = removed + n, size + b
            groups[g] = n
        return removed, size, groups


def _lag_hint(consistency: Consistency | str | None, token: Token) -> str:
    """What to add to a not-found of a read a lagging replica may have served."""
    if token or (consistency is not None and parse_consistency(consistency) is Consistency.STRONG):
        return ""
    return (
        " (as far as the node that served the read knows: a replica may lag; to read "
        "a checkpoint just saved, pass the save's token= or consistency='strong')"
    )


def _check_grace(grace_s: object) -> float:
    if isinstance(grace_s, bool) or not isinstance(grace_s, int | float) or grace_s < 0:
        raise CheckpointError(f"grace_s={grace_s!r}: use seconds >= 0")
    return float(grace_s)


class _Shown:
    """Progress of one save or load, reported to the caller's callback."""

    def __init__(
        self, ckpt: Checkpoint | tuple[str, int], total: int | None, cb: Progress | None
    ) -> None:
        self.run, self.step = (ckpt.run, ckpt.step) if isinstance(ckpt, Checkpoint) else ckpt
        self.total = total
        self.cb = cb
        self.done = self.chunks = self.sent = 0

    def add(self, file: str, size: int, sent: int) -> None:
        self.done += size
        self.chunks += 1
        self.sent += sent
        if self.cb is not None:
            self.cb(TransferProgress(self.run, self.step, self.done, self.total, self.chunks,
                                     self.sent, file))  # fmt: skip

    def read(self, file: str, size: int) -> None:
        self.add(file, size, sent=1)


class _Upload:
    """One save's chunk traffic: read, hash, ask, send (see the module docstring)."""

    def __init__(
        self,
        store: Checkpoints,
        run: str,
        step: int,
        files: list[SourceFile],
        progress: Progress | None,
    ) -> None:
        self.store = store
        self.cluster = store.cluster
        self.files = files
        sizes = [f.size for f in files]
        total = None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)
        self.shown = _Shown((run, step), total, progress)
        self.where = self.cluster.shards().map_of(sql.CHUNK_FAMILY)
        self.seen: set[str] = set()  # digests stored or being sent by this save
        self.sent = self.skipped = self.bytes_sent = 0
        self.per_group: dict[str, int] = {}
        self.pending: deque[tuple[Future[None], str, int, str]] = deque()

    def send_all(self) -> list[FileEntry]:
        workers = self.store._workers
        entries: list[FileEntry] = []
        with ThreadPoolExecutor(workers, thread_name_prefix="ckpt-save") as pool:
            try:
                for f in self.files:
                    refs: list[ChunkRef] = []
                    with f.open() as stream:
                        batch: list[bytes] = []
                        for data in pieces(stream.read, self.store.chunk_size):
                            batch.append(data)
                            if len(batch) >= workers:
                                self._batch(pool, f.name, batch, refs)
                                batch = []
                        if batch:
                            self._batch(pool, f.name, batch, refs)
                    entries.append(FileEntry(f.name, sum(r.size for r in refs), tuple(refs)))
                self._reap(0)
            except BaseException:
                for fut, *_ in self.pending:
                    fut.cancel()
                raise
        return entries

    def _batch(
        self, pool: ThreadPoolExecutor, file: str, batch: list[bytes], refs: list[ChunkRef]
    ) -> None:
        digests = [digest(b) for b in batch]
        refs += [ChunkRef(d, len(b)) for d, b in zip(digests, batch, strict=True)]
        new = [d for d in dict.fromkeys(digests) if d not in self.seen]
        present: set[str] = set()
        for group, ds in placement.by_group(new, self.where.locate).items():
            rows = self.cluster.as_written(group).fetch_all(sql.PRESENT, (ds,))
            present.update(r[0] for r in rows)
        # The previous batch's sends may still run; wait for them before this one's go,
        # so at most two batches are held.
        self._reap(0)
        for d, data in zip(digests, batch, strict=True):
            if d in self.seen or d in present:
                self.seen.add(d)
                self.skipped += 1
                self.shown.add(file, len(data), sent=0)
                continue
            self.seen.add(d)
            group = self.where.locate(d)
            fut = pool.submit(self._put, group, d, data)
            self.pending.append((fut, group, len(data), file))

    def _reap(self, keep: int) -> None:
        while len(self.pending) > keep:
            fut, group, size, file = self.pending.popleft()
            fut.result()
            self.sent += 1
            self.bytes_sent += size
            self.per_group[group] = self.per_group.get(group, 0) + 1
            self.shown.add(file, size, sent=1)

    def _put(self, group: str, d: str, data: bytes) -> None:
        self.cluster.as_written(group).execute(
            sql.INSERT_CHUNK, (d, len(data), data), idempotent=True
        )
