"""What a save reads and a load writes: bytes, file paths, directories (a safetensors
shard set), open binary files, or a mapping of names to any of these.

A save reads every source as a stream, one chunk at a time: nothing is held whole.
A load into a path writes ``NAME.partial`` first and renames it only once every chunk
of it has been verified, so a failed load never leaves a file that looks complete.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...core.checkpoints.names import check_file_name
from ...errors import CheckpointError

__all__ = ["DEFAULT_NAME", "Source", "SourceFile", "plan_sources", "writing"]

DEFAULT_NAME = "checkpoint"
"""The file name given to bytes or a stream saved without ``name=``."""

Data = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]
Source = Data | Mapping[str, Data]
"""What :meth:`~mlscale.stores.checkpoints.Checkpoints.save` takes."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to save: its name in the checkpoint, its size in bytes (None: a stream
    of unknown length) and how to open it for reading."""

    name: str
    size: int | None
    open: Callable[[], Any]  # a context manager yielding an object with read(n)


def plan_sources(source: Source, name: str | None = None) -> list[SourceFile]:
    """The files ``source`` stands for, in the order they will be saved: a directory's
    regular files by name (recursively, symlinks followed), a mapping's in its order.
    ``name``: the file name of bytes, a stream or a single path (default: the path's
    own name, or ``checkpoint``). Duplicate names raise CheckpointError."""
    if isinstance(source, Mapping):
        if name is not None:
            raise CheckpointError("name= applies to a single source, not to a mapping of files")
        files = [f for key, value in source.items() for f in _one(value, check_file_name(key))]
    else:
        files = _one(source, name)
    seen: set[str] = set()
    for f in files:
        if f.name in seen:
            raise CheckpointError(f"file {f.name!r} is given twice")
        seen.add(f.name)
    if not files:
        raise CheckpointError("nothing to save: the source holds no files")
    return files


def _one(value: Data, name: str | None) -> list[SourceFile]:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return [SourceFile(check_file_name(name or DEFAULT_NAME), len(data),
                           lambda: nullcontext(io.BytesIO(data)))]  # fmt: skip
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if path.is_dir():
            prefix = f"{check_file_name(name)}/" if name else ""
            return [
                _path_file(p, prefix + p.relative_to(path).as_posix())
                for p in sorted(_walk(path), key=lambda p: p.relative_to(path).as_posix())
            ]
        if not path.is_file():
            raise CheckpointError(f"{str(path)!r} is neither a file nor a directory")
        return [_path_file(path, name or path.name)]
    if hasattr(value, "read"):
        return [SourceFile(check_file_name(name or DEFAULT_NAME), _remaining(value),
                           lambda: nullcontext(value))]  # fmt: skip
    raise CheckpointError(
        f"cannot save a {type(value).__name__}: give bytes, a path, a binary file or a "
        "mapping of names to those"
    )


def _path_file(path: Path, name: str) -> SourceFile:
    return SourceFile(check_file_name(name), path.stat().st_size, lambda: open(path, "rb"))


def _walk(root: Path) -> Iterator[Path]:
    for top, _dirs, names in os.walk(root, followlinks=True):
        for n in names:
            p = Path(top) / n
            if p.is_file():
                yield p


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left in a seekable stream; None for one that is not."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


@contextmanager
def writing(path: Path, fsync: bool) -> Iterator[IO[bytes]]:
    """``path`` opened for writing through ``path.partial``: renamed into place when the
    block ends normally (after an fsync with ``fsync``), removed if it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            yield out
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
