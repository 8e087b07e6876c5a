"""Exact top-k across shard groups, and how a short answer is retried (no I/O).

Every group answers with its own k nearest rows (not k / groups): the k nearest of
the whole collection are then among the union, whatever the groups hold, and the
client keeps the k smallest by (distance, id). Ties are broken by id in both the
groups' exact SQL (``ORDER BY distance, id``) and here, so an exact answer is one
answer, the same on every run. A NaN distance (cosine against a zero vector) sorts
last, as PostgreSQL sorts it. An id found on two groups (a row copied during a move
of its slot) counts once.

pgvector's approximate scans may return fewer than k rows: an HNSW scan visits at
most ``ef_search`` candidates, and a filter applied after the scan can leave fewer
than k of them. A group that answers fewer than k rows is asked again one step up
the ladder (:func:`ladder`) until it answers k rows or its exact answer: a short
exact answer means the group holds no more matching rows.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .spec import MAX_EF_SEARCH, IndexKind

__all__ = ["Step", "ladder", "merge_topk", "raised_ef"]


class Step(enum.StrEnum):
    """How a group's answer was computed, weakest first."""

    INDEX = "index"  # the ANN index at the call's ef_search / probes
    ITERATIVE = "iterative_scan"  # HNSW with hnsw.iterative_scan = strict_order (filtered)
    EF_RAISED = "ef_search_raised"  # HNSW again with a larger ef_search
    EXACT = "exact"  # a full scan, ties by id

    @property
    def rank(self) -> int:
        """Order of strength (the call reports the strongest step any group needed)."""
        return list(Step).index(self)


def ladder(
    index: IndexKind | None, *, exact: bool, filtered: bool, iterative: bool
) -> tuple[Step, ...]:
    """The steps a group goes through while its answer is short of k rows."""
    if exact or index is None:
        return (Step.EXACT,)
    if index is IndexKind.IVFFLAT:
        return (Step.INDEX, Step.EXACT)
    if filtered and iterative:
        return (Step.ITERATIVE, Step.EXACT)
    return (Step.INDEX, Step.EF_RAISED, Step.EXACT)


def raised_ef(ef_search: int, k: int) -> int:
    """The ef_search of the EF_RAISED step: four times the call's, at least 10 k, at
    most pgvector's 1,000."""
    return min(MAX_EF_SEARCH, max(4 * ef_search, 10 * k))


def _key(row: Sequence[Any]) -> tuple[bool, float, Any]:
    d = row[1]
    nan = d is None or math.isnan(d)
    return (nan, 0.0 if nan else float(d), row[0])


def merge_topk(answers: Iterable[Sequence[Sequence[Any]]], k: int) -> list[Sequence[Any]]:
    """The k rows ``(id, distance, ...)`` of smallest (distance, id) among the groups'
    answers, each id once (its smallest distance)."""
    best: dict[Any, Sequence[Any]] = {}
    for rows in answers:
        for row in rows:
            seen = best.get(row[0])
            if seen is None or _key(row) < _key(seen):
                best[row[0]] = row
    return sorted(best.values(), key=_key)[:k]
