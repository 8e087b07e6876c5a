"""Checks of what a checkpoint call is given: run names, steps, file names inside a
checkpoint, chunk sizes. Each returns the clean value or raises CheckpointError
naming what is wrong; nothing is written before they pass."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from ...errors import CheckpointError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "MAX_CHUNK_BYTES",
    "MIN_CHUNK_BYTES",
    "check_chunk_size",
    "check_file_name",
    "check_keep",
    "check_run",
    "check_step",
]

DEFAULT_CHUNK_BYTES = 8 << 20
"""8 MiB: big enough that a chunk's round trip and row overhead are a few percent of its
transfer, small enough that a few in flight per worker stay within tens of MB."""
MIN_CHUNK_BYTES = 64 << 10
MAX_CHUNK_BYTES = 256 << 20  # far under bytea's 1 GB; one chunk is held in memory whole
_RUN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,199}$")
_MAX_STEP = 2**63 - 1


def check_run(run: object) -> str:
    """A run name: 1..200 characters of letters, digits and ``. _ : / @ + = -``,
    starting with a letter or digit."""
    if not isinstance(run, str) or not _RUN.match(run):
        raise CheckpointError(
            f"run name {run!r} is not valid: use 1-200 letters, digits or . _ : / @ + = - "
            "(starting with a letter or digit)"
        )
    return run


def check_step(step: object) -> int:
    """A step (version) number: an int from 0 to 2**63-1."""
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= _MAX_STEP:
        raise CheckpointError(f"step {step!r} is not valid: use an int >= 0")
    return step


def check_keep(keep: object) -> int:
    """How many checkpoints retention keeps: an int >= 1."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise CheckpointError(f"keep={keep!r} is not valid: keep at least 1 checkpoint")
    return keep


def check_chunk_size(size: object) -> int:
    """A chunk size in bytes, from 64 KiB to 256 MiB."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise CheckpointError(f"chunk size {size!r} is not an int (bytes)")
    if not MIN_CHUNK_BYTES <= size <= MAX_CHUNK_BYTES:
        raise CheckpointError(
            f"chunk size {size:,} bytes is out of range "
            f"({MIN_CHUNK_BYTES:,} .. {MAX_CHUNK_BYTES:,})"
        )
    return size


def check_file_name(name: object) -> str:
    """A file's name inside a checkpoint: a relative POSIX path that stays inside the
    checkpoint's directory (no ``..``, no leading ``/``, no empty parts), so a load into
    a directory can never write outside it."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise CheckpointError(f"file name {name!r} is not valid: a relative POSIX path")
    path = PurePosixPath(name)
    parts = name.split("/")
    if path.is_absolute() or any(p in ("", ".", "..") for p in parts) or len(name) > 1024:
        raise CheckpointError(
            f"file name {name!r} is not valid: a relative path without '.', '..' or empty parts"
        )
    return name
