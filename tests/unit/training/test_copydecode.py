"""The binary COPY decoder against streams built by hand (the server's own output is
checked in tests/integration/test_training_reader.py)."""

from __future__ import annotations

import json
import struct
import uuid

import numpy as np
import pytest

from mlscale.core.copydecode import Kind, decode_packed, decode_rows, kind_of_oid
from mlscale.errors import DatabaseError
from tests.unit.training.copy_streams import array_value, stream


def i8(v: int) -> bytes:
    return struct.pack(">q", v)


def f4(v: float) -> bytes:
    return struct.pack(">f", v)


def text(v: str) -> bytes:
    return v.encode()


def test_fixed_columns_are_packed_values_decoded_to_native_numpy() -> None:
    data = stream([[i8(1) + i8(-2) + i8(3), f4(0.5) + f4(1.5) + f4(-2.0)]])
    ids, xs = decode_packed(data, [Kind.INT8, Kind.FLOAT4])
    assert ids.values.dtype == np.int64 and ids.values.tolist() == [1, -2, 3]
    assert xs.values.dtype == np.float32 and xs.values.tolist() == [0.5, 1.5, -2.0]
    assert ids.valid is None and xs.valid is None


def test_variable_width_columns_are_arrays_with_null_elements() -> None:
    data = stream([[i8(1) + i8(2) + i8(3), array_value([text("a"), None, text("ü")], 25)]])
    _, names = decode_packed(data, [Kind.INT8, Kind.TEXT])
    assert names.values.tolist() == ["a", None, "ü"]
    assert names.valid is not None and names.valid.tolist() == [True, False, True]


def test_masked_columns_take_their_nulls_from_the_masks() -> None:
    # columns x (masked, bit 0), n (not masked), y (masked, bit 1); then one mask
    data = stream([[f4(1.0) + f4(0.0) + f4(3.0), i8(7) + i8(8) + i8(9),
                    f4(1.0) + f4(2.0) + f4(0.0), i8(0b01) + i8(0) + i8(0b10)]])
    x, n, y = decode_packed(data, [Kind.FLOAT4, Kind.INT8, Kind.FLOAT4], [True, False, True])
    assert x.valid is not None and x.valid.tolist() == [False, True, True]
    assert n.valid is None and n.values.tolist() == [7, 8, 9]
    assert y.valid is not None and y.valid.tolist() == [True, True, False]


def test_masked_columns_take_their_nulls_from_the_keys_of_null_rows() -> None:
    # key column n (index 1); x is NULL where n = 7, y where n = 9 and 8; then 2 key lists
    data = stream([[f4(0.0) + f4(2.0) + f4(3.0), i8(7) + i8(8) + i8(9),
                    f4(1.0) + f4(0.0) + f4(0.0), i8(7), i8(9) + i8(8)]])
    x, _, y = decode_packed(data, [Kind.FLOAT4, Kind.INT8, Kind.FLOAT4], [True, False, True],
                            key=1)
    assert x.valid is not None and x.valid.tolist() == [False, True, True]
    assert y.valid is not None and y.valid.tolist() == [True, False, False]
    no_nulls = stream([[f4(1.0), i8(7), f4(1.0), None, None]])
    x, _, y = decode_packed(no_nulls, [Kind.FLOAT4, Kind.INT8, Kind.FLOAT4], [True, False, True],
                            key=1)
    assert x.valid is None and y.valid is None


def test_no_rows_is_a_null_aggregate_or_an_empty_stream() -> None:
    for data in (stream([[None, None]]), stream([])):
        a, b = decode_packed(data, [Kind.INT4, Kind.TEXT])
        assert len(a.values) == 0 and a.values.dtype == np.int32
        assert len(b.values) == 0


