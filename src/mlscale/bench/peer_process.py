"""A peer's server process (MLflow's tracking server, InfluxDB's influxd): started in a
session of its own with its output in a log, waited for until an HTTP endpoint answers,
and always stopped by its PID -- its whole process group, workers it forked included.

A server that exits while starting, or does not answer in time, is stopped and reported
with the tail of its log, as the error class its peer module names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from ..errors import MlscaleError

__all__ = ["PeerProcess"]

STOP_TIMEOUT_S = 15.0


class PeerProcess:
    """``argv`` run with ``env`` in ``cwd``, stdout and stderr appended to ``log_path``;
    ``what`` names it in errors, raised as ``error``. Use after close raises."""

    def __init__(
        self,
        what: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        error: type[MlscaleError] = MlscaleError,
    ) -> None:
        self.what = what
        self.log_path = log_path
        self.error = error
        self._closed = False
        with open(log_path, "ab") as log:
            try:
                # A session of its own: Ctrl-C of the bench does not reach it, and its
                # process group is stopped together, by this PID.
                self.proc = subprocess.Popen(
                    list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=dict(env), cwd=str(cwd), start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise error(f"{what} could not start: {exc}") from exc
        self.pid = self.proc.pid

    def wait_ready(self, url: str, *, status: int, timeout_s: float) -> float:
        """Wait until ``GET url`` answers ``status``; the seconds it took. A process that
        exits first, or does not answer within ``timeout_s`` seconds, is stopped and
        reported."""
        t0 = time.monotonic()
        path = httpx.URL(url).path
        try:
            with httpx.Client(timeout=2.0) as http:
                while True:
                    if self.proc.poll() is not None:
                        raise self.error(
                            f"{self.what} exited with {self.proc.returncode} while starting"
                            f"{self.log_tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(url).status_code == status:
                            return time.monotonic() - t0
                    if time.monotonic() - t0 > timeout_s:
                        raise self.error(
                            f"{self.what} did not answer {path} within {timeout_s:.0f} s, so "
                            f"it was stopped{self.log_tail()}"
                        )
                    time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def log_tail(self, lines: int = 4) -> str:
        """The last lines of the log, for error messages (": a | b")."""
        try:
            with open(self.log_path, errors="replace") as f:
                tail = deque((ln.rstrip() for ln in f if ln.strip()), maxlen=lines)
        except OSError:
            return ""
        return f": {' | '.join(tail)[-600:]}" if tail else ""

    @property
    def running(self) -> bool:
        """Whether the first process is alive and not closed."""
        return not self._closed and self.proc.poll() is None

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop it: SIGTERM to its process group (the servers' clean stop), SIGKILL after
        ``timeout_s`` seconds to whatever of the group is left; idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout_s)
        # Workers may outlive the first process for a moment: wait for the whole group.
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout_s)
