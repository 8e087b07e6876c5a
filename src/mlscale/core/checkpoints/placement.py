"""Where chunks live and which ones may go: decisions only, no I/O.

Chunks are sharded by their digest (key family :data:`~.sql.CHUNK_FAMILY`), so they
spread evenly over the groups and a chunk shared by two checkpoints has one home.
Manifests and upload sessions are sharded by run (:data:`~.sql.RUN_FAMILY`): every
checkpoint of a run sits on one group, and retention of a run is one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

__all__ = ["by_group", "retention", "unreferenced"]


def by_group(digests: Iterable[str], locate: Callable[[str], str]) -> dict[str, list[str]]:
    """``digests`` (duplicates dropped, order kept) by the group ``locate`` places each
    on, groups in first-seen order."""
    out: dict[str, list[str]] = {}
    for d in dict.fromkeys(digests):
        out.setdefault(locate(d), []).append(d)
    return out


def retention(steps: Sequence[int], keep: int) -> tuple[list[int], list[int]]:
    """(kept, dropped) of a run's ``steps`` when the last ``keep`` (highest steps) stay;
    both in descending order."""
    ordered = sorted(set(steps), reverse=True)
    return ordered[:keep], ordered[keep:]


def unreferenced(candidates: Iterable[str], referenced: Iterable[str]) -> list[str]:
    """The ``candidates`` no manifest in ``referenced`` names (order kept, duplicates
    dropped): the chunks a deletion may remove, grace period permitting."""
    keep = set(referenced)
    return [d for d in dict.fromkeys(candidates) if d not in keep]
