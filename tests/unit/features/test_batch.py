"""Pushed data checked into a Batch: every bad input is a FeatureError; the binary COPY
payload built in numpy parses back, by hand, to the values the row path gives."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlscale.core.features.arrays import PG_EPOCH_US, decode
from mlscale.core.features.batch import Batch, event_times, to_batch
from mlscale.core.features.layout import Layout
from mlscale.core.features.spec import Entity, Feature, FeatureType, FeatureView
from mlscale.core.slots import KeyType
from mlscale.errors import FeatureError

T0 = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
VIEW = FeatureView(
    "stats",
    entities=(Entity("user_id", KeyType.INT8),),
    features=(
        Feature("ctr"),
        Feature("clicks", FeatureType.INT),
        Feature("vip", FeatureType.BOOL),
        Feature("spend"),
        Feature("emb", FeatureType.EMBEDDING, dim=3),
    ),
)
TEXTY = FeatureView(
    "texty",
    entities=(Entity("k", KeyType.TEXT),),
    features=(Feature("country", FeatureType.TEXT), Feature("x", allow_nan=True)),
)


def good(n: int = 4) -> dict[str, Any]:
    return {
        "user_id": list(range(1, n + 1)),
        "event_ts": [T0 + dt.timedelta(minutes=i) for i in range(n)],
        "ctr": [0.5 + i for i in range(n)],
        "clicks": list(range(10, 10 + n)),
        "vip": [i % 2 == 0 for i in range(n)],
        "spend": [1.25 * i for i in range(n)],
        "emb": [[float(i), 1.0, -1.0] for i in range(n)],
    }


def batch_of(data: Any, view: FeatureView = VIEW, max_rows: int = 1000) -> Batch:
    return to_batch(view, data, max_rows=max_rows)


# -- accepted inputs -------------------------------------------------------------------


@pytest.mark.parametrize("form", ["frame", "records", "arrow"])
def test_frames_records_and_arrow_give_the_same_batch(form: str) -> None:
    frame = pd.DataFrame(good())
    data: Any = {
        "frame": frame,
        "records": frame.to_dict("records"),
        "arrow": pa.Table.from_pandas(frame),
    }[form]
    b = batch_of(data)
    assert b.size == 4
    assert b.keys[0].tolist() == [1, 2, 3, 4]
    assert b.values[0].dtype == np.float32 and b.values[1].dtype == np.int64
    assert b.values[4].shape == (4, 3)
    assert b.valid == (None,) * 5
    want_us = int(T0.timestamp() * 1_000_000)
    assert b.event_us.tolist() == [want_us + i * 60_000_000 for i in range(4)]


def test_naive_times_are_utc() -> None:
    naive = pd.Series([dt.datetime(2024, 5, 1, 12)])
    aware = pd.Series([dt.datetime(2024, 5, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))])
    assert event_times(naive, "t").tolist() == event_times(aware, "t").tolist()


def test_missing_values_are_masked() -> None:
    data = good()
    frame = pd.DataFrame(data)
    frame["ctr"] = pd.array([0.5, None, 1.5, 2.5], dtype="Float64")  # None alone would be NaN
    frame["clicks"] = pd.array([1, None, 3, 4], dtype="Int64")
    frame["emb"] = [[1.0, 2.0, 3.0], None, [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
    b = batch_of(frame)
    assert b.valid[0] is not None and b.valid[0].tolist() == [True, False, True, True]
    assert b.valid[1] is not None and b.valid[1].tolist() == [True, False, True, True]
    assert b.valid[4] is not None and b.valid[4].tolist() == [True, False, True, True]
    assert b.valid[2] is None
    assert b.copy_payload(Layout.of(VIEW)) is None  # missing values take the row path
    rows = list(b.rows(Layout.of(VIEW)))
    assert rows[1][2] == [None, pytest.approx(1.25)]  # f4: ctr missing, spend present
    assert rows[1][3] == [None]  # i8: clicks
    assert rows[1][5] is None  # e_emb


def test_allow_nan_keeps_nan_as_a_value() -> None:
    b = batch_of([{"k": "a", "event_ts": T0, "country": "de", "x": float("nan")}], TEXTY)
    assert np.isnan(b.values[1][0]) and b.valid[1] is None


# -- refused inputs ----------------------------------------------------------------------


def _with(**changes: Any) -> pd.DataFrame:
    frame = pd.DataFrame(good())
    for k, v in changes.items():
        if v is None:
            frame = frame.drop(columns=[k])
        else:
            frame[k] = v
    return frame


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("not data", "must be a pandas DataFrame"),
        (42, "must be a pandas DataFrame"),
        ([1, 2], "records must be dicts"),
        (_with(spend=None), "lacks column(s) spend"),
        (_with(event_ts=None), "lacks column(s) event_ts"),
        (_with(user_id=None), "lacks column(s) user_id"),
        (_with(extra=[1, 2, 3, 4]), "has column(s) the view does not: extra"),
        (_with(user_id=[1.0, 2.0, 3.0, 4.0]), "integers expected"),
        (_with(user_id=["1", "2", "3", "4"]), "integers expected"),
        (_with(user_id=[1, None, 3, 4]), "key is missing in row(s) 1"),
        (_with(user_id=pd.array([1, 2, 3, 2**64 - 1], dtype="UInt64")), "out of range"),
        (_with(event_ts=[T0, None, T0, T0]), "event time is missing"),
        (_with(event_ts=["yesterday"] * 4), "not event times"),
        (_with(ctr=["a", "b", "c", "d"]), "the data holds non-numbers"),
        (_with(ctr=[1.0, float("nan"), 2.0, 3.0]), "NaN in row(s) 1"),
        (_with(emb=[[1.0, float("nan"), 0.0]] * 4), "NaN in row(s) 0, 1, 2, 3"),
        (_with(clicks=[1.5, 2.0, 3.0, 4.0]), "holds fractions"),
        (_with(clicks=["1", "2", "3", "4"]), "holds non-integers"),
        (_with(clicks=[True, False, True, False]), "is an int feature; the data's column is bool"),
        (_with(vip=[1, 0, 1, 0]), "holds non-booleans"),
        (_with(emb=[[1.0, 2.0]] * 4), "embedding of 3 values; row 0 has shape (2,)"),
        (
            _with(user_id=[1, 1, 2, 3], event_ts=[T0, T0, T0, T0]),
            "same entity and event time in more than one row: row(s) 0, 1",
        ),
    ],
)
def test_bad_input(data: Any, fragment: str) -> None:
    with pytest.raises(FeatureError) as err:
        batch_of(data)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("key_type", "keys", "fragment"),
    [
        (KeyType.INT2, [1, 40_000], "out of range for int2"),
        (KeyType.INT4, [-(2**31) - 1, 0], "out of range for int4"),
        (KeyType.TEXT, [1, 2], "the view's key is text"),
        (KeyType.TEXT, ["a\x00b", "c"], "NUL character"),
        (KeyType.UUID, ["not-a-uuid", str(uuid.uuid4())], "is not a uuid"),
    ],
)
def test_bad_keys(key_type: KeyType, keys: list[Any], fragment: str) -> None:
    view = FeatureView("v", entities=(Entity("k", key_type),), features=(Feature("x"),))
    data = [{"k": k, "event_ts": T0, "x": 1.0} for k in keys]
    with pytest.raises(FeatureError, match=fragment):
        batch_of(data, view)


def test_text_feature_checks() -> None:
    with pytest.raises(FeatureError, match="holds non-strings"):
        batch_of([{"k": "a", "event_ts": T0, "country": 5, "x": 1.0}], TEXTY)
    with pytest.raises(FeatureError, match="NUL character"):
        batch_of([{"k": "a", "event_ts": T0, "country": "d\x00e", "x": 1.0}], TEXTY)


def test_over_the_row_limit() -> None:
    with pytest.raises(FeatureError, match="4 rows is over the limit of 3"):
        batch_of(pd.DataFrame(good()), max_rows=3)


def test_uuid_keys_parse() -> None:
    u = uuid.uuid4()
    view = FeatureView("v", entities=(Entity("k", KeyType.UUID),), features=(Feature("x"),))
    b = batch_of([{"k": str(u), "event_ts": T0, "x": 1.0}], view)
    assert b.keys[0].tolist() == [u]
    assert b.copy_payload(Layout.of(view)) is None  # not a fixed-width integer key


# -- the COPY payload ----------------------------------------------------------------------


def parse_copy(payload: bytes) -> list[list[bytes | None]]:
    """PostgreSQL's binary COPY by hand: signature, flags, header extension, then per
    row a field count and per field a length (-1: NULL) and bytes; -1 ends it."""
    assert payload[:11] == b"PGCOPY\n\xff\r\n\x00"
    flags, ext = struct.unpack_from(">ii", payload, 11)
    assert (flags, ext) == (0, 0)
    off = 19
    rows: list[list[bytes | None]] = []
    while True:
        (nf,) = struct.unpack_from(">h", payload, off)
        off += 2
        if nf == -1:
            break
        fields: list[bytes | None] = []
        for _ in range(nf):
            (n,) = struct.unpack_from(">i", payload, off)
            off += 4
            if n < 0:
                fields.append(None)
                continue
            fields.append(payload[off : off + n])
            off += n
        rows.append(fields)
    assert off == len(payload)
    return rows


def test_copy_payload_parses_back_to_the_rows_path() -> None:
    data = good(5)
    data["user_id"] = [1, -7, 2**62, 0, 42]
    b = batch_of(pd.DataFrame(data))
    layout = Layout.of(VIEW)
    payload = b.copy_payload(layout)
    assert payload is not None
    parsed = parse_copy(payload)
    expected = list(b.rows(layout))
    assert len(parsed) == len(expected) == 5
    for fields, row in zip(parsed, expected, strict=True):
        assert len(fields) == len(layout.stored) == 6
        key, ts, f4, i8, vip, emb = fields
        assert key is not None and ts is not None and vip is not None
        assert struct.unpack(">q", key)[0] == row[0]
        us = struct.unpack(">q", ts)[0] + PG_EPOCH_US
        assert dt.datetime.fromtimestamp(us / 1e6, dt.UTC) == row[1]
        f4d, i8d, embd = decode(f4), decode(i8), decode(emb)
        assert f4d is not None and i8d is not None and embd is not None
        assert f4d.values.dtype == np.float32 and f4d.values.tolist() == pytest.approx(row[2])
        assert i8d.values.tolist() == row[3]
        assert struct.unpack(">?", vip)[0] is row[4]
        assert embd.values.tolist() == pytest.approx(row[5])


def test_copy_payload_of_small_int_keys() -> None:
    view = FeatureView(
        "v",
        entities=(Entity("a", KeyType.INT2), Entity("b", KeyType.INT4)),
        features=(Feature("n", FeatureType.INT),),
    )
    b = batch_of([{"a": -3, "b": 70_000, "event_ts": T0, "n": 9}], view)
    payload = b.copy_payload(Layout.of(view))
    assert payload is not None
    [[a, bb, _, n]] = parse_copy(payload)
    assert a == struct.pack(">h", -3) and bb == struct.pack(">i", 70_000)
    got = decode(n)
    assert got is not None and got.values.tolist() == [9]


def test_text_takes_the_row_path() -> None:
    b = batch_of([{"k": "a", "event_ts": T0, "country": "de", "x": 0.5}], TEXTY)
    layout = Layout.of(TEXTY)
    assert b.copy_payload(layout) is None
    assert list(b.rows(layout)) == [("a", T0, [0.5], "de")]


def test_take_months_and_key_tuples() -> None:
    data = good(3)
    data["event_ts"] = [T0, T0 + dt.timedelta(days=40), T0 + dt.timedelta(days=400)]
    b = batch_of(pd.DataFrame(data))
    assert b.months() == [dt.date(2024, 5, 1), dt.date(2024, 6, 1), dt.date(2025, 6, 1)]
    part = b.take(np.array([2, 0]))
    assert part.size == 2 and part.key_tuples() == [(3,), (1,)]
    assert part.values[4].shape == (2, 3)
    assert b.take(np.array([False, True, False])).keys[0].tolist() == [2]
    assert batch_of(pd.DataFrame(good(1)).iloc[:0]).months() == []
