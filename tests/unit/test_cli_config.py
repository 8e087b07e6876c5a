"""`mlscale config check`: one line of verdict, exit status to match."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import assert_one_line_error, run_cli

GOOD = """
[auth]
password_env = "PGPASSWORD"
[control]
port = 5432
[[shard_groups]]
name = "g0"
primary = { port = 5433 }
replicas = [{ port = 5434 }]
[pools]
max_size = 7
"""


def test_good_config_passes(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    result = run_cli("config", "check", str(path), env={"PGPASSWORD": "set"})
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout and "3 PostgreSQL node(s)" in result.stdout
    assert "1..7 connections per node" in result.stdout


def test_malformed_config_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[control\nport = 1\n")
    assert_one_line_error(run_cli("config", "check", str(path)), "not valid TOML", str(path))


def test_contradictory_config_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "clash.toml"
    path.write_text(GOOD.replace("port = 5434", "port = 5433"))
    assert_one_line_error(
        run_cli("config", "check", str(path)), "shard_groups[0].replicas[0]", "127.0.0.1:5433"
    )


def test_missing_config_file_fails_in_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("config", "check", str(tmp_path / "nope.toml")), "no such config file"
    )
