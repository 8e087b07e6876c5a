"""What a read across shard groups returns: the merged rows and which groups they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ScatterResult"]


@dataclass(frozen=True, slots=True)
class ScatterResult:
    """The merged rows of a cross-shard read (tuples, or dicts with ``as_dict``), the
    result's ``columns``, the shard ``groups`` that answered and the ``missing`` ones.

    A result with missing groups is :attr:`partial`: only ``allow_partial=True`` returns
    one, and its rows are what one server holding the answering groups' rows would
    return (a count counts only their rows).
    """

    rows: list[Any]
    columns: tuple[str, ...]
    groups: tuple[str, ...]
    missing: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether some shard groups did not answer (see :attr:`missing`)."""
        return bool(self.missing)

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts by column name (a later column wins a repeated name, as
        psycopg's ``dict_row`` does)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]
