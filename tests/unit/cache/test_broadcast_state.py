"""The L1 broadcast's pure parts: the trust/epoch/heartbeat state machine driven by
fake events and a fake clock, the message format, and the L1's epoch floor."""

from __future__ import annotations

import math

import msgpack
import pytest

from mlscale.cache.broadcast import (
    Beat,
    CoherenceState,
    Invalidation,
    decode_invalidation,
    encode_invalidation,
)
from mlscale.cache.local import LocalCache, SetOutcome

# -- trust and epochs ---------------------------------------------------------------


def test_untrusted_until_subscribed_and_trusted_only_after_trust() -> None:
    s = CoherenceState()
    assert not s.trusted and s.epoch == 0
    assert s.subscribed(shared_epoch=1, now=0.0) == 1
    assert not s.trusted  # the listener clears the L1 between subscribed() and trust()
    s.trust()
    assert s.trusted


def test_drop_untrusts_and_raises_the_epoch_once() -> None:
    s = CoherenceState()
    s.subscribed(1, 0.0)
    s.trust()
    assert s.dropped() == (True, 2)  # was trusted: flush, floor to 2
    assert not s.trusted
    # Failed reconnect attempts are drops too, but nothing is left to flush.
    assert s.dropped() == (False, 2)
    assert s.dropped() == (False, 2)


def test_epoch_never_goes_back_even_if_redis_lost_the_counter() -> None:
    s = CoherenceState()
    epochs = []
    # (shared counter returned by INCR at each subscription): Redis restarted empty
    # between the 3rd and the 4th, so INCR starts again at 1.
    for shared in (5, 6, 9, 1, 2):
        s.subscribed(shared, 0.0)
        s.trust()
        epochs.append(s.epoch)
        s.dropped()
        epochs.append(s.epoch)
    assert epochs == sorted(set(epochs)), epochs  # strictly increasing
    assert epochs[0] == 5 and epochs[4] == 9
    assert s.shared_epoch == 2


def test_a_fill_started_before_a_gap_is_never_served_after_it() -> None:
    """Driven like the listener drives it, with the façade's fill in between."""
    local = LocalCache()
    s = CoherenceState()

    def subscribe(shared: int) -> None:
        local.retire_epochs_below(s.subscribed(shared, 0.0))
        local.clear()
        s.trust()

    def drop() -> None:
        was, epoch = s.dropped()
        if was:
            local.retire_epochs_below(epoch)
            local.clear()

    subscribe(1)
    before = s.epoch
    local.set("served", "old", ttl=60, epoch=before)
    slow_fill_epoch = s.epoch  # a fill reads the epoch, then loads slowly ...
    drop()  # ... Redis restarts ...
    assert local.get("served") is None
    gap_fill_epoch = s.epoch  # a fill started while untrusted (the façade should not)
    # ... the slow fill lands during the gap: refused at once.
    assert local.set("slow", "old", ttl=60, epoch=slow_fill_epoch).outcome is SetOutcome.OLDER_EPOCH
    local.set("gap", "old", ttl=60, epoch=gap_fill_epoch)  # accepted for now ...
    subscribe(1)  # Redis came back empty: INCR says 1 again
    assert s.trusted and s.epoch > gap_fill_epoch
    assert local.get("gap") is None  # ... but gone once trusted again
    assert local.set("gap", "late", ttl=60, epoch=gap_fill_epoch).outcome is SetOutcome.OLDER_EPOCH
    assert local.set("new", "v", ttl=60, epoch=s.epoch).stored
    assert local.get("new") is not None and len(local) == 1


# -- heartbeat ------------------------------------------------------------------------


def test_heartbeat_pings_when_quiet_and_declares_dead_after_the_timeout() -> None:
    s = CoherenceState(heartbeat_s=0.5, heartbeat_timeout_s=1.5)
    s.subscribed(1, now=100.0)
    table = [
        (100.0, Beat.WAIT),
        (100.4, Beat.WAIT),
        (100.5, Beat.PING),
        (100.6, Beat.WAIT),  # one PING per heartbeat_s, not one per tick
        (101.0, Beat.PING),
        (101.4, Beat.WAIT),
        (101.5, Beat.DEAD),
    ]
    for now, want in table:
        assert s.beat(now) is want, now


