"""Merging shard groups' rows as they arrive, in bounded memory: :class:`OrderedMerge`.

The engine feeds each group's rows a batch at a time (a server-side cursor's
FETCH); the merger says which group it needs next and hands out every row it can
already place. With an ORDER BY that is a k-way merge -- a row is placed once every
group still running has a buffered row to compare it with -- else the groups'
rows one group after another. OFFSET and LIMIT apply as rows go out; hidden sort
columns are dropped. Pure: no I/O. Memory: at most one batch per group.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from functools import cmp_to_key
from typing import Any

from mlscale.core.scatter.exprs import evaluate
from mlscale.core.scatter.pgvalues import sort_compare
from mlscale.core.scatter.plan import ConcatMerge

__all__ = ["OrderedMerge"]

Row = tuple[Any, ...]


class OrderedMerge:
    """The rows of ``merge`` (a :class:`ConcatMerge`) over ``groups`` groups, fed in
    batches: ``while not m.done``: feed ``m.needs()`` if it is not None, else emit
    ``m.take()``."""

    def __init__(self, merge: ConcatMerge, groups: int) -> None:
        self._merge = merge
        self._buffers: list[deque[Sequence[Any]]] = [deque() for _ in range(groups)]
        self._finished = [False] * groups
        self._skip = merge.offset
        self._left = merge.limit  # rows still to hand out (None: no limit)
        order = merge.order

        def compare(a: Sequence[Any], b: Sequence[Any]) -> int:
            for key in order:
                result = sort_compare(
                    evaluate(key.expr, a),
                    evaluate(key.expr, b),
                    descending=key.descending,
                    nulls_first=key.nulls_first,
                )
                if result:
                    return result
            return 0

        self._key = cmp_to_key(compare)
        self._heap: list[tuple[Any, int, Sequence[Any]]] = []  # (key, group, row) heads

    @property
    def done(self) -> bool:
        """No row is left to hand out (every group exhausted, or the LIMIT reached)."""
        if self._left == 0:
            return True
        return all(self._finished) and not self._heap and not any(self._buffers)

    def needs(self) -> int | None:
        """The group whose next batch must be fed before more rows can be placed."""
        if self._left == 0:
            return None
        if not self._merge.order:  # one group after another
            for index, buffer in enumerate(self._buffers):
                if buffer:
                    return None
                if not self._finished[index]:
                    return index
            return None
        for index, buffer in enumerate(self._buffers):
            if not self._finished[index] and not buffer and not self._in_heap(index):
                return index
        return None

    def feed(self, index: int, rows: Sequence[Sequence[Any]]) -> None:
        """Group ``index``'s next batch; an empty batch: the group has no more rows."""
        if rows:
            self._buffers[index].extend(rows)
        else:
            self._finished[index] = True

    def take(self) -> list[Row]:
        """Every row that can be placed now, in order, paged and without hidden columns."""
        out: list[Row] = []
        if not self._merge.order:
            for buffer in self._buffers:
                while buffer and self._left != 0:
                    self._emit(buffer.popleft(), out)
            return out
        self._fill_heap()
        while self._heap and self._left != 0:
            _, index, row = self._heap[0]
            self._emit(row, out)
            buffer = self._buffers[index]
            if buffer:
                nxt = buffer.popleft()
                heapq.heapreplace(self._heap, (self._key(nxt), index, nxt))
            elif self._finished[index]:
                heapq.heappop(self._heap)
            else:
                heapq.heappop(self._heap)
                break  # this group must be fed before the next row can be placed
        return out

    def _in_heap(self, index: int) -> bool:
        return any(group == index for _, group, _ in self._heap)

    def _fill_heap(self) -> None:
        for index, buffer in enumerate(self._buffers):
            if buffer and not self._in_heap(index):
                row = buffer.popleft()
                heapq.heappush(self._heap, (self._key(row), index, row))

    def _emit(self, row: Sequence[Any], out: list[Row]) -> None:
        if self._left == 0:
            return
        if self._skip:
            self._skip -= 1
            return
        hidden = self._merge.hidden
        out.append(tuple(row[: len(row) - hidden]) if hidden else tuple(row))
        if self._left is not None:
            self._left -= 1
