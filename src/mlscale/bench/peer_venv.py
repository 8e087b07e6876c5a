"""Venvs of the peers a benchmark compares mlscale with (Feast, MLflow, cashews): their
pins clash with ours, so each gets a venv of its own, made on demand with ``python -m
venv`` and pip from PyPI, reused once it passes its import check.

The venvs live under ``$MLSCALE_BENCH_VENVS`` or ``./.venv-bench``. A venv that cannot
be made is no error: :func:`peer_python` answers ``(None, why)`` so a benchmark can
say "Feast unavailable: why" and measure the rest. Processes that want the same venv at
once (parallel test workers, two benchmarks) take turns on a lock file beside it: one
makes it, the others then reuse it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["VENVS_ENV", "peer_python", "venvs_root"]

VENVS_ENV = "MLSCALE_BENCH_VENVS"


def venvs_root() -> Path:
    """Where the peers' venvs are made."""
    return Path(os.environ.get(VENVS_ENV, ".venv-bench")).absolute()


def _passes(python: Path, check: str, timeout_s: float) -> bool:
    try:
        done = subprocess.run(
            [str(python), "-c", check], capture_output=True, check=False, timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def peer_python(
    name: str,
    requirements: Sequence[str],
    check: str,
    *,
    timeout_s: float = 15 * 60.0,
    check_timeout_s: float = 120.0,
) -> tuple[Path | None, str]:
    """The interpreter of venv ``name`` holding ``requirements`` (pip specifiers), made
    if missing or if it fails ``check`` (Python source that exits non-zero when the
    venv is not as wanted, e.g. a version check); ``(None, why)`` when it cannot be
    made. ``timeout_s`` bounds each step (seconds)."""
    root = venvs_root() / name
    lock_path = root.parent / f"{name}.lock"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        lock_path.touch()
    except OSError as exc:
        return None, f"cannot make {root}: {exc}"
    # Held while checking and making, so a second process never pip-installs into a
    # venv being made (it waits, then finds it made).
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _made(root, requirements, check, timeout_s, check_timeout_s)


def _made(
    root: Path,
    requirements: Sequence[str],
    check: str,
    timeout_s: float,
    check_timeout_s: float,
) -> tuple[Path | None, str]:
    python = root / "bin" / "python"
    wanted = " ".join(requirements)
    if python.exists() and _passes(python, check, check_timeout_s):
        return python, f"reused {root} ({wanted})"
    steps = [
        [sys.executable, "-m", "venv", str(root)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *requirements],
    ]  # fmt: skip
    t0 = time.monotonic()
    for step in steps:
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=timeout_s, check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:5])}: {exc}"
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
            return None, f"{' '.join(step[:5])} failed: {tail[-300:]}"
    if not _passes(python, check, check_timeout_s):
        return None, f"{wanted} installed in {root} but does not import"
    return python, f"installed {wanted} in {root} in {time.monotonic() - t0:.0f} s"
