"""locate_many: a batch of integer keys placed in numpy, exactly as one by one."""

from __future__ import annotations

import random

import pytest

from mlscale.core.sharding import ShardDirectory, locate_many
from mlscale.core.shardmaps import KeyFamily, KeyRange, RangeMap, SlotMap
from mlscale.errors import ShardKeyError


@pytest.mark.parametrize("key_type", ["int8", "int4", "int2"])
def test_a_batch_lands_where_each_key_does(key_type: str) -> None:
    shard_map = SlotMap.even(KeyFamily.of("f", key_type), ["g0", "g1", "g2"])
    bound = {"int8": 2**63 - 1, "int4": 2**31 - 1, "int2": 2**15 - 1}[key_type]
    rng = random.Random(7)
    keys = [rng.randint(-bound - 1, bound) for _ in range(2000)] + [0, -1, bound, -bound - 1]
    where = locate_many(shard_map, keys)
    assert where is not None
    assert [shard_map.groups[g] for g in where.tolist()] == [shard_map.locate(k) for k in keys]
    # group_keys takes one-value tuples, as the router gives them.
    grouped = ShardDirectory().group_keys(shard_map, [(k,) for k in keys])
    for group, idx in grouped.items():
        assert all(shard_map.locate(keys[i]) == group for i in idx)
    assert sum(map(len, grouped.values())) == len(keys)


@pytest.mark.parametrize(
    ("family", "keys"),
    [
        (KeyFamily.of("t", "text"), ["a", "b"]),  # text: hashed per key
        (KeyFamily.of("c", "int8", "int8"), [(1, 2), (3, 4)]),  # composite
        (KeyFamily.of("i", "int8"), [1, True]),  # a bool is not a key: the slow path names it
        (KeyFamily.of("i", "int8"), [1.0, 2]),
    ],
)
def test_other_keys_take_the_per_key_path(family: KeyFamily, keys: list[object]) -> None:
    assert locate_many(SlotMap.even(family, ["g0", "g1"]), keys) is None


def test_an_out_of_range_key_is_refused_by_name() -> None:
    shard_map = SlotMap.even(KeyFamily.of("f", "int4"), ["g0", "g1"])
    with pytest.raises(ShardKeyError, match="out of range"):
        locate_many(shard_map, [1, 2**40])


def test_a_range_map_is_not_vectorized() -> None:
    family = KeyFamily.of("r", "int8")
    ranges = (KeyRange(None, 0, "neg"), KeyRange(0, None, "pos"))
    assert locate_many(RangeMap(family, ranges), [1, 2]) is None
