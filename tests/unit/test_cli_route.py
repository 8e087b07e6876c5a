"""`mlscale route "SQL"`: the operator's EXPLAIN for routing."""

from __future__ import annotations

import json
from pathlib import Path

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
