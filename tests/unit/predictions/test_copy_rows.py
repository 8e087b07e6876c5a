"""Checked prediction rows and their binary COPY payload, decoded back by a reader of
PostgreSQL's binary COPY format written here (the integration suite reads the same
rows back from the server)."""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlscale.core.copybinary import (
    COPY_HEADER,
    COPY_TRAILER,
    CopyColumn,
    PgType,
    encode_copy,
    encode_copy_split,
)
from mlscale.core.predictions.rows import check_prediction, predictions_from_rows, to_predictions
from mlscale.core.predictions.spec import PredictionLog
from mlscale.core.slots import KeyType
from mlscale.errors import PredictionError
from mlscale.stores.predictions.flush_sync import join_payloads

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def decode(payload: bytes, types: list[PgType]) -> list[tuple[Any, ...]]:
    """The rows of a binary COPY payload, as Python values of ``types``."""
    assert payload.startswith(COPY_HEADER) and payload.endswith(COPY_TRAILER)
    at, end = len(COPY_HEADER), len(payload) - len(COPY_TRAILER)
    rows = []
    while at < end:
        (nf,) = struct.unpack_from(">h", payload, at)
        assert nf == len(types)
        at += 2
        row = []
        for t in types:
            (n,) = struct.unpack_from(">i", payload, at)
            at += 4
            if n == -1:
                row.append(None)
                continue
            raw = payload[at : at + n]
            at += n
            row.append(_value(t, raw))
        rows.append(tuple(row))
    assert at == end
    return rows


def _value(t: PgType, raw: bytes) -> Any:
    fmt = {PgType.INT2: ">h", PgType.INT4: ">i", PgType.INT8: ">q", PgType.FLOAT8: ">d"}
    if t in fmt:
        return struct.unpack(fmt[t], raw)[0]
    if t is PgType.TIMESTAMPTZ:
        return PG_EPOCH + dt.timedelta(microseconds=struct.unpack(">q", raw)[0])
    if t is PgType.UUID:
        return uuid.UUID(bytes=raw)
    if t is PgType.JSONB:
        assert raw[:1] == b"\x01"
        return json.loads(raw[1:].decode())
    return raw.decode()


KEY_TYPES = {KeyType.INT8: PgType.INT8, KeyType.INT4: PgType.INT4, KeyType.INT2: PgType.INT2,
             KeyType.TEXT: PgType.TEXT, KeyType.UUID: PgType.UUID}  # fmt: skip
TYPES = [PgType.UUID, PgType.TIMESTAMPTZ, PgType.FLOAT8, PgType.TEXT, PgType.TEXT,
         PgType.TEXT, PgType.JSONB]  # fmt: skip


def _decoded(log: PredictionLog, payload: bytes) -> list[tuple[Any, ...]]:
    rows = decode(payload, [KEY_TYPES[log.key_type], *TYPES])
    return sorted(rows, key=lambda r: r[1])  # rows may come grouped by shape


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_rows_with_nulls_text_unicode_and_json_round_trip(key_type: KeyType) -> None:
    log = PredictionLog(key_type=key_type)
    keys = {
        KeyType.INT8: [-(2**63), 2**63 - 1, 5],
        KeyType.INT4: [-(2**31), 2**31 - 1, 5],
        KeyType.INT2: [-(2**15), 2**15 - 1, 5],
        KeyType.TEXT: ["", "日本 ☃", "k"],
        KeyType.UUID: [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=7)],
    }
    ids = [uuid.UUID(int=i + 1) for i in range(3)]
    ts = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(1999, 12, 31, 23, 59, 59, 999999,
          tzinfo=dt.UTC), dt.datetime(2030, 6, 1, 12, tzinfo=dt.UTC)]  # fmt: skip
    extra = [None, {"a": [1, None], "é": "ß"}, "just text"]
    frame = pd.DataFrame({"entity_id": pd.Series(keys[key_type], dtype=object),
                          "prediction_id": ids, "ts": ts, "score": [0.5, None, -2.0],
                          "model": ["m", "modèle", "m"], "model_version": ["1", "2", "3"],
                          "predicted": [None, "🐍", "cat"], "extra": extra})  # fmt: skip
    batch = to_predictions(log, frame)
    got = _decoded(log, batch.copy_payload())
    want = sorted(
        [(keys[key_type][i], ids[i], ts[i], frame["score"][i] if i != 1 else None,
          frame["model"][i], frame["model_version"][i], frame["predicted"][i], extra[i])
         for i in range(3)], key=lambda r: r[1])  # fmt: skip
    assert got == want
    # The same rows one at a time give the same payload's rows.
    singles = [check_prediction(log, keys[key_type][i], frame["model"][i],
                                frame["model_version"][i], None if i == 1 else frame["score"][i],
                                frame["predicted"][i], ids[i], ts[i], extra[i])
               for i in range(3)]  # fmt: skip
    assert _decoded(log, predictions_from_rows(log, singles).copy_payload()) == want


