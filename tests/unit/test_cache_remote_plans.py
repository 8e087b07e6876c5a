"""RemotePlans without a server: what is sent for each call and how replies are read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from redis.crc import key_slot

from mlscale.cache import scripts
from mlscale.cache.remote import (
    Entry,
    EntryState,
    LeaseOutcome,
    Refusal,
    RemotePlans,
    RemoteSettings,
    jittered,
)
from mlscale.errors import CacheError, CacheValueTooLarge


def packed(reply: Any) -> bytes:
    """A GET or LEASE_GET reply as the scripts send it: one cmsgpack string."""
    return msgpack.packb(reply, use_bin_type=False)


def test_standalone_get_many_is_one_call_in_key_order() -> None:
    plan = RemotePlans().get_many(["a", "b", "c"])
    assert [[c.keys for c in p] for p in plan.phases] == [[(b"a", b"b", b"c")]]
    got = plan.finish([packed([0, [b"v", b"3", b"A"], [b"n", b"4"]])])
    assert [(g.key, g.state, g.value, g.version) for g in got] == [
        ("a", EntryState.MISS, None, None),
        ("b", EntryState.VALUE, b"A", 3),
        ("c", EntryState.ABSENT, None, 4),
    ]


def test_cluster_get_many_groups_by_slot_and_restores_order() -> None:
    keys = ["{u1}:a", "x", "{u1}:b", "y"]
    plan = RemotePlans(cluster=True).get_many(keys)
    (calls,) = plan.phases
    for c in calls:
        assert len({key_slot(k) for k in c.keys}) == 1
    assert len(calls) == len({key_slot(k.encode()) for k in keys})
    replies = [packed([[b"v", b"1", k] for k in c.keys]) for c in calls]
    assert [g.value for g in plan.finish(replies)] == [k.encode() for k in keys]


def test_tag_memberships_go_first_and_alone_only_across_slots() -> None:
    cross = RemotePlans(cluster=True).lease_get("{a}:k", tags=["{b}:t"])
    assert [[c.script for c in p] for p in cross.phases] == [[scripts.TAG_ADD], [scripts.LEASE_GET]]
    same = RemotePlans(cluster=True).lease_get("{a}:k", tags=["{a}:t"])
    assert [[c.script for c in p] for p in same.phases] == [[scripts.TAG_ADD, scripts.LEASE_GET]]


def test_lease_and_store_replies() -> None:
    plan = RemotePlans().lease_get("k", allow_stale=True)
    got = plan.finish([packed([b"granted", b"7", b"0", b"old", b"1", b"0/1A"])])
    assert got.outcome is LeaseOutcome.GRANTED and got.token
    assert (got.value, got.version, got.stale, got.causal_token) == (b"old", 7, True, "0/1A")
    wait = plan.finish([packed([b"wait", b"", b"0", b"", b"1", b""])])
    assert (wait.token, wait.state, wait.tombstone, wait.causal_token) == (
        None,
        EntryState.MISS,
        True,
        None,
    )
    stored = RemotePlans().set_many([Entry("a", b"x", 1), Entry("b", None, 2)])
    a, b = stored.finish([b"ok", b"version"])
    assert a and not b and b.refusal is Refusal.OLDER_VERSION


def test_a_single_get_reads_its_one_entry() -> None:
    plan = RemotePlans(cluster=True).get("{u}:a")
    assert [[(c.script, c.keys) for c in p] for p in plan.phases] == [[(scripts.GET, (b"{u}:a",))]]
    got = plan.finish([packed([[b"v", b"3", b"A"]])])
    assert (got.key, got.state, got.value, got.version) == ("{u}:a", EntryState.VALUE, b"A", 3)
    assert plan.finish([packed([0])]).state is EntryState.MISS
    with pytest.raises(CacheError, match="2 entries"):
        plan.finish([packed([0, 0])])


@pytest.mark.parametrize("reply", [[0], b"\xc1", 7])
def test_a_reply_that_is_not_one_packed_string_is_an_error(reply: Any) -> None:
    with pytest.raises(CacheError, match="reply"):
        RemotePlans().get_many(["a"]).finish([reply])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda p: p.set_many([Entry("k", b"x", -1)]), ValueError),
        (lambda p: p.set_many([Entry("k", b"x", 2**53)]), ValueError),
        (lambda p: p.set_many([Entry("k", b"x", 1, ttl_ms=0)]), ValueError),
        (lambda p: p.set_many([Entry("k", b"x" * 11, 1)]), CacheValueTooLarge),
        (lambda p: p.lease_set("k", "", b"x", 1), ValueError),
        (lambda p: p.invalidate(["k"], ""), ValueError),
        (lambda p: p.invalidate(["k"], tombstone_ttl_ms=0), ValueError),
    ],
)
def test_bad_input_is_refused_before_sending(
    call: Callable[[RemotePlans], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(RemotePlans(RemoteSettings(max_value_bytes=10)))


def test_jitter_only_shortens_within_the_fraction() -> None:
    assert jittered(1000, 0.0) == 1000
    assert jittered(1000, 0.2, lambda: 0.999) == 801
    assert jittered(1000, 0.2, lambda: 0.0) == 1000
    with pytest.raises(ValueError):
        RemoteSettings(ttl_jitter=1.0)
