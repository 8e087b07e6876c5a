"""Shared test helpers: run the CLI as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    # CI may stop a run with SIGTERM: turn it into KeyboardInterrupt so fixture
    # finalizers run and the servers they started are stopped.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 240.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mlscale ARGS`` in a subprocess; never raises on exit status."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlscale", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The command failed with exactly one error line on stderr naming ``fragments``."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("mlscale: error:"), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def _give_shared_ids_their_names(items: list[pytest.Item]) -> None:
    """Make every test's node id unique, or stop the run.

    schemathesis (4.32) builds one item per API operation from the test's bare name, and
    pytest 9.2 derives a node id from that name and a callspec those items lack: all
    the operations of a schema test share one id. A serial run still runs each, but
    pytest-xdist schedules by id and ran the first operation only, silently. Such an
    item gets its full name (``test[GET /healthz]``) as its id, as older pytest gave it.
    """
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and item.parent is not None and "[" not in item.nodeid:
            full = f"{item.parent.nodeid}::{item.name}"
            item._id = type(item._id).parse(full)  # type: ignore[attr-defined]
    shared = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if shared:
        raise pytest.UsageError(f"tests share node ids (xdist would run one of each): {shared}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _give_shared_ids_their_names(items)
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
