"""The exact cross-group top-k merge and the retry ladder, as tables (no server)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from mlscale.core.vectors.merge import Step, ladder, merge_topk, raised_ef
from mlscale.core.vectors.spec import IndexKind


def test_merge_keeps_k_smallest_by_distance_then_id() -> None:
    g0 = [(5, 0.1), (9, 0.3), (2, 0.3)]
    g1 = [(4, 0.2), (1, 0.3), (8, 0.9)]
    assert [r[0] for r in merge_topk([g0, g1], 4)] == [5, 4, 1, 2]
    assert [r[0] for r in merge_topk([g0, g1], 10)] == [5, 4, 1, 2, 9, 8]
    assert merge_topk([[], []], 3) == []


def test_merge_puts_nan_last_and_counts_an_id_once() -> None:
    rows = merge_topk([[(1, math.nan), (2, 0.5)], [(3, 0.1), (2, 0.4)]], 3)
    assert [(r[0], r[1]) for r in rows][:2] == [(3, 0.1), (2, 0.4)]
    assert rows[2][0] == 1 and math.isnan(rows[2][1])


def test_merge_carries_extra_columns() -> None:
    rows = merge_topk([[(1, 0.2, {"a": 1})], [(2, 0.1, {"b": 2})]], 2)
    assert rows == [(2, 0.1, {"b": 2}), (1, 0.2, {"a": 1})]


def test_merge_of_each_groups_top_k_equals_global_top_k() -> None:
    # Whatever the split, the union of each group's own k nearest holds the global k.
    rng = random.Random(4)
    for _ in range(200):
        n, k, groups = rng.randint(1, 60), rng.randint(1, 12), rng.randint(1, 5)
        ids = rng.sample(range(1000), n)
        dist = [float(rng.randint(0, 6)) for _ in ids]  # many ties
        where = [rng.randrange(groups) for _ in ids]
        answers = []
        for g in range(groups):
            mine = sorted((d, i) for i, d, w in zip(ids, dist, where, strict=True) if w == g)
            answers.append([(i, d) for d, i in mine[:k]])
        order = np.lexsort((ids, dist))[:k]
        assert [r[0] for r in merge_topk(answers, k)] == [ids[j] for j in order]


@pytest.mark.parametrize(
    ("index", "exact", "filtered", "iterative", "steps"),
    [
        (None, False, False, True, (Step.EXACT,)),
        (IndexKind.HNSW, True, True, True, (Step.EXACT,)),
        (IndexKind.HNSW, False, False, True, (Step.INDEX, Step.EF_RAISED, Step.EXACT)),
        (IndexKind.HNSW, False, True, True, (Step.ITERATIVE, Step.EXACT)),
        (IndexKind.HNSW, False, True, False, (Step.INDEX, Step.EF_RAISED, Step.EXACT)),
        (IndexKind.IVFFLAT, False, True, True, (Step.INDEX, Step.EXACT)),
    ],
)
def test_ladder(
    index: IndexKind | None, exact: bool, filtered: bool, iterative: bool, steps: tuple[Step, ...]
) -> None:
    assert ladder(index, exact=exact, filtered=filtered, iterative=iterative) == steps


@pytest.mark.parametrize(("ef", "k", "raised"), [(40, 10, 160), (10, 10, 100), (400, 10, 1000)])
def test_raised_ef(ef: int, k: int, raised: int) -> None:
    assert raised_ef(ef, k) == raised


def test_steps_rank_weakest_first() -> None:
    assert [s.rank for s in (Step.INDEX, Step.ITERATIVE, Step.EF_RAISED, Step.EXACT)] == [
        0,
        1,
        2,
        3,
    ]
