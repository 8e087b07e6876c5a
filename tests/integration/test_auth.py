"""Wrong credentials are reported at once as what they are, never as an outage.

A copy of the session cluster's config logs in with a wrong password, or through a
passfile that is not there. The pools keep their 30 s default timeout: the error
must come long before it, name the node and where the password came from, and
leave every replica unbanned (another try with the same credentials fails alike).
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest
import tomli_w

from mlscale import (
    AsyncCluster,
    AuthenticationError,
    Cluster,
    LocalCluster,
    NodeUnavailableError,
    parse_config,
)
from mlscale.config import ClusterConfig
from tests.conftest import run_cli

BAD_ENV = "MLSCALE_IT_WRONG_PASSWORD"
AT_ONCE_S = 3.0  # far below the pools' 30 s timeout


def config_with_auth(local_cluster: LocalCluster, auth: dict[str, Any]) -> dict[str, Any]:
    """The session cluster's config as data, logging in by ``auth``, describing no
    cluster a test may start or stop."""
    data = tomllib.loads(local_cluster.layout.config.read_text(encoding="utf-8"))
    data["auth"] = {"user": data["auth"]["user"], "dbname": data["auth"]["dbname"], **auth}
    data.pop("local", None)
    data.pop("redis", None)  # its password file is another matter
    data["pools"] = {**data.get("pools", {}), "timeout_s": 30.0}
    return data


def assert_refused_at_once(config: ClusterConfig, *fragments: str) -> AuthenticationError:
    with Cluster(config) as cluster:
        started = time.monotonic()
        with pytest.raises(AuthenticationError) as info:
            cluster.fetch_value("SELECT 1")
        took = time.monotonic() - started
        # A second call is refused at once too, not after the pool's timeout.
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            cluster.primary("g1").fetch_value("SELECT 1")
        again = time.monotonic() - started
        assert cluster.stats().bans == {}
    assert took < AT_ONCE_S and again < AT_ONCE_S, (took, again)
    err = info.value
    assert not isinstance(err, NodeUnavailableError)
    assert isinstance(err, psycopg.OperationalError)  # as the driver's own login failure
    message = str(err)
    assert err.node in message and "refused the login" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return err


def test_a_wrong_password_is_an_authentication_error_at_once(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BAD_ENV, "not-the-password")
    config = parse_config(config_with_auth(local_cluster, {"password_env": BAD_ENV}))
    assert_refused_at_once(config, "password authentication failed", f"${BAD_ENV}")


def test_a_missing_passfile_is_an_authentication_error_at_once(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    config = parse_config(config_with_auth(local_cluster, {"passfile": str(missing)}))
    assert_refused_at_once(config, "no password supplied", f"{missing} does not exist")


def test_the_async_cluster_reports_it_at_once_too(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BAD_ENV, "not-the-password")
    config = parse_config(config_with_auth(local_cluster, {"password_env": BAD_ENV}))

    async def main() -> float:
        async with AsyncCluster(config) as cluster:
            started = time.monotonic()
            with pytest.raises(AuthenticationError, match="password authentication failed"):
                await cluster.fetch_value("SELECT 1")
            return time.monotonic() - started

    assert asyncio.run(main()) < AT_ONCE_S


def test_status_says_auth_failed_for_live_nodes_it_cannot_log_into(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(config_with_auth(local_cluster, {"passfile": "nope"})))
    result = run_cli("status", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    nodes = json.loads(result.stdout)["nodes"]
    assert {n["state"] for n in nodes} == {"auth failed"}, nodes
    assert all("no password supplied" in n["error"] for n in nodes), nodes
    table = run_cli("status", "--config", str(path))
    assert "auth failed" in table.stdout and " down " not in table.stdout, table.stdout


def test_config_check_verifies_the_passfile_and_the_password_variable(
    local_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    missing.write_text(tomli_w.dumps(config_with_auth(local_cluster, {"passfile": "nope"})))
    result = run_cli("config", "check", str(missing))
    assert result.returncode == 1, result.stdout
    assert f"auth.passfile {tmp_path / 'nope'} does not exist" in result.stderr, result.stderr

    loose = tmp_path / "loose-pgpass"
    loose.write_text("*:*:*:mlscale:x\n")
    loose.chmod(0o644)
    shared = tmp_path / "shared.toml"
    shared.write_text(tomli_w.dumps(config_with_auth(local_cluster, {"passfile": str(loose)})))
    result = run_cli("config", "check", str(shared))
    assert result.returncode == 1 and "group or world access" in result.stderr, result.stderr

    unset = tmp_path / "unset.toml"
    unset.write_text(
        tomli_w.dumps(config_with_auth(local_cluster, {"password_env": "MLSCALE_IT_UNSET"}))
    )
    monkeypatch.delenv("MLSCALE_IT_UNSET", raising=False)
    result = run_cli("config", "check", str(unset))
    assert result.returncode == 1 and "$MLSCALE_IT_UNSET" in result.stderr, result.stderr

    good = run_cli("config", "check", str(local_cluster.layout.config))
    assert good.returncode == 0, good.stderr
