"""What the experiment store returns besides documents (plain dicts, as MongoDB's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["IndexInfo", "UpdateResult"]


@dataclass(frozen=True)
class UpdateResult:
    """``matched``: documents the filter selected; ``modified``: those whose document
    changed; ``token``: causal tokens of the writes, by shard group (for a later
    read's ``token=``; empty when nothing was written)."""

    matched: int
    modified: int
    tokens: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data."""
        return asdict(self)


@dataclass(frozen=True)
class IndexInfo:
    """A path index: ``collection``, dotted ``path``, the index ``name`` (the same on
    every shard group) and its ``kind`` (``gin jsonb_path_ops``)."""

    collection: str
    path: str
    name: str
    kind: str = "gin jsonb_path_ops"

    def to_dict(self) -> dict[str, Any]:
        """The index as plain data."""
        return asdict(self)
