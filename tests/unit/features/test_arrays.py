"""``arrays.decode`` against ``array_send`` bytes built by hand, as PostgreSQL sends them."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from mlscale.core.features.arrays import decode, element_dtype, encode_header

OIDS = {"bool": 16, "int4": 23, "int8": 20, "float4": 700, "float8": 701, "text": 25}
PACK = {"bool": ">?", "int4": ">i", "int8": ">q", "float4": ">f", "float8": ">d"}


def array_send(kind: str, dims: Sequence[int], flat: Sequence[Any]) -> bytes:
    """PostgreSQL's binary array: ndim, has-null flag, element oid, (dim, lower bound)
    per dimension, then per element its length (-1: NULL) and bytes, big-endian."""
    has_null = any(v is None for v in flat)
    out = struct.pack(">iii", len(dims), int(has_null), OIDS[kind])
    for d in dims:
        out += struct.pack(">ii", d, 1)
    for v in flat:
        if v is None:
            out += struct.pack(">i", -1)
        elif kind == "text":
            raw = v.encode()
            out += struct.pack(">i", len(raw)) + raw
        else:
            raw = struct.pack(PACK[kind], v)
            out += struct.pack(">i", len(raw)) + raw
    return out


def test_null_and_empty() -> None:
    assert decode(None) is None
    assert decode(struct.pack(">iii", 0, 0, 700)) is None  # '{}': no dimensions


@pytest.mark.parametrize(
    ("kind", "flat", "dtype"),
    [
        ("float4", [1.5, -2.25, 0.0, 3e38], np.float32),
        ("float8", [1e-300, 2.5], np.float64),
        ("int4", [1, -2, 2**31 - 1], np.int32),
        ("int8", [2**62, -(2**63), 0], np.int64),
        ("bool", [True, False, True], np.bool_),
    ],
)
def test_fixed_width_without_nulls(kind: str, flat: list[Any], dtype: Any) -> None:
    got = decode(array_send(kind, [len(flat)], flat))
    assert got is not None and got.valid is None
    assert got.values.dtype == np.dtype(dtype)  # native order, not big-endian
    assert got.values.dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(got.values, np.array(flat, dtype=dtype))


def test_decode_takes_a_memoryview() -> None:
    got = decode(memoryview(array_send("int8", [2], [7, 8])))
    assert got is not None and got.values.tolist() == [7, 8]


@pytest.mark.parametrize(
    ("kind", "flat", "values", "valid"),
    [
        ("float4", [1.0, None, 3.0], [1.0, 0.0, 3.0], [True, False, True]),
        ("int8", [None, 5, None], [0, 5, 0], [False, True, False]),
        ("bool", [True, None], [True, False], [True, False]),
        ("float4", [None], [0.0], [False]),
    ],
)
def test_fixed_width_with_nulls(
    kind: str, flat: list[Any], values: list[Any], valid: list[bool]
) -> None:
    got = decode(array_send(kind, [len(flat)], flat))
    assert got is not None and got.valid is not None
    assert got.valid.tolist() == valid
    assert got.values.tolist() == values


def test_two_dimensional() -> None:
    # array_agg of float4[] rows: one row per entity.
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    got = decode(array_send("float4", [2, 3], [v for r in rows for v in r]))
    assert got is not None and got.valid is None
    assert got.values.shape == (2, 3)
    np.testing.assert_array_equal(got.values, np.array(rows, dtype=np.float32))


def test_two_dimensional_with_nulls() -> None:
    got = decode(array_send("int8", [2, 2], [1, None, 3, 4]))
    assert got is not None and got.valid is not None
    assert got.values.shape == got.valid.shape == (2, 2)
    assert got.values.tolist() == [[1, 0], [3, 4]]
    assert got.valid.tolist() == [[True, False], [True, True]]


def test_text() -> None:
    got = decode(array_send("text", [4], ["de", "", "Zürich", None]))
    assert got is not None and got.valid is not None
    assert got.values.dtype == object
    assert got.values.tolist() == ["de", "", "Zürich", None]
    assert got.valid.tolist() == [True, True, True, False]


def test_text_without_nulls_still_reports_validity() -> None:
    got = decode(array_send("text", [2], ["a", "b"]))
    assert got is not None and got.values.tolist() == ["a", "b"]
    assert got.valid is not None and got.valid.all()


def test_timestamps_are_int64_microseconds() -> None:
    raw = struct.pack(">iii", 1, 0, 1184) + struct.pack(">ii", 2, 1)
    raw += struct.pack(">iq", 8, 0) + struct.pack(">iq", 8, 1_000_000)
    got = decode(raw)
    assert got is not None and got.values.tolist() == [0, 1_000_000]


def test_encode_header_matches_array_send() -> None:
    for kind in ("float4", "int8"):
        assert array_send(kind, [3], [1, 2, 3]).startswith(encode_header(kind, 3))
    assert encode_header("float4", 50) == struct.pack(">iiiii", 1, 0, 700, 50, 1)


def test_element_dtype() -> None:
    assert element_dtype(700) == np.dtype(">f4")
    assert element_dtype(20) == np.dtype(">i8")
    assert element_dtype(25) is None  # text: variable width
