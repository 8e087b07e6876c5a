"""The chaos ledger's accounting (pure): given writes, the ids found afterwards and the
switch the observer saw, the counts a trial reports."""

from __future__ import annotations

import pytest

from mlscale.bench.chaos.ledger import (
    Ledger,
    Switch,
    Write,
    account,
    timeline_of_walfile,
    writer_gap,
)

OLD, NEW = 5432, 5433
FAULT = 100.0
TAKEOVER = 103.0
SWITCH_LSN = 10_000


def switch(**kw: object) -> Switch:
    base: dict[str, object] = {
        "old_leader": "g0-primary",
        "old_port": OLD,
        "new_leader": "g0-replica1",
        "fault_at": FAULT,
        "takeover_seen_at": TAKEOVER,
        "history_at": TAKEOVER + 0.2,
        "old_timeline": 1,
        "switch_lsn": SWITCH_LSN,
        "rejoined_at": 110.0,
    }
    base.update(kw)
    return Switch(**base)  # type: ignore[arg-type]


def acked(
    i: int, at: float, port: int = OLD, tl: int = 1, low: int = 100, high: int = 200
) -> Write:
    return Write(i, 0, at - 0.01, at, "acked", None, port, tl, low, high)


def test_counts_add_up_and_unknown_outcomes_are_reconciled() -> None:
    writes = [
        acked(1, 99.0),
        acked(2, 99.5),
        Write(3, 0, 100.0, 100.1, "unknown", "OperationalError: server closed", OLD, 1, 150),
        Write(4, 1, 100.0, 100.2, "unknown", "OperationalError: server closed"),
        Write(5, 1, 100.3, 100.4, "failed", "OperationalError: no connection"),
        Write(6, 2, 100.3, 100.4, "failed", "ReadOnlySqlTransaction: read-only"),
        acked(7, 103.5, port=NEW, tl=2, low=SWITCH_LSN + 500, high=SWITCH_LSN + 600),
    ]
    present = {1, 2, 3, 6, 7}  # 3 committed despite the error; 6 too (told "failed")
    a = account(writes, present, switch(), ended_at=106.0)
    assert (a.writes, a.acked, a.failed, a.unknown) == (7, 3, 2, 2)
    assert (a.unknown_present, a.unknown_absent) == (1, 1)
    assert a.failed_present == 1
    assert a.lost_acked == 0 and a.lost_ids == ()
    assert a.old_primary_acks_after_takeover == 0
    assert a.consistent
    assert a.errors == {"failed: OperationalError": 1, "failed: ReadOnlySqlTransaction": 1,
                        "unknown: OperationalError": 2}  # fmt: skip
    # Gap: last ack before the fault at 99.5, next ack at 103.5, then 106.0 at the end.
    assert a.writer_gap_s == pytest.approx(4.0)
    assert a.takeover_s == pytest.approx(3.0)
    assert a.rejoin_s == pytest.approx(10.0)
    assert a.acks_after_fault == 1


def test_lost_acked_rows_are_listed() -> None:
    writes = [acked(1, 99.0), acked(2, 99.9), acked(3, 104.0, port=NEW, tl=2)]
    a = account(writes, {1, 3}, switch(), ended_at=105.0)
    assert a.lost_acked == 1 and a.lost_ids == (2,)
    assert a.consistent


