"""The streaming merge hands out exactly what the whole-result merge returns, whatever
the batch sizes, holding at most a batch per group."""

from __future__ import annotations

import random
from decimal import Decimal
from functools import cmp_to_key
from typing import Any

import pytest

from mlscale.core.scatter import ConcatMerge, merge_rows, plan_select
from mlscale.core.scatter.exprs import evaluate
from mlscale.core.scatter.pgvalues import sort_compare
from mlscale.core.scatter.stream import OrderedMerge

QUERIES = [
    "SELECT a, b FROM t ORDER BY a, b",
    "SELECT a, b FROM t ORDER BY a DESC NULLS LAST, b LIMIT 7 OFFSET 3",
    "SELECT b FROM t ORDER BY a NULLS FIRST, b DESC LIMIT 11",
    "SELECT a, b FROM t LIMIT 5 OFFSET 2",
    "SELECT a, b FROM t",
    "SELECT a, b FROM t ORDER BY b OFFSET 40",
    "SELECT a, b FROM t ORDER BY a LIMIT 0",
]
VALUES: list[Any] = [None, float("nan"), float("inf"), -float("inf"), 0.0, 1.5, -2.25, 3.0]


def _group_rows(rng: random.Random, plan_merge: ConcatMerge, width: int) -> list[tuple[Any, ...]]:
    rows = [
        tuple(rng.choice(VALUES) if i == 0 else Decimal(rng.randint(0, 9)) for i in range(2))
        + tuple(range(width - 2))
        for _ in range(rng.randint(0, 30))
    ]
    if plan_merge.order:

        def compare(x: tuple[Any, ...], y: tuple[Any, ...]) -> int:
            for key in plan_merge.order:
                result = sort_compare(
                    evaluate(key.expr, x),
                    evaluate(key.expr, y),
                    descending=key.descending,
                    nulls_first=key.nulls_first,
                )
                if result:
                    return result
            return 0

        rows.sort(key=cmp_to_key(compare))
    return rows


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("seed", range(25))
def test_streamed_rows_equal_the_whole_merge(query: str, seed: int) -> None:
    rng = random.Random(seed)
    plan = plan_select(query)
    merge = plan.merge
    assert isinstance(merge, ConcatMerge)
    width = 2 + merge.hidden
    groups = [_group_rows(rng, merge, width) for _ in range(rng.randint(1, 5))]
    expected = merge_rows(plan, groups)

    streamer = OrderedMerge(merge, len(groups))
    positions = [0] * len(groups)
    largest_buffer = 0
    out: list[tuple[Any, ...]] = []
    while not streamer.done:
        index = streamer.needs()
        if index is not None:
            size = rng.randint(1, 4)
            batch = groups[index][positions[index] : positions[index] + size]
            positions[index] += len(batch)
            streamer.feed(index, batch)
            largest_buffer = max(largest_buffer, len(batch))
            continue
        taken = streamer.take()
        assert taken or streamer.done or streamer.needs() is not None, "no progress"
        out.extend(taken)
    # Ties keep group order in both (heapq.merge is stable across its inputs).
    assert [repr(r) for r in out] == [repr(r) for r in expected]
    assert largest_buffer <= 4


def test_a_limit_stops_reading_early() -> None:
    plan = plan_select("SELECT a FROM t ORDER BY 1 LIMIT 2")
    assert isinstance(plan.merge, ConcatMerge) and plan.merge.hidden == 0
    streamer = OrderedMerge(plan.merge, 2)
    streamer.feed(0, [(1,), (3,)])
    streamer.feed(1, [(2,), (4,)])
    assert streamer.take() == [(1,), (2,)]
    assert streamer.done and streamer.needs() is None


def test_groups_without_order_go_one_after_another() -> None:
    plan = plan_select("SELECT a FROM t")
    assert isinstance(plan.merge, ConcatMerge)
    streamer = OrderedMerge(plan.merge, 3)
    assert streamer.needs() == 0
    streamer.feed(0, [(1,)])
    assert streamer.needs() is None and streamer.take() == [(1,)]
    streamer.feed(0, [])
    assert streamer.needs() == 1
