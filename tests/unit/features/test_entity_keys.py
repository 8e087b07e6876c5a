"""The shapes ``get_online_features`` takes as ``entity_ids``, as a table: each good
shape gives the columns the read sends, each bad one a FeatureError whose message
says what is wrong (never numpy's ValueError)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlscale.core.features.entity_keys import keys_of
from mlscale.core.features.spec import Entity, Feature, FeatureView
from mlscale.errors import FeatureError

ONE = FeatureView("one", entities=(Entity("user_id"),), features=(Feature("x"),))
TWO = FeatureView(
    "two",
    entities=(Entity("user_id"), Entity("item", "text")),
    features=(Feature("x"),),
)
SMALL = FeatureView("small", entities=(Entity("k", "int2"),), features=(Feature("x"),))
IDS = FeatureView("ids", entities=(Entity("u", "uuid"),), features=(Feature("x"),))
U = uuid.UUID(int=7)


def _gen() -> Iterator[int]:
    yield from (1, 2)


GOOD: list[tuple[FeatureView, Any, dict[str, list[Any]]]] = [
    (ONE, [1, 2, 3], {"user_id": [1, 2, 3]}),
    (ONE, (1, 2), {"user_id": [1, 2]}),
    (ONE, np.array([5, 6], dtype=np.int32), {"user_id": [5, 6]}),
    (ONE, np.array([5, 6], dtype=np.uint16), {"user_id": [5, 6]}),
    (ONE, pd.Series([7, 8]), {"user_id": [7, 8]}),
    (ONE, _gen(), {"user_id": [1, 2]}),
    (ONE, [], {"user_id": []}),
    (ONE, {"user_id": [4]}, {"user_id": [4]}),
    (ONE, {"user_id": [4], "other": [1, 2]}, {"user_id": [4]}),  # extra columns ignored
    (ONE, [2**63 - 1], {"user_id": [2**63 - 1]}),
    (TWO, [(1, "a"), [2, "b"]], {"user_id": [1, 2], "item": ["a", "b"]}),
    (TWO, {"item": ["a"], "user_id": [1]}, {"user_id": [1], "item": ["a"]}),
    (TWO, pd.DataFrame({"user_id": [1], "item": ["z"]}), {"user_id": [1], "item": ["z"]}),
    (TWO, [], {"user_id": [], "item": []}),
    (IDS, [U, str(U)], {"u": [str(U), str(U)]}),
]


@pytest.mark.parametrize(("view", "given", "want"), GOOD)
def test_good_shapes(view: FeatureView, given: Any, want: dict[str, list[Any]]) -> None:
    got = keys_of(view, given)
    assert list(got) == list(view.entity_names)
    assert {k: v.tolist() for k, v in got.items()} == want
    if view is ONE:
        assert got["user_id"].dtype == np.int64


BAD: list[tuple[FeatureView, Any, str]] = [
    # one entity column
    (ONE, None, "entity_ids is missing"),
    (ONE, 5, "must be a sequence of keys"),
    (ONE, "123", "is one str value, not a sequence"),
    (ONE, [1, (2, 3)], r"one key per entity of 'user_id' expected; row\(s\) 1 .* tuple or list"),
    (ONE, [(1, 2), (3, 4)], r"shape \(2, 2\)"),
    (ONE, [[1], [2, 3]], "one key per entity of 'user_id' expected"),
    (ONE, [1, [2]], "one key per entity of 'user_id' expected"),
    (ONE, [1, {"a": 1}], r"row\(s\) 1 .* hold a tuple, list or mapping"),
    (ONE, np.zeros((2, 1), dtype=np.int64), r"shape \(2, 1\)"),
    (ONE, [1, None], r"key is missing \(None\) in row\(s\) 1"),
    (ONE, [None], r"key is missing \(None\)"),
    (ONE, [1.5, 2.0], "entity 'user_id' is int8.*integers expected"),
    (ONE, ["1", "2"], "entity 'user_id' is int8"),
    (ONE, [True, False], "entity 'user_id' is int8"),
    (ONE, [1, "2"], "entity 'user_id' is int8"),
    (ONE, [2**63], "out of range for int8"),
    (ONE, np.array([2**64 - 1], dtype=np.uint64), "out of range for int8"),
    (SMALL, [1, 40_000], r"out of range for int2 in row\(s\) 1"),
    (ONE, {"user": [1]}, r"lacks entity column\(s\) user_id \(given: user\)"),
    (ONE, {"user_id": 1}, r"entity_ids\['user_id'\] must be a sequence of keys"),
    (ONE, {"user_id": "abc"}, r"entity_ids\['user_id'\] must be a sequence of keys"),
    (ONE, {"user_id": None}, r"entity_ids\['user_id'\] must be a sequence of keys"),
    (ONE, {"user_id": [[1, 2]]}, r"shape \(1, 2\)"),
    # composite keys
    (TWO, [1, 2], r"tuples of \(user_id, item\) expected.*row\(s\) 0, 1 .*single values"),
    (TWO, [(1, "a"), 2], r"row\(s\) 1 .*single values, not tuples"),
    (TWO, [(1, "a"), (2,)], r"row\(s\) 1 .*not 2 wide"),
    (TWO, [(1, "a", "x")], r"row\(s\) 0 .*not 2 wide"),
    (TWO, [(1, ["a"])], "one key per entity of 'item' expected"),
    (TWO, [([1], "a")], r"shape \(1, 1\)"),
    (TWO, [(None, "a")], r"entity 'user_id': the key is missing"),
    (TWO, [(1, 2)], r"entity 'item' is text; the keys in row\(s\) 0"),
    (TWO, [(1, "a\x00b")], "NUL character or a lone surrogate"),
    (TWO, [(1, "\ud800")], "NUL character or a lone surrogate"),
    (TWO, {"user_id": [1, 2], "item": ["a"]}, r"different lengths \(user_id: 2, item: 1\)"),
    (TWO, {"user_id": [1]}, r"lacks entity column\(s\) item"),
    (TWO, np.zeros((2, 3), dtype=np.int64), r"shape \(2, 3\); 2 columns"),
    (TWO, None, "entity_ids is missing"),
    (TWO, 7, "must be a sequence of keys"),
    # uuid keys
    (IDS, ["not a uuid"], r"entity 'u' is uuid; the keys in row\(s\) 0 .* are not uuids"),
    (IDS, [12], "are not uuids"),
]


@pytest.mark.parametrize(("view", "given", "match"), BAD)
def test_bad_shapes_are_feature_errors(view: FeatureView, given: Any, match: str) -> None:
    with pytest.raises(FeatureError, match=match):
        keys_of(view, given)
