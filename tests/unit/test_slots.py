"""Slot hashing: known server vectors, int width independence, vectorized == scalar, errors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from psycopg import sql

from mlscale.core.slots import (
    DEFAULT_SLOTS,
    MAX_SLOTS,
    KeyType,
    check_slot_count,
    composite_slot_of,
    composite_slot_sql,
    hash_composite,
    hash_key,
    hash_keys,
    hash_sql,
    slot_of,
    slot_sql,
    slots_of,
)
from mlscale.errors import ConfigError, ShardKeyError

# Measured on PostgreSQL 15.18 (Debian build, lc_collate C, UTF8) started by
# `mlscale up`, e.g. `SELECT v, hashint8extended(v, 0) FROM unnest(%s::int8[]) AS v`
# with the values bound as an array; bytea through `hash_record_extended(ROW(v), 0)`
# (hashvarlenaextended is not callable from SQL). Nothing here came from our code.
INT_VECTORS = {
    0: 4154612158245552303,
    1: -3670598878359251130,
    -1: -1888257769727981238,
    2: 3647684041653542134,
    42: 8010225493015854792,
    -42: 8809670066178192187,
    255: 6372911805303557281,
    256: -4519207317629470217,
    32767: 1790040721271588170,
    -32768: 8455483389771436374,
    65535: 3873349985352926501,
    2**31 - 1: -9109110466470504941,
    -(2**31): 1977219185673256887,
    # int8 only: the high half folds into the low one
    2**31: 1977219185673256887,
    2**32: -3670598878359251130,
    -(2**32): 4154612158245552303,
    2**63 - 1: 1977219185673256887,
    -(2**63): -9109110466470504941,
    1234567890123: -6236938892533063859,
}
TEXT_VECTORS = {
    "": -6939563903564495251,
    "a": 3591986179850072241,
    "ab": 2833316173711343549,
    "abc": -6747756470228489321,
    "abcd": -1038429303365892052,
    "abcde": 3076356108696143428,
    "abcdefgh": -8882191227074733005,
    "abcdefghi": -3278210106038014113,
    "abcdefghijk": 3112909444737856467,
    "abcdefghijkl": -7556637188122330412,
    "abcdefghijklm": 8871624171452417744,
    "user:42": 8169282796211187818,
    "ünïcødé": -1788205580397131337,
    "日本語テキスト": 7199576139645017696,
    "emoji 🚀🚀": 8552185833831443240,
    "x" * 24: 8354420297927256613,
    "The quick brown fox jumps over the lazy dog": 2182139051089226439,
}
UUID_VECTORS = {
    "00000000-0000-0000-0000-000000000000": -6859010066814654381,
    "ffffffff-ffff-ffff-ffff-ffffffffffff": 293445543803463785,
    "123e4567-e89b-12d3-a456-426614174000": -1647950126005018481,
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11": 7543054272012930821,
}
BYTEA_VECTORS = {
    b"": -6939563903564495251,
    b"\x00": -4194760714999882651,
    b"\xff\xff\xff": -1985683846905253286,
    bytes(range(11)): -5508356841497088037,
    bytes(range(32)): -5765268673833643265,
}
RANGES = {
    KeyType.INT2: (-(2**15), 2**15 - 1),
    KeyType.INT4: (-(2**31), 2**31 - 1),
    KeyType.INT8: (-(2**63), 2**63 - 1),
}
INT_TYPES = [KeyType.INT2, KeyType.INT4, KeyType.INT8]


@pytest.mark.parametrize("key_type", INT_TYPES)
def test_int_vectors(key_type: KeyType) -> None:
    lo, hi = RANGES[key_type]
    cases = {v: h for v, h in INT_VECTORS.items() if lo <= v <= hi}
    assert len(cases) >= 10
    for value, expected in cases.items():
        assert hash_key(value, key_type) == expected, value
    assert hash_keys(list(cases), key_type).tolist() == list(cases.values())


@pytest.mark.parametrize("key_type", [KeyType.TEXT, KeyType.VARCHAR])
def test_text_vectors(key_type: KeyType) -> None:
    for value, expected in TEXT_VECTORS.items():
        assert hash_key(value, key_type) == expected, value
    assert hash_keys(TEXT_VECTORS, key_type).tolist() == list(TEXT_VECTORS.values())


def test_uuid_and_bytea_vectors() -> None:
    for text, expected in UUID_VECTORS.items():
        assert hash_key(text, KeyType.UUID) == expected
        assert hash_key(uuid.UUID(text), KeyType.UUID) == expected
        assert hash_key(text.upper().replace("-", ""), KeyType.UUID) == expected
    for raw, expected in BYTEA_VECTORS.items():
        for form in (raw, bytearray(raw), memoryview(raw)):
            assert hash_key(form, KeyType.BYTEA) == expected
    # text and bytea hash the same bytes the same way
    assert hash_key("abc", KeyType.TEXT) == hash_key(b"abc", KeyType.BYTEA)


def test_composite_vectors() -> None:
    # Measured as hash_record_extended(ROW(42::int8, 'user'::text), 0) and so on.
    assert hash_composite([42, "user"], [KeyType.INT8, KeyType.TEXT]) == -7741748664025139333
    assert hash_composite([None, "user"], [KeyType.INT8, KeyType.TEXT]) == 2195678084417084739
    three = [7, "123e4567-e89b-12d3-a456-426614174000", b"\x00\xff"]
    assert hash_composite(three, [KeyType.INT4, KeyType.UUID, KeyType.BYTEA]) == 7191051318095148010
    assert hash_composite([-1], [KeyType.INT2]) == INT_VECTORS[-1]
    assert hash_composite([None, None], [KeyType.INT8, KeyType.TEXT]) == 0
    # varchar and int widths are interchangeable inside a row too
    assert hash_composite([42, "user"], [KeyType.INT2, KeyType.VARCHAR]) == -7741748664025139333


def test_equal_ints_hash_alike_across_widths() -> None:
    rng = np.random.default_rng(7)
    values = [*rng.integers(-(2**15), 2**15, size=500).tolist(), -(2**15), 2**15 - 1, 0, -1]
    for v in values:
        h = hash_key(v, KeyType.INT2)
        assert h == hash_key(v, KeyType.INT4) == hash_key(v, KeyType.INT8)
    wide = rng.integers(-(2**31), 2**31, size=500)
    assert (hash_keys(wide, KeyType.INT4) == hash_keys(wide, KeyType.INT8)).all()


@pytest.mark.parametrize("slots", [1, 2, 64, DEFAULT_SLOTS, MAX_SLOTS])
def test_slot_is_the_masked_signed_hash(slots: int) -> None:
    for value, h in INT_VECTORS.items():
        slot = slot_of(value, KeyType.INT8, slots)
        assert 0 <= slot < slots
        assert slot == h & (slots - 1)
        if h < 0 and slots > 1:  # the reason for & over %: they differ on negatives
            assert slot == (h + 2**64) % slots
    assert slot_of("user:42", KeyType.TEXT) == TEXT_VECTORS["user:42"] & 4095
    assert composite_slot_of([42, "user"], [KeyType.INT8, KeyType.TEXT], 16) == (
        -7741748664025139333 & 15
    )


@pytest.mark.parametrize("key_type", INT_TYPES)
@pytest.mark.parametrize("slots", [1, 256, DEFAULT_SLOTS, MAX_SLOTS])
def test_vectorized_equals_scalar_for_ints(key_type: KeyType, slots: int) -> None:
    lo, hi = RANGES[key_type]
    rng = np.random.default_rng(slots + len(key_type))
    edges = [lo, lo + 1, -1, 0, 1, hi - 1, hi, -(2**15), 2**15 - 1]
    batch = np.concatenate(
        [
            rng.integers(lo, hi, size=3000, endpoint=True, dtype=np.int64),
            rng.integers(-1000, 1000, size=500, dtype=np.int64),
            np.array([e for e in edges if lo <= e <= hi], dtype=np.int64),
        ]
    )
    scalar = [slot_of(int(v), key_type, slots) for v in batch]
    assert slots_of(batch, key_type, slots).tolist() == scalar
    assert slots_of(batch.tolist(), key_type, slots).tolist() == scalar
    assert (
        slots_of(
            batch.astype(np.int64 if key_type is KeyType.INT8 else np.int32), key_type, slots
        ).dtype
        == np.int64
    )
    hashes = hash_keys(batch, key_type)
    assert hashes.tolist() == [hash_key(int(v), key_type) for v in batch]


def test_vectorized_accepts_narrow_and_unsigned_arrays() -> None:
    small = np.array([-5, 0, 300], dtype=np.int16)
    assert slots_of(small, KeyType.INT2).tolist() == [slot_of(int(v), KeyType.INT2) for v in small]
    unsigned = np.array([0, 2**40, 2**63 - 1], dtype=np.uint64)
    assert hash_keys(unsigned, KeyType.INT8).tolist() == [
        hash_key(int(v), KeyType.INT8) for v in unsigned
    ]
    assert hash_keys([], KeyType.INT8).shape == (0,)
    assert hash_keys(np.array([], dtype=np.int64), KeyType.INT4).dtype == np.int64


@pytest.mark.parametrize("key_type", [KeyType.TEXT, KeyType.UUID, KeyType.BYTEA])
def test_vectorized_equals_scalar_for_bytes(key_type: KeyType) -> None:
    rng = np.random.default_rng(3)
    values: list[object]
    if key_type is KeyType.TEXT:
        alphabet = ["a", "Z", "0", " ", "é", "€", "😀"]
        values = ["".join(rng.choice(alphabet, size=n)) for n in range(60)]
    elif key_type is KeyType.UUID:
        values = [uuid.UUID(int=int(x)) for x in rng.integers(0, 2**62, size=200)]
    else:
        values = [rng.bytes(n) for n in range(60)]
    assert slots_of(values, key_type, 512).tolist() == [slot_of(v, key_type, 512) for v in values]


@pytest.mark.parametrize(
    ("value", "key_type", "message"),
    [
        (None, KeyType.INT8, "NULL"),
        (True, KeyType.INT8, "must be an int, not bool"),
        (1.0, KeyType.INT4, "must be an int, not float"),
        ("1", KeyType.INT8, "must be an int, not str"),
        (2**15, KeyType.INT2, "out of range for int2"),
        (-(2**31) - 1, KeyType.INT4, "out of range for int4"),
        (2**63, KeyType.INT8, "out of range for int8"),
        (b"abc", KeyType.TEXT, "must be a str, not bytes"),
        ("a\0b", KeyType.VARCHAR, "NUL"),
        ("\ud800", KeyType.TEXT, "not valid UTF-8"),
        ("not-a-uuid", KeyType.UUID, "not a valid uuid"),
        (123, KeyType.UUID, "must be a UUID or str, not int"),
        ("abc", KeyType.BYTEA, "must be bytes, not str"),
    ],
)
def test_bad_values_are_routing_errors(value: object, key_type: KeyType, message: str) -> None:
    with pytest.raises(ShardKeyError, match=message):
        hash_key(value, key_type)
    with pytest.raises(ShardKeyError, match=message):
        slots_of([value], key_type)


def test_bad_batches_name_the_bad_key() -> None:
    with pytest.raises(ShardKeyError, match="2147483648 is out of range for int4"):
        slots_of(np.array([1, 2**31], dtype=np.int64), KeyType.INT4)
    with pytest.raises(ShardKeyError, match="9223372036854775808 is out of range"):
        slots_of([1, 2**63], KeyType.INT8)
    with pytest.raises(ShardKeyError, match="not bool"):
        slots_of([1, True], KeyType.INT8)
    with pytest.raises(ShardKeyError, match="not float"):
        slots_of(np.array([1.5]), KeyType.INT8)
    with pytest.raises(ShardKeyError, match="one value per key column"):
        hash_composite([1], [KeyType.INT8, KeyType.TEXT])
    with pytest.raises(ShardKeyError, match="one value per key column"):
        hash_composite([], [])


@pytest.mark.parametrize("bad", [0, -4, 3, 100, MAX_SLOTS * 2, 2.0, True, "4096"])
def test_bad_slot_counts(bad: object) -> None:
    with pytest.raises(ConfigError, match="slot count"):
        check_slot_count(bad)
    assert check_slot_count(4096) == 4096


def test_key_type_names() -> None:
    assert KeyType.parse("bigint") is KeyType.INT8
    assert KeyType.parse("INTEGER") is KeyType.INT4
    assert KeyType.parse("smallint") is KeyType.INT2
    assert KeyType.parse("character  varying(64)") is KeyType.VARCHAR
    assert KeyType.parse("varchar") is KeyType.VARCHAR
    assert KeyType.parse(" uuid ") is KeyType.UUID
    assert KeyType.parse("bytea") is KeyType.BYTEA
    for bad in ("char(3)", "numeric", "float8", ""):
        with pytest.raises(ConfigError, match="unsupported shard key type"):
            KeyType.parse(bad)
    assert KeyType.INT8.sql_function == "hashint8extended"
    assert KeyType.VARCHAR.sql_function == "hashtextextended"
    assert KeyType.UUID.sql_function == "uuid_hash_extended"
    assert KeyType.BYTEA.sql_function == "hashvarlenaextended"


def test_slot_sql_quotes_the_identifier() -> None:
    col = sql.Identifier("user id")
    assert slot_sql(col, KeyType.INT8).as_string(None) == (
        '(hashint8extended(CAST("user id" AS int8), 0) & 4095)'
    )
    assert slot_sql(sql.Identifier("t", 'we"ird'), KeyType.TEXT, 16).as_string(None) == (
        '(hashtextextended(CAST("t"."we""ird" AS text), 0) & 15)'
    )
    assert hash_sql(sql.Identifier("b"), KeyType.BYTEA).as_string(None) == (
        'hash_record_extended(ROW(CAST("b" AS bytea)), 0)'
    )
    composite = composite_slot_sql(
        [sql.Identifier("tenant"), sql.Identifier("key")], [KeyType.INT4, KeyType.VARCHAR], 1024
    )
    assert composite.as_string(None) == (
        '(hash_record_extended(ROW(CAST("tenant" AS int4), CAST("key" AS varchar)), 0) & 1023)'
    )
    with pytest.raises(ConfigError):
        slot_sql(col, KeyType.INT8, 1000)
    with pytest.raises(ShardKeyError):
        composite_slot_sql([col], [KeyType.INT8, KeyType.INT8])
