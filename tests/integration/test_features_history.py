"""Point-in-time training sets against pandas (issue 14's acceptance, point-in-time).

On the session cluster (2 shard groups), a view with a TTL gets a history of several
pushes per entity at different event times (pushed out of time order). A frame of
100k (entity, timestamp) rows -- times before an entity's first event, exactly on
events, exactly on a TTL's edge and just past it, and entities with no history at
all -- goes through ``get_historical_features``; the reference is pandas
``merge_asof`` (backward, by entity, tolerance = TTL, exact matches allowed) over the
same history, compared value by value (NaN == NaN).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from mlscale import Cluster
from mlscale.stores.features import Entity, Feature, FeatureStore, FeatureType, FeatureView
from tests.integration.features_help import row_counts, scratch_store, unique

pytestmark = pytest.mark.integration

WITH_HISTORY = 20_000  # entities 0 .. 19,999 have history
NO_HISTORY = 5_000  # entities 20,000 .. 24,999 have none
PUSHES = 5  # events per entity, a day or so apart
ROWS = 100_000  # (entity, timestamp) rows asked for
TTL_S = 1.2 * 86400
DAY_US = 86_400_000_000


@pytest.fixture(scope="module")
def store(cluster: Cluster) -> Iterator[FeatureStore]:
    with scratch_store(cluster) as s:
        yield s


def _history() -> pd.DataFrame:
    """Every pushed row: event k of an entity at day k + up to 12 h (so events of an
    entity are 0.5 to 1.5 days apart, straddling the 1.2-day TTL)."""
    rng = np.random.default_rng(140)
    base = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10)).value // 1000  # us
    frames = []
    for k in range(PUSHES):
        ids = np.arange(WITH_HISTORY, dtype=np.int64)
        us = base + k * DAY_US + rng.integers(0, DAY_US // 2, ids.size)
        y = rng.standard_normal(ids.size).astype(np.float32)
        y[rng.random(ids.size) < 0.05] = np.nan  # y allows NaN: a value, not a gap
        frames.append(
            pd.DataFrame(
                {
                    "user_id": ids,
                    "event_ts": pd.to_datetime(us, unit="us", utc=True),
                    "x": rng.standard_normal(ids.size).astype(np.float32),
                    "y": y,
                    "n": rng.integers(-1000, 1000, ids.size),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _requests(history: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(141)
    lo = history["event_ts"].min() - pd.Timedelta(days=1)
    hi = history["event_ts"].max() + pd.Timedelta(days=2)
    span_us = (hi - lo).value // 1000
    n_special = 6_000
    n = ROWS - n_special
    ids = rng.integers(-100, WITH_HISTORY + NO_HISTORY, n)
    us = lo.value // 1000 + rng.integers(0, span_us, n)
    picks = history.sample(n=n_special, random_state=142)
    ttl = pd.Timedelta(microseconds=int(TTL_S * 1e6))
    special_ts = pd.concat(
        [
            picks["event_ts"].iloc[:2000],  # exactly on an event
            picks["event_ts"].iloc[2000:4000] + ttl,  # exactly on the TTL's edge: still in
            picks["event_ts"].iloc[4000:] + ttl + pd.Timedelta(microseconds=1),  # just past
        ]
    )
    frame = pd.DataFrame(
        {
            "user_id": np.concatenate([ids, picks["user_id"].to_numpy()]),
            "event_ts": pd.concat(
                [pd.Series(pd.to_datetime(us, unit="us", utc=True)), special_ts], ignore_index=True
            ),
        }
    )
    frame["label"] = np.arange(ROWS) % 7  # a column of the caller's, passed through
    return frame.sample(frac=1.0, random_state=143).reset_index(drop=True)


def _reference(requests: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    left = requests.assign(_row=np.arange(len(requests))).sort_values("event_ts")
    right = history.sort_values("event_ts")
    merged = pd.merge_asof(
        left,
        right,
        on="event_ts",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(microseconds=int(TTL_S * 1e6)),
        allow_exact_matches=True,
    )
    return merged.sort_values("_row").reset_index(drop=True)


def _floats(values: object) -> npt.NDArray[np.float64]:
    """Numbers as float64, missing (NA, None, NaN) as NaN."""
    out: npt.NDArray[np.float64] = (
        pd.Series(values).astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    )
    return out


def test_training_set_equals_merge_asof(store: FeatureStore) -> None:
    name = unique("pit")
    view = FeatureView(
        name=name,
        entities=(Entity("user_id", "int8"),),
        features=(Feature("x"), Feature("y", allow_nan=True), Feature("n", FeatureType.INT)),
        ttl_s=TTL_S,
    )
    store.register(view)
    history = _history()
    token = None
    for k in (2, 0, 4, 1, 3):  # out of time order: the history keeps every event
        part = history.iloc[k * WITH_HISTORY : (k + 1) * WITH_HISTORY]
        res = store.push(name, part)
        token = res.token if token is None else token.merge(res.token)
    assert row_counts(store, name) == (WITH_HISTORY, PUSHES * WITH_HISTORY)

    requests = _requests(history)
    started = time.perf_counter()
    got = store.get_historical_features(requests, [f"{name}:x", f"{name}:*"], token=token)
    took = time.perf_counter() - started
    want = _reference(requests, history)

    assert list(got.columns) == ["user_id", "event_ts", "label", "x", "y", "n"]
    assert len(got) == ROWS
    pd.testing.assert_frame_equal(got[["user_id", "event_ts", "label"]], requests)
    mismatches = {}
    for col in ("x", "y", "n"):
        a, b = _floats(got[col]), _floats(want[col])
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        mismatches[col] = int((~same).sum())
        if not same.all():
            bad = np.flatnonzero(~same)[:5]
            print(
                pd.DataFrame(
                    {
                        "user_id": requests["user_id"].iloc[bad],
                        "ts": requests["event_ts"].iloc[bad],
                        "got": a[bad],
                        "want": b[bad],
                    }
                )
            )
    assert mismatches == {"x": 0, "y": 0, "n": 0}

    # The cases the frame was built to hold are really there.
    found = ~np.isnan(_floats(want["x"]))
    no_history = requests["user_id"].to_numpy() >= WITH_HISTORY
    first = history.groupby("user_id")["event_ts"].min()
    before_first = requests["event_ts"].to_numpy() < requests["user_id"].map(first).to_numpy()
    assert no_history.sum() > 10_000 and not found[no_history].any()
    assert before_first.sum() > 1_000 and not found[before_first].any()
    # TTL cut-offs: rows whose entity has an event before them, none within the TTL.
    untimed = pd.merge_asof(
        requests.assign(_row=np.arange(ROWS)).sort_values("event_ts"),
        history.sort_values("event_ts")[["user_id", "event_ts", "x"]],
        on="event_ts",
        by="user_id",
        direction="backward",
    ).sort_values("_row")
    cut = ~np.isnan(_floats(untimed["x"])) & ~found
    assert cut.sum() > 1_000, "no TTL cut-off exercised"
    print(
        f"training set of {ROWS:,} rows in {took:.2f} s ({ROWS / took:,.0f} rows/s): "
        f"{int(found.sum()):,} found, {int(no_history.sum()):,} without history, "
        f"{int(before_first.sum()):,} before the first event, {int(cut.sum()):,} cut by TTL"
    )


def test_no_ttl_and_missing_values(store: FeatureStore) -> None:
    """Without a TTL the newest earlier event counts however old; a None pushed is a
    missing value in the training set too."""
    name = unique("pit_nottl")
    view = FeatureView(
        name=name,
        entities=(Entity("user_id", "int8"),),
        features=(Feature("x"), Feature("n", FeatureType.INT)),
    )
    store.register(view)
    t0 = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=40)
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "event_ts": [t0, t0 + pd.Timedelta(days=30), t0],
            "x": pd.array([1.0, None, 3.0], dtype="Float32"),  # None in a float64 column is NaN
            "n": pd.array([10, 20, None], dtype="Int64"),
        }
    )
    token = store.push(name, frame).token
    asks = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3],
            "event_ts": [
                t0 - pd.Timedelta(seconds=1),
                t0 + pd.Timedelta(days=29),
                t0 + pd.Timedelta(days=39),
                t0 + pd.Timedelta(days=39),
                t0,
            ],
        }
    )
    got = store.get_historical_features(asks, f"{name}:*", token=token)
    np.testing.assert_array_equal(_floats(got["x"]), [np.nan, 1.0, np.nan, 3.0, np.nan])
    np.testing.assert_array_equal(_floats(got["n"]), [np.nan, 10, 20, np.nan, np.nan])
