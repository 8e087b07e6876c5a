"""`mlscale route "SQL"`: the operator's EXPLAIN for routing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("sql", "target", "fragment"),
    [
        ("SELECT * FROM features WHERE user_id = %s", "replica", "read-only"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "primary", "writable CTE"),
        ("SELECT nextval('ids')", "primary", "nextval"),
        ("SELECT * FROM t FOR UPDATE", "primary", "FOR UPDATE"),
        ("SELEC oops", "primary", "could not parse"),
    ],
)
def test_route_json(sql: str, target: str, fragment: str) -> None:
    result = run_cli("route", "--json", sql)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["target"] == target
    assert fragment in doc["reason"]


def test_route_text_and_config_functions(tmp_path: Path) -> None:
    result = run_cli("route", "SET work_mem = '1GB'")
    assert result.stdout.startswith("primary: ")
    assert "creates session state: setting" in result.stdout
    config = tmp_path / "c.toml"
    config.write_text(
        '[auth]\npassword_env = "X"\n[control]\nport = 1\n'
        '[[shard_groups]]\nname = "g0"\nprimary = { port = 2 }\n'
        '[routing]\nread_only_functions = ["feature_score"]\n'
    )
    assert json.loads(run_cli("route", "--json", "SELECT feature_score(1)").stdout)[
        "target"] == "primary"
    doc = json.loads(run_cli("route", "--json", "--config", str(config),
                             "SELECT feature_score(1)").stdout)
    assert doc["target"] == "replica"


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT nextval('s')", False),  # runs: its sequence state only feeds currval
        ("SET work_mem = '1GB'", True),
        ("SELECT nextval('s'); SET work_mem = '1GB'", True),
        ("BEGIN", True),
        ("SELECT 1", False),
    ],
)
def test_route_says_refused_only_for_what_a_call_outside_a_session_refuses(
    sql: str, refused: bool
) -> None:
    from mlscale import RoutingError, parse_config
    from mlscale.engine.context import ClusterContext

    config = parse_config(
        {
            "auth": {"password_env": "X"},
            "control": {"port": 1},
            "shard_groups": [{"name": "g0", "primary": {"port": 2}}],
        }
    )
    context: ClusterContext[Any] = ClusterContext(config, lambda **kw: None)
    try:
        context.check_one_call(context.classify(sql))  # what a call outside a session does
        decided = False
    except RoutingError:
        decided = True
    assert decided is refused
    doc = json.loads(run_cli("route", "--json", sql).stdout)
    assert doc["refused_outside_session"] is refused
    text = run_cli("route", sql).stdout
    assert ("refused outside" in text) is refused, text
