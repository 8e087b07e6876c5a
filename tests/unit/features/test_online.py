"""Online reads, the pure half: references, assembling a result from the groups' answers,
cache entries both ways, and the result's shapes (numpy, pandas, Arrow) with missing values."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from mlscale.core.features.arrays import Decoded
from mlscale.core.features.layout import Layout
from mlscale.core.features.online import (
    FeatureRef,
    OnlineBuilder,
    OnlineFeatures,
    ViewRequest,
    from_entries,
    parse_refs,
    to_entries,
)
from mlscale.core.features.spec import Entity, Feature, FeatureType, FeatureView
from mlscale.errors import FeatureError

VIEW = FeatureView(
    "stats",
    entities=(Entity("user_id"),),
    features=(
        Feature("ctr"),
        Feature("clicks", FeatureType.INT),
        Feature("vip", FeatureType.BOOL),
        Feature("spend"),
        Feature("country", FeatureType.TEXT),
        Feature("emb", FeatureType.EMBEDDING, dim=2),
    ),
)
LAYOUT = Layout.of(VIEW)
ALL = tuple(range(len(VIEW.features)))
NAMES = [f.name for f in VIEW.features]


@pytest.mark.parametrize(
    ("refs", "want"),
    [
        ("v:a", [FeatureRef("v", None, "a")]),
        (["v:a", "w@2:b"], [FeatureRef("v", None, "a"), FeatureRef("w", 2, "b")]),
        (["v@v3:*"], [FeatureRef("v", 3, "*")]),
        (["user_stats:f_01"], [FeatureRef("user_stats", None, "f_01")]),
    ],
)
def test_parse_refs(refs: Any, want: list[FeatureRef]) -> None:
    assert parse_refs(refs) == want


@pytest.mark.parametrize(
    "bad", ["v", "v:", ":a", "V:a", "v:A", "v@:a", "v@x:a", "v:a:b", "v:*a", 7]
)
def test_parse_refs_refuses(bad: Any) -> None:
    with pytest.raises(FeatureError, match="malformed feature reference"):
        parse_refs([bad])


def test_parse_refs_needs_one() -> None:
    with pytest.raises(FeatureError, match="no features asked for"):
        parse_refs([])


def test_view_request_columns_in_layout_order() -> None:
    req = ViewRequest.of(LAYOUT, [4, 3, 0])
    assert req.features == (4, 3, 0)
    assert [c.name for c in req.columns] == ["f4", "t_country"]


def group_answer(positions: list[int]) -> list[Decoded | None]:
    """What one group sends for every column of VIEW, decoded: positions (1-based),
    event times (us since 2000), then f4, i8, b_vip, t_country, e_emb."""
    m = len(positions)
    p = np.array(positions)
    f4 = np.stack([p * 0.5, p * 2.0], axis=1).astype(np.float32)  # ctr, spend
    f4_valid = np.ones((m, 2), dtype=bool)
    f4_valid[0, 1] = False  # the first entity's spend is missing
    return [
        Decoded(p.astype(np.int32), None),
        Decoded(p.astype(np.int64) * 1_000_000, None),
        Decoded(np.where(f4_valid, f4, 0).astype(np.float32), f4_valid),
        Decoded((p * 10).astype(np.int64).reshape(m, 1), None),
        Decoded(p % 2 == 0, None),
        Decoded(np.array([f"c{x}" if x != 3 else None for x in positions], dtype=object),
                np.array([x != 3 for x in positions])),
        Decoded(np.stack([p, -p], axis=1).astype(np.float32), None),
    ]  # fmt: skip


def built(n: int, answers: list[list[int]], features: tuple[int, ...] = ALL) -> OnlineFeatures:
    req = ViewRequest.of(LAYOUT, features)
    names = [VIEW.features[i].name for i in features]
    b = OnlineBuilder({"user_id": np.arange(100, 100 + n)}, n, [req], [names])
    index = {c.name: k for k, c in enumerate(LAYOUT.columns)}
    for positions in answers:
        full = group_answer(positions)
        b.take(0, full[:2] + [full[2 + index[c.name]] for c in req.columns])
    return b.result


def test_builder_scatters_answers_in_request_order() -> None:
    # 5 entities; group A answers positions 3 and 1, group B position 5; 2 and 4 missing.
    res = built(5, [[3, 1], [5]])
    assert len(res) == 5 and res.names == NAMES
    assert res.present["ctr"].tolist() == [True, False, True, False, True]
    assert res.values["ctr"][[0, 2, 4]].tolist() == [0.5, 1.5, 2.5]
    assert np.isnan(res.values["ctr"][[1, 3]]).all()
    # spend: missing for the first entity of each answer (positions 3 and 5).
    assert res.present["spend"].tolist() == [True, False, False, False, False]
    assert res.values["clicks"].tolist() == [10, 0, 30, 0, 50]
    assert res.values["vip"].tolist() == [False, False, False, False, False]
    assert res.values["country"].tolist() == ["c1", None, None, None, "c5"]
    assert res.present["country"].tolist() == [True, False, False, False, True]
    assert res.values["emb"].shape == (5, 2) and res.values["emb"][2].tolist() == [3.0, -3.0]
    times = res.event_time["stats"]
    assert str(times[0]) == "2000-01-01T00:00:01.000000" and np.isnat(times[1])


def test_no_answer_leaves_everything_missing() -> None:
    res = built(3, [])
    assert not any(m.any() for m in res.present.values())
    matrix, cols = built(3, [], (0, 1, 2, 3)).to_numpy()
    assert matrix.shape == (3, 4) and np.isnan(matrix).all() and cols["spend"] == 3


def test_to_numpy() -> None:
    res = built(4, [[1, 2, 4]], (3, 0, 1, 2))
    matrix, cols = res.to_numpy()
    assert cols == {"spend": 0, "ctr": 1, "clicks": 2, "vip": 3}
    assert matrix.dtype == np.float32 and matrix.shape == (4, 4)
    assert np.isnan(matrix[2]).all()  # entity 3 has no row
    assert np.isnan(matrix[0, 0])  # spend missing
    assert matrix[1].tolist() == [4.0, 1.0, 20.0, 1.0]
    assert res.to_numpy(np.float64)[0].dtype == np.float64
    with pytest.raises(FeatureError, match="country, emb are text or embeddings"):
        built(2, [[1]]).to_numpy()


def test_to_pandas() -> None:
    frame = built(3, [[1, 3]]).to_pandas()
    assert list(frame.columns) == ["user_id", *NAMES]
    assert frame.shape == (3, 7)
    assert frame["user_id"].tolist() == [100, 101, 102]
    assert str(frame["clicks"].dtype) == "Int64" and frame["clicks"].isna().tolist() == [
        False, True, False
    ]  # fmt: skip
    assert str(frame["vip"].dtype) == "boolean" and frame["vip"].isna().tolist()[1]
    assert np.isnan(frame["ctr"][1]) and frame["ctr"][2] == 1.5
    assert frame["country"].tolist() == ["c1", None, None]
    assert frame["emb"][1] is None and frame["emb"][0].tolist() == [1.0, -1.0]


def test_to_arrow() -> None:
    import pyarrow as pa

    table = built(3, [[1, 3]]).to_arrow()
    assert table.num_rows == 3 and table.column_names == ["user_id", *NAMES]
    assert table["ctr"].null_count == 1 and table["clicks"].to_pylist() == [10, None, 30]
    assert table["country"].to_pylist() == ["c1", None, None]
    assert table["emb"].type == pa.list_(pa.float32(), 2)
    assert table["emb"].to_pylist() == [[1.0, -1.0], None, [3.0, -3.0]]
    whole = built(2, [[1, 2]]).to_arrow()
    assert whole["emb"].null_count == 0 and whole["emb"].type == pa.list_(pa.float32(), 2)


def test_to_dict() -> None:
    d = built(2, [[2]]).to_dict()
    assert list(d) == ["user_id", *NAMES]


@pytest.mark.parametrize("features", [ALL, (3,), (1, 4), (5, 0)])
def test_cache_entries_round_trip(features: tuple[int, ...]) -> None:
    """to_entries (from an answer of every column) then from_entries (a hit) gives the
    builder what the answer itself gives; entries survive msgpack (the cache's codec)."""
    answer = group_answer([2, 4, 3])
    entries = to_entries(LAYOUT, answer)
    assert [p for p, _ in entries] == [2, 4, 3]
    assert entries[0][1][0] == 2_000_000  # event time, us since 2000
    packed = [(p, msgpack.unpackb(msgpack.packb(e), raw=False)) for p, e in entries]

    req = ViewRequest.of(LAYOUT, features)
    names = [VIEW.features[i].name for i in features]
    from_cache = OnlineBuilder({"user_id": np.arange(5)}, 5, [req], [names])
    from_cache.take(0, from_entries(LAYOUT, req, packed))
    direct = built(5, [[2, 4, 3]], features)
    got = from_cache.result
    for name in names:
        assert got.present[name].tolist() == direct.present[name].tolist(), name
        a, b = got.values[name], direct.values[name]
        if a.dtype == object:
            assert a.tolist() == b.tolist(), name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert got.event_time["stats"].tolist() == direct.event_time["stats"].tolist()


def test_to_entries_of_no_answer() -> None:
    assert to_entries(LAYOUT, [None]) == []
    assert from_entries(LAYOUT, ViewRequest.of(LAYOUT, ALL), []) == [None]
