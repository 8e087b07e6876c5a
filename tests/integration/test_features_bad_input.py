"""Bad input to the feature store, case by case (issue 14's acceptance, item 5).

Each case is its own test: a FeatureError with a message naming what is wrong, and
the view's online and history row counts (``describe``) unchanged. A bad push holds
good rows for both shard groups of the session cluster and one bad row last, so a
check that ran after a group's write would show in the counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from mlscale import Cluster
from mlscale.errors import FeatureError, FeatureViewNotFound
from mlscale.stores.features import Entity, Feature, FeatureStore, FeatureType, FeatureView
from tests.integration.features_help import row_counts, scratch_store, unique

pytestmark = pytest.mark.integration

GOOD = 20  # good rows in each bad push, ids 1000.. (both groups)


@dataclass
class Bed:
    cluster: Cluster
    store: FeatureStore
    view: FeatureView


def _view(name: str) -> FeatureView:
    return FeatureView(
        name=name,
        entities=(Entity("user_id", "int8"),),
        features=(
            Feature("x"),
            Feature("y", allow_nan=True),
            Feature("n", FeatureType.INT),
            Feature("e", FeatureType.EMBEDDING, dim=4),
        ),
        ttl_s=86400.0,
    )


@pytest.fixture(scope="module")
def bed(cluster: Cluster) -> Iterator[Bed]:
    with scratch_store(cluster) as store:
        view = store.register(_view(unique("bad")))
        store.push(view.name, _rows(range(3)))
        assert row_counts(store, view.name) == (3, 3)
        yield Bed(cluster, store, view)


def _rows(ids: object, when: pd.Timestamp | None = None) -> pd.DataFrame:
    ids = np.asarray(list(ids), dtype=np.int64)  # type: ignore[call-overload]
    k = ids.size
    return pd.DataFrame(
        {
            "user_id": ids,
            "event_ts": when if when is not None else pd.Timestamp.now(tz="UTC"),
            "x": np.arange(k, dtype=np.float32),
            "y": np.ones(k, dtype=np.float32),
            "n": np.arange(k, dtype=np.int64),
            "e": [np.full(4, i, dtype=np.float32) for i in range(k)],
        }
    )


def _bad_push(bed: Bed, frame: pd.DataFrame, match: str, store: FeatureStore | None = None) -> str:
    before = row_counts(bed.store, bed.view.name)
    groups = {
        bed.cluster.locate(bed.view.family, int(k))
        for k in frame["user_id"][:GOOD]
        if isinstance(k, int | np.integer)
    }
    assert len(groups) == 2 or len(frame) < GOOD, "the good rows should reach both groups"
    with pytest.raises(FeatureError, match=match) as err:
        (store or bed.store).push(bed.view.name, frame)
    assert row_counts(bed.store, bed.view.name) == before
    return str(err.value)


def test_unknown_view(bed: Bed) -> None:
    before = row_counts(bed.store, bed.view.name)
    with pytest.raises(FeatureError, match=r"unknown feature view 'no_such_view'.*registered"):
        bed.store.push("no_such_view", _rows(range(1000, 1000 + GOOD)))
    with pytest.raises(FeatureViewNotFound, match="unknown feature view 'no_such_view'"):
        bed.store.get_online_features(["no_such_view:x"], [1])
    with pytest.raises(FeatureError, match=r"unknown feature view .*version 7"):
        bed.store.get_online_features([f"{bed.view.name}@7:x"], [1])
    with pytest.raises(FeatureError, match="unknown feature view"):
        bed.store.get_historical_features(
            pd.DataFrame({"user_id": [1], "event_ts": [pd.Timestamp.now(tz="UTC")]}),
            ["no_such_view:x"],
        )
    assert row_counts(bed.store, bed.view.name) == before


def test_unknown_feature(bed: Bed) -> None:
    before = row_counts(bed.store, bed.view.name)
    with pytest.raises(FeatureError, match=r"has no feature 'zz'; it has x, y, n, e"):
        bed.store.get_online_features([f"{bed.view.name}:x", f"{bed.view.name}:zz"], [1, 2])
    with pytest.raises(FeatureError, match="has no feature 'zz'"):
        bed.store.get_historical_features(
            pd.DataFrame({"user_id": [1], "event_ts": [pd.Timestamp.now(tz="UTC")]}),
            [f"{bed.view.name}:zz"],
        )
    assert row_counts(bed.store, bed.view.name) == before


@pytest.mark.parametrize("ref", ["x", "view:", ":x", "View:x", "a:b:c", "a b:x", "", "v@:x"])
def test_malformed_reference(bed: Bed, ref: str) -> None:
    with pytest.raises(FeatureError, match="malformed feature reference"):
        bed.store.get_online_features([ref], [1])


def test_no_features_asked(bed: Bed) -> None:
    with pytest.raises(FeatureError, match="no features asked for"):
        bed.store.get_online_features([], [1])


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ([1.5, 2.0], "integers expected"),
        (["1", "2"], "integers expected"),
        ([1, None], "key is missing"),
        ([2**63 - 1, 2**63], "out of range|integers expected"),
    ],
)
def test_wrong_entity_key_type_on_push(bed: Bed, keys: list[object], match: str) -> None:
    frame = _rows(range(1000, 1000 + GOOD + len(keys)))
    frame["user_id"] = frame["user_id"].astype(object)
    frame.loc[GOOD:, "user_id"] = keys
    msg = _bad_push(bed, frame, match)
    assert "user_id" in msg


@pytest.mark.parametrize("keys", [[1.5, 2.0], ["1", "2"]])
def test_wrong_entity_key_type_on_read(bed: Bed, keys: list[object]) -> None:
    with pytest.raises(FeatureError, match="entity 'user_id' is int8"):
        bed.store.get_online_features(f"{bed.view.name}:x", keys)


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([1, (2, 3)], "one key per entity of 'user_id' expected"),
        ([(1, 2), (3, 4)], "one key per entity of 'user_id' expected"),
        (None, "entity_ids is missing"),
        ({"item": [1]}, r"lacks entity column\(s\) user_id"),
        ([1, None], r"key is missing \(None\)"),
    ],
)
def test_bad_shapes_of_entity_ids_on_read(bed: Bed, ids: object, match: str) -> None:
    with pytest.raises(FeatureError, match=match):
        bed.store.get_online_features(f"{bed.view.name}:x", ids)


def test_nan_where_not_allowed(bed: Bed) -> None:
    frame = _rows(range(1000, 1000 + GOOD + 1))
    frame.loc[GOOD, "x"] = np.nan
    msg = _bad_push(bed, frame, r"feature 'x': NaN in row\(s\) 20 \(1 in all\).*allow_nan")
    assert bed.view.name in msg
    emb = _rows(range(1000, 1000 + GOOD + 1))
    emb.at[GOOD, "e"] = np.array([0, np.nan, 0, 0], dtype=np.float32)
    _bad_push(bed, emb, "feature 'e': NaN")


def test_nan_where_allowed_is_a_value(bed: Bed) -> None:
    before = row_counts(bed.store, bed.view.name)
    frame = _rows([500, 501])
    frame["y"] = np.array([np.nan, 2.0], dtype=np.float32)
    token = bed.store.push(bed.view.name, frame).token
    assert row_counts(bed.store, bed.view.name) == (before[0] + 2, before[1] + 2)
    got = bed.store.get_online_features(f"{bed.view.name}:y", [500, 501], token=token)
    assert got.present["y"].tolist() == [True, True]  # a NaN value, not a missing one
    assert np.isnan(got.values["y"][0]) and got.values["y"][1] == 2.0


def test_missing_feature_column(bed: Bed) -> None:
    frame = _rows(range(1000, 1000 + GOOD)).drop(columns=["n"])
    msg = _bad_push(bed, frame, r"lacks column\(s\) n")
    assert "the view has 4 features, the data 3" in msg


def test_extra_column(bed: Bed) -> None:
    frame = _rows(range(1000, 1000 + GOOD)).assign(z=1.0)
    msg = _bad_push(bed, frame, r"has column\(s\) the view does not: z")
    assert "the view has 4 features" in msg


def test_oversize_batch(bed: Bed) -> None:
    small = FeatureStore(bed.cluster, max_push_rows=10)
    msg = _bad_push(bed, _rows(range(1000, 1011)), "11 rows is over the limit of 10", small)
    assert "materialize" in msg
    before = row_counts(bed.store, bed.view.name)
    small.push(bed.view.name, _rows(range(600, 610)))  # at the limit: taken
    assert row_counts(bed.store, bed.view.name) == (before[0] + 10, before[1] + 10)


def test_duplicate_entity_and_event_time(bed: Bed) -> None:
    when = pd.Timestamp.now(tz="UTC")
    frame = pd.concat(
        [_rows(range(1000, 1000 + GOOD), when), _rows([1005], when)], ignore_index=True
    )
    _bad_push(bed, frame, r"same entity and event time in more than one row: row\(s\) 5, 20")
    # The same entity at two event times is two events: no error.
    ok = pd.concat(
        [_rows([700], when), _rows([700], when - pd.Timedelta(seconds=1))], ignore_index=True
    )
    before = row_counts(bed.store, bed.view.name)
    bed.store.push(bed.view.name, ok)
    assert row_counts(bed.store, bed.view.name) == (before[0] + 1, before[1] + 2)


def test_missing_event_time(bed: Bed) -> None:
    frame = _rows(range(1000, 1000 + GOOD + 1))
    frame["event_ts"] = frame["event_ts"].astype(object)
    frame.at[GOOD, "event_ts"] = None
    _bad_push(bed, frame, r"'event_ts': event time is missing in row\(s\) 20")
    _bad_push(bed, frame.drop(columns=["event_ts"]), r"lacks column\(s\) event_ts")
    garbled = _rows(range(1000, 1000 + GOOD + 1))
    garbled["event_ts"] = garbled["event_ts"].astype(object)
    garbled.at[GOOD, "event_ts"] = "not a time"
    _bad_push(bed, garbled, "'event_ts': not event times")


def test_embedding_of_the_wrong_length(bed: Bed) -> None:
    frame = _rows(range(1000, 1000 + GOOD + 1))
    frame.at[GOOD, "e"] = np.zeros(3, dtype=np.float32)
    _bad_push(bed, frame, r"feature 'e' is an embedding of 4 values; row 20 has shape \(3,\)")


def test_wrong_value_type(bed: Bed) -> None:
    frame = _rows(range(1000, 1000 + GOOD + 1))
    frame["n"] = frame["n"].astype(object)
    frame.at[GOOD, "n"] = 2.5
    _bad_push(bed, frame, "feature 'n' is an int feature; the data holds non-integers")
    text = _rows(range(1000, 1000 + GOOD + 1))
    text["x"] = text["x"].astype(object)
    text.at[GOOD, "x"] = "fast"
    _bad_push(bed, text, "feature 'x' is a float feature; the data holds non-numbers")


def test_reregistering_a_different_spec_under_the_same_version(bed: Bed) -> None:
    before = row_counts(bed.store, bed.view.name)
    assert bed.store.register(_view(bed.view.name)) == bed.view  # an equal spec: a no-op
    changed = FeatureView(
        name=bed.view.name,
        entities=bed.view.entities,
        features=(*bed.view.features, Feature("w")),
        ttl_s=bed.view.ttl_s,
    )
    with pytest.raises(FeatureError, match=r"different definition; register version 2"):
        bed.store.register(changed)
    assert bed.store.view(bed.view.name) == bed.view
    assert row_counts(bed.store, bed.view.name) == before
    # A fresh store (nothing cached) sees the catalog's spec, not the refused one.
    assert FeatureStore(bed.cluster).view(bed.view.name) == bed.view


def test_records_with_none_are_missing_values_not_nan(bed: Bed) -> None:
    """A None in records is a missing value, also among floats (where pandas would make
    it NaN, which x refuses); a NaN given as such is still refused."""
    now = pd.Timestamp.now(tz="UTC")
    e = [0.0, 0.0, 0.0, 0.0]
    rows = [
        {"user_id": 800, "event_ts": now, "x": None, "y": 1.0, "n": 1, "e": e},
        {"user_id": 801, "event_ts": now, "x": 2.0, "y": 1.0, "n": 2, "e": e},
    ]
    before = row_counts(bed.store, bed.view.name)
    token = bed.store.push(bed.view.name, rows).token
    assert row_counts(bed.store, bed.view.name) == (before[0] + 2, before[1] + 2)
    got = bed.store.get_online_features(f"{bed.view.name}:x", [800, 801], token=token)
    assert got.present["x"].tolist() == [False, True]
    assert got.values["x"][1] == 2.0
    nan_rows = [dict(r, user_id=r["user_id"] + 10) for r in rows]
    nan_rows[0]["x"] = float("nan")
    with pytest.raises(FeatureError, match=r"feature 'x': NaN in row\(s\) 0"):
        bed.store.push(bed.view.name, nan_rows)
    assert row_counts(bed.store, bed.view.name) == (before[0] + 2, before[1] + 2)
