"""The writers' ledger and its accounting after a fault (pure: no I/O).

Each write inserts one row with a unique id in its own transaction and the ledger
records what the client was told: ``acked`` (COMMIT returned), ``failed`` (an
error before COMMIT was sent: it cannot have committed), or ``unknown`` (the
connection broke after COMMIT was sent, a ``CommitOutcomeUnknown``, or a COMMIT
that returned with PostgreSQL's "committed locally" warning). With each ack come
the server that ran it (its port, read in the same transaction), its timeline (from
``pg_walfile_name`` of the insert position) and two bounds of its commit LSN: the
WAL insert position read inside the transaction (``lsn_low``, at or before the
commit record) and ``pg_current_wal_lsn()`` read after COMMIT on the same connection
(``lsn_high``, at or after the commit record's end).

:func:`account` compares the ledger with the ids found on the group's leader after
the trial and with what the observer saw of the switch (:class:`Switch`):

- **lost**: acked ids missing from the new leader;
- **unknown outcomes reconciled**: each ``unknown`` id found present or absent;
  ``failed`` ids found present are counted apart (the client was told "failed" about
  a write that committed: a classification error);
- **old-primary acks after takeover**: acks by the old primary that are not in the new
  leader's history: made on the old timeline at a WAL position beyond where the new
  timeline forked (LSN test: clock-free), or *sent* after the takeover instant and
  missing from the new leader (clock test, for acks without an LSN). The takeover
  instant is the earlier of the observer's first sight of the new running leader and
  Patroni's /history timestamp of the switch. Acks of writes sent after that instant
  are also counted whether or not they survived (``old_primary_acks_sent_after_
  takeover``): Patroni shows the new leader as soon as it holds the leader key, and
  an old primary resumed from a freeze can still stream to it until its promotion
  ends, so such writes survive, yet they went to a node that no longer held the key;
- **writer gap**: the longest time, from the last ack before the fault to the end of
  the trial, with no ack from any writer; **longest write**: the longest time one
  write waited for its answer (a writer blocked on a frozen server shows here);
- **missing rows vs the switch LSN** (for asynchronous mode): each lost row's commit
  LSN against the LSN at which the old timeline ended in the new leader's history
  (what the promoted node had received and replayed): ``beyond`` when even its lower
  bound is past it (proven), ``maybe`` when only its upper bound is, ``before`` when
  its upper bound is not (a loss replication lag cannot explain).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Ledger",
    "Outcome",
    "Switch",
    "TrialAccount",
    "Write",
    "account",
    "timeline_of_walfile",
    "writer_gap",
]

Outcome = Literal["acked", "failed", "unknown"]

# At most this many ids are listed per kind in a trial's account (counts are exact).
_LIST_IDS = 20


@dataclass(frozen=True, slots=True)
class Write:
    """One write as its writer saw it. Times are wall-clock seconds (``time.time()``).

    ``sent_at``: when the statement was sent; ``done_at``: when the client got its
    answer (the ack time for an acked write). ``error``: the error's class and first
    line, for ``failed`` and ``unknown``. ``server_port``/``timeline``: the server
    that ran the INSERT and its timeline (None when the INSERT itself failed).
    ``lsn_low``/``lsn_high``: bounds of the commit LSN in bytes (see module doc).
    """

    id: int
    writer: int
    sent_at: float
    done_at: float
    outcome: Outcome
    error: str | None = None
    server_port: int | None = None
    timeline: int | None = None
    lsn_low: int | None = None
    lsn_high: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """Writes recorded by many writer threads (append-only, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: list[Write] = []

    def record(self, write: Write) -> None:
        with self._lock:
            self._writes.append(write)

    def writes(self) -> list[Write]:
        """A copy of every write recorded so far, in recording order."""
        with self._lock:
            return list(self._writes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._writes)


@dataclass(frozen=True, slots=True)
class Switch:
    """What the observer saw of one leader change. Times are wall-clock seconds.

    ``fault_at``: when the fault was injected (or the switchover asked for).
    ``takeover_seen_at``: the first poll of Patroni's /cluster showing another member
    leading and running. ``history_at``: Patroni's /history timestamp of the switch.
    ``old_timeline``/``switch_lsn``: the timeline the old leader wrote on and the LSN
    (bytes) where it ended in the new leader's history. ``rejoined_at``: when the old
    leader was first seen streaming from the new one on the new timeline.
    """

    old_leader: str
    old_port: int
    new_leader: str | None
    fault_at: float
    takeover_seen_at: float | None
    history_at: float | None
    old_timeline: int
    switch_lsn: int | None
    rejoined_at: float | None = None

    @property
    def takeover_at(self) -> float | None:
        """The earliest evidence that the new leader had taken over (see module doc)."""
        known = [t for t in (self.takeover_seen_at, self.history_at) if t is not None]
        return min(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "takeover_at": self.takeover_at}


@dataclass(frozen=True, slots=True)
class TrialAccount:
    """The counts of one trial (see :func:`account`). Seconds are relative to the fault."""

    writes: int
    acked: int
    failed: int
    unknown: int
    lost_acked: int
    unknown_present: int
    unknown_absent: int
    failed_present: int
    old_primary_acks_after_takeover: int
    old_primary_acks_sent_after_takeover: int
    old_primary_acks_past_fork: int
    acks_after_fault: int
    writer_gap_s: float
    takeover_s: float | None
    rejoin_s: float | None
    missing_beyond_switch: int
    missing_maybe_beyond_switch: int
    missing_before_switch: int
    missing_lsn_unknown: int
    longest_write_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    lost_ids: tuple[int, ...] = ()
    old_primary_ack_ids: tuple[int, ...] = ()

    @property
    def consistent(self) -> bool:
        """Whether the counts add up: every write is acked, failed or unknown, and every
        unknown one was found present or absent."""
        return (
            self.acked + self.failed + self.unknown == self.writes
            and self.unknown_present + self.unknown_absent == self.unknown
            and self.lost_acked <= self.acked
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "consistent": self.consistent}


def timeline_of_walfile(name: str) -> int:
    """The timeline of a WAL file name (its first 8 hex digits)."""
    return int(name[:8], 16)


def writer_gap(ack_times: Iterable[float], fault_at: float, ended_at: float) -> float:
    """The longest time in seconds with no ack, from the last ack at or before
    ``fault_at`` (or ``fault_at`` if none) until ``ended_at`` (when the writers
    stopped). Acks from every writer count: the gap is the service's, not a thread's."""
    times = sorted(ack_times)
    before = [t for t in times if t <= fault_at]
    start = before[-1] if before else fault_at
    points = [start, *(t for t in times if start < t <= ended_at), ended_at]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


def _error_kind(error: str | None) -> str:
    return (error or "unknown").split(":", 1)[0].strip() or "unknown"


def account(
    writes: Sequence[Write], present: Collection[int], switch: Switch, ended_at: float
) -> TrialAccount:
    """The counts of a trial: ``writes`` from the ledger, ``present`` the ids found on
    the group's leader afterwards, ``switch`` what the observer saw, ``ended_at`` when
    the writers stopped (wall-clock seconds)."""
    acked = [w for w in writes if w.outcome == "acked"]
    failed = [w for w in writes if w.outcome == "failed"]
    unknown = [w for w in writes if w.outcome == "unknown"]
    lost = [w for w in acked if w.id not in present]

    takeover = switch.takeover_at
    old_acks = [w for w in acked if w.server_port == switch.old_port]
    by_clock = {w.id for w in old_acks if takeover is not None and w.sent_at > takeover}
    by_lsn = {
        w.id
        for w in old_acks
        if switch.switch_lsn is not None
        and w.timeline == switch.old_timeline
        and w.lsn_low is not None
        and w.lsn_low > switch.switch_lsn
    }
    after = by_lsn | {i for i in by_clock if i not in present}

    beyond = maybe = before = no_lsn = 0
    for w in lost:
        if switch.switch_lsn is None or w.lsn_low is None:
            no_lsn += 1
        elif w.lsn_low > switch.switch_lsn:
            beyond += 1
        elif w.lsn_high is not None and w.lsn_high > switch.switch_lsn:
            maybe += 1
        elif w.lsn_high is None:
            no_lsn += 1
        else:
            before += 1

    errors: dict[str, int] = {}
    for w in (*failed, *unknown):
        kind = f"{w.outcome}: {_error_kind(w.error)}"
        errors[kind] = errors.get(kind, 0) + 1

    def since_fault(t: float | None) -> float | None:
        return None if t is None else t - switch.fault_at

    return TrialAccount(
        writes=len(writes),
        acked=len(acked),
        failed=len(failed),
        unknown=len(unknown),
        lost_acked=len(lost),
        unknown_present=sum(1 for w in unknown if w.id in present),
        unknown_absent=sum(1 for w in unknown if w.id not in present),
        failed_present=sum(1 for w in failed if w.id in present),
        old_primary_acks_after_takeover=len(after),
        old_primary_acks_sent_after_takeover=len(by_clock),
        old_primary_acks_past_fork=len(by_lsn),
        acks_after_fault=sum(1 for w in acked if w.done_at > switch.fault_at),
        writer_gap_s=writer_gap((w.done_at for w in acked), switch.fault_at, ended_at),
        takeover_s=since_fault(switch.takeover_seen_at),
        rejoin_s=since_fault(switch.rejoined_at),
        missing_beyond_switch=beyond,
        missing_maybe_beyond_switch=maybe,
        missing_before_switch=before,
        missing_lsn_unknown=no_lsn,
        longest_write_s=max((w.done_at - w.sent_at for w in writes), default=0.0),
        errors=dict(sorted(errors.items())),
        lost_ids=tuple(sorted(w.id for w in lost)[:_LIST_IDS]),
        old_primary_ack_ids=tuple(sorted(after)[:_LIST_IDS]),
    )
