"""Consistency levels, causal tokens and read requirements: pure, table-driven."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlscale.core.balance import ReplicaState
from mlscale.core.causal import MAX_TOKEN_CHARS, MAX_TOKEN_GROUPS
from mlscale.core.consistency import (
    CausalToken,
    Consistency,
    GroupPosition,
    InvalidToken,
    ReadRequirement,
    ShortfallKind,
    requirement,
)

SYS = 7_312_345_678_901_234_567  # a plausible system identifier (initdb time << 32 | ...)
OTHER_SYS = SYS + (1 << 32)  # a cluster initdb'd a second later

# -- tokens: strategies ---------------------------------------------------------------

groups = st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True)
positions = st.builds(
    GroupPosition,
    system_identifier=st.integers(0, 2**64 - 1),
    timeline=st.integers(1, 2**32 - 1),
    lsn=st.integers(0, 2**64 - 1),
)
# Few systems and timelines, so merges meet both equal and different histories.
close_positions = st.builds(
    GroupPosition,
    system_identifier=st.sampled_from([SYS, OTHER_SYS]),
    timeline=st.integers(1, 3),
    lsn=st.integers(0, 2**40),
)
tokens = st.dictionaries(groups, positions, max_size=8).map(CausalToken)
close_tokens = st.dictionaries(st.sampled_from(["g0", "g1", "g2"]), close_positions).map(
    CausalToken
)


def key(p: GroupPosition) -> tuple[int, int, int]:
    return (p.system_identifier, p.timeline, p.lsn)


# -- tokens: serialization ------------------------------------------------------------


@given(tokens)
def test_token_round_trips_exactly(token: CausalToken) -> None:
    text = token.to_string()
    assert CausalToken.parse(text) == token
    assert CausalToken.parse(text).to_string() == text
    assert len(text) <= MAX_TOKEN_CHARS
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", text)  # unreserved URL characters only


@pytest.mark.parametrize(
    ("positions", "text"),
    [
        ({}, "c1"),
        ({"g0": GroupPosition(7, 1, 0x3000060)}, "c1.g0-7-1-3000060"),
        (
            {"g1": GroupPosition(255, 2, 0), "g0": GroupPosition(7, 1, 16)},
            "c1.g0-7-1-10.g1-ff-2-0",
        ),
        ({"g0": GroupPosition(-1, 1, 0)}, "c1.g0-ffffffffffffffff-1-0"),
    ],
)
def test_token_string_is_compact_and_stable(positions: dict[str, GroupPosition], text: str) -> None:
    token = CausalToken(positions)
    assert token.to_string() == text
    assert CausalToken.parse(text) == token
    assert bool(token) is bool(positions)


def test_token_is_an_immutable_hashable_mapping() -> None:
    pos = GroupPosition(SYS, 1, 100)
    token = CausalToken({"g0": pos})
    assert token["g0"] == pos
    assert token.for_group("g0") == pos
    assert token.for_group("g9") is None
    assert list(token) == ["g0"] and len(token) == 1
    assert hash(token) == hash(CausalToken({"g0": GroupPosition(SYS, 1, 100)}))
    assert not CausalToken()
    assert "CausalToken.parse('c1.g0-" in repr(token)
    with pytest.raises(TypeError):
        token["g1"] = pos  # type: ignore[index]


def test_signed_system_identifier_is_stored_unsigned() -> None:
    # pg_control_system() returns a signed bigint.
    assert GroupPosition(-2, 1, 0).system_identifier == 2**64 - 2
    assert GroupPosition(-2, 1, 0).same_history(2**64 - 2, 1)
    assert GroupPosition(2**64 - 2, 1, 0).same_history(-2, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with 'c1'"),
        ("c2.g0-7-1-0", "must start with 'c1'"),
        (" c1.g0-7-1-0", "must start with 'c1'"),
        ("c1.", "entry 1 ('') must be group-sysid-timeline-lsn"),
        ("c1.g0-7-1", "must be group-sysid-timeline-lsn"),
        ("c1.g0-7-1-0-0", "must be group-sysid-timeline-lsn"),
        ("c1.G0-7-1-0", "invalid shard group name 'G0'"),
        ("c1.0g-7-1-0", "invalid shard group name"),
        ("c1.g0-07-1-0", "system identifier '07' is not canonical lowercase hex"),
        ("c1.g0-7A-1-0", "system identifier"),
        ("c1.g0-10000000000000000-1-0", "system identifier"),  # 17 hex digits
        ("c1.g0-7-0-0", "timeline '0'"),
        ("c1.g0-7-100000000-0", "timeline"),  # 2^32
        ("c1.g0-7-1-0x3", "LSN '0x3'"),
        ("c1.g0-7-1-+3", "LSN"),
        ("c1.g0-7-1-3_0", "LSN"),
        ("c1.g0-7-1-٣", "LSN"),  # a non-ASCII digit int() would accept
        ("c1.g0-7-1-", "LSN ''"),
        ("c1.g1-7-1-0.g0-7-1-0", "entry 2: shard group 'g0' is repeated or out of order"),
        ("c1.g0-7-1-0.g0-7-1-1", "repeated or out of order"),
        ("c1.g0-7-1-0" + "0" * MAX_TOKEN_CHARS, "characters long"),
        ("c1" + "".join(f".g{i:03}-7-1-0" for i in range(MAX_TOKEN_GROUPS + 1)), "more than 64"),
    ],
)
def test_parse_rejects_garbage_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidToken, match=re.escape(message)):
        CausalToken.parse(text)


def test_parse_errors_are_value_errors() -> None:
    assert issubclass(InvalidToken, ValueError)
    with pytest.raises(InvalidToken, match="must be a string"):
        CausalToken.parse(b"c1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((SYS, 0, 0), "timeline"),
        ((SYS, 1, -1), "LSN"),
        ((SYS, 1, 2**64), "LSN"),
        ((2**64, 1, 0), "system identifier"),
    ],
)
def test_group_position_validates(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupPosition(*args)


def test_token_refuses_bad_groups_and_too_many() -> None:
    pos = GroupPosition(SYS, 1, 0)
    with pytest.raises(ValueError, match="invalid shard group name"):
        CausalToken({"G-0": pos})
    with pytest.raises(ValueError, match="at most 64"):
        CausalToken({f"g{i}": pos for i in range(MAX_TOKEN_GROUPS + 1)})
    with pytest.raises(TypeError, match="not a GroupPosition"):
        CausalToken({"g0": (SYS, 1, 0)})  # type: ignore[dict-item]


# -- tokens: merge ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "merged"),
    [
        # same history: the later LSN
        (GroupPosition(SYS, 1, 100), GroupPosition(SYS, 1, 200), GroupPosition(SYS, 1, 200)),
        # a promotion: the later timeline, even at a lower LSN (the old one's tail was lost)
        (GroupPosition(SYS, 1, 900), GroupPosition(SYS, 2, 500), GroupPosition(SYS, 2, 500)),
        # a rebuilt cluster: the later initdb
        (
            GroupPosition(SYS, 3, 900),
            GroupPosition(OTHER_SYS, 1, 5),
            GroupPosition(OTHER_SYS, 1, 5),
        ),
    ],
)
def test_merge_keeps_the_newer_position(
    a: GroupPosition, b: GroupPosition, merged: GroupPosition
) -> None:
    ta, tb = CausalToken({"g0": a}), CausalToken({"g0": b})
    assert ta.merge(tb).for_group("g0") == merged
    assert tb.merge(ta).for_group("g0") == merged


def test_merge_unions_groups_and_advances() -> None:
    a = CausalToken({"g0": GroupPosition(SYS, 1, 10)})
    b = CausalToken({"g1": GroupPosition(SYS, 1, 20)})
    assert set(a.merge(b)) == {"g0", "g1"}
    assert a.advanced("g0", GroupPosition(SYS, 1, 5)) == a  # never moves back
    assert a.advanced("g0", GroupPosition(SYS, 1, 50))["g0"].lsn == 50
    assert a.merge({}) == a and CausalToken().merge(a) == a


@given(close_tokens, close_tokens, close_tokens)
def test_merge_is_a_join(a: CausalToken, b: CausalToken, c: CausalToken) -> None:
    assert a.merge(b) == b.merge(a)  # commutative
    assert a.merge(b).merge(c) == a.merge(b.merge(c))  # associative
    assert a.merge(a) == a  # idempotent
    merged = a.merge(b)
    for token in (a, b):  # monotone: no group moves back
        for group, pos in token.items():
            assert key(merged[group]) >= key(pos)


# -- requirements -----------------------------------------------------------------------

TOKEN = CausalToken({"g0": GroupPosition(SYS, 1, 0x3000060)})


@pytest.mark.parametrize(
    ("consistency", "kwargs", "expected"),
    [
        (
            Consistency.STRONG,
            {"token": TOKEN, "seen_lsn": 5},
            {"primary_only": True, "min_lsn": None, "reason": "STRONG"},
        ),
        (
            Consistency.READ_YOUR_WRITES,
            {"token": TOKEN},
            {"primary_only": False, "min_lsn": 0x3000060, "position": TOKEN["g0"]},
        ),
        (Consistency.READ_YOUR_WRITES, {"token": None}, {"min_lsn": None, "position": None}),
        (Consistency.READ_YOUR_WRITES, {"token": CausalToken()}, {"min_lsn": None}),
        (  # the token never wrote in this group: no floor from it
            Consistency.READ_YOUR_WRITES,
            {"token": CausalToken({"g1": GroupPosition(SYS, 1, 9)})},
            {"min_lsn": None, "position": None},
        ),
        (  # monotonic mark above the token: the max of both
            Consistency.READ_YOUR_WRITES,
            {"token": TOKEN, "seen_lsn": 0x4000000},
            {"min_lsn": 0x4000000, "monotonic": True},
        ),
        (  # the token above the mark: the token
            Consistency.READ_YOUR_WRITES,
            {"token": TOKEN, "seen_lsn": 16},
            {"min_lsn": 0x3000060},
        ),
        (  # a token counts only for read-your-writes
            Consistency.EVENTUAL,
            {"token": TOKEN},
            {"min_lsn": None, "position": None, "monotonic": False},
        ),
        (Consistency.EVENTUAL, {"seen_lsn": 42}, {"min_lsn": 42, "monotonic": True}),
        (Consistency.EVENTUAL, {"max_lag_ms": 10.0}, {"max_lag_ms": None}),
        (
            Consistency.BOUNDED_STALENESS,
            {"max_lag_ms": 500.0},
            {"max_lag_ms": 500.0, "max_lag_bytes": None, "min_lsn": None},
        ),
        (
            Consistency.BOUNDED_STALENESS,
            {"max_lag_bytes": 1024, "seen_lsn": 7, "token": TOKEN},
            {"max_lag_bytes": 1024, "min_lsn": 7, "position": None},
        ),
        ("read_your_writes", {"token": TOKEN, "wait_ms": 50.0}, {"wait_ms": 50.0}),
    ],
)
def test_requirement_per_level(
    consistency: Consistency, kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    req = requirement(consistency, group="g0", **kwargs)
    assert req.consistency is Consistency(consistency)
    for name, value in expected.items():
        assert getattr(req, name) == value, name


@pytest.mark.parametrize(
    ("consistency", "kwargs", "message"),
    [
        (Consistency.BOUNDED_STALENESS, {}, "needs max_lag_ms or max_lag_bytes"),
        (Consistency.BOUNDED_STALENESS, {"max_lag_ms": -1.0}, "max_lag_ms must be >= 0"),
        (Consistency.EVENTUAL, {"wait_ms": -1.0}, "wait_ms"),
        (Consistency.EVENTUAL, {"seen_lsn": -1}, "seen_lsn"),
        ("sometimes", {}, "sometimes"),
    ],
)
def test_requirement_refuses_nonsense(
    consistency: Consistency, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        requirement(consistency, group="g0", **kwargs)


def replica(**kw: Any) -> ReplicaState:
    base: dict[str, Any] = {
        "name": "g0-replica1",
        "group": "g0",
        "replay_lsn": 0x3000060,
        "receive_lsn": 0x3000060,
        "lag_bytes": 0,
        "lag_ms": 0.0,
        "system_identifier": SYS,
        "timeline": 1,
    }
    return ReplicaState(**{**base, **kw})


RYW = requirement(Consistency.READ_YOUR_WRITES, group="g0", token=TOKEN)
BOUNDED = requirement(
    Consistency.BOUNDED_STALENESS, group="g0", max_lag_ms=500.0, max_lag_bytes=1 << 20
)
MONO = requirement(Consistency.EVENTUAL, group="g0", seen_lsn=0x5000000)


@pytest.mark.parametrize(
    ("req", "state", "kind", "detail"),
    [
        (RYW, {}, None, None),
        (RYW, {"replay_lsn": 0x3000100}, None, None),
        (
            RYW,
            {"replay_lsn": 0x3000000},
            ShortfallKind.NOT_REPLAYED,
            "replayed 0/3000000 < 0/3000060",
        ),
        (RYW, {"replay_lsn": None}, ShortfallKind.NOT_REPLAYED, "not known"),
        (RYW, {"system_identifier": OTHER_SYS}, ShortfallKind.INCOMPARABLE, "another cluster"),
        (RYW, {"system_identifier": SYS - 2**64}, None, None),  # signed form of the same id
        (RYW, {"timeline": 2, "replay_lsn": 2**40}, ShortfallKind.INCOMPARABLE, "timeline 2"),
        (RYW, {"system_identifier": None}, ShortfallKind.INCOMPARABLE, "not known yet"),
        (RYW, {"timeline": None}, ShortfallKind.INCOMPARABLE, "not known yet"),
        (RYW, {"lag_ms": 10_000.0}, None, None),  # no staleness bound at this level
        (BOUNDED, {"lag_ms": 500.0}, None, None),
        (BOUNDED, {"lag_ms": 812.0}, ShortfallKind.TOO_STALE, "lag 812 ms > 500 ms bound"),
        (BOUNDED, {"lag_ms": None}, ShortfallKind.TOO_STALE, "lag in ms not known"),
        (BOUNDED, {"lag_bytes": 2 << 20}, ShortfallKind.TOO_STALE, "bytes > 1048576 bytes bound"),
        (BOUNDED, {"lag_bytes": None}, ShortfallKind.TOO_STALE, "lag in bytes not known"),
        (BOUNDED, {"system_identifier": OTHER_SYS}, None, None),  # no token, nothing to compare
        (MONO, {}, ShortfallKind.NOT_REPLAYED, "< 0/5000000"),
        (MONO, {"replay_lsn": 0x5000000}, None, None),
        (
            requirement(Consistency.STRONG, group="g0"),
            {},
            ShortfallKind.PRIMARY_ONLY,
            "STRONG reads need the primary",
        ),
    ],
)
def test_shortfall_says_why_a_replica_cannot_serve(
    req: ReadRequirement,
    state: dict[str, Any],
    kind: ShortfallKind | None,
    detail: str | None,
) -> None:
    got = req.shortfall(replica(**state))
    assert req.satisfied_by(replica(**state)) is (kind is None)
    if kind is None:
        assert got is None
    else:
        assert got is not None and got.kind is kind
        assert detail is not None and detail in got.detail


def test_without_wait_keeps_everything_else() -> None:
    req = requirement(Consistency.READ_YOUR_WRITES, group="g0", token=TOKEN, wait_ms=50.0)
    spent = req.without_wait()
    assert spent.wait_ms == 0.0
    assert (spent.min_lsn, spent.position, spent.group) == (req.min_lsn, req.position, "g0")