def test_dates_timestamps_bools_uuids() -> None:
    day = struct.pack(">i", 1)  # 2000-01-02
    micros = struct.pack(">q", 1_500_000)  # 2000-01-01 00:00:01.5
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    data = stream([[day, micros, b"\x01", u.bytes]])
    d, ts, flag, ident = decode_packed(data, [Kind.DATE, Kind.TIMESTAMPTZ, Kind.BOOL, Kind.UUID])
    assert d.values[0] == np.datetime64("2000-01-02")
    assert ts.values[0] == np.datetime64("2000-01-01T00:00:01.500000")
    assert flag.values.tolist() == [True]
    assert ident.values[0] == u.bytes


def test_json_and_jsonb_are_parsed() -> None:
    doc = {"a": [1, 2], "b": "x"}
    data = stream([[array_value([b"\x01" + json.dumps(doc).encode()], 3802),
                    array_value([json.dumps(doc).encode()], 114)]])
    jb, js = decode_packed(data, [Kind.JSONB, Kind.JSON])
    assert jb.values[0] == doc and js.values[0] == doc


def test_rows_path_reads_arrays_and_nulls() -> None:
    vec = array_value([f4(1.0), f4(2.0)], 700)
    data = stream([[i8(1), vec, text("a")], [i8(2), None, None]])
    ids, vecs, names = decode_rows(data, [Kind.INT8, Kind.FLOAT4_ARRAY, Kind.TEXT])
    assert ids.values.tolist() == [1, 2]
    assert vecs.values[0].tolist() == [1.0, 2.0] and vecs.values[1] is None
    assert vecs.valid is not None and vecs.valid.tolist() == [True, False]
    assert names.values.tolist() == ["a", None]


@pytest.mark.parametrize(
    "data",
    [
        b"not a copy stream",
        stream([[i8(1)]])[:-2],  # no trailer
        stream([[i8(1), i8(1)]]),  # 2 fields, 1 kind
        stream([[struct.pack(">i", 1) + b"\x00"]]),  # 5 bytes are not int8 values
        stream([[i8(1)], [i8(2)]]),  # two rows
    ],
)
def test_malformed_streams_are_refused(data: bytes) -> None:
    with pytest.raises(DatabaseError, match="malformed"):
        decode_packed(data, [Kind.INT8])


def test_columns_of_unequal_length_are_refused() -> None:
    data = stream([[i8(1), i8(1) + i8(2)]])
    with pytest.raises(DatabaseError, match="differ in length"):
        decode_packed(data, [Kind.INT8, Kind.INT8])


def test_kinds_of_oids() -> None:
    assert kind_of_oid(20) is Kind.INT8
    assert kind_of_oid(1043) is Kind.TEXT  # varchar
    assert kind_of_oid(1700) is Kind.OTHER  # numeric: read as text
    assert Kind.FLOAT4_ARRAY.is_array and not Kind.FLOAT4.is_array


def test_a_stream_may_come_in_chunks() -> None:
    whole = stream([[i8(1) + i8(2)]])
    row, trailer = whole[:-2], whole[-2:]
    for data in ([row, trailer], [whole[:5], whole[5:]], [memoryview(row), memoryview(trailer)]):
        (ids,) = decode_packed(data, [Kind.INT8])
        assert ids.values.tolist() == [1, 2]
    with pytest.raises(DatabaseError, match="no trailer"):
        decode_packed([whole[:-2], b"\x00\x00"], [Kind.INT8])


def test_null_keys_are_found_in_unsorted_rows_and_must_exist() -> None:
    data = stream([[i8(9) + i8(7) + i8(8), f4(0.0) + f4(1.0) + f4(0.0), i8(8) + i8(9)]])
    _, x = decode_packed(data, [Kind.INT8, Kind.FLOAT4], [False, True], key=0)
    assert x.valid is not None and x.valid.tolist() == [False, True, False]
    bad = stream([[i8(9) + i8(7), f4(0.0) + f4(1.0), i8(5)]])
    with pytest.raises(DatabaseError, match="NULL keys"):
        decode_packed(bad, [Kind.INT8, Kind.FLOAT4], [False, True], key=0)
