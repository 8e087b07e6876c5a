"""What the checkpoint store's calls return, and the progress they report: frozen
values with ``to_dict()``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..plain import plain_dict

__all__ = ["GcResult", "LoadResult", "RetentionResult", "SaveResult", "TransferProgress", "Upload"]


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Where a save or load is: ``done_bytes`` of ``total_bytes`` (None while a stream
    of unknown length is being read), chunks handled so far and how many of them were
    sent (saves: the rest were already stored), the file being handled."""

    run: str
    step: int
    done_bytes: int
    total_bytes: int | None
    chunks_done: int
    chunks_sent: int
    file: str

    @property
    def fraction(self) -> float | None:
        """done / total (0..1), or None if the total is not known."""
        if not self.total_bytes:
            return None if self.total_bytes is None else 1.0
        return self.done_bytes / self.total_bytes


@dataclass(frozen=True, slots=True)
class SaveResult:
    """A committed save: ``chunks`` the checkpoint names (repeats counted), ``sent``
    those this call wrote, ``skipped`` those already stored (an earlier version, another
    run, or an interrupted save of this one: ``resumed``), ``bytes_sent``; ``session``
    the upload's id; ``elapsed_s`` seconds; ``groups``: chunks sent per group;
    ``token``: the manifest commit's causal token (text), for a read that must see it."""

    run: str
    step: int
    session: str
    resumed: bool
    files: int
    total_bytes: int
    chunks: int
    sent: int
    skipped: int
    bytes_sent: int
    groups: Mapping[str, int]
    elapsed_s: float
    token: str = ""

    @property
    def mb_per_s(self) -> float:
        """The checkpoint's size over the call's time, in MB (10**6 bytes) per second."""
        return _mb_per_s(self.total_bytes, self.elapsed_s)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A verified load: files written (their paths, or ``<stream>``), bytes and chunks
    read (every chunk's hash checked), ``elapsed_s`` seconds; ``primary_fallbacks``:
    chunks the first read did not find (a replica that had not replayed them yet) and
    the group's primary then served, one extra round trip each."""

    run: str
    step: int
    files: tuple[str, ...]
    total_bytes: int
    chunks: int
    elapsed_s: float
    primary_fallbacks: int = 0

    @property
    def mb_per_s(self) -> float:
        """Bytes written over the call's time, in MB (10**6 bytes) per second."""
        return _mb_per_s(self.total_bytes, self.elapsed_s)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """Steps kept and deleted of ``run`` (descending), chunks and bytes removed (chunks
    still named by another checkpoint, or touched within the grace period, stay)."""

    run: str
    kept: tuple[int, ...]
    deleted: tuple[int, ...]
    chunks_removed: int
    bytes_removed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class GcResult:
    """A garbage collection: abandoned upload sessions forgotten, chunks and bytes
    removed (per group in ``groups``); chunks no checkpoint names but touched within
    ``grace_s`` seconds stay (an upload in progress may still need them)."""

    uploads_forgotten: int
    chunks_removed: int
    bytes_removed: int
    groups: Mapping[str, int]
    grace_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload session not yet committed: its ``run``, ``step``, id (``session``) and
    when it started and was last resumed (the server's clock)."""

    run: str
    step: int
    session: str
    started_at: Any
    updated_at: Any

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


def _mb_per_s(size: int, elapsed_s: float) -> float:
    return size / 1e6 / elapsed_s if elapsed_s > 0 else 0.0
