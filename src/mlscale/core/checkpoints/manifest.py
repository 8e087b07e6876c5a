"""A checkpoint's manifest: its run and step, its files in order, each file's chunks
in order with their sizes and BLAKE3 hashes. The manifest row is committed last, in one
transaction, after every chunk it names is stored: a checkpoint is visible whole or
not at all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import CheckpointError
from ..plain import plain_dict
from .chunking import ChunkRef

__all__ = ["Checkpoint", "CheckpointInfo", "FileEntry", "files_from_json", "files_to_json"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a checkpoint: its name (a relative POSIX path), size in bytes, and
    its chunks in order (their sizes add up to ``size``)."""

    path: str
    size: int
    chunks: tuple[ChunkRef, ...]

    def __post_init__(self) -> None:
        if sum(c.size for c in self.chunks) != self.size:
            raise CheckpointError(f"file {self.path!r}: its chunks do not add up to its size")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A committed checkpoint: ``run``, ``step``, its ``files`` (in the order saved),
    ``total_bytes``, ``chunk_size`` (bytes; the last chunk of a file may be shorter),
    ``session`` (the upload that made it), ``metadata`` (the caller's JSON) and when it
    was committed (``created_at``, the server's clock)."""

    run: str
    step: int
    files: tuple[FileEntry, ...]
    total_bytes: int
    chunk_size: int
    session: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None

    @property
    def chunk_count(self) -> int:
        """Chunks over every file, repeats counted (what a load reads)."""
        return sum(len(f.chunks) for f in self.files)

    def digests(self) -> list[str]:
        """The distinct chunk digests, first-seen order (what the store must hold)."""
        return list(dict.fromkeys(c.digest for f in self.files for c in f.chunks))

    def file(self, name: str | None) -> FileEntry:
        """File ``name``, or the only file when ``name`` is None."""
        if name is None:
            if len(self.files) != 1:
                names = ", ".join(f.path for f in self.files[:5])
                raise CheckpointError(
                    f"checkpoint {self.run}@{self.step} has {len(self.files)} files ({names}"
                    f"{', ...' if len(self.files) > 5 else ''}): name one, or load it into "
                    "a directory"
                )
            return self.files[0]
        for f in self.files:
            if f.path == name:
                return f
        raise CheckpointError(f"checkpoint {self.run}@{self.step} has no file {name!r}")

    def info(self) -> CheckpointInfo:
        """The summary :meth:`~mlscale.stores.checkpoints.Checkpoints.list` returns."""
        return CheckpointInfo(
            run=self.run,
            step=self.step,
            files=len(self.files),
            chunks=self.chunk_count,
            total_bytes=self.total_bytes,
            metadata=self.metadata,
            created_at=self.created_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (files with their chunks as ``[digest, size]`` pairs)."""
        out = plain_dict(self)
        out["files"] = files_to_json(self.files)
        return out


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A checkpoint without its chunk list: ``files`` and ``chunks`` are counts."""

    run: str
    step: int
    files: int
    chunks: int
    total_bytes: int
    metadata: Mapping[str, Any]
    created_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


def files_to_json(files: Iterable[FileEntry]) -> list[dict[str, Any]]:
    """The manifest's ``files`` column: ``[{"path", "size", "chunks": [[digest, size]]}]``."""
    return [
        {"path": f.path, "size": f.size, "chunks": [c.to_list() for c in f.chunks]} for f in files
    ]


def files_from_json(value: Sequence[Mapping[str, Any]]) -> tuple[FileEntry, ...]:
    """The inverse of :func:`files_to_json`."""
    return tuple(
        FileEntry(
            path=str(f["path"]),
            size=int(f["size"]),
            chunks=tuple(ChunkRef(str(d), int(n)) for d, n in f["chunks"]),
        )
        for f in value
    )
