"""What the feature store's calls return (plain values with ``to_dict()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..causal import CausalToken
from .spec import FeatureView

__all__ = ["MaterializeResult", "PushResult", "ViewInfo"]


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push wrote: ``rows`` checked and sent, per group, the causal ``token`` of
    its commits (read your writes with it), and how long it took (seconds)."""

    view: str
    version: int
    rows: int
    groups: dict[str, int]
    token: CausalToken
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the token as its string)."""
        return {
            "view": self.view,
            "version": self.version,
            "rows": self.rows,
            "groups": dict(self.groups),
            "token": self.token.to_string(),
            "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class MaterializeResult:
    """A materialization: rows pushed in how many batches, the merged token, seconds."""

    view: str
    rows: int
    batches: int
    token: CausalToken
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "view": self.view,
            "rows": self.rows,
            "batches": self.batches,
            "token": self.token.to_string(),
            "seconds": self.seconds,
            "rows_per_s": self.rows / self.seconds if self.seconds > 0 else None,
        }


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """A view as the catalog and its tables have it: rows and bytes on disk per group."""

    view: FeatureView
    online_table: str
    history_table: str
    online_rows: dict[str, int]
    history_rows: dict[str, int]
    bytes_on_disk: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "view": self.view.to_spec(),
            "online_table": self.online_table,
            "history_table": self.history_table,
            "online_rows": dict(self.online_rows),
            "history_rows": dict(self.history_rows),
            "bytes_on_disk": dict(self.bytes_on_disk),
        }
