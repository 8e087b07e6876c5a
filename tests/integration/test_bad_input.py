"""Bad input: one clear error line, a non-zero exit, nothing half-started left behind."""

from __future__ import annotations

import socket
from pathlib import Path

from mlscale.local import procs
from mlscale.local.ports import port_is_free
from tests.conftest import assert_one_line_error, run_cli


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions ``text`` (a cluster directory)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not procs.pid_alive(int(entry.name)):
            continue
        if any(text in part for part in procs.cmdline(int(entry.name))):
            out.append(int(entry.name))
    return out


def assert_nothing_left(d: Path) -> None:
    assert not d.exists(), f"{d} was left behind: {list(d.iterdir())}"
    assert processes_mentioning(str(d)) == []


def test_port_in_use(scratch_dir: Path) -> None:
    d = scratch_dir / "c"
    base = next(b for b in range(29000, 32000, 10) if all(port_is_free(b + i) for i in range(3)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 2))  # the third node's: control, primary, replica
        s.listen()
        result = run_cli(
            "up",
            "--dir",
            str(d),
            "--base-port",
            str(base),
            "--shards",
            "1",
            "--replicas",
            "1",
            "--no-redis",
        )
    assert_one_line_error(result, f"port {base + 2}", "g0-replica1", "in use")
    assert_nothing_left(d)


def test_missing_postgres_binaries(scratch_dir: Path) -> None:
    d = scratch_dir / "c"
    empty = scratch_dir / "empty-bin"
    empty.mkdir()
    result = run_cli("up", "--dir", str(d), env={"MLSCALE_PG_BINDIR": str(empty)})
    assert_one_line_error(result, "initdb", str(empty), "setup.sh")
    assert_nothing_left(d)


def test_missing_redis_binary(scratch_dir: Path) -> None:
    d = scratch_dir / "c"
    result = run_cli("up", "--dir", str(d), env={"MLSCALE_REDIS_SERVER": "/nonexistent/redis"})
    assert_one_line_error(result, "redis-server not found", "--no-redis")
    assert_nothing_left(d)


def test_failure_midway_stops_what_was_started(scratch_dir: Path) -> None:
    # PostgreSQL nodes start, then Redis fails: everything must be stopped and removed.
    d = scratch_dir / "c"
    fake = scratch_dir / "fake-redis"
    fake.write_text("#!/bin/sh\necho 'fake redis refuses to start' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = run_cli(
        "up",
        "--dir",
        str(d),
        "--shards",
        "1",
        "--replicas",
        "1",
        env={"MLSCALE_REDIS_SERVER": str(fake)},
    )
    assert_one_line_error(result, "redis did not start", "fake redis refuses")
    assert_nothing_left(d)


def test_unwritable_directory() -> None:
    result = run_cli("up", "--dir", "/proc/mlscale-cannot-be-here")
    assert_one_line_error(result, "cannot write cluster directory /proc/mlscale-cannot-be-here")
    assert not Path("/proc/mlscale-cannot-be-here").exists()


def test_directory_blocked_by_a_file(scratch_dir: Path) -> None:
    blocker = scratch_dir / "file"
    blocker.write_text("not a directory")
    result = run_cli("up", "--dir", str(blocker / "c"))
    assert_one_line_error(result, "is not a directory")
    assert blocker.read_text() == "not a directory"


def test_unreachable_directory(scratch_dir: Path) -> None:
    locked = scratch_dir / "locked"
    locked.mkdir(mode=0o700)
    result = run_cli("up", "--dir", str(locked / "c"))
    assert_one_line_error(result, "not reachable by OS user", str(locked))
    assert list(locked.iterdir()) == []


def test_non_empty_foreign_directory_is_not_touched(scratch_dir: Path) -> None:
    d = scratch_dir / "c"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    assert_one_line_error(run_cli("up", "--dir", str(d)), "not empty")
    assert_one_line_error(run_cli("destroy", "--dir", str(d)), "refusing to delete")
    assert (d / "precious.txt").read_text() == "keep me"


def test_commands_on_a_missing_cluster(scratch_dir: Path) -> None:
    d = str(scratch_dir / "none")
    assert_one_line_error(run_cli("down", "--dir", d), "no mlscale cluster")
    assert_one_line_error(run_cli("status", "--dir", d), "no mlscale cluster")
    assert run_cli("destroy", "--dir", d).returncode == 0


def test_bad_shape_arguments(scratch_dir: Path) -> None:
    d = scratch_dir / "c"
    assert_one_line_error(run_cli("up", "--dir", str(d), "--shards", "0"), "--shards")
    assert_one_line_error(
        run_cli("up", "--dir", str(d), "--replicas", "0", "--sync-replication"),
        "needs at least one replica",
    )
    assert not d.exists()
