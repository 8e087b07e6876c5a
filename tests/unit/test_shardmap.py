"""Shard maps without servers: placement, moves, validation, specs and rendered SQL.

tests/integration/test_shardmap_sql.py runs every predicate on a real server.
"""

from __future__ import annotations

import bisect
import itertools
import json
import uuid
from collections import Counter
from typing import Any

import numpy as np
import pytest
from psycopg import sql

from mlscale.core.shardmaps import (
    STRATEGIES,
    GeoMap,
    HashRing,
    KeyFamily,
    KeyRange,
    LookupMap,
    RangeMap,
    ShardMap,
    SlotMap,
    SlotMove,
    SlotRange,
    TokenAllocation,
    map_from_spec,
    moves,
)
from mlscale.core.slots import KeyType, hash_key, hash_keys, slot_of
from mlscale.errors import ConfigError, RoutingError

INT8 = KeyFamily.of("users", "int8")
TEXT = KeyFamily.of("tenants", "text")
UUIDS = KeyFamily.of("devices", "uuid")
BYTES = KeyFamily.of("blobs", "bytea")
PAIR = KeyFamily.of("orders", "int8", "text")
REGION = KeyFamily.of("regions", "text")
G4 = ("g0", "g1", "g2", "g3")
ID = [sql.Identifier("id")]


def render(m: ShardMap, group: str, columns: list[sql.Composable] = ID) -> str:
    return m.predicate(group, columns).as_string(None)


def example_maps() -> list[ShardMap]:
    """One map or more of every strategy, over every key type a strategy takes."""
    return [
        SlotMap.even(INT8, G4),
        SlotMap.even(TEXT, ("a", "b", "c"), slots=64, version=7),
        SlotMap.even(PAIR, G4).with_group("g4"),
        SlotMap.even(UUIDS, ("g0",), slots=1),
        HashRing(INT8, G4),
        HashRing(BYTES, ("x", "y"), vnodes=3, version=2),
        HashRing(PAIR, ("g0", "g1"), vnodes=16),
        HashRing(INT8, G4, allocation=TokenAllocation.HASHED),
        HashRing(TEXT, ("a", "b"), vnodes=5, allocation=TokenAllocation.HASHED).with_group("c"),
        HashRing(UUIDS, G4, vnodes=8).with_group("g4").without_group("g1"),
        RangeMap(INT8, (KeyRange(None, 0, "neg"), KeyRange(0, None, "pos"))),
        RangeMap(TEXT, (KeyRange("m", "t", "mid"),), default="rest", version=3),
        RangeMap(PAIR, (KeyRange(None, (5, "k"), "lo"), KeyRange((5, "k"), None, "hi"))),
        RangeMap(UUIDS, (KeyRange(None, uuid.UUID(int=2**127), "low"),), default="high"),
        RangeMap(BYTES, (KeyRange(b"\x00", b"\x80", "low"),), default="other"),
        GeoMap.of(REGION, {"eu": "g0", "us": "g1", "apac": "g1"}, "g2"),
        GeoMap.of(KeyFamily.of("zones", "int4"), {}, "only"),
        LookupMap.of(INT8, {7: "big", 9: "big", -1: "small"}, "rest"),
        LookupMap.of(PAIR, {(1, "a"): "x", (1, "b"): "y"}),
        LookupMap.of(UUIDS, {}, "rest"),
    ]


# -- the interface ----------------------------------------------------------


@pytest.mark.parametrize("m", example_maps(), ids=lambda m: f"{m.strategy}-{m.family.name}")
def test_every_map_implements_the_interface_and_round_trips(m: ShardMap) -> None:
    assert isinstance(m, ShardMap)
    assert m.key_types == m.family.key_types
    assert len(set(m.groups)) == len(m.groups) > 0
    spec = json.loads(json.dumps(m.to_spec()))  # really JSON-able
    assert spec["strategy"] == m.strategy and spec["version"] == m.version
    back = map_from_spec(spec)
    assert back == m and type(back) is type(m)
    assert type(m).from_spec(spec) == m
    assert back.to_spec() == m.to_spec()


def test_strategies_are_named_once() -> None:
    assert sorted(STRATEGIES) == ["geo", "lookup", "range", "ring", "slots"]


# -- key families -------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "key", "normalized"),
    [
        (INT8, 5, (5,)),
        (INT8, (5,), (5,)),
        (INT8, np.int64(-3), (-3,)),
        (TEXT, "é", ("é",)),
        (UUIDS, str(uuid.UUID(int=1)), (uuid.UUID(int=1),)),
        (BYTES, bytearray(b"ab"), (b"ab",)),
        (PAIR, (1, "x"), (1, "x")),
        (PAIR, [1, "x"], (1, "x")),
    ],
)
def test_keys_are_normalized(family: KeyFamily, key: Any, normalized: tuple[Any, ...]) -> None:
    assert family.normalize(key) == normalized


