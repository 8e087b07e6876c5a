"""Replica choice, bans and read decisions: pure, table-driven."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from mlscale.core import replicas
from mlscale.core.balance import (
    STRATEGIES,
    Ban,
    BanKind,
    BanPolicy,
    Cause,
    NoReplica,
    Policy,
    ReplicaState,
    RouterMetrics,
    UsePrimary,
    UseReplica,
    WaitFor,
    choose,
    manual_ban,
    pick_replica,
)
from mlscale.core.consistency import (
    CausalToken,
    Consistency,
    GroupPosition,
    ReadRequirement,
    requirement,
)

SYS = 7_312_345_678_901_234_567
TOKEN_LSN = 0x3000060
TOKEN = CausalToken({"g0": GroupPosition(SYS, 1, TOKEN_LSN)})


def rs(name: str, **kw: Any) -> ReplicaState:
    """A healthy, caught-up replica of g0 unless ``kw`` says otherwise."""
    base: dict[str, Any] = {
        "group": "g0",
        "replay_lsn": TOKEN_LSN,
        "receive_lsn": TOKEN_LSN,
        "lag_bytes": 0,
        "lag_ms": 0.0,
        "system_identifier": SYS,
        "timeline": 1,
    }
    return ReplicaState(name=name, **{**base, **kw})


def names(policy: Policy, candidates: list[ReplicaState], turns: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    picks = (choose(candidates, policy, turn=t, rng=rng) for t in range(turns))
    return "".join(p.name if p else "-" for p in picks)


# -- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "candidates", "turns", "sequence"),
    [
        (Policy.ROUND_ROBIN, [rs("a"), rs("b"), rs("c")], 7, "abcabca"),
        (Policy.ROUND_ROBIN, [rs("a", weight=2.0), rs("b", weight=2.0)], 4, "abab"),
        (Policy.ROUND_ROBIN, [rs("a", weight=3.0), rs("b")], 16, "aaabaaaabaabaaaa"),
        (Policy.ROUND_ROBIN, [rs("a"), rs("b", weight=0.0)], 3, "aaa"),  # drained
        (Policy.LEAST_OUTSTANDING, [rs("a", outstanding=3), rs("b", outstanding=1)], 3, "bbb"),
        # per unit of weight: a has 4/2 = 2, b has 3/1 = 3
        (
            Policy.LEAST_OUTSTANDING,
            [rs("a", outstanding=4, weight=2.0), rs("b", outstanding=3)],
            2,
            "aa",
        ),
        # ties rotate with the turn, so equal replicas share the load
        (Policy.LEAST_OUTSTANDING, [rs("a", outstanding=1), rs("b", outstanding=1)], 4, "abab"),
        (
            Policy.LEAST_OUTSTANDING,
            [rs("a", outstanding=1), rs("b", outstanding=0), rs("c", outstanding=0)],
            4,
            "bcbc",
        ),
        (Policy.LEAST_LAG, [rs("a", lag_bytes=900), rs("b", lag_bytes=100)], 2, "bb"),
        # equal bytes: fewer ms wins; unknown lag counts as the worst
        (
            Policy.LEAST_LAG,
            [rs("a", lag_bytes=0, lag_ms=40.0), rs("b", lag_bytes=0, lag_ms=10.0)],
            2,
            "bb",
        ),
        (Policy.LEAST_LAG, [rs("a", lag_bytes=None), rs("b", lag_bytes=10**9)], 2, "bb"),
        # equal lag: fewer in flight wins, then the turn rotates
        (
            Policy.LEAST_LAG,
            [rs("a", outstanding=2), rs("b", outstanding=1), rs("c", outstanding=1)],
            4,
            "bcbc",
        ),
        (Policy.LEAST_LAG, [rs("a"), rs("b")], 4, "abab"),
        (Policy.RANDOM, [rs("a", weight=0.0), rs("b")], 5, "bbbbb"),
        (Policy.ROUND_ROBIN, [], 2, "--"),
        (Policy.RANDOM, [rs("a", weight=0.0)], 2, "--"),
    ],
)
def test_policy_choice_sequence(
    policy: Policy, candidates: list[ReplicaState], turns: int, sequence: str
) -> None:
    assert names(policy, candidates, turns) == sequence


@pytest.mark.parametrize("policy", [Policy.ROUND_ROBIN, Policy.RANDOM])
def test_weights_set_the_share_of_reads(policy: Policy) -> None:
    candidates = [rs("a", weight=3.0), rs("b"), rs("c", weight=2.0)]
    counts = Counter(names(policy, candidates, 6000, seed=1))
    slack = 3 if policy is Policy.ROUND_ROBIN else 120  # exact-ish vs sampled
    assert abs(counts["a"] - 3000) <= slack
    assert abs(counts["b"] - 1000) <= slack
    assert abs(counts["c"] - 2000) <= slack


def test_random_is_deterministic_given_its_rng() -> None:
    candidates = [rs("a"), rs("b"), rs("c")]
    assert names(Policy.RANDOM, candidates, 50, seed=7) == names(
        Policy.RANDOM, candidates, 50, seed=7
    )
    assert set(names(Policy.RANDOM, candidates, 50, seed=7)) == {"a", "b", "c"}


def test_every_policy_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(Policy)
    assert choose([rs("a")], "least_lag", turn=0, rng=random.Random(0)) == rs("a")  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{"weight": -1.0}, {"weight": float("nan")}, {"outstanding": -1}])
def test_replica_state_validates(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="g0-r"):
        rs("g0-r", **kw)


# -- decisions ------------------------------------------------------------------------------

RYW = requirement(Consistency.READ_YOUR_WRITES, group="g0", token=TOKEN)
RYW_WAIT = requirement(Consistency.READ_YOUR_WRITES, group="g0", token=TOKEN, wait_ms=50.0)
BOUNDED = requirement(Consistency.BOUNDED_STALENESS, group="g0", max_lag_ms=500.0)
EVENTUAL = requirement(Consistency.EVENTUAL, group="g0")
MONO = requirement(Consistency.EVENTUAL, group="g0", seen_lsn=0x5000000)
STRONG = requirement(Consistency.STRONG, group="g0")
ERR = Ban(BanKind.ERROR, "connection refused", since=0.0, until=10.0)
LAGGING = Ban(BanKind.LAG, "lag 9000 ms > 5000 ms", since=0.0)
BEHIND = {"replay_lsn": 0x3000000, "receive_lsn": 0x3000000}
OTHER_CLUSTER = {"system_identifier": SYS + (1 << 32), "replay_lsn": 2**40}


@pytest.mark.parametrize(
    ("replicas_", "req", "primary_reads", "decision"),
    [
        ([rs("a")], STRONG, True, UsePrimary(Cause.STRONG, "STRONG")),
        ([rs("a")], STRONG, False, UsePrimary(Cause.STRONG, "STRONG")),
        ([], RYW, True, UsePrimary(Cause.NO_REPLICA, "no replica configured in shard group g0")),
        (
            [rs("x", group="g1")],  # another group's replica never serves g0
            EVENTUAL,
            True,
            UsePrimary(Cause.NO_REPLICA, "no replica configured in shard group g0"),
        ),
        ([], RYW, False, NoReplica(Cause.NO_REPLICA, "no replica configured in shard group g0")),
        ([rs("a", **BEHIND), rs("b")], RYW, True, UseReplica("b", "read_your_writes by ...")),
        ([rs("a", ban=ERR), rs("b")], EVENTUAL, True, UseReplica("b", "...")),
        ([rs("a", up=False), rs("b")], EVENTUAL, True, UseReplica("b", "...")),
        (
            [rs("a", **BEHIND), rs("b", **BEHIND)],
            RYW,
            True,
            UsePrimary(
                Cause.NOT_REPLAYED,
                "no replica has replayed 0/3000060 yet: a: replayed 0/3000000 < 0/3000060; "
                "b: replayed 0/3000000 < 0/3000060",
            ),
        ),
        (
            [rs("a", **BEHIND)],
            RYW,
            False,
            NoReplica(
                Cause.NOT_REPLAYED,
                "no replica has replayed 0/3000060 yet: a: replayed 0/3000000 < 0/3000060",
            ),
        ),
        (
            [rs("a", lag_ms=812.0)],
            BOUNDED,
            True,
            UsePrimary(
                Cause.TOO_STALE,
                "no replica within the staleness bound: a: lag 812 ms > 500 ms bound",
            ),
        ),
        ([rs("a", lag_ms=812.0), rs("b", lag_ms=20.0)], BOUNDED, True, UseReplica("b", "...")),
        # a token from a rebuilt cluster: no replica can compare, the primary serves
        (
            [rs("a", **OTHER_CLUSTER)],
            RYW,
            True,
            UsePrimary(
                Cause.INCOMPARABLE,
                f"no replica can compare with the token's position 0/3000060 (system {SYS}, "
                f"timeline 1): a: system identifier {SYS + (1 << 32)} is not the token's {SYS} "
                "(another cluster)",
            ),
        ),
        # ... even when allowed to wait: waiting would not help
        ([rs("a", **OTHER_CLUSTER)], RYW_WAIT, True, UsePrimary(Cause.INCOMPARABLE, "...")),
        ([rs("a", timeline=2, replay_lsn=2**40)], RYW, True, UsePrimary(Cause.INCOMPARABLE, "...")),
        # ... but a read that needs no token position may use that replica
        ([rs("a", **OTHER_CLUSTER)], EVENTUAL, True, UseReplica("a", "...")),
        # monotonic: never older than the session's high-water mark
        (
            [rs("a", replay_lsn=0x4000000), rs("b", replay_lsn=0x5000010)],
            MONO,
            True,
            UseReplica("b", "..."),
        ),
        (
            [rs("a", replay_lsn=0x4000000)],
            MONO,
            True,
            UsePrimary(Cause.NOT_REPLAYED, "no replica has replayed 0/5000000 yet: ..."),
        ),
        # a fresh process: not sampled yet, so the router asks the replica itself
        (
            [rs("a", replay_lsn=None, receive_lsn=None, system_identifier=None, timeline=None)],
            RYW_WAIT,
            True,
            WaitFor(TOKEN_LSN, ("a",), 50.0, "a not yet at 0/3000060; waiting up to 50 ms"),
        ),
        # ... which needs a bound to wait for: without one, the primary
        (
            [rs("a", replay_lsn=None, receive_lsn=None, system_identifier=None, timeline=None)],
            RYW,
            True,
            UsePrimary(Cause.INCOMPARABLE, "..."),
        ),
        # waiting: the WAL is received but not replayed, or the replica replays within the bound
        (
            [rs("a", replay_lsn=0x3000000, receive_lsn=TOKEN_LSN, lag_ms=900.0)],
            RYW_WAIT,
            True,
            WaitFor(TOKEN_LSN, ("a",), 50.0, "a not yet at 0/3000060; waiting up to 50 ms"),
        ),
        (
            [rs("a", **BEHIND, lag_ms=30.0), rs("b", **BEHIND, lag_ms=400.0)],
            RYW_WAIT,
            True,
            WaitFor(TOKEN_LSN, ("a",), 50.0, "a not yet at 0/3000060; waiting up to 50 ms"),
        ),
        ([rs("a", **BEHIND, lag_ms=400.0)], RYW_WAIT, True, UsePrimary(Cause.NOT_REPLAYED, "...")),
        (
            [rs("a", **BEHIND, lag_ms=30.0)],
            RYW_WAIT.without_wait(),
            True,
            UsePrimary(Cause.NOT_REPLAYED, "..."),
        ),
        ([rs("a", **BEHIND, lag_ms=30.0), rs("b")], RYW_WAIT, True, UseReplica("b", "...")),
        # every replica banned: the primary, saying why
        (
            [rs("a", ban=ERR), rs("b", ban=LAGGING)],
            RYW,
            True,
            UsePrimary(
                Cause.ALL_BANNED,
                "all replicas banned: a banned (error: connection refused); "
                "b banned (lag: lag 9000 ms > 5000 ms)",
            ),
        ),
        (
            [rs("a", ban=ERR), rs("b", up=False), rs("c", weight=0.0)],
            EVENTUAL,
            True,
            UsePrimary(
                Cause.ALL_BANNED,
                "no replica available: a banned (error: connection refused); b down; "
                "c drained (weight 0)",
            ),
        ),
        # the primary may not serve reads: bans other than manual are ignored (PgDog's rule)
        (
            [rs("a", ban=manual_ban("maintenance", 0.0)), rs("b", ban=ERR)],
            RYW,
            False,
            UseReplica("b", "..."),
        ),
        (
            [rs("a", ban=manual_ban("maintenance", 0.0)), rs("b", ban=ERR, up=False)],
            RYW,
            False,
            NoReplica(Cause.ALL_BANNED, "all replicas banned: ..."),
        ),
    ],
)
def test_pick_replica(
    replicas_: list[ReplicaState],
    req: ReadRequirement,
    primary_reads: bool,
    decision: UseReplica | UsePrimary | WaitFor | NoReplica,
) -> None:
    got = pick_replica(
        replicas_,
        req,
        Policy.ROUND_ROBIN,
        turn=0,
        rng=random.Random(0),
        primary_reads=primary_reads,
    )
    assert type(got) is type(decision)
    prefix, dots, _ = decision.reason.partition("...")
    if not dots:
        assert got == decision
        return
    # "..." in the expected reason matches any text from there on
    assert got.reason.startswith(prefix), got.reason
    for field in ("name", "cause", "lsn", "replicas", "timeout_ms"):
        assert getattr(got, field, None) == getattr(decision, field, None), field


def test_strong_and_fallbacks_ignore_the_policy() -> None:
    for policy in Policy:
        got = pick_replica([rs("a")], STRONG, policy, turn=3, rng=random.Random(0))
        assert got == UsePrimary(Cause.STRONG, "STRONG")


def test_the_policy_picks_among_fresh_replicas_only() -> None:
    fleet = [rs("a", **BEHIND, lag_bytes=0), rs("b", lag_bytes=50), rs("c", lag_bytes=10)]
    picks = [
        pick_replica(fleet, RYW, Policy.ROUND_ROBIN, turn=t, rng=random.Random(0)) for t in range(4)
    ]
    assert [p.name for p in picks if isinstance(p, UseReplica)] == ["b", "c", "b", "c"]
    got = pick_replica(fleet, RYW, Policy.LEAST_LAG, turn=0, rng=random.Random(0))
    assert got == UseReplica("c", "read_your_writes by least_lag of 2")


# -- bans -------------------------------------------------------------------------------------

POLICY = BanPolicy(
    error_backoff_s=1.0,
    max_backoff_s=60.0,
    backoff_factor=2.0,
    lag_ban_bytes=1000,
    lag_ban_ms=500.0,
    lag_unban_factor=0.5,
)


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0), (7, 60.0), (8, 60.0), (10_000, 60.0)],
)
def test_error_backoff_grows_to_its_cap(failures: int, seconds: float) -> None:
    assert POLICY.backoff_s(failures) == seconds
    ban = POLICY.after_error(rs("a"), 100.0, "connection refused", failures)
    assert ban == Ban(BanKind.ERROR, "connection refused", since=100.0, until=100.0 + seconds)
    assert not ban.manual


def test_error_bans_expire_and_manual_bans_never_do() -> None:
    erred = rs("a", ban=POLICY.after_error(rs("a"), 100.0, "timeout", failures=3))  # 4 s
    lagging = rs("b", ban=LAGGING)
    manual = rs("c", ban=manual_ban("maintenance", 0.0))
    fleet = [erred, lagging, manual, rs("d")]
    assert [r.ban is not None for r in POLICY.effective(fleet, 103.9)] == [True, True, True, False]
    assert [r.ban is not None for r in POLICY.effective(fleet, 104.0)] == [False, True, True, False]
    assert POLICY.effective(fleet, 1e12)[2].ban == manual_ban("maintenance", 0.0)
    # an error never replaces a manual ban
    assert POLICY.after_error(manual, 5.0, "timeout", 1) == manual_ban("maintenance", 0.0)
    # an error replaces a lag ban
    assert POLICY.after_error(lagging, 5.0, "timeout", 1).kind is BanKind.ERROR


@pytest.mark.parametrize(
    ("ban", "lag", "result"),
    [
        (None, {"lag_bytes": 800, "lag_ms": 100.0}, None),
        (None, {"lag_bytes": 1500, "lag_ms": 100.0}, "lag 1500 bytes > 1000 bytes"),
        (None, {"lag_bytes": 10, "lag_ms": 812.0}, "lag 812 ms > 500 ms"),
        (
            None,
            {"lag_bytes": 1500, "lag_ms": 812.0},
            "lag 1500 bytes > 1000 bytes, lag 812 ms > 500 ms",
        ),
        (None, {"lag_bytes": None, "lag_ms": None}, None),  # not measured: no evidence
        # hysteresis: back under the threshold is not enough, under half of it is
        ("lag", {"lag_bytes": 800, "lag_ms": 100.0}, "kept"),
        ("lag", {"lag_bytes": 400, "lag_ms": 300.0}, "kept"),
        ("lag", {"lag_bytes": 400, "lag_ms": 200.0}, None),
        ("lag", {"lag_bytes": 400, "lag_ms": None}, None),
        ("lag", {"lag_bytes": None, "lag_ms": None}, "kept"),
        # manual bans stay whatever the lag; unexpired error bans too
        ("manual", {"lag_bytes": 0, "lag_ms": 0.0}, "kept"),
        ("manual", {"lag_bytes": 5000, "lag_ms": 0.0}, "kept"),
        ("error", {"lag_bytes": 0, "lag_ms": 0.0}, "kept"),
        ("error-expired", {"lag_bytes": 0, "lag_ms": 0.0}, None),
        ("error-expired", {"lag_bytes": 1500, "lag_ms": 0.0}, "lag 1500 bytes > 1000 bytes"),
    ],
)
def test_evaluate_lag(ban: str | None, lag: dict[str, Any], result: str | None) -> None:
    bans = {
        None: None,
        "lag": LAGGING,
        "manual": manual_ban("maintenance", 0.0),
        "error": Ban(BanKind.ERROR, "timeout", since=0.0, until=100.0),
        "error-expired": Ban(BanKind.ERROR, "timeout", since=0.0, until=10.0),
    }
    state = rs("a", ban=bans[ban], **lag)
    got = POLICY.evaluate_lag(state, now=50.0)
    if result is None:
        assert got is None
    elif result == "kept":
        assert got is state.ban
    else:
        assert got == Ban(BanKind.LAG, result, since=50.0)


def test_lag_ban_does_not_flap_at_the_threshold() -> None:
    state = rs("a")
    banned = []
    for t, lag in enumerate([1500, 900, 990, 600, 450, 900, 1000, 1100, 499]):
        state = rs("a", ban=POLICY.evaluate_lag(rs("a", lag_bytes=lag, ban=state.ban), t))
        banned.append(state.ban is not None)
    assert banned == [True, True, True, True, False, False, False, True, False]


@pytest.mark.parametrize(
    "kw",
    [
        {"error_backoff_s": 0.0},
        {"error_backoff_s": 120.0},  # above max_backoff_s
        {"backoff_factor": 0.5},
        {"lag_unban_factor": 0.0},
        {"lag_unban_factor": 1.5},
        {"lag_ban_bytes": -1},
    ],
)
def test_ban_policy_validates(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BanPolicy(**kw)


def test_bans_are_re_exported_from_balance() -> None:
    assert Ban is replicas.Ban and BanPolicy is replicas.BanPolicy
    assert ReplicaState is replicas.ReplicaState


# -- metrics ----------------------------------------------------------------------------------


def test_router_metrics_count_decisions_and_pop() -> None:
    m = RouterMetrics()
    m.record(UseReplica("g0-replica1", "x"), Consistency.EVENTUAL, primary="g0-primary")
    m.record(UseReplica("g0-replica1", "x"), Consistency.READ_YOUR_WRITES, primary="g0-primary")
    m.record(UsePrimary(Cause.STRONG, "STRONG"), Consistency.STRONG, primary="g0-primary")
    m.record(UsePrimary(Cause.ALL_BANNED, "x"), Consistency.EVENTUAL, primary="g0-primary")
    m.record(WaitFor(1, ("g0-replica1",), 50.0, "x"), Consistency.READ_YOUR_WRITES, primary="p")
    m.record(NoReplica(Cause.NOT_REPLAYED, "x"), Consistency.READ_YOUR_WRITES, primary="p")
    m.record_wait(12.5, replayed=True)
    m.record_wait(50.0, replayed=False)
    m.record_retry()
    expected = {
        "reads_by_node": {"g0-replica1": 2, "g0-primary": 2},
        "reads_by_consistency": {"eventual": 2, "read_your_writes": 1, "strong": 1},
        "fallbacks_by_cause": {"all banned": 1},
        "refusals_by_cause": {"not replayed": 1},
        "token_waits": 2,
        "token_wait_timeouts": 1,
        "token_wait_ms": 62.5,
        "retries": 1,
    }
    assert m.snapshot() == expected
    assert m.pop() == expected
    assert m.snapshot() == RouterMetrics().snapshot()


@pytest.mark.parametrize(
    ("replayed", "system_identifier", "timeline", "serves"),
    [
        (True, SYS, 1, True),
        (False, SYS, 1, False),
        (None, SYS, 1, False),
        (True, SYS + 1, 1, False),  # another cluster
        (True, SYS, 2, False),  # another timeline
        (True, None, None, False),  # no WAL receiver: history unknown
    ],
)
def test_a_replica_checked_directly_serves_a_token_only_on_its_history(
    replayed: bool | None, system_identifier: int | None, timeline: int | None, serves: bool
) -> None:
    req = requirement(Consistency.READ_YOUR_WRITES, group="g0", token=TOKEN, wait_ms=50.0)
    assert req.serves(replayed, system_identifier, timeline) is serves
    eventual = requirement(Consistency.EVENTUAL, group="g0")
    assert eventual.serves(True, None, None)  # no token: no history to match