def test_ids_as_uuids_strings_or_bytes_and_missing_ones_made() -> None:
    log = PredictionLog()
    ids = [uuid.uuid4() for _ in range(3)]
    base = {"entity_id": [1, 2, 3], "model": "m", "model_version": "v", "score": 0.1}
    for form in (ids, [str(u) for u in ids], [u.bytes for u in ids]):
        batch = to_predictions(log, {**base, "prediction_id": form})
        assert batch.ids() == ids
    mixed = to_predictions(log, {**base, "prediction_id": [ids[0], None, str(ids[2])]})
    made = mixed.ids()
    assert made[0] == ids[0] and made[2] == ids[2] and made[1].version == 7
    assert made[1].int >> 80 == int(mixed.ts_us[1]) // 1000  # it carries its row's time
    with pytest.raises(PredictionError, match="not a uuid"):
        to_predictions(log, {**base, "prediction_id": ["nope", None, None]})
    with pytest.raises(PredictionError, match="not a uuid"):
        to_predictions(log, {**base, "prediction_id": [b"short", b"x" * 16, b"y" * 16]})


def test_times_aware_naive_text_and_missing() -> None:
    log = PredictionLog()
    base = {"entity_id": [1, 2], "model": "m", "model_version": "v", "score": 0.1}
    want = [1_767_225_600_000_000, 1_767_229_200_000_000]  # 2026-01-01 00:00 and 01:00 UTC
    aware = pd.to_datetime(["2026-01-01T01:00:00+01:00", "2026-01-01T01:00:00Z"], utc=True)
    naive = pd.to_datetime(["2026-01-01 00:00", "2026-01-01 01:00"])
    text = ["2026-01-01T00:00:00Z", "2026-01-01T02:00:00+01:00"]
    assert to_predictions(log, {**base, "ts": aware}).ts_us.tolist() == want
    assert to_predictions(log, {**base, "ts": naive}).ts_us.tolist() == want
    assert to_predictions(log, {**base, "ts": text}).ts_us.tolist() == want
    before = dt.datetime.now(dt.UTC).timestamp() * 1e6
    filled = to_predictions(log, {**base, "ts": [text[0], None]}).ts_us.tolist()
    # A missing time is now, cut to the millisecond (what a made v7 id carries).
    assert filled[0] == want[0] and filled[1] >= before - 1000 and filled[1] % 1000 == 0
    with pytest.raises(PredictionError, match="not a time"):
        to_predictions(log, {**base, "ts": ["yesterday-ish", None]})


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("model", ["m", None, "m"], "model is missing in row\\(s\\) 1"),
        ("model", ["m", "", "m"], "model is missing in row\\(s\\) 1"),
        ("model_version", ["v", 3, "v"], "model_version must be text in row\\(s\\) 1"),
        ("predicted", ["a", b"b", None], "predicted must be text in row\\(s\\) 1"),
        ("predicted", ["a", "b\x00", None], "NUL"),
        ("score", [0.1, "high", 0.2], "score must be a number"),
    ],
)
def test_bad_columns_are_named_with_their_rows(column: str, values: list[Any], message: str
                                              ) -> None:  # fmt: skip
    frame = {"entity_id": [1, 2, 3], "model": ["m"] * 3, "model_version": ["v"] * 3,
             "score": [0.1, 0.2, 0.3], column: values}  # fmt: skip
    with pytest.raises(PredictionError, match=message):
        to_predictions(PredictionLog(), frame)


