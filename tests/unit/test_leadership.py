"""Following Patroni, without a server: leader choice, pools on a leader change, writes
after a failure, tokens across a timeline switch, the "committed locally" warning."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from mlscale.config import parse_config
from mlscale.core.causal import CausalToken, GroupPosition
from mlscale.core.consistency import Consistency, requirement
from mlscale.core.leadership import (
    ScopeLeader,
    WriteStep,
    after_write_failure,
    is_local_commit_warning,
    pools_to_renew,
    read_view,
)
from mlscale.core.replicas import ReplicaState
from mlscale.core.topology import Node, Role, nodes_of
from mlscale.engine.commitcheck import CommitCheck
from mlscale.engine.context import ClusterContext
from mlscale.errors import CommitOutcomeUnknown, ConfigError, NodeUnavailableError

SYS = 7_000_000_000_000_000_001


def _node(name: str, role: Role, port: int) -> Node:
    return Node(name, role, "g0", "127.0.0.1", port, "mlscale", "mlscale")


NODES = [_node("g0-primary", Role.PRIMARY, 5001), _node("g0-replica1", Role.REPLICA, 5002)]


@dataclass(frozen=True)
class M:
    name: str
    role: str
    state: str
    host: str | None = "127.0.0.1"
    port: int | None = None
    timeline: int | None = 1


@pytest.mark.parametrize(
    ("members", "leader", "replicas"),
    [
        # After a failover the config's "primary" is Patroni's replica: roles are Patroni's.
        (
            [M("g0-primary", "sync_standby", "streaming"), M("g0-replica1", "leader", "running")],
            "g0-replica1",
            ("g0-primary",),
        ),
        # A leader being stopped (a switchover) or crashed takes no writes.
        (
            [M("g0-primary", "leader", "stopping"), M("g0-replica1", "replica", "running")],
            None,
            ("g0-replica1",),
        ),
        (
            [M("g0-primary", "leader", "crashed"), M("g0-replica1", "replica", "streaming")],
            None,
            ("g0-replica1",),
        ),
        # A member not streaming (stopped, starting, rewinding) serves no reads.
        (
            [M("g0-primary", "replica", "stopped"), M("g0-replica1", "leader", "running")],
            "g0-replica1",
            (),
        ),
        # Older Patroni's role name for the leader.
        ([M("g0-primary", "master", "running")], "g0-primary", ()),
        # Mapped by host:port when Patroni's member names are not the config's.
        (
            [
                M("pg-a", "leader", "running", port=5002),
                M("pg-b", "replica", "streaming", port=5001),
            ],
            "g0-replica1",
            ("g0-primary",),
        ),
    ],
)
def test_the_leader_is_patronis_running_leader_matched_by_name_or_address(
    members: list[M], leader: str | None, replicas: tuple[str, ...]
) -> None:
    view = read_view("g0", members, NODES)
    assert (view.leader, view.replicas) == (leader, replicas)


def test_a_member_the_config_does_not_know_gets_nothing() -> None:
    view = read_view("g0", [M("stranger", "leader", "running", port=6000)], NODES)
    assert view.leader is None and view.unknown == ("stranger",)


@pytest.mark.parametrize(
    ("old", "new", "renewed"),
    [
        (None, "g0-primary", set()),  # the first view: nothing was pooled by a wrong role
        ("g0-primary", "g0-primary", set()),
        ("g0-primary", None, {"g0-primary"}),  # demoted or dead: never reused for writes
        (None, "g0-replica1", {"g0-replica1"}),  # opened to a standby
        ("g0-primary", "g0-replica1", {"g0-primary", "g0-replica1"}),
    ],
)
def test_pools_of_a_node_that_stopped_or_started_leading_are_renewed(
    old: str | None, new: str | None, renewed: set[str]
) -> None:
    first = old is None and new == "g0-primary"  # the first view: no leader was known
    before = None if first else ScopeLeader("g0", old, ())
    assert pools_to_renew(before, ScopeLeader("g0", new, ())) == renewed


@pytest.mark.parametrize(
    ("sent", "idempotent", "refused", "step"),
    [
        (False, False, False, WriteStep.WAIT_AND_RETRY),  # never reached a connection
        (True, False, True, WriteStep.WAIT_AND_RETRY),  # a leader not yet writable: nothing ran
        (True, True, False, WriteStep.WAIT_AND_RETRY),  # the caller says twice is harmless
        (True, False, False, WriteStep.OUTCOME_UNKNOWN),  # it may have committed
    ],
)
def test_what_a_failed_write_does_next(
    sent: bool, idempotent: bool, refused: bool, step: WriteStep
) -> None:
    assert after_write_failure(sent=sent, idempotent=idempotent, refused=refused) is step


@pytest.mark.parametrize(
    ("message", "detail", "local"),
    [
        (
            "canceling wait for synchronous replication due to user request",
            "The transaction has already committed locally, but might not have been "
            "replicated to the standby.",
            True,
        ),
        (
            "canceling the wait for synchronous replication and terminating connection "
            "due to administrator command",
            None,
            True,
        ),
        ("there is no transaction in progress", None, False),
        (None, None, False),
    ],
)
def test_the_committed_locally_warning_is_recognised(
    message: str | None, detail: str | None, local: bool
) -> None:
    assert is_local_commit_warning(message, detail) is local


class _Diag:
    def __init__(self, message: str, detail: str | None) -> None:
        self.message_primary = message
        self.message_detail = detail


class _Conn:
    closed = False

    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def add_notice_handler(self, h: Any) -> None:
        self.handlers.append(h)

    def remove_notice_handler(self, h: Any) -> None:
        self.handlers.remove(h)


def test_a_commit_answered_with_the_local_warning_is_commit_outcome_unknown() -> None:
    check = CommitCheck("INSERT INTO t VALUES (1)", idempotent=False)
    conn: Any = _Conn()
    check.attach(conn)
    conn.handlers[0](_Diag("canceling wait for synchronous replication due to user request", None))
    check.detach(conn)
    assert check.sent and not conn.handlers
    with pytest.raises(CommitOutcomeUnknown) as err:
        check.raise_if_local("g0-primary")
    exc = err.value
    assert isinstance(exc, NodeUnavailableError)
    assert (exc.statement, exc.idempotent, exc.node) == (
        "INSERT INTO t VALUES (1)",
        False,
        "g0-primary",
    )
    assert "synchronous replication" in exc.reason


def test_a_closed_connection_sends_nothing() -> None:
    check = CommitCheck("INSERT", idempotent=True)
    conn: Any = _Conn()
    conn.closed = True
    check.attach(conn)
    assert not check.sent
    assert check.unknown("g0", "x").idempotent is True


OLD = GroupPosition(SYS, 1, 1000)


@pytest.mark.parametrize(
    ("timeline", "points", "honoured"),
    [
        (1, {}, True),  # the same timeline
        (2, {1: 1500}, True),  # forked after the token: the new timeline holds it
        (2, {1: 1000}, True),  # exactly at the switch point
        (2, {1: 900}, False),  # beyond the switch point: lost with the old primary
        (2, {}, False),  # history not known yet: the leader serves it
        (3, {1: 1200, 2: 5000}, True),  # two failovers later, still in the history
    ],
)
def test_a_token_is_honoured_across_a_timeline_switch_up_to_its_switch_point(
    timeline: int, points: dict[int, int], honoured: bool
) -> None:
    assert OLD.honoured_by(SYS, timeline, points) is honoured
    token = CausalToken({"g0": OLD})
    req = requirement(Consistency.READ_YOUR_WRITES, group="g0", token=token, switch_points=points)
    replica = ReplicaState(
        name="r", group="g0", replay_lsn=2000, system_identifier=SYS, timeline=timeline
    )
    assert (req.shortfall(replica) is None) is honoured
    assert req.serves(True, SYS, timeline) is honoured


def test_a_token_from_a_newer_timeline_is_never_served_by_an_older_one() -> None:
    assert not GroupPosition(SYS, 2, 10).honoured_by(SYS, 1, {1: 5000})
    assert not OLD.honoured_by(SYS + 1, 1, {})  # another cluster


def _config(ha: bool, **policies: Any) -> Any:
    group: dict[str, Any] = {
        "name": "g0",
        "primary": {"port": 5001},
        "replicas": [{"port": 5002}],
    }
    control: dict[str, Any] = {"port": 5000}
    if ha:
        group["patroni"] = ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
        control |= {"replicas": [{"port": 5003}], "patroni": ["http://127.0.0.1:8000"]}
    return parse_config({"control": control, "shard_groups": [group], "policies": policies})


def test_failover_wait_is_configurable_and_checked() -> None:
    assert _config(False).policies.failover_wait_s == 30.0
    assert _config(False, failover_wait_s=5).policies.failover_wait_s == 5.0
    with pytest.raises(ConfigError, match="failover_wait_s"):
        _config(False, failover_wait_s=-1)


def test_a_cluster_without_patroni_keeps_the_configs_roles() -> None:
    context: ClusterContext[Any] = ClusterContext(_config(False), lambda **kw: None)
    assert not context.follows_patroni
    assert context.leadership.leader("g0") == "g0-primary"
    assert context.primary_node("g0") == "g0-primary"
    assert context.replica_nodes("g0") == ["g0-replica1"]
    assert context.control_node() == "control"


def test_a_patroni_group_follows_the_view_roles_pools_and_polls() -> None:
    config = _config(True)
    context: ClusterContext[Any] = ClusterContext(config, lambda **kw: None)
    lead = context.leadership
    heard: list[tuple[str, frozenset[str]]] = []
    lead.listeners.append(lambda scope, renew: heard.append((scope, renew)))
    assert lead.leader("g0") is None  # not known before the first view: writes wait
    assert sorted(lead.due(0.0)) == ["control", "g0"]
    members = [
        M("g0-primary", "leader", "running", port=5001),
        M("g0-replica1", "sync_standby", "streaming", port=5002),
    ]
    lead.update("g0", members, 1.0)
    assert context.primary_node("g0") == "g0-primary" and heard == [("g0", frozenset())]
    lead.polled("g0", 1.0)
    assert "g0" not in lead.due(1.5)  # all well: about once a second
    flipped = [
        M("g0-primary", "replica", "stopped", port=5001),
        M("g0-replica1", "leader", "running", port=5002, timeline=2),
    ]
    lead.update("g0", flipped, 2.0)
    assert heard[-1] == ("g0", frozenset({"g0-primary", "g0-replica1"}))
    assert context.primary_node("g0") == "g0-replica1"
    assert context.replica_nodes("g0") == []  # the old primary is not streaming yet
    assert context.roles["g0-primary"] == "replica" and context.roles["g0-replica1"] == "primary"
    now = time.monotonic()
    lead.polled("g0", now)
    assert "g0" not in lead.due(now)
    lead.poke_node("g0-replica1")  # a failure seen on the scope: polled at once, then fast
    assert "g0" in lead.due(time.monotonic())
    lead.polled("g0", now)
    assert "g0" in lead.due(now + 0.15)
    # The control database's standbys are nodes of their own (any may lead it).
    assert {n.name for n in nodes_of(config)} < set(context.pools.nodes)
    lead.update("control", [M("control-replica1", "leader", "running", port=5003)], 3.0)
    assert context.control_node() == "control-replica1"


def test_stats_show_each_scopes_leader_as_the_client_sees_it() -> None:
    context: ClusterContext[Any] = ClusterContext(_config(True), lambda **kw: None)
    lead = context.leadership
    before = context.stats({}, {}).leaders
    assert before["g0"].followed and before["g0"].leader is None  # no view yet
    assert before["g0"].seen_s_ago is None and before["g0"].changed_s_ago is None
    t0 = time.monotonic()
    lead.update("g0", [M("g0-primary", "leader", "running", port=5001)], t0)
    first = context.stats({}, {}).leaders["g0"]
    assert (first.leader, first.timeline, first.changed_s_ago) == ("g0-primary", 1, None)
    assert first.seen_s_ago is not None and first.seen_s_ago >= 0
    flipped = [
        M("g0-primary", "replica", "stopped", port=5001),
        M("g0-replica1", "leader", "running", port=5002, timeline=2),
    ]
    lead.update("g0", flipped, t0 + 0.5)
    lead.failed("g0", "http://127.0.0.1:8008: ConnectTimeout")
    stats = context.stats({}, {})
    now = stats.leaders["g0"]
    assert (now.leader, now.timeline) == ("g0-replica1", 2)
    assert now.changed_s_ago is not None and now.changed_s_ago < 60
    assert now.error == "http://127.0.0.1:8008: ConnectTimeout"
    assert stats.to_dict()["leaders"]["g0"]["leader"] == "g0-replica1"

    static = ClusterContext(_config(False), lambda **kw: None).stats({}, {}).leaders
    assert static["g0"].leader == "g0-primary" and not static["g0"].followed
    assert set(static) == {"control", "g0"}
