"""The cache codec: exact round trips, refusals, and hostile input as CorruptEntry only."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import json
import pickle
import re
import struct
import uuid
import zlib
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlscale.cache.codec import (
    FORMAT_VERSION,
    MAGIC,
    CorruptEntry,
    UnsupportedValue,
    decode,
    encode,
)
from mlscale.errors import CacheError, CacheValueTooLarge

# -- exact comparison: same types, same bits --------------------------------------


def same(a: Any, b: Any) -> bool:
    """Whether ``b`` is ``a`` after a round trip: same type and same value, bit for bit
    for floats and arrays (NaN == NaN, -0.0 != 0.0), same tzinfo for aware times."""
    if type(a) in (bytearray, memoryview):
        return type(b) is bytes and bytes(a) == b
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.dtype.str == b.dtype.str
            and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == b.tobytes()
        )
    if isinstance(a, np.generic):
        return a.dtype.str == b.dtype.str and a.tobytes() == b.tobytes()
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is decimal.Decimal:
        return a.as_tuple() == b.as_tuple()
    if type(a) in (dt.datetime, dt.time):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None) and (
            a.tzinfo == b.tzinfo and a.fold == b.fold
        )
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- strategies --------------------------------------------------------------------

fixed_offsets = st.integers(-(24 * 3600 - 1) * 10**6, (24 * 3600 - 1) * 10**6).map(
    lambda us: dt.timezone(dt.timedelta(microseconds=us))
)
tzinfos = st.one_of(st.none(), st.just(dt.UTC), fixed_offsets, st.timezones())

array_dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="="),
    hnp.integer_dtypes(endianness=">"),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(endianness="?"),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(min_len=1),
    hnp.unicode_string_dtypes(min_len=1),
)
arrays = hnp.arrays(dtype=array_dtypes, shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: big ints go through their own extension type
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=tzinfos, allow_imaginary=False),
    st.times(timezones=tzinfos),
    st.dates(),
    st.timedeltas(),
    st.uuids(),
    arrays,
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
)
hashable_keys = st.one_of(
    st.text(), st.integers(), st.booleans(), st.tuples(st.integers(), st.text())
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashable_keys, children, max_size=4),
    ),
    max_leaves=20,
)


# -- round trips ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_nested_values_round_trip_exactly(value: Any) -> None:
    assert same(value, decode(encode(value)))


def test_tuple_and_list_stay_apart_also_as_dict_keys() -> None:
    value = {(1, "a"): [1, (2, [3])], "l": [(), []]}
    out = decode(encode(value))
    assert same(value, out)
    assert type(out["l"][0]) is tuple and type(out["l"][1]) is list
    assert (1, "a") in out


def test_aware_datetimes_keep_their_zone_and_fold() -> None:
    paris = ZoneInfo("Europe/Paris")
    ambiguous = dt.datetime(2023, 10, 29, 2, 30, tzinfo=paris, fold=1)
    offset = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30)))
    for value in (ambiguous, offset, dt.datetime(2024, 5, 1, tzinfo=dt.UTC)):
        out = decode(encode(value))
        assert out.tzinfo == value.tzinfo and out.fold == value.fold and out == value


def test_decimal_is_exact() -> None:
    for text in ("1.10", "-0", "1E+1000", "0.000000000000000000000000000001", "NaN", "-Infinity"):
        value = decimal.Decimal(text)
        out = decode(encode(value))
        assert type(out) is decimal.Decimal and out.as_tuple() == value.as_tuple(), text


def test_numpy_arrays_keep_dtype_shape_and_byte_order() -> None:
    cases = [
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.array(2.5),  # 0-d
        np.zeros((0, 5), dtype=np.float32),
        np.array(["a", "héllo"]),
        np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(20)[::3],  # strided
    ]
    for arr in cases:
        out = decode(encode(arr))
        assert same(arr, out), arr
        assert out.flags.c_contiguous


def test_decoded_arrays_are_read_only_views_of_the_entry_not_copies() -> None:
    arr = np.arange(1000, dtype=np.float64)
    entry = bytearray(encode({"x": arr, "y": [np.ones(3, dtype=np.int8)]}))
    out = decode(entry)
    x = out["x"]
    assert not x.flags.writeable
    assert (x.ctypes.data - np.frombuffer(entry, np.uint8).ctypes.data) % 16 == 0
    # Prove sharing: change the entry's bytes behind the array's back.
    start = bytes(entry).index(arr.tobytes())
    entry[start : start + 8] = struct.pack("<d", -1.0)
    assert x[0] == -1.0


def test_an_array_inside_a_tuple_inside_a_dict_keeps_its_place() -> None:
    a, b, c = np.arange(3), np.arange(5.0), np.array([True])
    value = [a, {"t": (b, 1, [c])}, np.arange(0)]
    assert same(value, decode(encode(value)))


# -- refusals ------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int


class OddZone(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "value",
    [
        np.array([object()]),
        np.array([1, "a"], dtype=object),
        np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
        np.ma.masked_array([1, 2], mask=[0, 1]),
        Color.RED,
        Point(1),
        collections.OrderedDict(a=1),
        {1, 2},
        object(),
        dt.datetime(2024, 1, 1, tzinfo=OddZone()),
        "lone \ud800 surrogate",
        [{"deep": (np.array([object()]),)}],
    ],
    # Not repr: an object's repr holds its address, which differs between processes
    # (pytest-xdist's workers must collect the same ids).
    ids=lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v)),
)
def test_values_that_cannot_round_trip_are_refused(value: Any) -> None:
    with pytest.raises(UnsupportedValue) as info:
        encode(value)
    assert isinstance(info.value, CacheError) and isinstance(info.value, TypeError)


def test_too_deep_nesting_is_refused_not_crashed() -> None:
    value: list[Any] = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(UnsupportedValue):
        encode(value)


def test_max_bytes_names_the_size_and_the_limit() -> None:
    value = np.zeros(1000, dtype=np.uint8)
    size = len(encode(value))
    assert decode(encode(value, max_bytes=size)).shape == (1000,)
    with pytest.raises(CacheValueTooLarge) as info:
        encode(value, max_bytes=size - 1)
    assert f"{size:,}" in str(info.value) and f"{size - 1:,}" in str(info.value)


# -- hostile input -------------------------------------------------------------------


def _wrap(payload: bytes, tail: bytes = b"", version: int = FORMAT_VERSION) -> bytes:
    """An entry with a valid header and checksum around arbitrary payload bytes."""
    body = struct.pack("<I", len(payload)) + payload + tail
    return MAGIC + bytes([version]) + struct.pack("<I", zlib.crc32(body)) + body


_PLAIN = (type(None), bool, int, float, str, bytes, list, tuple, dict, dt.datetime)


def _decodes_or_corrupt(data: bytes) -> None:
    """decode() either raises CorruptEntry or builds only harmless types."""
    try:
        value = decode(data)
    except CorruptEntry:
        return
    stack = [value]
    while stack:
        item = stack.pop()
        assert isinstance(
            item,
            (
                *_PLAIN,
                decimal.Decimal,
                dt.date,
                dt.time,
                dt.timedelta,
                uuid.UUID,
                np.ndarray,
                np.generic,
            ),
        ), type(item)
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_after_our_magic_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(MAGIC + bytes([FORMAT_VERSION]) + data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_truncated_or_bit_flipped_entries_are_corrupt(value: Any, data: st.DataObject) -> None:
    entry = encode(value)
    cut = data.draw(st.integers(0, len(entry) - 1))
    with pytest.raises(CorruptEntry):
        decode(entry[:cut])
    with pytest.raises(CorruptEntry):
        decode(entry + b"\0")
    bit = data.draw(st.integers(0, len(entry) * 8 - 1))
    flipped = bytearray(entry)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CorruptEntry):
        decode(bytes(flipped))


@settings(max_examples=500)
@given(st.binary(max_size=300), st.binary(max_size=64))
def test_malformed_payload_behind_a_valid_checksum_is_corrupt_never_another_error(
    payload: bytes, tail: bytes
) -> None:
    _decodes_or_corrupt(_wrap(payload, tail))


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(
            st.none(), st.integers(-(2**63), 2**64 - 1), st.binary(max_size=8), st.text(max_size=4)
        ),
        lambda c: st.one_of(
            st.lists(c, max_size=4),
            st.builds(msgpack.ExtType, st.integers(0, 12), st.binary(max_size=24)),
            st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 10**9 - 1)),
            st.builds(
                lambda code, inner: msgpack.ExtType(code, msgpack.packb(inner)),
                st.integers(1, 10),
                st.lists(c, max_size=10),
            ),
        ),
        max_leaves=12,
    )
)
def test_well_formed_msgpack_with_bogus_extensions_is_corrupt_never_another_error(
    payload: Any,
) -> None:
    _decodes_or_corrupt(_wrap(msgpack.packb(payload), bytes(40)))


@pytest.mark.parametrize(
    "entry",
    [
        json.dumps({"a": 1}).encode(),
        b"",
        b"null",
        msgpack.packb({"a": 1}),
        *(pickle.dumps({"a": [1, 2]}, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)),
        _wrap(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["|O8", [1]]))), bytes(8)),
        _wrap(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["<f8", [4]]))), bytes(8)),
        _wrap(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["<f8", [-1]])))),
        _wrap(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["no such dtype", [1]])))),
        _wrap(msgpack.packb(msgpack.ExtType(99, b""))),
        _wrap(msgpack.packb(1), b"trailing"),
        _wrap(msgpack.packb(1) + b"\x01"),
    ],
    ids=[
        "json",
        "empty",
        "text",
        "bare-msgpack",
        *(f"pickle-{p}" for p in range(pickle.HIGHEST_PROTOCOL + 1)),
        "object-dtype",
        "array-past-end",
        "negative-shape",
        "bad-dtype",
        "unknown-ext",
        "unaccounted-tail",
        "extra-msgpack",
    ],
)
def test_foreign_and_forged_entries_are_corrupt(entry: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(entry)


def test_another_format_version_is_a_miss_that_says_why() -> None:
    entry = _wrap(msgpack.packb(1), version=FORMAT_VERSION + 1)
    with pytest.raises(CorruptEntry, match="format version"):
        decode(entry)
    assert decode(_wrap(msgpack.packb(1))) == 1  # the same entry in our version is fine


def test_entries_start_with_a_byte_no_msgpack_json_or_pickle_value_starts_with() -> None:
    assert encode(None)[:3] == MAGIC and MAGIC[0] == 0xC1
    with pytest.raises(msgpack.exceptions.FormatError):  # 0xc1: "never used" in msgpack
        msgpack.unpackb(MAGIC[:1])