def test_checking_never_writes_into_the_callers_frame() -> None:
    frame = pd.DataFrame({"entity_id": [1, 2], "model": "m", "model_version": "v",
                          "score": [0.1, None], "predicted": [None, "x"]})  # fmt: skip
    before = frame.copy()
    to_predictions(PredictionLog(), frame)
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize("shapes", [1, 3, 200])
def test_encoder_shapes_and_joined_payloads(shapes: int) -> None:
    n = 1_000
    rng = np.random.default_rng(shapes)
    texts = np.array([f"t{'x' * int(k)}" for k in rng.integers(0, shapes, n)], dtype=object)
    floats = rng.random(n)
    valid = rng.random(n) < 0.8 if shapes > 1 else None
    cols = [CopyColumn(PgType.INT8, np.arange(n)), CopyColumn(PgType.TEXT, texts),
            CopyColumn(PgType.FLOAT8, floats, valid),
            CopyColumn(PgType.TEXT, np.full(n, None, dtype=object), np.zeros(n, bool))]  # fmt: skip
    types = [PgType.INT8, PgType.TEXT, PgType.FLOAT8, PgType.TEXT]
    rows = sorted(decode(encode_copy(cols), types))
    want = [(i, texts[i], floats[i] if valid is None or valid[i] else None, None)
            for i in range(n)]  # fmt: skip
    assert rows == want
    half = [CopyColumn(c.type, c.values[:500], None if c.valid is None else c.valid[:500])
            for c in cols]  # fmt: skip
    rest = [CopyColumn(c.type, c.values[500:], None if c.valid is None else c.valid[500:])
            for c in cols]  # fmt: skip
    assert sorted(decode(join_payloads([encode_copy(half), encode_copy(rest)]), types)) == want


@pytest.mark.parametrize(("shapes", "parts"), [(1, 1), (1, 4), (5, 3), (200, 2)])
def test_split_encoding_puts_each_row_in_its_part(shapes: int, parts: int) -> None:
    n = 2_000
    rng = np.random.default_rng(shapes * 10 + parts)
    texts = np.array([f"t{'y' * int(k)}" for k in rng.integers(0, shapes, n)], dtype=object)
    valid = rng.random(n) < 0.7 if shapes > 1 else None
    cols = [CopyColumn(PgType.INT8, np.arange(n)), CopyColumn(PgType.TEXT, texts, valid),
            CopyColumn(PgType.TEXT, np.full(n, "same", dtype=object))]  # fmt: skip
    types = [PgType.INT8, PgType.TEXT, PgType.TEXT]
    where = rng.integers(0, parts, n)
    where[where == parts - 1] = 0 if parts > 2 else where[where == parts - 1]  # an empty part
    payloads = encode_copy_split(cols, where, parts)
    assert len(payloads) == parts
    for p, payload in enumerate(payloads):
        want = [(i, texts[i] if valid is None or valid[i] else None, "same")
                for i in np.flatnonzero(where == p).tolist()]  # fmt: skip
        assert sorted(decode(payload, types)) == want


def test_a_resend_of_an_id_alone_is_the_same_row() -> None:
    """Ids made by mlscale are version 7 and carry their row's millisecond; a time left
    out is read back from a v7 id, so resending a prediction by its id alone (no ts)
    gives the same (entity, ts, prediction_id) key: stored once."""
    log = PredictionLog()
    base = {"entity_id": [1, 2], "model": "m", "model_version": "v", "score": 0.1}
    first = to_predictions(log, base)  # neither ids nor times: now, to the millisecond
    assert all(u.version == 7 for u in first.ids())
    assert (first.ts_us % 1000 == 0).all()
    again = to_predictions(log, {**base, "prediction_id": first.ids()})
    assert again.ts_us.tolist() == first.ts_us.tolist()
    one = check_prediction(log, 1, "m", "v", 0.5, prediction_id=first.ids()[0])
    assert one[2] == int(first.ts_us[0])
    t = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    given = to_predictions(log, {**base, "ts": [t, t]})
    assert given.ts_us.tolist() == [int(t.timestamp() * 1e6)] * 2  # a given time is kept whole
    assert [u.int >> 80 for u in given.ids()] == [int(t.timestamp() * 1000)] * 2
    v4 = uuid.uuid4()
    late = check_prediction(log, 1, "m", "v", 0.5, prediction_id=v4)
    assert late[1] == v4.bytes and late[2] % 1000 == 0  # a v4 id has no time: now
    ordered = to_predictions(log, {**base, "ts": [t, t + dt.timedelta(milliseconds=5)]}).ids()
    assert ordered[0] < ordered[1]  # made ids sort by time