@pytest.mark.parametrize(
    ("family", "key", "fragment"),
    [
        (INT8, "5", "must be an int"),
        (INT8, True, "must be an int"),
        (INT8, 2**63, "out of range"),
        (KeyFamily.of("small", "int2"), 40_000, "out of range"),
        (INT8, (1, 2), "one int8 value"),
        (TEXT, b"x", "must be a str"),
        (TEXT, "a\x00b", "NUL"),
        (UUIDS, "not-a-uuid", "must be a UUID"),
        (BYTES, "ab", "must be bytes"),
        (PAIR, 1, "tuple of 2 values"),
        (PAIR, (1,), "tuple of 2 values"),
        (PAIR, (1, 2), "must be a str"),
        (INT8, None, "must be an int"),
    ],
)
def test_malformed_keys_are_refused(family: KeyFamily, key: Any, fragment: str) -> None:
    with pytest.raises(RoutingError, match=fragment):
        family.normalize(key)
    with pytest.raises(RoutingError):
        SlotMap.even(family, G4).locate(key)


def test_family_validation_and_spec() -> None:
    assert KeyFamily.from_spec(PAIR.to_spec()) == PAIR
    assert PAIR.to_spec() == {"name": "orders", "key_types": ["int8", "text"]}
    with pytest.raises(ConfigError, match="unknown key type 'float8'"):
        KeyFamily.of("x", "float8")
    with pytest.raises(ConfigError, match="non-empty"):
        KeyFamily("x", ())
    with pytest.raises(ConfigError, match="key family name"):
        KeyFamily.of("", "int8")
    with pytest.raises(ConfigError, match="unknown field"):
        KeyFamily.from_spec({"name": "x", "key_types": ["int8"], "extra": 1})


# -- slot maps ------------------------------------------------------------------


def test_even_directory_and_lookup() -> None:
    m = SlotMap.even(INT8, ("a", "b", "c"), slots=16)
    assert m.ranges == (SlotRange(0, 4, "a"), SlotRange(5, 9, "b"), SlotRange(10, 15, "c"))
    assert m.slot_counts() == {"a": 5, "b": 5, "c": 6}
    owners = [r.group for r in m.ranges for _ in range(r.size)]
    assert [m.group_of_slot(s) for s in range(16)] == owners
    np.testing.assert_array_equal(
        m.locate_slots(np.arange(16)), [m.groups.index(g) for g in owners]
    )
    for key in (0, 1, -1, 2**63 - 1, -(2**63), 123456789):
        assert m.slot(key) == slot_of(key, KeyType.INT8, 16)
        assert m.locate(key) == owners[m.slot(key)]
    with pytest.raises(ValueError, match="outside"):
        m.group_of_slot(16)
    with pytest.raises(ValueError, match="outside"):
        m.locate_slots(np.array([3, -1]))


def test_vectorized_slots_agree_with_scalar_lookup() -> None:
    m = SlotMap.even(INT8, G4).with_group("g4").without_group("g1")
    keys = np.random.default_rng(7).integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    found = m.locate_slots(hash_keys(keys, KeyType.INT8) & (m.slots - 1))
    assert [m.groups[i] for i in found] == [m.locate(int(k)) for k in keys]


def test_composite_keys_use_the_record_hash() -> None:
    m = SlotMap.even(PAIR, G4)
    from mlscale.core.slots import composite_slot_of

    assert m.slot((3, "x")) == composite_slot_of((3, "x"), PAIR.key_types, 4096)


@pytest.mark.parametrize("slots", [8, 64, 4096])
def test_adding_groups_moves_only_what_the_new_group_needs(slots: int) -> None:
    m = SlotMap.even(INT8, ("g0",), slots=slots)
    for n in range(1, 8):
        new = m.with_group(f"g{n}")
        assert new.version == m.version + 1
        assert new.groups == (*m.groups, f"g{n}")
        counts = new.slot_counts()
        assert counts[f"g{n}"] == slots // (n + 1)
        assert max(counts.values()) - min(counts.values()) <= 1
        moved = moves(m, new)
        assert {mv.target for mv in moved} == {f"g{n}"}
        assert sum(mv.size for mv in moved) == slots // (n + 1)
        given = Counter[str]()
        for mv in moved:
            given[mv.source] += mv.size
        # Taken evenly: donors were within a slot of each other and end so, so
        # what they give differs by at most two slots.
        assert max(given.values()) - min(given.values()) <= 2
        m = new


