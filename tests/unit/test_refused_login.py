"""A refused login is told from an unreachable node by libpq's words, and its error
says where the password came from; `config check` finds unreadable secrets."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from mlscale import AuthenticationError, NodeUnavailableError, parse_config
from mlscale.config import ClusterConfig
from mlscale.core.topology import nodes_of
from mlscale.engine.connect import auth_problems, login_refused, refused_login_error

AT = 'connection failed: connection to server at "127.0.0.1", port 5433 failed: '


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        (AT + 'FATAL:  password authentication failed for user "mlscale"', True),
        (AT + "fe_sendauth: no password supplied", True),
        (AT + 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "u", database "d"', True),
        (AT + 'FATAL:  Peer authentication failed for user "u"', True),
        (AT + "Connection refused\n\tIs the server running on that host?", False),
        (AT + "timeout expired", False),
        (AT + "FATAL:  the database system is starting up", False),
        (AT + 'FATAL:  database "nope" does not exist', False),
    ],
)
def test_refused_logins_are_told_from_unreachable_nodes(message: str, refused: bool) -> None:
    assert login_refused(psycopg.OperationalError(message)) is refused


def test_a_driver_error_of_another_kind_is_no_refused_login() -> None:
    assert not login_refused(psycopg.ProgrammingError("password authentication failed"))


def _config(tmp_path: Path, auth: dict[str, str]) -> ClusterConfig:
    return parse_config(
        {
            "auth": auth,
            "control": {"port": 5432},
            "shard_groups": [{"name": "g0", "primary": {"port": 5433}}],
        },
        source=tmp_path / "c.toml",
    )


def test_the_error_names_the_node_the_reason_and_the_missing_passfile(tmp_path: Path) -> None:
    config = _config(tmp_path, {"passfile": "nope"})
    node = nodes_of(config)[1]
    exc = psycopg.OperationalError(AT + "fe_sendauth: no password supplied")
    err = refused_login_error(node, config, exc)
    assert isinstance(err, AuthenticationError) and isinstance(err, psycopg.OperationalError)
    assert not isinstance(err, NodeUnavailableError)
    assert (err.node, err.node_role) == ("g0-primary", "primary")
    assert str(err) == (
        "node g0-primary at 127.0.0.1:5433 refused the login: no password supplied; "
        f"auth.passfile {tmp_path / 'nope'} does not exist"
    )


def test_the_error_points_at_the_variable_that_held_the_password(tmp_path: Path) -> None:
    config = _config(tmp_path, {"password_env": "SOME_VAR"})
    node = nodes_of(config)[0]
    exc = psycopg.OperationalError(AT + 'FATAL:  password authentication failed for user "x"')
    err = refused_login_error(node, config, exc)
    assert 'password authentication failed for user "x"' in str(err)
    assert "check the password in $SOME_VAR" in str(err)


def test_auth_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth_problems(_config(tmp_path, {"passfile": "nope"})) == [
        f"auth.passfile {tmp_path / 'nope'} does not exist"
    ]
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:mlscale:secret\n")
    os.chmod(passfile, 0o600)
    assert auth_problems(_config(tmp_path, {"passfile": "pgpass"})) == []
    os.chmod(passfile, 0o640)
    (problem,) = auth_problems(_config(tmp_path, {"passfile": "pgpass"}))
    assert "group or world access" in problem
    monkeypatch.delenv("MLSCALE_UNSET_VAR", raising=False)
    assert auth_problems(_config(tmp_path, {"password_env": "MLSCALE_UNSET_VAR"})) == [
        "auth.password_env names $MLSCALE_UNSET_VAR, which is not set"
    ]
    monkeypatch.setenv("MLSCALE_UNSET_VAR", "x")
    assert auth_problems(_config(tmp_path, {"password_env": "MLSCALE_UNSET_VAR"})) == []