def test_old_primary_acks_after_takeover_by_lsn_and_by_clock() -> None:
    writes = [
        # Sent before the takeover, acked by the old primary before the fork: fine.
        acked(1, 102.9, low=SWITCH_LSN - 100, high=SWITCH_LSN - 50),
        # Sent after the takeover and past the fork: counted (once).
        acked(2, 103.6, low=SWITCH_LSN + 10, high=SWITCH_LSN + 90),
        # Sent before the takeover, but on the old timeline past the fork: counted.
        Write(3, 1, 102.5, 104.0, "acked", None, OLD, 1, SWITCH_LSN + 200, SWITCH_LSN + 300),
        # Sent after the takeover, before the fork, and on the new leader: the old
        # primary still streamed to it while it was being promoted. Not counted as a
        # loss, only as a write sent to a node that no longer held the key.
        Write(4, 2, 103.1, 103.2, "acked", None, OLD, 1, SWITCH_LSN - 10, SWITCH_LSN - 5),
        # Sent after the takeover, no LSN, missing: counted by the clock.
        Write(6, 2, 103.3, 103.4, "acked", None, OLD, None, None, None),
        # The new leader's acks never count, whatever their time.
        acked(5, 104.0, port=NEW, tl=2, low=SWITCH_LSN + 999),
    ]
    a = account(writes, {1, 4, 5}, switch(), ended_at=105.0)
    assert a.old_primary_acks_past_fork == 2  # ids 2, 3
    assert a.old_primary_acks_sent_after_takeover == 3  # ids 2, 4, 6
    assert a.old_primary_acks_after_takeover == 3  # ids 2, 3, 6
    assert a.old_primary_ack_ids == (2, 3, 6)
    assert a.lost_acked == 3 and a.lost_ids == (2, 3, 6)


def test_takeover_instant_is_the_earliest_evidence() -> None:
    assert switch(takeover_seen_at=103.0, history_at=102.5).takeover_at == 102.5
    assert switch(takeover_seen_at=None, history_at=102.5).takeover_at == 102.5
    assert switch(takeover_seen_at=None, history_at=None).takeover_at is None
    # No takeover seen: nothing is counted by clock, the LSN test still applies.
    w = Write(1, 0, 104.0, 104.1, "acked", None, OLD, 1, SWITCH_LSN + 1, SWITCH_LSN + 2)
    a = account([w], {1}, switch(takeover_seen_at=None, history_at=None), ended_at=105.0)
    assert (a.old_primary_acks_sent_after_takeover, a.old_primary_acks_past_fork) == (0, 1)


def test_missing_rows_against_the_switch_lsn() -> None:
    writes = [
        acked(1, 99.0, low=SWITCH_LSN + 1, high=SWITCH_LSN + 50),  # beyond: proven
        acked(2, 99.1, low=SWITCH_LSN - 20, high=SWITCH_LSN + 20),  # maybe
        acked(3, 99.2, low=SWITCH_LSN - 90, high=SWITCH_LSN - 10),  # before: unexplained
        Write(4, 0, 99.2, 99.3, "acked", None, OLD, 1, SWITCH_LSN - 5, None),  # no bound
    ]
    a = account(writes, set(), switch(), ended_at=101.0)
    assert a.lost_acked == 4
    assert (a.missing_beyond_switch, a.missing_maybe_beyond_switch) == (1, 1)
    assert (a.missing_before_switch, a.missing_lsn_unknown) == (1, 1)
    # Without a switch LSN nothing can be placed.
    b = account(writes, set(), switch(switch_lsn=None), ended_at=101.0)
    assert b.missing_lsn_unknown == 4


@pytest.mark.parametrize(
    ("acks", "ended", "gap"),
    [
        ([99.0, 99.5, 100.2, 100.4], 101.0, 0.7),  # 99.5 -> 100.2
        ([99.0, 99.5], 104.0, 4.5),  # no ack after the fault: until the writers stopped
        ([101.0, 101.5], 102.0, 1.0),  # no ack before the fault: from the fault
        ([], 103.0, 3.0),
        ([95.0, 99.9, 100.0, 100.1, 102.0], 102.0, 1.9),
    ],
)
def test_writer_gap(acks: list[float], ended: float, gap: float) -> None:
    assert writer_gap(acks, FAULT, ended) == pytest.approx(gap)


def test_ledger_and_walfile_timeline() -> None:
    ledger = Ledger()
    ledger.record(acked(1, 99.0))
    assert len(ledger) == 1 and ledger.writes()[0].id == 1
    assert timeline_of_walfile("0000000A0000000000000005") == 10
    assert account([], set(), switch(), ended_at=FAULT).to_dict()["consistent"] is True
