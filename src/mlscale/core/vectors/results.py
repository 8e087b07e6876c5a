"""What the vector store's calls return: frozen values with ``to_dict()``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..plain import plain_dict

__all__ = ["DeleteResult", "QueryResult", "RecallResult", "TuneResult", "UpsertResult"]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The k nearest rows of one query, nearest first.

    ``ids``, ``distances`` (pgvector's: l2 Euclidean, ip the negative inner product,
    cosine 1 - similarity) and ``metadata`` (None unless asked for) are parallel;
    fewer than ``k`` rows only when the collection holds fewer matching rows (every
    short group was answered exactly). ``how``: the strongest step any group needed
    (``index``, ``iterative_scan``, ``ef_search_raised``, ``exact``: the form of the
    statement a group ran -- on a small group the planner may scan the table instead of
    the index, which is exact); ``steps``: each group's; ``retried``: the groups whose
    first answer was short of k rows; ``ef_search``: the value the index steps used;
    ``elapsed_s``: seconds."""

    ids: tuple[Any, ...]
    distances: tuple[float, ...]
    metadata: tuple[Any, ...] | None
    k: int
    how: str
    steps: Mapping[str, str]
    retried: tuple[str, ...]
    ef_search: int
    elapsed_s: float

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """Rows written (``rows``, duplicates of an id counted once: the last kept), per
    group (``groups``), and the commits' causal token (``token``: pass it as
    ``token=`` to read them back from replicas); ``elapsed_s``: seconds."""

    collection: str
    rows: int
    groups: Mapping[str, int]
    token: str
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Rows deleted (ids that were absent count nothing), per group, and the token."""

    collection: str
    deleted: int
    groups: Mapping[str, int]
    token: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class RecallResult:
    """recall@k of the index at ``ef_search`` against exact search over ``queries``
    queries: the mean fraction of the exact k nearest ids the index found."""

    k: int
    ef_search: int
    queries: int
    recall: float
    min_recall: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class TuneResult:
    """The smallest ef_search tried whose recall@k reached ``target`` (``reached``
    False: the largest tried, which did not), and every value tried."""

    ef_search: int
    recall: float
    target: float
    reached: bool
    tried: tuple[RecallResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)