def test_removing_a_group_spreads_its_slots_evenly() -> None:
    m = SlotMap.even(INT8, ("g0", "g1", "g2", "g3", "g4"), slots=4096)
    new = m.without_group("g2")
    assert new.groups == ("g0", "g1", "g3", "g4") and new.version == 2
    assert sorted(new.slot_counts().values()) == [1024, 1024, 1024, 1024]
    moved = moves(m, new)
    assert {mv.source for mv in moved} == {"g2"}
    assert sum(mv.size for mv in moved) == m.slot_counts()["g2"]
    # Round trip through removal and re-addition keeps the directory balanced.
    again = new.with_group("g5")
    assert max(again.slot_counts().values()) - min(again.slot_counts().values()) <= 1


def test_moves_merge_runs_and_refuse_unrelated_maps() -> None:
    old = SlotMap(INT8, ("a", "b"), (SlotRange(0, 3, "a"), SlotRange(4, 7, "b")), slots=8)
    new = SlotMap(
        INT8,
        ("a", "b"),
        (SlotRange(0, 1, "a"), SlotRange(2, 5, "b"), SlotRange(6, 7, "a")),
        slots=8,
    )
    assert moves(old, new) == [SlotMove(2, 3, "a", "b"), SlotMove(6, 7, "b", "a")]
    assert moves(old, old) == []
    with pytest.raises(ValueError, match="one family"):
        moves(old, SlotMap.even(INT8, ("a", "b"), slots=16))


def test_adjacent_ranges_of_one_group_merge() -> None:
    m = SlotMap(
        INT8, ("a", "b"), (SlotRange(0, 1, "a"), SlotRange(2, 3, "a"), SlotRange(4, 7, "b")), 8
    )
    assert m.ranges == (SlotRange(0, 3, "a"), SlotRange(4, 7, "b"))
    assert m == SlotMap.even(INT8, ("a", "b"), slots=8)