def test_anything_heard_keeps_the_link_alive() -> None:
    s = CoherenceState(heartbeat_s=0.5, heartbeat_timeout_s=1.5)
    s.subscribed(1, now=0.0)
    assert s.beat(0.6) is Beat.PING
    s.heard(0.61)  # the PONG
    assert s.beat(1.0) is Beat.WAIT
    assert s.beat(1.2) is Beat.PING
    s.heard(1.9)  # a message, pong or not
    assert s.beat(3.3) is Beat.PING  # quiet again, but not for the timeout yet
    assert s.beat(3.4) is Beat.DEAD


def test_a_new_subscription_restarts_the_heartbeat() -> None:
    s = CoherenceState(heartbeat_s=0.5, heartbeat_timeout_s=1.5)
    s.subscribed(1, now=0.0)
    assert s.beat(5.0) is Beat.DEAD
    s.dropped()
    s.subscribed(2, now=6.0)
    assert s.beat(6.1) is Beat.WAIT


@pytest.mark.parametrize(("hb", "timeout"), [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_heartbeat_settings_are_checked(hb: float, timeout: float) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        CoherenceState(heartbeat_s=hb, heartbeat_timeout_s=timeout)


# -- messages -----------------------------------------------------------------------


def test_message_round_trip() -> None:
    inv = Invalidation(b"\x01" * 8, 1_700_000_000_123_456_789, ("mls:a:v1:x", "mls:a:v1:é"))
    assert decode_invalidation(encode_invalidation(inv)) == inv


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never valid msgpack
        "a str, not bytes",
        msgpack.packb([2, b"o", 1, ["k"]]),  # another format
        msgpack.packb([1, "o", 1, ["k"]]),  # origin not bytes
        msgpack.packb([1, b"o", 1.5, ["k"]]),  # time not int
        msgpack.packb([1, b"o", 1, [b"k"]]),  # key not str
        msgpack.packb([1, b"o", 1]),
        msgpack.packb({"k": ["x"]}),
    ],
)
def test_foreign_or_corrupt_messages_are_refused(data: object) -> None:
    with pytest.raises(ValueError):
        decode_invalidation(data)


# -- the L1's epoch floor ------------------------------------------------------------


def test_retire_drops_older_stamps_only_and_keeps_pins_and_unstamped() -> None:
    local = LocalCache()
    local.set("e1", 1, ttl=60, epoch=1)
    local.set("e2", 2, ttl=60, epoch=2)
    local.set("plain", 3, ttl=60)
    local.set("dirty", 4, ttl=math.inf, epoch=1, pin=True)
    assert local.retire_epochs_below(2) == 1
    assert local.get("e1") is None
    assert {k for k in ("e2", "plain", "dirty") if local.get(k) is not None} == {
        "e2",
        "plain",
        "dirty",
    }
    assert local.retire_epochs_below(1) == 0 and local.epoch_floor == 2  # never goes down
    refused = local.set("e1", 1, ttl=60, epoch=1)
    assert refused.outcome is SetOutcome.OLDER_EPOCH and not refused.stored
    assert local.set("d2", 5, ttl=math.inf, epoch=1, pin=True).stored  # own unflushed write
    assert local.stats().sets_ignored_epoch == 1
    with pytest.raises(ValueError):
        local.set("x", 1, ttl=60, epoch="1")  # type: ignore[arg-type]


def test_a_fill_that_began_before_its_keys_invalidation_is_ignored() -> None:
    local = LocalCache(max_marks=3)
    since = local.generation  # a fill of "k" begins, reads the old value ...
    assert local.invalidate_many(["k"]) == 0  # ... the invalidation arrives first ...
    late = local.set("k", "old", ttl=60, since=since)  # ... then the fill lands
    assert late.outcome is SetOutcome.INVALIDATED and local.get("k") is None
    assert local.set("other", 1, ttl=60, since=since).stored  # other keys are unaffected
    fresh = local.generation
    assert local.set("k", "new", ttl=60, since=fresh).stored  # a fill begun after: fine
    assert local.invalidate_many(["k", "other"]) == 2 and len(local) == 0
    assert local.set("k", "d", ttl=math.inf, since=since, pin=True).stored  # own write
    # Forgetting marks beyond max_marks refuses every fill that began before them.
    before = local.generation
    local.invalidate_many(["a", "b", "c", "d"])  # "k" and "other" forgotten
    assert local.set("other", 2, ttl=60, since=before).outcome is SetOutcome.INVALIDATED
    assert local.set("other", 2, ttl=60, since=local.generation).stored
    assert local.stats().sets_ignored_invalidated == 2
