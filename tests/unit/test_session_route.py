"""Pure routing decisions: session state, routes, one-call refusals, the sync twin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlscale import RoutingError, parse_config
from mlscale.core.classify import Classifier, SessionEffect, Target, TxAction
from mlscale.core.route import OnPrimary, OnReplica, RouteRefused, Scope, choose_role
from mlscale.core.session import SessionState
from mlscale.engine.balancer import EVENTUAL
from mlscale.engine.context import ClusterContext
from mlscale.engine.statements import Isolation, set_transaction

C = Classifier()
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("steps", "pinned", "effects", "in_tx"),
    [
        (["SELECT 1"], False, set(), False),
        (["SET work_mem = '64MB'"], True, {SessionEffect.SETTING}, False),
        (["SET work_mem = '64MB'", "RESET ALL"], False, set(), False),
        (["SET a.b = 1", "PREPARE p AS SELECT 1", "DISCARD ALL"], False, set(), False),
        (["CREATE TEMP TABLE t (x int)", "DISCARD TEMP"], False, set(), False),
        (["SELECT nextval('s')"], True, {SessionEffect.SEQUENCE}, False),
        (["SELECT nextval('s')", "DISCARD SEQUENCES"], False, set(), False),
        (["SELECT pg_advisory_lock(1)", "SELECT pg_advisory_unlock_all()"], False, set(), False),
        (["LISTEN ch", "UNLISTEN *"], False, set(), False),
        (["LISTEN ch", "UNLISTEN ch"], True, {SessionEffect.LISTEN}, False),
        (["PREPARE p AS SELECT 1", "DEALLOCATE ALL"], False, set(), False),
        (["PREPARE p AS SELECT 1", "DEALLOCATE p"], True, {SessionEffect.PREPARED}, False),
        (["DECLARE c CURSOR WITH HOLD FOR SELECT 1", "CLOSE ALL"], False, set(), False),
        (["BEGIN"], True, set(), True),
        (["BEGIN", "SELECT 1", "COMMIT"], False, set(), False),
        (["BEGIN", "SET x.y = 1", "ROLLBACK"], True, {SessionEffect.SETTING}, False),
    ],
)
def test_session_state_follows_its_statements(
    steps: list[str], pinned: bool, effects: set[SessionEffect], in_tx: bool
) -> None:
    state = SessionState()
    for sql in steps:
        state = state.after(C.classify(sql))
    assert state.pinned is pinned
    assert set(state.effects) == effects
    assert state.in_transaction is in_tx


def test_pinned_session_sends_everything_to_its_connection() -> None:
    state = SessionState().after(C.classify("CREATE TEMP TABLE t (x int)"))
    chosen = choose_role(C.classify("SELECT * FROM t"), session=state)
    assert isinstance(chosen, OnPrimary) and "temporary table" in chosen.reason
    assert isinstance(choose_role(C.classify("SELECT 1"), session=SessionState()), OnReplica)
    # A statement that needs the session's state pins even a fresh session.
    assert SessionState().needs_pin(C.classify("SELECT currval('s')"))


@pytest.mark.parametrize(
    ("sql", "scope", "has_replicas", "expected"),
    [
        ("SELECT 1", Scope.AUTO, True, OnReplica),
        ("SELECT 1", Scope.AUTO, False, OnPrimary),
        ("SELECT 1", Scope.PRIMARY, True, OnPrimary),
        ("SELECT 1", Scope.REPLICA, True, OnReplica),
        ("SELECT 1", Scope.REPLICA, False, OnPrimary),
        ("INSERT INTO t VALUES (1)", Scope.AUTO, True, OnPrimary),
        ("INSERT INTO t VALUES (1)", Scope.PRIMARY, True, OnPrimary),
        ("SELECT mystery(1)", Scope.AUTO, True, OnPrimary),
    ],
)
def test_route_table(sql: str, scope: Scope, has_replicas: bool, expected: type) -> None:
    chosen = choose_role(C.classify(sql), scope=scope, has_replicas=has_replicas)
    assert isinstance(chosen, expected)


def test_a_write_in_a_replica_scope_is_refused() -> None:
    with pytest.raises(RouteRefused, match="FOR UPDATE"):
        choose_role(C.classify("SELECT * FROM t FOR UPDATE"), scope=Scope.REPLICA)


def _context() -> ClusterContext:  # type: ignore[type-arg]
    cfg = parse_config({
        "auth": {"password_env": "HOME"},
        "control": {"port": 1},
        "shard_groups": [{"name": "g0", "primary": {"port": 2},
                          "replicas": [{"port": 3}, {"port": 4}]}],
        "routing": {"read_only_functions": ["feature_score"]},
    })
    return ClusterContext(cfg, lambda **kw: None)  # type: ignore[arg-type,return-value]


def test_one_call_refusals_and_replica_turns() -> None:
    core = _context()
    with pytest.raises(RoutingError, match=r"cluster\.session"):
        core.check_one_call(C.classify("SET work_mem = '1GB'"))
    with pytest.raises(RoutingError, match=r"cluster\.transaction"):
        core.check_one_call(C.classify("BEGIN"))
    core.check_one_call(C.classify("SELECT nextval('ids')"))  # losing currval is harmless
    balancer = core.balancer
    states = balancer.states("g0", core.replica_nodes("g0"), {})
    picks = [
        balancer.decide(states, balancer.requirement(EVENTUAL, "g0", None)).name  # type: ignore[union-attr]
        for _ in range(4)
    ]
    assert picks == ["g0-replica1", "g0-replica2", "g0-replica1", "g0-replica2"]
    assert core.classify("SELECT feature_score(1)").target is Target.REPLICA
    assert core.classify("SELECT other_score(1)").target is Target.PRIMARY
    with pytest.raises(RoutingError, match="cannot run on a replica"):
        core.check_role(C.classify("DELETE FROM t"), Scope.REPLICA, None)


def test_set_transaction_is_composed_not_formatted() -> None:
    assert set_transaction(None, False) is None
    composed = set_transaction(Isolation.SERIALIZABLE, True)
    assert composed is not None
    text = composed.as_string(None)
    assert text == "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY"
    with pytest.raises(ValueError):
        set_transaction("serializable; DROP TABLE t", False)  # type: ignore[arg-type]


def test_transaction_statements_are_not_silently_lost() -> None:
    c = C.classify("SET LOCAL statement_timeout = 1000")
    assert c.transaction is TxAction.INSIDE


def test_sync_twin_is_generated_from_the_async_source() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "async_to_sync.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