@pytest.mark.parametrize(
    ("ranges", "fragment"),
    [
        ([SlotRange(0, 3, "a"), SlotRange(5, 7, "b")], "a gap"),
        ([SlotRange(0, 4, "a"), SlotRange(4, 7, "b")], "an overlap"),
        ([SlotRange(0, 3, "a"), SlotRange(4, 6, "b")], "must cover 0..7"),
        ([SlotRange(0, 3, "a"), SlotRange(4, 9, "b")], "must be in 4..7"),
        ([SlotRange(0, 7, "a")], "own no slot"),
        ([SlotRange(0, 3, "a"), SlotRange(4, 7, "zz")], "not in groups"),
        ([], "non-empty"),
    ],
)
def test_bad_directories_are_refused(ranges: list[SlotRange], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        SlotMap(INT8, ("a", "b"), tuple(ranges), slots=8)


def test_slot_map_argument_checks() -> None:
    with pytest.raises(ConfigError, match="power of two"):
        SlotMap.even(INT8, G4, slots=1000)
    with pytest.raises(ConfigError, match="cannot be shared by 4"):
        SlotMap.even(INT8, G4, slots=2)
    with pytest.raises(ConfigError, match="twice"):
        SlotMap.even(INT8, ("a", "a"))
    with pytest.raises(ConfigError, match="already has"):
        SlotMap.even(INT8, G4).with_group("g0")
    with pytest.raises(ConfigError, match="only shard group"):
        SlotMap.even(INT8, ("a",)).without_group("a")
    with pytest.raises(ConfigError, match="cannot be shared by 3"):
        SlotMap.even(INT8, ("a", "b"), slots=2).with_group("c")
    with pytest.raises(ConfigError, match="version"):
        SlotMap.even(INT8, G4, version=0)
    with pytest.raises(ValueError, match="no shard group 'zz'"):
        SlotMap.even(INT8, G4).predicate("zz", ID)
    with pytest.raises(ValueError, match="2 SQL column"):
        SlotMap.even(INT8, G4).predicate("g0", [*ID, *ID])


# -- hash rings -----------------------------------------------------------------

BALANCED, HASHED = TokenAllocation.BALANCED, TokenAllocation.HASHED
SPACE = 2**64


def brute_force_ring(ring: HashRing, h: int) -> str:
    points = sorted((t, gi) for gi, ts in enumerate(ring.tokens) for t in ts)
    positions = [p for p, _ in points]
    i = bisect.bisect_left(positions, h)
    return ring.groups[points[i % len(points)][1]]


def exact_shares(ring: HashRing) -> dict[str, float]:
    """Each group's share in percent, from the lengths of its hash ranges."""
    return {
        g: sum(hi - lo + 1 for lo, hi in ring.hash_ranges(g)) * 100 / SPACE for g in ring.groups
    }


def only_new_group_gained(old: HashRing, new: HashRing) -> bool:
    """Whether every hash an old group owns in ``new`` it also owned in ``old``."""
    for g in old.groups:
        if g not in new.groups:
            continue
        owned = old.hash_ranges(g)
        starts = [lo for lo, _ in owned]
        for lo, hi in new.hash_ranges(g):
            i = bisect.bisect_right(starts, lo) - 1
            if i < 0 or hi > owned[i][1]:
                return False
    return True


@pytest.mark.parametrize("allocation", [BALANCED, HASHED])
def test_ring_lookup_is_the_next_point_clockwise(allocation: TokenAllocation) -> None:
    ring = HashRing(INT8, ("a", "b", "c"), vnodes=8, allocation=allocation)
    keys = [0, 1, -1, 2**63 - 1, -(2**63), *range(1000, 1200)]
    for key in keys:
        h = hash_key(key, KeyType.INT8)
        assert ring.locate(key) == brute_force_ring(ring, h) == ring.group_of_hash(h)
    # Tokens themselves, their neighbours, and the very ends of the int64 line.
    near = [t + d for t in ring.tokens[1] for d in (-1, 0, 1) if -(2**63) <= t + d < 2**63]
    for h in [*near, -(2**63), 2**63 - 1]:
        assert ring.group_of_hash(h) == brute_force_ring(ring, h)
    hashes = hash_keys(np.array(keys, dtype=np.int64), KeyType.INT8)
    assert [ring.groups[i] for i in ring.locate_hashes(hashes)] == [ring.locate(k) for k in keys]


def test_hashed_tokens_are_the_names_hashes() -> None:
    ring = HashRing(INT8, ("a", "b"), vnodes=8, allocation=HASHED)
    for g, tokens in zip(ring.groups, ring.tokens, strict=True):
        assert tokens == tuple(sorted(hash_key(f"{g}#{i}", KeyType.TEXT) for i in range(8)))
    assert ring.with_group("c").tokens[2] == tuple(
        sorted(hash_key(f"c#{i}", KeyType.TEXT) for i in range(8))
    )


@pytest.mark.parametrize("allocation", [BALANCED, HASHED])
def test_ring_hash_ranges_tile_the_int64_line(allocation: TokenAllocation) -> None:
    ring = HashRing(INT8, ("a", "b", "c"), vnodes=32, allocation=allocation)
    tiles = sorted((lo, hi, g) for g in ring.groups for lo, hi in ring.hash_ranges(g))
    assert tiles[0][0] == -(2**63) and tiles[-1][1] == 2**63 - 1
    for (_, hi, g1), (lo, _, g2) in itertools.pairwise(tiles):
        assert lo == hi + 1 and g1 != g2  # contiguous, and merged when the group repeats
    for lo, hi, g in tiles[:50]:
        assert ring.group_of_hash(lo) == ring.group_of_hash(hi) == g
    assert sum(ring.shares().values()) == pytest.approx(1.0)
    assert {g: 100 * s for g, s in ring.shares().items()} == pytest.approx(exact_shares(ring))


def test_balanced_is_the_default_and_shares_are_equal() -> None:
    ring = HashRing(INT8, G4)
    assert ring.allocation is BALANCED and ring.vnodes == 256
    assert [len(ts) for ts in ring.tokens] == [256] * 4
    # Exact, over the whole hash space: 25% each, to well within half a point.
    for share in exact_shares(ring).values():
        assert abs(share - 25.0) <= 0.5
        assert share == pytest.approx(25.0, abs=1e-9)
    # Hashed tokens for the same names are off by about 3 points (g2 owns 21.97%).
    hashed = exact_shares(HashRing(INT8, G4, allocation=HASHED))
    assert max(abs(s - 25) for s in hashed.values()) > 2.5


@pytest.mark.parametrize("names", [G4, ("x", "y", "z", "w"), ("tenant-eu", "tenant-us", "b", "a")])
def test_balanced_shares_do_not_depend_on_the_names(names: tuple[str, ...]) -> None:
    ring = HashRing(INT8, names)
    assert exact_shares(ring) == pytest.approx(dict.fromkeys(names, 25.0), abs=1e-9)
    assert ring.tokens == HashRing(INT8, G4).tokens  # placement is by position, not name


@pytest.mark.parametrize("vnodes", [1, 3, 16, 256])
def test_growing_a_balanced_ring_moves_keys_only_to_the_new_group(vnodes: int) -> None:
    ring = HashRing(INT8, ("g0",), vnodes=vnodes)
    for n in range(1, 9):
        bigger = ring.with_group(f"g{n}")
        assert bigger.version == ring.version + 1
        assert bigger.tokens[:n] == ring.tokens  # no existing token moves
        assert len(set(bigger.tokens[n])) == vnodes
        assert only_new_group_gained(ring, bigger)
        shares = exact_shares(bigger)
        if vnodes >= 16:
            # The new group takes 1/(N+1), levelled off every old group.
            assert max(abs(s - 100 / (n + 1)) for s in shares.values()) <= 0.5
        ring = bigger
    # Built in one go is the same as grown one group at a time.
    assert ring.tokens == HashRing(INT8, ring.groups, vnodes=vnodes).tokens


def test_adding_a_fifth_group_moves_a_fifth_of_the_keys_to_it() -> None:
    for allocation in (BALANCED, HASHED):
        ring = HashRing(INT8, G4, allocation=allocation)
        bigger = ring.with_group("g4")
        assert bigger.version == 2 and bigger.groups == (*G4, "g4")
        assert bigger.allocation is allocation
        assert bigger.tokens[:4] == ring.tokens
        assert only_new_group_gained(ring, bigger)
        keys = np.random.default_rng(3).integers(-(2**63), 2**63 - 1, 50_000, dtype=np.int64)
        hashes = hash_keys(keys, KeyType.INT8)
        before = np.array(ring.groups)[ring.locate_hashes(hashes)]
        after = np.array(bigger.groups)[bigger.locate_hashes(hashes)]
        changed = before != after
        assert set(after[changed]) == {"g4"}
        if allocation is BALANCED:
            assert exact_shares(bigger)["g4"] == pytest.approx(20.0, abs=1e-9)
            assert abs(changed.mean() - 0.20) < 0.01  # sampling error ~0.002
            # Taken evenly: every old group gave 5 points.
            for g in G4:
                assert exact_shares(bigger)[g] == pytest.approx(20.0, abs=1e-9)
        else:
            assert 0.12 < changed.mean() < 0.28  # about 1/5, give or take the names' luck
        assert bigger.without_group("g4").groups == ring.groups


def test_removing_the_last_added_group_restores_the_ring() -> None:
    ring = HashRing(INT8, G4)
    back = ring.with_group("g4").without_group("g4")
    assert back.tokens == ring.tokens and back.version == 3


def test_removing_a_group_moves_only_its_keys_and_adding_levels_again() -> None:
    ring = HashRing(INT8, ("g0", "g1", "g2", "g3", "g4"))
    smaller = ring.without_group("g1")
    assert smaller.groups == ("g0", "g2", "g3", "g4")
    assert smaller.tokens == tuple(ring.tokens[i] for i in (0, 2, 3, 4))
    # The survivors keep what they had and inherit g1's arcs: uneven shares.
    before, after = exact_shares(ring), exact_shares(smaller)
    for g in smaller.groups:
        assert after[g] >= before[g] - 1e-9
    assert sum(after.values()) == pytest.approx(100.0)
    assert only_new_group_gained(smaller, ring)  # the reverse: only g1's keys moved
    # The next group comes off the fullest groups first, which levels them.
    again = smaller.with_group("g5")
    assert only_new_group_gained(smaller, again)
    assert max(abs(s - 20) for s in exact_shares(again).values()) <= 0.5


def test_one_group_ring_owns_everything() -> None:
    for allocation in (BALANCED, HASHED):
        ring = HashRing(TEXT, ("only",), vnodes=4, allocation=allocation)
        assert ring.hash_ranges("only") == ((-(2**63), 2**63 - 1),)
        assert render(ring, "only") == '(hashtextextended(CAST("id" AS text), 0) IS NOT NULL)'
        with pytest.raises(ConfigError, match="only shard group"):
            ring.without_group("only")


@pytest.mark.parametrize("vnodes", [0, 65537, True, "8"])
def test_ring_vnodes_are_checked(vnodes: Any) -> None:
    with pytest.raises(ConfigError, match="vnodes"):
        HashRing(INT8, G4, vnodes=vnodes)


def test_ring_spec_holds_the_tokens() -> None:
    ring = HashRing(INT8, ("a", "b"), vnodes=2)
    spec = ring.to_spec()
    assert spec == {
        "strategy": "ring",
        "version": 1,
        "family": {"name": "users", "key_types": ["int8"]},
        "vnodes": 2,
        "allocation": "balanced",
        "groups": ["a", "b"],
        "tokens": [list(ring.tokens[0]), list(ring.tokens[1])],
    }
    assert spec["tokens"][0] == [-1, 2**63 - 1]  # the first group, evenly spaced
    # Tokens are read, never re-derived: a hashed ring keeps what its spec says.
    custom = [[-5, 100], [0, 7]]
    back = HashRing.from_spec({**spec, "allocation": "hashed", "tokens": custom})
    assert back.tokens == ((-5, 100), (0, 7)) and back.allocation is HASHED
    assert [back.group_of_hash(h) for h in (-6, -5, -4, 0, 1, 7, 8, 100, 101)] == [
        "a",
        "a",
        "b",
        "b",
        "b",
        "b",
        "a",
        "a",
        "a",  # past the highest token, around to -5
    ]
    with pytest.raises(ConfigError, match="allocation must be one of balanced, hashed"):
        HashRing(INT8, G4, allocation="random")  # type: ignore[arg-type]


def _ring_spec(**changes: Any) -> dict[str, Any]:
    spec = HashRing(INT8, ("a", "b"), vnodes=3).to_spec()
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (_ring_spec(tokens=[[1, 3, 2], [4, 5, 6]]), "'a''s tokens must be strictly ascending"),
        (_ring_spec(tokens=[[1, 2, 3], [4, 4, 6]]), "'b''s tokens must be strictly ascending"),
        (_ring_spec(tokens=[[1, 2, 3], [3, 5, 6]]), "token 3 belongs to both 'a' and 'b'"),
        (_ring_spec(tokens=[[1, 2, 3], [4, 5]]), r"group 'b' needs 3 tokens \(vnodes\), got 2"),
        (_ring_spec(tokens=[[1, 2, 3]]), r"one token list per group \(2\), got 1"),
        (_ring_spec(tokens=[[1, 2, 3], [4, 5, 6]], vnodes=4), "'a' needs 4 tokens"),
        (_ring_spec(tokens=[[1, 2, 2**63], [4, 5, 6]]), "not a signed 64-bit integer"),
        (_ring_spec(tokens=[[1, 2, "3"], [4, 5, 6]]), "not a signed 64-bit integer"),
        (_ring_spec(tokens=[[1, 2, True], [4, 5, 6]]), "not a signed 64-bit integer"),
        (_ring_spec(tokens={"a": [1, 2, 3]}), "list of token lists"),
        (_ring_spec(tokens=[1, 2]), "list of token lists"),
        (_ring_spec(allocation="random"), "allocation must be one of"),
        (_ring_spec(allocation=None), "allocation must be one of"),
        ({k: v for k, v in _ring_spec().items() if k != "tokens"}, "missing 'tokens'"),
    ],
)
def test_bad_ring_specs_name_the_problem(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        map_from_spec(spec)


# -- range maps -------------------------------------------------------------------

RANGES = RangeMap(
    INT8,
    (KeyRange(100, 200, "b"), KeyRange(None, 100, "a"), KeyRange(200, None, "c")),
)
TEXT_RANGES = RangeMap(
    TEXT, (KeyRange("B", "a", "upper"), KeyRange("a", "n", "low")), default="other"
)


@pytest.mark.parametrize(
    ("m", "key", "group"),
    [
        (RANGES, -(2**63), "a"),
        (RANGES, 99, "a"),
        (RANGES, 100, "b"),
        (RANGES, 199, "b"),
        (RANGES, 200, "c"),
        (RANGES, 2**63 - 1, "c"),
        (TEXT_RANGES, "A", "other"),
        (TEXT_RANGES, "B", "upper"),
        (TEXT_RANGES, "Zebra", "upper"),  # C collation: 'Z' < 'a'
        (TEXT_RANGES, "a", "low"),
        (TEXT_RANGES, "mzzz", "low"),
        (TEXT_RANGES, "n", "other"),
        (TEXT_RANGES, "é", "other"),
        (
            RangeMap(PAIR, (KeyRange(None, (5, "k"), "lo"), KeyRange((5, "k"), None, "hi"))),
            (5, "j"),
            "lo",
        ),
        (
            RangeMap(PAIR, (KeyRange(None, (5, "k"), "lo"), KeyRange((5, "k"), None, "hi"))),
            (5, "k"),
            "hi",
        ),
    ],
)
def test_range_lookup(m: RangeMap, key: Any, group: str) -> None:
    assert m.locate(key) == group


def test_ranges_are_kept_sorted() -> None:
    assert [r.group for r in RANGES.ranges] == ["a", "b", "c"]
    assert RANGES.groups == ("a", "b", "c")
    assert TEXT_RANGES.groups == ("upper", "low", "other")


@pytest.mark.parametrize(
    ("ranges", "default", "fragment"),
    [
        ([KeyRange(None, 10, "a"), KeyRange(5, None, "b")], None, "overlap"),
        ([KeyRange(None, None, "a"), KeyRange(5, None, "b")], None, "overlap"),
        ([KeyRange(None, 5, "a"), KeyRange(6, None, "b")], None, "have no range"),
        ([KeyRange(0, None, "a")], None, "open below"),
        ([KeyRange(None, 0, "a")], None, "open below"),
        ([KeyRange(5, 5, "a")], "d", "is empty"),
        ([KeyRange(5, "x", "a")], "d", "must be an int"),
        ([], "d", "non-empty"),
        ([KeyRange(None, 5, "")], "d", "group"),
    ],
)
def test_bad_ranges_are_refused(ranges: list[KeyRange], default: str | None, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RangeMap(INT8, tuple(ranges), default)


def test_gaps_go_to_the_default() -> None:
    m = RangeMap(INT8, (KeyRange(0, 10, "a"), KeyRange(20, 30, "a")), default="d")
    assert [m.locate(k) for k in (-1, 0, 9, 10, 19, 20, 29, 30)] == [
        "d",
        "a",
        "a",
        "d",
        "d",
        "a",
        "a",
        "d",
    ]


# -- geo and lookup maps --------------------------------------------------------------

GEO = GeoMap.of(REGION, {"us": "g1", "eu": "g0", "apac": "g1"}, "g2")


def test_geo_lookup_and_validation() -> None:
    assert GEO.regions == (("apac", "g1"), ("eu", "g0"), ("us", "g1"))
    assert GEO.groups == ("g1", "g0", "g2")
    assert [GEO.locate(r) for r in ("eu", "us", "apac", "mars", None)] == [
        "g0",
        "g1",
        "g1",
        "g2",
        "g2",
    ]
    with pytest.raises(ConfigError, match="one region column"):
        GeoMap.of(PAIR, {}, "g0")
    with pytest.raises(ConfigError, match="must be a str"):
        GeoMap.of(REGION, {1: "g0"}, "g1")  # type: ignore[dict-item]
    with pytest.raises(RoutingError, match="must be a str"):
        GEO.locate(5)


LOOKUP = LookupMap.of(INT8, {7: "big", 9: "big", -1: "small"}, "rest")


def test_lookup_entries_default_and_updates() -> None:
    assert LOOKUP.entries == ((-1, "small"), (7, "big"), (9, "big"))
    assert [LOOKUP.locate(k) for k in (7, 9, -1, 8)] == ["big", "big", "small", "rest"]
    strict = LookupMap.of(PAIR, {(1, "a"): "x"})
    assert strict.locate((1, "a")) == "x"
    with pytest.raises(RoutingError, match="no entry"):
        strict.locate((1, "b"))
    updated = LOOKUP.with_entries({8: "big", 7: "small"})
    assert updated.version == 2 and updated.locate(8) == "big" and updated.locate(7) == "small"
    with pytest.raises(ConfigError, match="two entries"):
        LookupMap(UUIDS, ((uuid.UUID(int=1), "a"), (str(uuid.UUID(int=1)), "b")))
    with pytest.raises(ConfigError, match="needs a default"):
        LookupMap.of(INT8, {})


# -- rendered SQL -------------------------------------------------------------------

H8 = 'hashint8extended(CAST("id" AS int8), 0)'


@pytest.mark.parametrize(
    ("m", "group", "columns", "expected"),
    [
        (
            SlotMap.even(INT8, ("a", "b"), slots=8),
            "b",
            ID,
            f"(({H8} & 7) BETWEEN 4 AND 7)",
        ),
        (
            SlotMap(
                INT8,
                ("a", "b"),
                (SlotRange(0, 0, "a"), SlotRange(1, 6, "b"), SlotRange(7, 7, "a")),
                8,
            ),
            "a",
            ID,
            f"(({H8} & 7) = 0 OR ({H8} & 7) = 7)",
        ),
        (
            SlotMap.even(PAIR, ("a",), slots=1),
            "a",
            [sql.Identifier("o"), sql.Identifier("t")],
            '(ROW("o", "t") IS NOT NULL AND '
            '((hash_record_extended(ROW(CAST("o" AS int8), CAST("t" AS text)), 0) & 0) = 0))',
        ),
        (
            SlotMap.even(BYTES, ("a",), slots=1),
            "a",
            ID,
            '("id" IS NOT NULL AND ((hash_record_extended(ROW(CAST("id" AS bytea)), 0) & 0) = 0))',
        ),
        (RANGES, "b", ID, '("id" >= 100 AND "id" < 200)'),
        (RANGES, "a", ID, '("id" < 100)'),
        (
            TEXT_RANGES,
            "other",
            ID,
            '(NOT ("id" >= \'B\' COLLATE "C" AND "id" < \'a\' COLLATE "C" '
            'OR "id" >= \'a\' COLLATE "C" AND "id" < \'n\' COLLATE "C"))',
        ),
        (
            RangeMap(PAIR, (KeyRange(None, (5, "k"), "lo"), KeyRange((5, "k"), None, "hi"))),
            "hi",
            [sql.Identifier("o"), sql.Identifier("t")],
            '(ROW("o", "t") IS NOT NULL AND (ROW("o", "t") >= ROW(5, \'k\' COLLATE "C")))',
        ),
        (GEO, "g1", ID, "(\"id\" IN ('apac', 'us'))"),
        (
            GEO,
            "g2",
            ID,
            "(\"id\" NOT IN ('apac', 'eu', 'us') OR \"id\" IS NULL)",
        ),
        (LOOKUP, "big", ID, "(\"id\" = ANY(CAST('{7,9}'::int2[] AS int8[])))"),
        (
            LOOKUP,
            "rest",
            ID,
            "(NOT (\"id\" = ANY(CAST('{-1,7,9}'::int2[] AS int8[]))))",
        ),
        (
            LookupMap.of(PAIR, {(1, "a"): "x", (2, "b"): "y"}),
            "y",
            [sql.Identifier("o"), sql.Identifier("t")],
            '(ROW("o", "t") IS NOT NULL AND (ROW("o", "t") IN (ROW(2, \'b\'))))',
        ),
    ],
)
def test_rendered_predicates(
    m: ShardMap, group: str, columns: list[sql.Composable], expected: str
) -> None:
    assert render(m, group, columns) == expected


def test_ring_predicate_uses_open_ends_at_the_edges() -> None:
    ring = HashRing(INT8, ("a", "b"), vnodes=4)
    first, *_, last = sorted((lo, hi, g) for g in ring.groups for lo, hi in ring.hash_ranges(g))
    text = render(ring, first[2])
    assert text.startswith(f"({H8} <= {sql.Literal(first[1]).as_string(None)}")
    assert f"{H8} >= {sql.Literal(last[0]).as_string(None)}" in render(ring, last[2])
    assert str(-(2**63)) not in text and str(2**63 - 1) not in text


def test_identifiers_are_quoted_not_formatted() -> None:
    nasty = [sql.Identifier('x"; DROP TABLE t; --')]
    assert '"x""; DROP TABLE t; --"' in render(GEO, "g0", nasty)
    evil_region = GeoMap.of(REGION, {"a'); DROP TABLE t; --": "g0"}, "g1")
    assert "'a''); DROP TABLE t; --'" in render(evil_region, "g0")


# -- specs ----------------------------------------------------------------------------


def _spec(m: ShardMap, **changes: Any) -> dict[str, Any]:
    spec = m.to_spec()
    for k, v in changes.items():
        if v is ...:
            del spec[k]
        else:
            spec[k] = v
    return spec


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ([], "JSON object"),
        ({"strategy": "modulo"}, "unknown shard map strategy 'modulo'"),
        ({}, "unknown shard map strategy None"),
        (_spec(SlotMap.even(INT8, G4), version=...), "missing 'version'"),
        (_spec(SlotMap.even(INT8, G4), colour="red"), r"unknown field\(s\) 'colour'"),
        (_spec(SlotMap.even(INT8, G4), version="1"), "version must be an integer"),
        (_spec(SlotMap.even(INT8, G4), version=0), "between 1"),
        (_spec(SlotMap.even(INT8, G4), slots=100), "power of two"),
        (_spec(SlotMap.even(INT8, G4), ranges=[[0, 4095]]), r"ranges\[0\] must be"),
        (_spec(SlotMap.even(INT8, G4), ranges=[[0, 4095, "g0"]]), "own no slot"),
        (_spec(SlotMap.even(INT8, G4), groups="g0"), "list of shard group names"),
        (_spec(SlotMap.even(INT8, G4), family={"name": "x"}), "missing 'key_types'"),
        (
            _spec(SlotMap.even(INT8, G4), family={"name": "x", "key_types": ["money"]}),
            "unknown key type 'money'",
        ),
        (_spec(HashRing(INT8, G4), vnodes=-1), "vnodes"),
        (_spec(RANGES, ranges=[[None, "x", "a"]]), "must be an int"),
        (_spec(RANGES, ranges=[[None, 5, "a"], [4, None, "b"]]), "overlap"),
        (_spec(RANGES, ranges=[[None, None]]), r"ranges\[0\] must be \[low, high, group\]"),
        (_spec(GEO, regions={"eu": "g0"}), "regions must be a list"),
        (_spec(GEO, regions=[["eu", "g0"], ["eu", "g1"]]), "listed twice"),
        (_spec(GEO, default=None), "default group"),
        (_spec(LOOKUP, entries=[[1, "a", "b"]]), r"entries\[0\] must be \[key, group\]"),
        (
            _spec(LookupMap.of(BYTES, {b"a": "x"}), entries=[["zz", "x"]]),
            "not hex text",
        ),
        (_spec(LOOKUP, strategy="range"), "missing 'ranges'"),
    ],
)
def test_bad_specs_name_the_problem(spec: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        map_from_spec(spec)


def test_specs_are_plain_json() -> None:
    m = LookupMap.of(
        KeyFamily.of("mixed", "uuid", "bytea", "int2"),
        {(uuid.UUID(int=3), b"\x00\xff", -2): "g0"},
    )
    assert m.to_spec() == {
        "strategy": "lookup",
        "version": 1,
        "family": {"name": "mixed", "key_types": ["uuid", "bytea", "int2"]},
        "entries": [[["00000000-0000-0000-0000-000000000003", "00ff", -2], "g0"]],
        "default": None,
    }
    assert SlotMap.even(INT8, ("a", "b"), slots=8).to_spec()["ranges"] == [
        [0, 3, "a"],
        [4, 7, "b"],
    ]
